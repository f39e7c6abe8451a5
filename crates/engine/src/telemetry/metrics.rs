//! Every metric atlas-archiver exports, defined once, with one `record_*` method per event, on
//! a `prometheus-client` registry rendered as OpenMetrics text. Label values are project ids,
//! cluster names and short reason codes: never URLs or secrets.
//! Must not: be read back for decisions (the journal is the record; these are for people).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reason::Reason;
use crate::target::Target;

/// Buckets of `atlas_archiver_run_duration_seconds`: from a quick no-op run to a many-hour transfer.
const DURATION_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 43_200.0,
];

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a target's last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every snapshot archived.
    Success,
    /// Something failed.
    Failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    project: String,
    cluster: String,
}

impl From<&Target> for TargetLabels {
    fn from(t: &Target) -> Self {
        Self {
            project: t.project_id.clone(),
            cluster: t.cluster.clone(),
        }
    }
}

/// What the journal knows of a target when the daemon starts (see [`Metrics::register_target`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetFacts {
    /// Unix time of its last run that archived everything.
    pub last_success: Option<f64>,
    /// Unix time Atlas took its newest archived snapshot.
    pub newest_archived: Option<f64>,
    /// The size of that snapshot's archive.
    pub newest_archive_size: Option<u64>,
    /// Whether its last run archived everything, when it has run.
    pub last_run_ok: Option<bool>,
    /// Snapshots of it recorded as lost.
    pub lost: u64,
    /// Unix time its first run started, else this process's start.
    pub watched_since: f64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    project: String,
    cluster: String,
    reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

