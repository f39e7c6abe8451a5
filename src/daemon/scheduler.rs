//! The scheduling loop: wakes in short slices, re-reads the wall clock (so a suspended VM or a
//! clock step never skips a slot), starts each target's run when its slot (plus its stable
//! jitter) has come, never overlaps two runs of one target, and never replays a backlog.
//! Generic over the clock and the runner so that tests can drive days of schedule in seconds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use atlas_archiver_engine::schedule::{Schedule, StartDecision, on_start, stable_jitter};
use atlas_archiver_engine::target::Target;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Runs one target once (the pipeline, or a test double).
#[async_trait]
pub trait TargetRunner: Send + Sync + 'static {
    /// Archives the target; returns whether everything succeeded.
    async fn run_target(&self, target: Target) -> bool;
}

/// One target's place in the schedule.
#[derive(Debug, Clone)]
pub struct PlannedTarget {
    /// The target.
    pub target: Target,
    /// Its schedule.
    pub schedule: Schedule,
    /// Its stable jitter.
    pub jitter: Duration,
    /// When it runs next (slot plus jitter).
    pub due: Option<DateTime<Utc>>,
}

/// Why a manual run was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerError {
    /// A run of this target is in progress.
    AlreadyRunning,
    /// No such target in the config.
    UnknownTarget,
    /// The daemon is shutting down.
    ShuttingDown,
}

impl std::fmt::Display for TriggerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AlreadyRunning => "a run of this target is in progress",
            Self::UnknownTarget => "no such target in the config",
            Self::ShuttingDown => "shutting down",
        })
    }
}

/// The loop's liveness, read by `/healthz` and the systemd watchdog.
#[derive(Debug, Default)]
pub struct Heartbeat {
    unix_millis: AtomicI64,
}

impl Heartbeat {
    fn beat(&self, now: DateTime<Utc>) {
        self.unix_millis
            .store(now.timestamp_millis(), Ordering::Relaxed);
    }

    /// How long ago the loop last went round (`None` before its first round).
    pub fn age(&self, now: DateTime<Utc>) -> Option<Duration> {
        let last = self.unix_millis.load(Ordering::Relaxed);
        if last == 0 {
            return None;
        }
        u64::try_from(now.timestamp_millis() - last)
            .ok()
            .map(Duration::from_millis)
    }
}

/// Shared between the loop and the HTTP trigger: which targets run, and the task tracker.
pub struct Control<R: TargetRunner, C: Clock> {
    runner: Arc<R>,
    clock: Arc<C>,
    running: Mutex<HashSet<Target>>,
    targets: Mutex<Vec<Target>>,
    /// Targets a discovery added or removed since the loop's last round.
    changes: Mutex<Vec<PlanChange>>,
    tracker: TaskTracker,
    stopping: CancellationToken,
    /// Liveness of the loop.
    pub heartbeat: Heartbeat,
}

