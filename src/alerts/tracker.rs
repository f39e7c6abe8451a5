//! Which runs are news: each target's state (failing or not, ever succeeded, prune failing),
//! seeded from the journal so that a restart repeats nothing, and the notices a run's outcome
//! makes of it. Events are state changes, never retries: one `failure` when a target starts
//! failing, one `recovered` when it stops, one `lost` per LOST snapshot, `never_succeeded` once
//! at the N-th run without a success, one `prune_failed` when pruning starts failing, one
//! `credential_expiring` when the Atlas secret comes within [`CREDENTIAL_WARNING`] of its end and
//! one more when it has expired.
//! Must not: send anything, or block.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use atlas_archiver_engine::config::{CREDENTIAL_WARNING, EventKind};
use atlas_archiver_engine::journal::TargetHistory;
use atlas_archiver_engine::target::Target;

/// What one of a target's snapshots failed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSnapshot {
    /// The snapshot, or `None` for a failure of the whole target (its listing).
    pub snapshot: Option<String>,
    /// The reason code.
    pub reason: String,
    /// In words.
    pub message: String,
}

/// How one run of a target went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The target.
    pub target: Target,
    /// Every snapshot archived (now or before).
    pub ok: bool,
    /// What failed.
    pub failures: Vec<FailedSnapshot>,
    /// Snapshots found LOST.
    pub lost: Vec<String>,
    /// The prune after the run failed.
    pub prune_failed: bool,
}

/// Something to tell a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What happened (`None`: the test message of `notify-test`).
    pub event: Option<EventKind>,
    /// Of which target (`None` for the test message).
    pub target: Option<Target>,
    /// Of which snapshot, when one.
    pub snapshot: Option<String>,
    /// Reason code, for failures.
    pub reason: Option<String>,
    /// In words, one line.
    pub message: String,
    /// For `never_succeeded`: the runs so far without a success.
    pub runs: Option<u32>,
    /// When.
    pub at: DateTime<Utc>,
}

impl Notice {
    /// The event's name as the webhook body carries it.
    pub fn name(&self) -> &'static str {
        self.event.map_or("test", EventKind::name)
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    failing: bool,
    ever_succeeded: bool,
    /// Runs of this process without a success, while it never succeeded.
    runs_without_success: u32,
    prune_failing: bool,
}

/// How near the Atlas secret is to its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum CredentialStage {
    #[default]
    Fine,
    Expiring,
    Expired,
}

/// Every target's state.
#[derive(Debug, Default)]
pub struct Tracker {
    states: HashMap<Target, State>,
    credential_told: CredentialStage,
}

impl Tracker {
    /// Seeded from the journal's `target_runs`: a target recorded as failing is not announced
    /// as failing again after a restart.
    pub fn new(history: &[TargetHistory]) -> Self {
        let states = history
            .iter()
            .map(|h| {
                (
                    h.target.clone(),
                    State {
                        failing: h.last_status.as_deref() == Some("failed"),
                        ever_succeeded: h.last_success_at.is_some(),
                        ..State::default()
                    },
                )
            })
            .collect();
        Self {
            states,
            credential_told: CredentialStage::Fine,
        }
    }

    /// The notice that the Atlas secret, ending at `expires`, is near its end or past it: once
    /// per stage (a restart tells it again, once).
    pub fn credential(&mut self, expires: DateTime<Utc>, now: DateTime<Utc>) -> Option<Notice> {
        let stage = if now >= expires {
            CredentialStage::Expired
        } else if expires - now <= CREDENTIAL_WARNING {
            CredentialStage::Expiring
        } else {
            CredentialStage::Fine
        };
        if stage <= self.credential_told {
            return None;
        }
        self.credential_told = stage;
        let when = expires.format("%Y-%m-%d %H:%M UTC");
        let message = if stage == CredentialStage::Expired {
            format!(
                "the Atlas service account secret expired at {when}: no backup runs until a new secret is in atlas.client_secret_file (then update atlas.client_secret_expires_at and restart)"
            )
        } else {
            let days = (expires - now).num_days();
            format!(
                "the Atlas service account secret expires at {when} (in {days} days): create a new secret in Atlas, put it in atlas.client_secret_file, update atlas.client_secret_expires_at and restart"
            )
        };
        Some(Notice {
            event: Some(EventKind::CredentialExpiring),
            target: None,
            snapshot: None,
            reason: Some("CREDENTIAL_EXPIRING".into()),
            message,
            runs: None,
            at: now,
        })
    }