struct Inner {
    registry: Registry,
    last_success: Family<TargetLabels, FloatGauge>,
    last_status: Family<TargetLabels, Gauge>,
    archived: Family<TargetLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    lost: Family<TargetLabels, Counter>,
    next_run: Family<TargetLabels, FloatGauge>,
    archives_kept: Family<TargetLabels, Gauge>,
    archives_pruned: Family<TargetLabels, Counter>,
    bytes_reclaimed: Family<TargetLabels, Counter>,
    last_prune: Family<TargetLabels, FloatGauge>,
    prune_failures: Family<TargetLabels, Counter>,
    bytes_uploaded: Counter,
    transfers_in_flight: Gauge,
    run_duration: Histogram,
    newest_archived: Family<TargetLabels, FloatGauge>,
    archive_size: Family<TargetLabels, Gauge>,
    watched_since: Family<TargetLabels, FloatGauge>,
    build_info: Family<BuildLabels, Gauge>,
    waiting: Family<TargetLabels, Gauge>,
    discovered: Family<TargetLabels, Gauge>,
    discovery_failures: Counter,
    /// Without labels; no series at all until an expiry is known (0 would read as "expired").
    credential_expiry: Family<Vec<(String, String)>, FloatGauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

impl Default for Inner {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            registry: Registry::default(),
            last_success: Family::default(),
            last_status: Family::default(),
            archived: Family::default(),
            failures: Family::default(),
            lost: Family::default(),
            next_run: Family::default(),
            archives_kept: Family::default(),
            archives_pruned: Family::default(),
            bytes_reclaimed: Family::default(),
            last_prune: Family::default(),
            prune_failures: Family::default(),
            bytes_uploaded: Counter::default(),
            transfers_in_flight: Gauge::default(),
            run_duration: Histogram::new(DURATION_BUCKETS),
            newest_archived: Family::default(),
            archive_size: Family::default(),
            watched_since: Family::default(),
            build_info: Family::default(),
            credential_expiry: Family::default(),
            waiting: Family::default(),
            discovered: Family::default(),
            discovery_failures: Counter::default(),
        };
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        // Counters are registered without `_total`: the encoder appends it, so the exported
        // names are the ones documented in the README.
        registry.register(
            "atlas_archiver_last_success_timestamp_seconds",
            "Unix time of the last run of a target that archived every snapshot; 0 when none has.",
            m.last_success.clone(),
        );
        registry.register(
            "atlas_archiver_newest_archived_snapshot_timestamp_seconds",
            "Unix time Atlas took the newest snapshot of the target that is archived (the recovery point); 0 when none is.",
            m.newest_archived.clone(),
        );
        registry.register(
            "atlas_archiver_last_archive_size_bytes",
            "Size of the target's archive written last (or adopted from the bucket).",
            m.archive_size.clone(),
        );
        registry.register(
            "atlas_archiver_target_watched_since_timestamp_seconds",
            "Unix time the target's first run started (from the journal), else this process's start: where \"no success for 26 h\" counts from for a target that never succeeded.",
            m.watched_since.clone(),
        );
        registry.register(
            "atlas_archiver_snapshots_waiting",
            "Completed snapshots of the target its last run left for later runs (max_per_run): a backlog being worked off.",
            m.waiting.clone(),
        );
        registry.register(
            "atlas_archiver_target_discovered",
            "1 while a [[discover]] selector finds the target's cluster, 0 once the cluster has disappeared (its archives are kept, retention no longer prunes it); absent for configured targets.",
            m.discovered.clone(),
        );
        registry.register(
            "atlas_archiver_discovery_failures",
            "Discoveries in which a [[discover]] selector's listing failed (its clusters were kept as they were).",
            m.discovery_failures.clone(),
        );
        registry.register(
            "atlas_archiver_credential_expiry_timestamp_seconds",
            "Unix time the Atlas service account secret expires (atlas.client_secret_expires_at); absent when not configured",
            m.credential_expiry.clone(),
        );
        registry.register(
            "atlas_archiver_build_info",
            "Always 1; the version label says which build runs.",
            m.build_info.clone(),
        );
        registry.register(
            "atlas_archiver_last_run_status",
            "1 when the target's last run archived every snapshot, 0 when something failed.",
            m.last_status.clone(),
        );
        registry.register(
            "atlas_archiver_snapshots_archived",
            "Snapshots archived (including ones adopted from the bucket) since start.",
            m.archived.clone(),
        );
        registry.register(
            "atlas_archiver_archive_failures",
            "Failed snapshot attempts, by reason.",
            m.failures.clone(),
        );
        registry.register(
            "atlas_archiver_snapshots_lost",
            "Snapshots Atlas deleted before they could be archived.",
            m.lost.clone(),
        );
        registry.register(
            "atlas_archiver_bytes_uploaded",
            "Snapshot bytes the store accepted, counted part by part as they land.",
            m.bytes_uploaded.clone(),
        );
        registry.register(
            "atlas_archiver_transfers_in_flight",
            "Snapshot transfers running now.",
            m.transfers_in_flight.clone(),
        );
        registry.register(
            "atlas_archiver_next_run_timestamp_seconds",
            "Unix time of the target's next scheduled run.",
            m.next_run.clone(),
        );
        registry.register(
            "atlas_archiver_run_duration_seconds",
            "Duration of one target's run.",
            m.run_duration.clone(),
        );
        registry.register(
            "atlas_archiver_archives_kept",
            "Archives of the target the retention policy kept at its last prune.",
            m.archives_kept.clone(),
        );
        registry.register(
            "atlas_archiver_archives_pruned",
            "Archives removed by the retention policy since start.",
            m.archives_pruned.clone(),
        );
        registry.register(
            "atlas_archiver_prune_bytes_reclaimed",
            "Archive bytes removed by the retention policy since start.",
            m.bytes_reclaimed.clone(),
        );
        registry.register(
            "atlas_archiver_last_prune_timestamp_seconds",
            "Unix time of the target's last prune that removed everything it meant to.",
            m.last_prune.clone(),
        );
        registry.register(
            "atlas_archiver_prune_failures",
            "Prunes of the target that failed (or failed to remove an archive).",
            m.prune_failures.clone(),
        );
        Self { registry, ..m }
    }
}