impl<R: TargetRunner, C: Clock> Control<R, C> {
    /// For `targets`, run by `runner`, timed by `clock`.
    pub fn new(
        runner: Arc<R>,
        clock: Arc<C>,
        targets: Vec<Target>,
        stopping: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            runner,
            clock,
            running: Mutex::new(HashSet::new()),
            targets: Mutex::new(targets),
            changes: Mutex::new(Vec::new()),
            tracker: TaskTracker::new(),
            stopping,
            heartbeat: Heartbeat::default(),
        })
    }

    fn running(&self) -> MutexGuard<'_, HashSet<Target>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a target a discovery found: the loop runs it at its next round (it is new, so its
    /// first run is due now), then on `schedule` like the others.
    pub fn add_target(&self, target: Target, schedule: Schedule) {
        let mut targets = lock(&self.targets);
        if targets.contains(&target) {
            return;
        }
        targets.push(target.clone());
        lock(&self.changes).push(PlanChange::Add(target, Box::new(schedule)));
    }

    /// Removes a target a discovery no longer finds: no new run starts (one in progress ends).
    pub fn remove_target(&self, target: &Target) {
        lock(&self.targets).retain(|t| t != target);
        lock(&self.changes).push(PlanChange::Remove(target.clone()));
    }

    /// The targets the loop plans now.
    pub fn targets(&self) -> Vec<Target> {
        lock(&self.targets).clone()
    }

    /// Targets with a run in progress.
    pub fn running_targets(&self) -> Vec<Target> {
        self.running().iter().cloned().collect()
    }

    /// The clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Starts a run of `target` unless one is in progress. The run ends by itself; the tracker
    /// lets shutdown wait for it.
    pub fn trigger(
        self: &Arc<Self>,
        target: &Target,
        why: &'static str,
    ) -> Result<(), TriggerError> {
        if self.stopping.is_cancelled() {
            return Err(TriggerError::ShuttingDown);
        }
        if !lock(&self.targets).contains(target) {
            return Err(TriggerError::UnknownTarget);
        }
        if !self.running().insert(target.clone()) {
            return Err(TriggerError::AlreadyRunning);
        }
        info!(project = %target.project_id, cluster = %target.cluster, why, "run starting");
        let control = Arc::clone(self);
        let target = target.clone();
        self.tracker.spawn(async move {
            // The target leaves the running set however the run ends, a panic included: a run
            // that panicked is a failed run, not one in progress forever.
            let _running = RunningGuard {
                control: Arc::clone(&control),
                target: target.clone(),
            };
            let runner = Arc::clone(&control.runner);
            let run_target = target.clone();
            let ok = match tokio::spawn(async move { runner.run_target(run_target).await }).await {
                Ok(ok) => ok,
                Err(e) => {
                    error!(project = %target.project_id, cluster = %target.cluster, error = %e, "the run ended abnormally; the next slot runs it again");
                    false
                }
            };
            info!(project = %target.project_id, cluster = %target.cluster, ok, "run finished");
        });
        Ok(())
    }

    /// Stops accepting runs and waits for the ones in flight.
    pub async fn wait_idle(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// A change of the planned targets, applied by the loop at its next round.
#[derive(Debug, Clone)]
enum PlanChange {
    Add(Target, Box<Schedule>),
    Remove(Target),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a target from the running set when its run task ends, however it ends.
struct RunningGuard<R: TargetRunner, C: Clock> {
    control: Arc<Control<R, C>>,
    target: Target,
}

impl<R: TargetRunner, C: Clock> Drop for RunningGuard<R, C> {
    fn drop(&mut self) {
        self.control.running().remove(&self.target);
    }
}

/// The loop settings.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    /// Longest sleep between two looks at the clock.
    pub slice: Duration,
    /// Jitter window.
    pub jitter: Duration,
    /// Catch-up on the very first start.
    pub run_on_first_start: bool,
}

/// A target's last run as the journal remembers it.
#[derive(Debug, Clone)]
pub struct LastRun {
    /// The target.
    pub target: Target,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Whether it ended (well or not); a run the process died in did not.
    pub finished: bool,
}

/// Plans every target at start-up: a catch-up run now, or its next slot. A target whose last
/// run never ended (the process died in it) runs now: its slot's work is not done (audit L20).
pub fn plan(
    targets: Vec<(Target, Schedule)>,
    last_runs: &[LastRun],
    now: DateTime<Utc>,
    settings: &LoopSettings,
) -> Vec<PlannedTarget> {
    targets
        .into_iter()
        .map(|(target, schedule)| {
            let jitter = stable_jitter(&target.to_string(), settings.jitter);
            let last = last_runs.iter().find(|r| r.target == target);
            if last.is_some_and(|r| !r.finished) {
                info!(project = %target.project_id, cluster = %target.cluster, "the last run did not end (the process stopped in it): running once now");
                return PlannedTarget { target, schedule, jitter, due: Some(now) };
            }
            let last = last.map(|r| r.started_at);
            let due = match on_start(&schedule, last, now, settings.run_on_first_start) {
                StartDecision::CatchUp { slot } => {
                    info!(project = %target.project_id, cluster = %target.cluster, %slot, "a slot was missed while stopped: running once now");
                    Some(now)
                }
                StartDecision::Wait => schedule.next_after(now).map(|slot| slot + jitter),
            };
            PlannedTarget { target, schedule, jitter, due }
        })
        .collect()
}

/// Runs the loop until `stop` is cancelled. `on_round` is called after every round (status,
/// watchdog, metrics), with the planned targets.
pub async fn run_loop<R: TargetRunner, C: Clock>(
    control: Arc<Control<R, C>>,
    mut planned: Vec<PlannedTarget>,
    settings: LoopSettings,
    stop: CancellationToken,
    mut on_round: impl FnMut(&[PlannedTarget]) + Send,
) {
    loop {
        let now = control.now();
        for change in std::mem::take(&mut *lock(&control.changes)) {
            match change {
                PlanChange::Add(target, schedule) => {
                    let jitter = stable_jitter(&target.to_string(), settings.jitter);
                    planned.push(PlannedTarget {
                        target,
                        schedule: *schedule,
                        jitter,
                        due: Some(now),
                    });
                }
                PlanChange::Remove(target) => planned.retain(|p| p.target != target),
            }
        }
        for p in &mut planned {
            let Some(due) = p.due else { continue };
            if due > now {
                // A slot before the planned one means the wall clock stepped back: plan again
                // from now, or nothing runs for the size of the step (audit L2).
                let fresh = p.schedule.next_after(now).map(|slot| slot + p.jitter);
                if fresh.is_some_and(|f| f < due) {
                    warn!(project = %p.target.project_id, cluster = %p.target.cluster, planned = %due, now = %now, "the clock stepped back; planning the next run again");
                    p.due = fresh;
                }
                continue;
            }
            match control.trigger(&p.target, "schedule") {
                Ok(()) => {}
                Err(TriggerError::AlreadyRunning) => {
                    warn!(project = %p.target.project_id, cluster = %p.target.cluster, "previous run still in progress; skipping this slot");
                }
                Err(e) => warn!(reason = %e, "run not started"),
            }
            // The next slot after now, never one in the past: no backlog after a pause.
            p.due = p.schedule.next_after(now).map(|slot| slot + p.jitter);
        }
        control.heartbeat.beat(now);
        on_round(&planned);
        let until_next = planned
            .iter()
            .filter_map(|p| p.due)
            .min()
            .and_then(|due| (due - now).to_std().ok())
            .unwrap_or(settings.slice);
        let nap = until_next
            .min(settings.slice)
            .max(Duration::from_millis(10));
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = stop.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests;
