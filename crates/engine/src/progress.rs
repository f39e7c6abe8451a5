//! Live progress of the transfers in flight, for a display: each transfer (an archive's stream,
//! a verify's or a restore's read) takes a [`Ticket`] on the [`Board`] and adds its bytes as
//! they flow; whoever displays them reads [`Board::transfers`] when it likes. Counting is one
//! relaxed atomic add per chunk, so the board is always there, watched or not.
//! Must not: print, know who reads it, or hold a lock while bytes flow.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The transfers in flight. Cheap to clone; clones share the board.
#[derive(Debug, Clone, Default)]
pub struct Board {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

#[derive(Debug)]
struct Entry {
    label: String,
    /// 0 while unknown.
    total: AtomicU64,
    done: AtomicU64,
    /// Bytes already there when the transfer began (a resume): not part of its rate.
    start: u64,
    started: Instant,
}

/// One transfer's place on the board; it leaves the board when dropped.
#[derive(Debug)]
pub struct Ticket {
    board: Board,
    id: u64,
    entry: Arc<Entry>,
}

/// What a display shows of one transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferView {
    /// Stable for the transfer's life, unique on the board.
    pub id: u64,
    /// What is moving: `project/cluster snapshot`, or an object key.
    pub label: String,
    /// Bytes so far (a resume starts at its offset).
    pub done: u64,
    /// The whole size, when known.
    pub total: Option<u64>,
    /// Bytes per second since the transfer began, counting only this run's bytes.
    pub bytes_per_second: f64,
}

impl Board {
    /// Puts a transfer on the board; `done` is where it starts (a resume's offset).
    pub fn start(&self, label: impl Into<String>, total: Option<u64>, done: u64) -> Ticket {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            label: label.into(),
            total: AtomicU64::new(total.unwrap_or(0)),
            done: AtomicU64::new(done),
            start: done,
            started: Instant::now(),
        });
        self.live().insert(id, entry.clone());
        Ticket {
            board: self.clone(),
            id,
            entry,
        }
    }

    /// The transfers in flight, oldest first.
    pub fn transfers(&self) -> Vec<TransferView> {
        self.live()
            .iter()
            .map(|(id, e)| {
                let done = e.done.load(Ordering::Relaxed);
                let secs = e.started.elapsed().as_secs_f64();
                TransferView {
                    id: *id,
                    label: e.label.clone(),
                    done,
                    total: Some(e.total.load(Ordering::Relaxed)).filter(|t| *t > 0),
                    bytes_per_second: if secs > 0.0 {
                        done.saturating_sub(e.start) as f64 / secs
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Entry>>> {
        // The map is only inserted into and removed from: a panic elsewhere cannot leave it
        // half-changed, so a poisoned lock is still a good map.
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Ticket {
    /// Adds bytes that have just moved.
    pub fn add(&self, bytes: u64) {
        self.entry.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The byte counter itself, for code that counts into an `AtomicU64`.
    pub fn counter(&self) -> &AtomicU64 {
        &self.entry.done
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.board.live().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_counts_and_leaves_the_board_when_dropped() {
        let board = Board::default();
        let a = board.start("p/c 1", Some(100), 0);
        let b = board.start("p/c 2", None, 40);
        a.add(30);
        b.add(2);
        let views = board.transfers();
        assert_eq!(views.len(), 2);
        assert_eq!(
            (views[0].label.as_str(), views[0].done, views[0].total),
            ("p/c 1", 30, Some(100))
        );
        assert_eq!((views[1].done, views[1].total), (42, None));
        drop(a);
        let views = board.transfers();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].label, "p/c 2");
        drop(b);
        assert!(board.transfers().is_empty());
    }
}