/// The registry. Cheap to clone; all clones share one state.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
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
    /// Makes every target visible from the start: zero counters, `0` for "never" in the
    /// timestamps, and the facts the journal holds (`history`), so that an alert survives a
    /// restart and fires for a target that never succeeded.
    pub fn register_target(&self, target: &Target, history: &TargetFacts) {
        let labels = TargetLabels::from(target);
        drop(self.inner.archived.get_or_create(&labels));
        self.inner.lost.get_or_create(&labels).inc_by(history.lost);
        drop(self.inner.prune_failures.get_or_create(&labels));
        drop(self.inner.waiting.get_or_create(&labels));
        let at = |t: Option<f64>| t.unwrap_or(0.0);
        self.inner
            .last_success
            .get_or_create(&labels)
            .set(at(history.last_success));
        self.inner
            .newest_archived
            .get_or_create(&labels)
            .set(at(history.newest_archived));
        self.inner
            .watched_since
            .get_or_create(&labels)
            .set(history.watched_since);
        if let Some(size) = history.newest_archive_size {
            self.inner
                .archive_size
                .get_or_create(&labels)
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
        if let Some(ok) = history.last_run_ok {
            self.inner
                .last_status
                .get_or_create(&labels)
                .set(i64::from(ok));
        }
    }

    /// A snapshot Atlas took at `taken_unix` was archived (or adopted from the bucket) as an
    /// object of `size` bytes.
    pub fn record_archived(&self, target: &Target, taken_unix: Option<f64>, size: u64) {
        let labels = TargetLabels::from(target);
        self.inner.archived.get_or_create(&labels).inc();
        self.inner
            .archive_size
            .get_or_create(&labels)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        if let Some(taken) = taken_unix {
            let newest = self.inner.newest_archived.get_or_create(&labels);
            if taken > newest.get() {
                newest.set(taken);
            }
        }
    }

    /// The store accepted `bytes` more of a snapshot (one part).
    pub fn record_uploaded(&self, bytes: u64) {
        self.inner.bytes_uploaded.inc_by(bytes);
    }

    /// A snapshot attempt failed.
    pub fn record_failure(&self, target: &Target, reason: &Reason) {
        let labels = FailureLabels {
            project: target.project_id.clone(),
            cluster: target.cluster.clone(),
            reason: tame(&reason.code()),
        };
        self.inner.failures.get_or_create(&labels).inc();
    }

    /// A prune of `target` ended: `kept` archives kept, `removed` removed (`bytes` freed);
    /// `ok` when every removal succeeded.
    pub fn record_prune(
        &self,
        target: &Target,
        kept: usize,
        removed: usize,
        bytes: u64,
        ok: bool,
        finished_unix: f64,
    ) {
        let labels: TargetLabels = target.into();
        self.inner
            .archives_kept
            .get_or_create(&labels)
            .set(i64::try_from(kept).unwrap_or(i64::MAX));
        self.inner
            .archives_pruned
            .get_or_create(&labels)
            .inc_by(removed as u64);
        self.inner
            .bytes_reclaimed
            .get_or_create(&labels)
            .inc_by(bytes);
        if ok {
            self.inner
                .last_prune
                .get_or_create(&labels)
                .set(finished_unix);
        } else {
            self.inner.prune_failures.get_or_create(&labels).inc();
        }
    }

    /// A prune of `target` could not run at all.
    pub fn record_prune_failure(&self, target: &Target) {
        self.inner
            .prune_failures
            .get_or_create(&target.into())
            .inc();
    }

    /// Atlas deleted a snapshot that was never archived.
    pub fn record_lost(&self, target: &Target) {
        self.inner.lost.get_or_create(&target.into()).inc();
    }

    /// A transfer started (`+1`) or ended (`-1`).
    pub fn transfer_in_flight(&self, delta: i64) {
        self.inner.transfers_in_flight.inc_by(delta);
    }

    /// Transfers running now.
    pub fn transfers_in_flight_now(&self) -> i64 {
        self.inner.transfers_in_flight.get()
    }

    /// A target's run ended.
    pub fn record_run(&self, target: &Target, status: RunStatus, seconds: f64, finished_unix: f64) {
        let labels = TargetLabels::from(target);
        self.inner
            .last_status
            .get_or_create(&labels)
            .set(i64::from(status == RunStatus::Success));
        if status == RunStatus::Success {
            self.inner
                .last_success
                .get_or_create(&labels)
                .set(finished_unix);
        }
        self.inner.run_duration.observe(seconds);
    }

    /// How many completed snapshots of `target` its run left for later runs.
    pub fn record_waiting(&self, target: &Target, snapshots: u64) {
        self.inner
            .waiting
            .get_or_create(&target.into())
            .set(i64::try_from(snapshots).unwrap_or(i64::MAX));
    }

    /// Whether discovery finds `target`'s cluster (false: it disappeared).
    pub fn record_discovered(&self, target: &Target, present: bool) {
        self.inner
            .discovered
            .get_or_create(&target.into())
            .set(i64::from(present));
    }

    /// Drops the per-target series of a target no longer archived (a discovered cluster that
    /// disappeared), so that its ageing timestamps do not raise the staleness alerts for ever;
    /// `atlas_archiver_target_discovered 0` stays to say what happened. (The failure counters,
    /// labelled by reason, stay: alerts read their increase, which stops.)
    pub fn forget_target(&self, target: &Target) {
        let labels = TargetLabels::from(target);
        let m = &self.inner;
        m.last_success.remove(&labels);
        m.last_status.remove(&labels);
        m.archived.remove(&labels);
        m.lost.remove(&labels);
        m.next_run.remove(&labels);
        m.archives_kept.remove(&labels);
        m.archives_pruned.remove(&labels);
        m.bytes_reclaimed.remove(&labels);
        m.last_prune.remove(&labels);
        m.prune_failures.remove(&labels);
        m.newest_archived.remove(&labels);
        m.archive_size.remove(&labels);
        m.watched_since.remove(&labels);
        m.waiting.remove(&labels);
    }

    /// A selector's listing failed in a discovery.
    pub fn record_discovery_failure(&self) {
        self.inner.discovery_failures.inc();
    }

    /// When the Atlas secret expires.
    pub fn record_credential_expiry(&self, unix_seconds: f64) {
        self.inner
            .credential_expiry
            .get_or_create(&Vec::new())
            .set(unix_seconds);
    }

    /// When a target runs next.
    pub fn record_next_run(&self, target: &Target, unix_seconds: f64) {
        self.inner
            .next_run
            .get_or_create(&target.into())
            .set(unix_seconds);
    }

    /// The OpenMetrics text exposition (served with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial page,
        // which a scrape reports as a parse error rather than silently.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &str = "project=\"32b6e34b3d91647abb20e7b8\",cluster=\"orders-flex\"";

    #[test]
    fn the_credential_expiry_has_no_series_until_known() {
        let m = Metrics::default();
        assert!(
            !m.render()
                .lines()
                .any(|l| l.starts_with("atlas_archiver_credential_expiry_timestamp_seconds")),
            "0 would read as expired"
        );
        m.record_credential_expiry(1_803_859_200.0);
        let page = m.render();
        assert!(
            page.lines()
                .any(|l| l == "atlas_archiver_credential_expiry_timestamp_seconds{} 1803859200.0"),
            "{page}"
        );
    }

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::default();
        let t = Target {
            project_id: "32b6e34b3d91647abb20e7b8".into(),
            cluster: "orders-flex".into(),
        };
        m.register_target(
            &t,
            &TargetFacts {
                lost: 2,
                watched_since: 1_600_000_000.0,
                ..TargetFacts::default()
            },
        );
        let fresh = m.render();
        for line in [
            format!("atlas_archiver_last_success_timestamp_seconds{{{L}}} 0.0"),
            format!("atlas_archiver_newest_archived_snapshot_timestamp_seconds{{{L}}} 0.0"),
            format!("atlas_archiver_snapshots_lost_total{{{L}}} 2"),
            format!("atlas_archiver_target_watched_since_timestamp_seconds{{{L}}} 1600000000.0"),
            format!(
                "atlas_archiver_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(
                fresh.lines().any(|x| x == line),
                "missing {line:?} in\n{fresh}"
            );
        }
        m.record_archived(&t, Some(1_699_990_000.0), 5000);
        m.record_archived(&t, Some(1_699_900_000.0), 4000);
        m.record_uploaded(600);
        m.record_uploaded(400);
        m.record_failure(&t, &Reason::AtlasCode("S3_Slow\"Down\n{x}".into()));
        m.record_run(&t, RunStatus::Success, 12.5, 1_700_000_000.0);
        m.record_next_run(&t, 1_700_003_600.0);
        let text = m.render();
        let l = L;
        for line in [
            format!(
                "atlas_archiver_newest_archived_snapshot_timestamp_seconds{{{l}}} 1699990000.0"
            ),
            format!("atlas_archiver_snapshots_archived_total{{{l}}} 2"),
            format!("atlas_archiver_last_archive_size_bytes{{{l}}} 4000"),
            format!("atlas_archiver_archive_failures_total{{{l},reason=\"S3_SlowDownx\"}} 1"),
            format!("atlas_archiver_last_run_status{{{l}}} 1"),
            format!("atlas_archiver_last_success_timestamp_seconds{{{l}}} 1700000000.0"),
            format!("atlas_archiver_next_run_timestamp_seconds{{{l}}} 1700003600.0"),
            "atlas_archiver_bytes_uploaded_total 1000".to_owned(),
            "atlas_archiver_transfers_in_flight 0".to_owned(),
            "atlas_archiver_run_duration_seconds_bucket{le=\"5.0\"} 0".to_owned(),
            "atlas_archiver_run_duration_seconds_bucket{le=\"15.0\"} 1".to_owned(),
            "atlas_archiver_run_duration_seconds_count 1".to_owned(),
            "# TYPE atlas_archiver_snapshots_archived counter".to_owned(),
            "# EOF".to_owned(),
        ] {
            assert!(
                text.lines().any(|x| x == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