    /// The notices one run makes, in the order a person should read them.
    pub fn observe(&mut self, run: &Observation, at: DateTime<Utc>) -> Vec<Notice> {
        let state = self.states.entry(run.target.clone()).or_default();
        let notice =
            |event, snapshot: Option<String>, reason: Option<String>, message: String| Notice {
                event: Some(event),
                target: Some(run.target.clone()),
                snapshot,
                reason,
                message,
                runs: None,
                at,
            };
        let mut out = Vec::new();
        for id in &run.lost {
            out.push(notice(
                EventKind::Lost,
                Some(id.clone()),
                Some("SNAPSHOT_LOST".into()),
                format!(
                    "{}: snapshot {id} was deleted by Atlas before it was archived; it is gone",
                    run.target
                ),
            ));
        }
        if run.ok {
            if state.failing {
                out.push(notice(
                    EventKind::Recovered,
                    None,
                    None,
                    format!("{}: recovered, every snapshot is archived", run.target),
                ));
            }
            state.failing = false;
            state.ever_succeeded = true;
        } else {
            if !state.failing {
                let first = run.failures.first();
                let what = match first {
                    Some(f) => format!(
                        "{}{}: {}",
                        f.snapshot
                            .as_deref()
                            .map_or(String::new(), |s| format!("snapshot {s} ")),
                        f.reason,
                        f.message
                    ),
                    None if !run.lost.is_empty() => "a snapshot was LOST".to_owned(),
                    None => "the run failed".to_owned(),
                };
                let more = run.failures.len().saturating_sub(1);
                let more = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                out.push(notice(
                    EventKind::Failure,
                    first.and_then(|f| f.snapshot.clone()),
                    first.map(|f| f.reason.clone()),
                    format!(
                        "{}: archiving failed: {what}{more}; the next run retries",
                        run.target
                    ),
                ));
            }
            state.failing = true;
            if !state.ever_succeeded {
                state.runs_without_success += 1;
                let runs = state.runs_without_success;
                out.push(Notice {
                    runs: Some(runs),
                    ..notice(
                        EventKind::NeverSucceeded,
                        None,
                        None,
                        format!(
                            "{}: has never archived successfully ({runs} runs so far)",
                            run.target
                        ),
                    )
                });
            }
        }
        if run.prune_failed && !state.prune_failing {
            out.push(notice(
                EventKind::PruneFailed,
                None,
                None,
                format!("{}: the retention policy could not remove every archive it meant to; `atlas-archiver prune --dry-run` shows what is left", run.target),
            ));
        }
        state.prune_failing = run.prune_failed;
        out
    }

    /// Whether every target whose runs are known last ran well (the heartbeat's verdict).
    pub fn all_ok(&self) -> bool {
        self.states.values().all(|s| !s.failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            project_id: "32b6e34b3d91647abb20e7b8".into(),
            cluster: "orders-flex".into(),
        }
    }

    fn run(ok: bool) -> Observation {
        Observation {
            target: target(),
            ok,
            failures: if ok {
                Vec::new()
            } else {
                vec![FailedSnapshot {
                    snapshot: Some("6a6f78e00000000000000001".into()),
                    reason: "URL_EXPIRED".into(),
                    message: "the download URL expired".into(),
                }]
            },
            lost: Vec::new(),
            prune_failed: false,
        }
    }

    fn events(notices: &[Notice]) -> Vec<&'static str> {
        notices.iter().map(Notice::name).collect()
    }

    #[test]
    fn state_changes_make_notices_and_retries_do_not() {
        let mut t = Tracker::default();
        let now = Utc::now();
        assert_eq!(events(&t.observe(&run(true), now)), Vec::<&str>::new());
        let failed = t.observe(&run(false), now);
        assert_eq!(events(&failed), ["failure"]);
        assert!(
            failed[0].message.contains("URL_EXPIRED"),
            "{}",
            failed[0].message
        );
        assert!(!t.all_ok());
        assert!(
            t.observe(&run(false), now).is_empty(),
            "a second failure is no news"
        );
        assert_eq!(events(&t.observe(&run(true), now)), ["recovered"]);
        assert!(t.all_ok());
        assert!(t.observe(&run(true), now).is_empty());
    }

    #[test]
    fn a_target_that_never_succeeds_is_counted_and_a_failing_one_survives_a_restart() {
        let mut t = Tracker::default();
        let now = Utc::now();
        let first = t.observe(&run(false), now);
        assert_eq!(events(&first), ["failure", "never_succeeded"]);
        assert_eq!(first[1].runs, Some(1));
        let second = t.observe(&run(false), now);
        assert_eq!(
            (events(&second), second[0].runs),
            (vec!["never_succeeded"], Some(2))
        );

        let restarted = Tracker::new(&[TargetHistory {
            target: target(),
            last_started_at: None,
            last_finished_at: None,
            last_success_at: Some(now),
            last_status: Some("failed".into()),
            first_started_at: None,
            last_error: None,
        }]);
        let mut restarted = restarted;
        assert!(restarted.observe(&run(false), now).is_empty());
        assert_eq!(events(&restarted.observe(&run(true), now)), ["recovered"]);
    }

    #[test]
    fn the_credential_is_told_once_near_its_end_and_once_past_it() {
        let mut t = Tracker::default();
        let expires = Utc::now();
        let day = chrono::TimeDelta::days(1);
        assert!(
            t.credential(expires, expires - day * 30).is_none(),
            "far off"
        );
        let near = t.credential(expires, expires - day * 13).unwrap();
        assert_eq!(near.event, Some(EventKind::CredentialExpiring));
        assert!(near.message.contains("in 13 days"), "{}", near.message);
        assert!(
            t.credential(expires, expires - day * 12).is_none(),
            "told once"
        );
        let past = t.credential(expires, expires + day).unwrap();
        assert!(past.message.contains("expired"), "{}", past.message);
        assert!(t.credential(expires, expires + day * 2).is_none());
    }

    #[test]
    fn each_lost_snapshot_and_a_prune_that_starts_failing_are_told_once() {
        let mut t = Tracker::default();
        let now = Utc::now();
        let mut r = run(true);
        r.prune_failed = true;
        assert_eq!(events(&t.observe(&r, now)), ["prune_failed"]);
        assert!(t.observe(&r, now).is_empty());
        let mut lost = run(false);
        lost.failures.clear();
        lost.lost = vec!["a".into(), "b".into()];
        assert_eq!(events(&t.observe(&lost, now)), ["lost", "lost", "failure"]);
    }
}
