//! Every metric atlas-archiver exports, defined once, with one `record_*` method per event and a
//! Prometheus text renderer. Label values are project ids, cluster names and short reason codes:
//! never URLs or secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::reason::Reason;
use crate::target::Target;

/// Buckets of `atlas_archiver_run_duration_seconds`: from a quick no-op run to a many-hour transfer.
const DURATION_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 43_200.0,
];

/// How a target's last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every snapshot archived.
    Success,
    /// Something failed.
    Failure,
}

#[derive(Default)]
struct State {
    last_success: BTreeMap<Target, f64>,
    last_status: BTreeMap<Target, RunStatus>,
    archived: BTreeMap<Target, u64>,
    failures: BTreeMap<(Target, String), u64>,
    lost: BTreeMap<Target, u64>,
    next_run: BTreeMap<Target, f64>,
    bytes_uploaded: u64,
    transfers_in_flight: i64,
    duration_counts: [u64; DURATION_BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
}

/// The registry. Cheap to clone; all clones share one state.
#[derive(Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Reason codes come partly from remote servers (S3 error codes): keep them short and tame.
fn tame(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(48)
        .collect()
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes every target visible from the start (zero counters, unknown status).
    pub fn register_target(&self, target: &Target) {
        let mut s = self.lock();
        s.archived.entry(target.clone()).or_insert(0);
        s.lost.entry(target.clone()).or_insert(0);
    }

    /// Restores the last success time from the journal after a restart, so that an alert on
    /// "no success for 26 hours" survives restarts.
    pub fn restore_last_success(&self, target: &Target, unix_seconds: f64) {
        self.lock()
            .last_success
            .insert(target.clone(), unix_seconds);
    }

    /// A snapshot was archived (`bytes` were uploaded for it; 0 when adopted).
    pub fn record_archived(&self, target: &Target, bytes: u64) {
        let mut s = self.lock();
        *s.archived.entry(target.clone()).or_insert(0) += 1;
        s.bytes_uploaded += bytes;
    }

    /// A snapshot attempt failed.
    pub fn record_failure(&self, target: &Target, reason: &Reason) {
        *self
            .lock()
            .failures
            .entry((target.clone(), tame(&reason.code())))
            .or_insert(0) += 1;
    }

    /// Atlas deleted a snapshot that was never archived.
    pub fn record_lost(&self, target: &Target) {
        *self.lock().lost.entry(target.clone()).or_insert(0) += 1;
    }

    /// A transfer started (`+1`) or ended (`-1`).
    pub fn transfer_in_flight(&self, delta: i64) {
        self.lock().transfers_in_flight += delta;
    }

    /// Transfers running now.
    pub fn transfers_in_flight_now(&self) -> i64 {
        self.lock().transfers_in_flight
    }

    /// A target's run ended.
    pub fn record_run(&self, target: &Target, status: RunStatus, seconds: f64, finished_unix: f64) {
        let mut s = self.lock();
        s.last_status.insert(target.clone(), status);
        if status == RunStatus::Success {
            s.last_success.insert(target.clone(), finished_unix);
        }
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                s.duration_counts[i] += 1;
            }
        }
        s.duration_sum += seconds;
        s.duration_count += 1;
    }

    /// When a target runs next.
    pub fn record_next_run(&self, target: &Target, unix_seconds: f64) {
        self.lock().next_run.insert(target.clone(), unix_seconds);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = String::new();
        let labels = |t: &Target| format!("project=\"{}\",cluster=\"{}\"", t.project_id, t.cluster);
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (l, v) in rows {
                if l.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
            }
        };
        family(
            "atlas_archiver_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last run of a target that archived every snapshot.",
            s.last_success
                .iter()
                .map(|(t, v)| (labels(t), format!("{v:.3}")))
                .collect(),
        );
        family(
            "atlas_archiver_last_run_status",
            "gauge",
            "1 when the target's last run archived every snapshot, 0 when something failed.",
            s.last_status
                .iter()
                .map(|(t, v)| (labels(t), u8::from(*v == RunStatus::Success).to_string()))
                .collect(),
        );
        family(
            "atlas_archiver_snapshots_archived_total",
            "counter",
            "Snapshots archived (including ones adopted from the bucket) since start.",
            s.archived
                .iter()
                .map(|(t, v)| (labels(t), v.to_string()))
                .collect(),
        );
        family(
            "atlas_archiver_archive_failures_total",
            "counter",
            "Failed snapshot attempts, by reason.",
            s.failures
                .iter()
                .map(|((t, r), v)| (format!("{},reason=\"{r}\"", labels(t)), v.to_string()))
                .collect(),
        );
        family(
            "atlas_archiver_snapshots_lost_total",
            "counter",
            "Snapshots Atlas deleted before they could be archived.",
            s.lost
                .iter()
                .map(|(t, v)| (labels(t), v.to_string()))
                .collect(),
        );
        family(
            "atlas_archiver_bytes_uploaded_total",
            "counter",
            "Snapshot bytes uploaded to the store.",
            vec![(String::new(), s.bytes_uploaded.to_string())],
        );
        family(
            "atlas_archiver_transfers_in_flight",
            "gauge",
            "Snapshot transfers running now.",
            vec![(String::new(), s.transfers_in_flight.to_string())],
        );
        family(
            "atlas_archiver_next_run_timestamp_seconds",
            "gauge",
            "Unix time of the target's next scheduled run.",
            s.next_run
                .iter()
                .map(|(t, v)| (labels(t), format!("{v:.3}")))
                .collect(),
        );
        let _ = writeln!(
            out,
            "# HELP atlas_archiver_run_duration_seconds Duration of one target's run.\n# TYPE atlas_archiver_run_duration_seconds histogram"
        );
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "atlas_archiver_run_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                s.duration_counts[i]
            );
        }
        let _ = writeln!(
            out,
            "atlas_archiver_run_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            s.duration_count
        );
        let _ = writeln!(
            out,
            "atlas_archiver_run_duration_seconds_sum {}",
            s.duration_sum
        );
        let _ = writeln!(
            out,
            "atlas_archiver_run_duration_seconds_count {}",
            s.duration_count
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::default();
        let t = Target {
            project_id: "32b6e34b3d91647abb20e7b8".into(),
            cluster: "orders-flex".into(),
        };
        m.register_target(&t);
        m.record_archived(&t, 1000);
        m.record_failure(&t, &Reason::AtlasCode("S3_Slow\"Down\n{x}".into()));
        m.record_run(&t, RunStatus::Success, 12.5, 1_700_000_000.0);
        m.record_next_run(&t, 1_700_003_600.0);
        let text = m.render();
        let l = "project=\"32b6e34b3d91647abb20e7b8\",cluster=\"orders-flex\"";
        for line in [
            format!("atlas_archiver_snapshots_archived_total{{{l}}} 1"),
            format!("atlas_archiver_archive_failures_total{{{l},reason=\"S3_SlowDownx\"}} 1"),
            format!("atlas_archiver_last_run_status{{{l}}} 1"),
            format!("atlas_archiver_last_success_timestamp_seconds{{{l}}} 1700000000.000"),
            format!("atlas_archiver_next_run_timestamp_seconds{{{l}}} 1700003600.000"),
            "atlas_archiver_bytes_uploaded_total 1000".to_owned(),
            "atlas_archiver_transfers_in_flight 0".to_owned(),
            "atlas_archiver_run_duration_seconds_bucket{le=\"5\"} 0".to_owned(),
            "atlas_archiver_run_duration_seconds_bucket{le=\"15\"} 1".to_owned(),
            "atlas_archiver_run_duration_seconds_count 1".to_owned(),
        ] {
            assert!(
                text.lines().any(|x| x == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
