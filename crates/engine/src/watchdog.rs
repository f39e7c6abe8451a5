//! The run watchdog (issue 9, "bounded time for every network operation"). Each snapshot's work
//! runs inside [`Watchdog::watch`]; the code that makes progress (bytes received from the
//! snapshot URL, a part stored, an answer from Atlas, bytes read back from the store) calls
//! [`touch`]. Work that makes no progress for the limit is cancelled, as a crash would stop it
//! (every step is journalled before it is taken, so the next run resumes or cleans up), and the
//! caller reports it. Waits that are not a stall (a transfer slot held by another snapshot) run
//! inside [`exempt`]. `/healthz` reads [`Watchdog::longest_idle`], which shows a wedge the
//! watchdog itself could not end (a thread blocked outside the runtime's reach).
//! Every timeout below the watchdog (connect, read, per-request) still applies; this is the
//! backstop for whatever they do not cover.
//! Must not: import anything of this crate (every leaf may call [`touch`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static CURRENT: Arc<Beat>;
}

/// The last sign of life of one piece of watched work.
struct Beat {
    label: String,
    origin: Instant,
    /// Milliseconds after `origin` of the last [`touch`].
    last_ms: AtomicU64,
    /// Open [`exempt`] scopes: while any is open, the work is waiting, not stalled.
    exempt: AtomicUsize,
}

impl Beat {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        if self.exempt.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }
}

/// Records progress of the watched work this task belongs to (a no-op outside one).
pub fn touch() {
    let _ = CURRENT.try_with(|beat| beat.touch());
}

/// Runs `wait` as a wait that is not a stall (for a transfer slot, say): the watched work's
/// idle time does not grow while it runs, and it counts as progress when it ends.
pub async fn exempt<F: Future>(wait: F) -> F::Output {
    struct Leave(Option<Arc<Beat>>);
    impl Drop for Leave {
        fn drop(&mut self) {
            if let Some(beat) = &self.0 {
                beat.touch();
                beat.exempt.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    let beat = CURRENT.try_with(Arc::clone).ok();
    if let Some(b) = &beat {
        b.exempt.fetch_add(1, Ordering::Relaxed);
    }
    let _leave = Leave(beat);
    wait.await
}

/// Watched work made no progress for its limit and was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    /// How long it had been idle.
    pub idle: Duration,
}

/// The registry of watched work. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct Watchdog {
    active: Arc<Mutex<HashMap<u64, Arc<Beat>>>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchdog")
    }
}

impl Watchdog {
    /// Runs `work`, cancelling it when it makes no progress ([`touch`]) for `limit`.
    pub async fn watch<F: Future>(
        &self,
        label: &str,
        limit: Duration,
        work: F,
    ) -> Result<F::Output, Stalled> {
        struct Leave<'a>(&'a Watchdog, u64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.lock().remove(&self.1);
            }
        }
        let beat = Arc::new(Beat {
            label: label.to_owned(),
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            exempt: AtomicUsize::new(0),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(&beat));
        let _leave = Leave(self, id);
        let work = CURRENT.scope(Arc::clone(&beat), work);
        tokio::pin!(work);
        loop {
            let left = limit.saturating_sub(beat.idle());
            tokio::select! {
                out = &mut work => return Ok(out),
                () = tokio::time::sleep(left.max(Duration::from_millis(10))) => {
                    let idle = beat.idle();
                    if idle >= limit {
                        return Err(Stalled { idle });
                    }
                }
            }
        }
    }

    /// The watched work that has gone longest without progress, and for how long.
    pub fn longest_idle(&self) -> Option<(String, Duration)> {
        self.lock()
            .values()
            .map(|b| (b.label.clone(), b.idle()))
            .max_by_key(|(_, idle)| *idle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Beat>>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_that_keeps_touching_runs_to_the_end_and_idle_work_is_cancelled() {
        let dog = Watchdog::default();
        let limit = Duration::from_secs(60);
        // Three hours of work with a sign of life every 30 s: never stalled.
        let busy = dog
            .watch("busy", limit, async {
                for _ in 0..360 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    touch();
                }
                "done"
            })
            .await;
        assert_eq!(busy, Ok("done"));
        // Silent after its first minute: cancelled one limit later, not at its end.
        let started = Instant::now();
        let wedged = dog
            .watch("wedged", limit, async {
                touch();
                tokio::time::sleep(Duration::from_secs(3600)).await;
            })
            .await;
        assert!(matches!(wedged, Err(Stalled { idle }) if idle >= limit));
        assert!(started.elapsed() < Duration::from_secs(61));
        assert!(
            dog.longest_idle().is_none(),
            "finished work leaves the registry"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_exempt_wait_is_not_a_stall_and_health_sees_the_idle_work() {
        let dog = Watchdog::default();
        let limit = Duration::from_secs(60);
        let waited = dog
            .watch("waits for a slot", limit, async {
                exempt(tokio::time::sleep(Duration::from_secs(600))).await;
                // The end of the wait counts as progress: 30 s more is fine.
                tokio::time::sleep(Duration::from_secs(30)).await;
            })
            .await;
        assert_eq!(waited, Ok(()));
        let seen = dog.clone();
        let watcher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(45)).await;
            seen.longest_idle()
        });
        let _ = dog
            .watch(
                "silent",
                limit,
                tokio::time::sleep(Duration::from_secs(3600)),
            )
            .await;
        let (label, idle) = watcher.await.unwrap().unwrap();
        assert_eq!(label, "silent");
        assert!(idle >= Duration::from_secs(45), "{idle:?}");
    }
}
