//! Telling a person: the `[[notify]]` channels and the `[heartbeat]` dead-man's switch of `run`,
//! and `notify-test`. The daemon reports each target's run here; [`tracker`] decides what is
//! news, [`deliver`] shapes and sends it. Sending happens on tasks of its own with retries and
//! backoff: a receiver that is down or slow never delays or fails an archive, and a message
//! that cannot be delivered is logged (one line, no URL) and dropped.
//! Heartbeat: `{url}/start` when a run begins while none is running, and when the last running
//! one ends, `{url}` if every target's latest run succeeded, else `{url}/fail`.
//! Must not: archive anything, or hold a lock across an await.

pub mod deliver;
pub mod email;
pub mod tracker;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::task::TaskTracker;
use tracing::warn;

use atlas_archiver_engine::config::{NotifyConfig, SecretUrl};
use atlas_archiver_engine::journal::TargetHistory;
use atlas_archiver_engine::pipeline::{SnapshotOutcome, TargetReport};
use deliver::{Message, Payload, RetryPolicy};
use tracker::{FailedSnapshot, Notice, Observation, Tracker};

/// The daemon's notifier. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    config: NotifyConfig,
    /// When the Atlas secret expires, when known.
    credential_expires: Option<DateTime<Utc>>,
    client: reqwest::Client,
    retry: RetryPolicy,
    state: Mutex<State>,
    deliveries: TaskTracker,
}

struct State {
    tracker: Tracker,
    running: usize,
}

impl Alerts {
    /// For `config`, seeded with the journal's `history`; `credential_expires` is when the Atlas
    /// secret ends, when the config says.
    pub fn new(
        config: NotifyConfig,
        credential_expires: Option<DateTime<Utc>>,
        history: &[TargetHistory],
        retry: RetryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                credential_expires,
                client: deliver::client(),
                retry,
                state: Mutex::new(State {
                    tracker: Tracker::new(history),
                    running: 0,
                }),
                deliveries: TaskTracker::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state whole: a poisoned lock still holds a good one.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A target's run begins; the Atlas secret's end is looked at.
    pub fn run_started(&self) {
        let (first, credential) = {
            let mut state = self.state();
            state.running += 1;
            let credential = self
                .inner
                .credential_expires
                .and_then(|expires| state.tracker.credential(expires, Utc::now()));
            (state.running == 1, credential)
        };
        if first {
            self.ping("start");
        }
        if let Some(notice) = credential {
            self.tell(&[notice]);
        }
    }

    /// A target's run ended with `report` (and a prune that failed, when `prune_failed`).
    pub fn run_finished(&self, report: &TargetReport, prune_failed: bool) {
        let observation = observe(report, prune_failed);
        let (notices, verdict) = {
            let mut state = self.state();
            let notices = state.tracker.observe(&observation, Utc::now());
            state.running = state.running.saturating_sub(1);
            let verdict = (state.running == 0).then(|| state.tracker.all_ok());
            (notices, verdict)
        };
        self.tell(&notices);
        match verdict {
            Some(true) => self.ping(""),
            Some(false) => self.ping("fail"),
            None => {}
        }
    }

    /// Sends `notices` to every channel that hears about them.
    fn tell(&self, notices: &[Notice]) {
        if notices.is_empty() {
            return;
        }
        for channel in &self.inner.config.channels {
            if let Some(message) = deliver::message(channel, notices) {
                self.spawn(message);
            }
        }
    }

    fn ping(&self, path: &str) {
        let Some(url) = &self.inner.config.heartbeat else {
            return;
        };
        let base = url.expose().trim_end_matches('/');
        let full = if path.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{path}")
        };
        self.spawn(Message {
            url: SecretUrl::new(full),
            payload: Payload::Ping,
        });
    }

    fn spawn(&self, message: Message) {
        let client = self.inner.client.clone();
        let retry = self.inner.retry;
        self.inner.deliveries.spawn(async move {
            if let Err(e) = deliver::send(&client, &message, retry).await {
                warn!("{e}");
            }
        });
    }

    /// Waits up to `bound` for the deliveries in flight (at shutdown).
    pub async fn flush(&self, bound: Duration) {
        self.inner.deliveries.close();
        let _ = tokio::time::timeout(bound, self.inner.deliveries.wait()).await;
    }
}

/// What a person needs of a run's report.
fn observe(report: &TargetReport, prune_failed: bool) -> Observation {
    let mut failures: Vec<FailedSnapshot> = report
        .snapshots
        .iter()
        .filter_map(|s| match s {
            SnapshotOutcome::Failed {
                snapshot_id,
                reason,
                error,
            } => Some(FailedSnapshot {
                snapshot: Some(snapshot_id.clone()),
                reason: reason.clone(),
                message: error.clone(),
            }),
            _ => None,
        })
        .collect();
    if let Some(e) = &report.error {
        failures.insert(
            0,
            FailedSnapshot {
                snapshot: None,
                reason: "TARGET_FAILED".into(),
                message: e.clone(),
            },
        );
    }
    Observation {
        target: report.target.clone(),
        ok: report.succeeded(),
        failures,
        lost: report
            .snapshots
            .iter()
            .filter_map(|s| match s {
                SnapshotOutcome::Lost { snapshot_id } => Some(snapshot_id.clone()),
                _ => None,
            })
            .collect(),
        prune_failed,
    }
}

/// `notify-test`: one test message to each channel, sent now; what each answered.
pub async fn test_channels(config: &NotifyConfig) -> Vec<(String, Result<(), String>)> {
    let client = deliver::client();
    let notice = Notice {
        event: None,
        target: None,
        snapshot: None,
        reason: None,
        message:
            "atlas-archiver: a test message from `atlas-archiver notify-test`; this channel works"
                .into(),
        runs: None,
        at: Utc::now(),
    };
    let mut out = Vec::new();
    for channel in &config.channels {
        let label = format!("{} {}", channel.kind.name(), channel.url.redacted());
        let result = match deliver::message(channel, std::slice::from_ref(&notice)) {
            Some(message) => deliver::send(
                &client,
                &message,
                RetryPolicy {
                    attempts: 1,
                    first_delay: Duration::ZERO,
                },
            )
            .await
            .map_err(|e| e.to_string()),
            None => Err("nothing to send".into()),
        };
        out.push((label, result));
    }
    out
}
