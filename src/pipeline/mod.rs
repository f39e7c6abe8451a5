//! One snapshot end to end, and one target's run: list snapshots → journal → adopt an existing
//! archive, or request a download → wait for the URL → stream into the store → HEAD → manifest →
//! archived. Every side effect is preceded by a journal record of the intent and followed by one
//! of the outcome. Retries within a run live here; one failing snapshot or target never stops
//! the others.
//! Must not: parse CLI flags or schedule anything.

pub mod manifest;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::atlas::models::{Phase, RestoreJob, Snapshot};
use crate::atlas::{AtlasClient, AtlasError};
use crate::config::{Config, PartSize, Target};
use crate::journal::{
    Change, Journal, JournalError, RunSummary, SnapshotFacts, SnapshotKey, SnapshotRecord,
    SnapshotState,
};
use crate::keys;
use crate::store::{ObjectStore, StoreError, plan_part_size};
use crate::telemetry::{Metrics, RunStatus};
use manifest::{MANIFEST_FORMAT, Manifest};
use transfer::{DownloadSettings, SnapshotUrl, TransferError};

/// Content type of archives (Atlas serves `.tar.gz`).
const ARCHIVE_CONTENT_TYPE: &str = "application/gzip";
/// Attempts per snapshot within one run for failures that a retry may cure (a dropped
/// connection, an expired URL, a store hiccup). Later runs try again too.
const ATTEMPTS_PER_RUN: u32 = 3;

/// Anything that can fail one snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Atlas.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    /// The transfer.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The store outside the transfer (HEAD, manifest).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal. Fatal for the run: without it we cannot promise exactly-once.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Something we checked did not hold.
    #[error("{0}")]
    Integrity(String),
}

impl ArchiveError {
    /// Short reason for the journal and metrics.
    pub fn reason(&self) -> String {
        match self {
            Self::Atlas(e) => e.reason(),
            Self::Transfer(e) => e.reason(),
            Self::Store(e) => e.reason(),
            Self::Journal(_) => "JOURNAL".into(),
            Self::Integrity(_) => "INTEGRITY".into(),
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Transfer(e) => e.is_retryable(),
            Self::Atlas(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Settings the pipeline needs, taken from the config.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// `storage.prefix`.
    pub prefix: String,
    /// `storage.key_template`.
    pub key_template: String,
    /// `storage.part_size`.
    pub part_size: PartSize,
    /// `storage.parts_in_flight`.
    pub parts_in_flight: usize,
    /// Transfers at once across targets.
    pub max_concurrent_transfers: usize,
    /// Download stall timeout.
    pub download: DownloadSettings,
}

impl PipelineSettings {
    /// From a validated config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            prefix: config.storage.prefix.clone(),
            key_template: config.storage.key_template.clone(),
            part_size: config.storage.part_size,
            parts_in_flight: config.storage.parts_in_flight,
            max_concurrent_transfers: config.storage.max_concurrent_transfers,
            download: DownloadSettings {
                read_timeout: config.atlas.download_read_timeout,
            },
        }
    }
}

/// What happened to one snapshot in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SnapshotOutcome {
    /// Archived now.
    Archived {
        /// Snapshot id.
        snapshot_id: String,
        /// Object key.
        object_key: String,
        /// Size.
        size_bytes: u64,
        /// SHA-256.
        sha256: String,
    },
    /// The bucket already held it (manifest and size match): recorded without a download.
    Adopted {
        /// Snapshot id.
        snapshot_id: String,
        /// Object key.
        object_key: String,
    },
    /// Archived in an earlier run.
    AlreadyArchived {
        /// Snapshot id.
        snapshot_id: String,
    },
    /// Failed; a later run tries again while Atlas holds it.
    Failed {
        /// Snapshot id.
        snapshot_id: String,
        /// Reason code.
        reason: String,
        /// Message.
        error: String,
    },
    /// Atlas no longer holds it and it was never archived.
    Lost {
        /// Snapshot id.
        snapshot_id: String,
    },
}

/// One target's run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target.
    pub target: Target,
    /// Per-snapshot outcomes.
    pub snapshots: Vec<SnapshotOutcome>,
    /// A target-level failure (listing failed), if any.
    pub error: Option<String>,
}

impl TargetReport {
    /// Whether every snapshot ended archived (now or before).
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
            && self.snapshots.iter().all(|s| {
                !matches!(
                    s,
                    SnapshotOutcome::Failed { .. } | SnapshotOutcome::Lost { .. }
                )
            })
    }
}

/// How the pipeline is told to stop. Both tokens come from the caller, who owns the signals.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Start no new snapshot; let transfers in flight finish.
    pub drain: CancellationToken,
    /// Abort transfers in flight (their uploads are aborted; journal rows stay resumable).
    pub abort: CancellationToken,
}

impl Shutdown {
    /// Both at once (for `once`: a signal stops everything cleanly).
    pub fn now(&self) {
        self.drain.cancel();
        self.abort.cancel();
    }
}

/// The archiving engine: Atlas client, store and journal, wired together.
#[derive(Clone)]
pub struct Archiver {
    atlas: AtlasClient,
    store: ObjectStore,
    journal: Journal,
    settings: Arc<PipelineSettings>,
    download: reqwest::Client,
    shutdown: Shutdown,
    metrics: Metrics,
    /// Bounds snapshot transfers across all targets, so one long archive cannot starve the
    /// others and memory stays bounded.
    transfers: Arc<Semaphore>,
}

impl Archiver {
    /// Wires the parts.
    pub fn new(
        atlas: AtlasClient,
        store: ObjectStore,
        journal: Journal,
        settings: PipelineSettings,
        shutdown: Shutdown,
        metrics: Metrics,
    ) -> Result<Self, ArchiveError> {
        let download = transfer::download_client(settings.download)?;
        let transfers = Arc::new(Semaphore::new(settings.max_concurrent_transfers.max(1)));
        Ok(Self {
            atlas,
            store,
            journal,
            settings: Arc::new(settings),
            download,
            shutdown,
            metrics,
            transfers,
        })
    }

    /// The store in use.
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// The journal in use.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs every target (all at once; transfers are bounded by `max_concurrent_transfers`)
    /// and records the run.
    pub async fn run(
        &self,
        kind: &str,
        targets: &[Target],
    ) -> Result<Vec<TargetReport>, ArchiveError> {
        let run_id = self.journal.start_run(kind).await?;
        let reports: Vec<TargetReport> =
            futures_util::future::join_all(targets.iter().map(|t| self.archive_target(t))).await;
        let mut summary = RunSummary::default();
        for r in &reports {
            for s in &r.snapshots {
                match s {
                    SnapshotOutcome::Archived { .. } | SnapshotOutcome::Adopted { .. } => {
                        summary.archived += 1
                    }
                    SnapshotOutcome::AlreadyArchived { .. } => summary.skipped += 1,
                    SnapshotOutcome::Failed { .. } | SnapshotOutcome::Lost { .. } => {
                        summary.failed += 1
                    }
                }
            }
            if let Some(e) = &r.error {
                summary.error = Some(format!("{}: {e}", r.target));
            }
        }
        self.journal.finish_run(run_id, summary).await?;
        Ok(reports)
    }

    /// Archives every completed, not yet archived snapshot of one target, and records the run
    /// of the target in the journal and the metrics.
    pub async fn archive_target(&self, target: &Target) -> TargetReport {
        let started = std::time::Instant::now();
        if let Err(e) = self.journal.target_started(target, Utc::now()).await {
            error!(project = %target.project_id, cluster = %target.cluster, error = %e, "cannot record the run in the journal");
            return TargetReport {
                target: target.clone(),
                snapshots: Vec::new(),
                error: Some(e.to_string()),
            };
        }
        let report = self.archive_target_snapshots(target).await;
        let success = report.succeeded();
        let finished = Utc::now();
        if let Err(e) = self
            .journal
            .target_finished(target, success, finished)
            .await
        {
            error!(project = %target.project_id, cluster = %target.cluster, error = %e, "cannot record the end of the run in the journal");
        }
        self.metrics.record_run(
            target,
            if success {
                RunStatus::Success
            } else {
                RunStatus::Failure
            },
            started.elapsed().as_secs_f64(),
            finished.timestamp_millis() as f64 / 1000.0,
        );
        report
    }

    async fn archive_target_snapshots(&self, target: &Target) -> TargetReport {
        let span = info_span!("target", project = %target.project_id, cluster = %target.cluster);
        async {
            let mut report = TargetReport {
                target: target.clone(),
                snapshots: Vec::new(),
                error: None,
            };
            let listed = match self.atlas.list_snapshots(&target.project_id, &target.cluster).await {
                Ok(l) => l,
                Err(e) => {
                    error!(error = %e, "cannot list snapshots");
                    report.error = Some(e.to_string());
                    return report;
                }
            };
            info!(count = listed.len(), "listed snapshots");
            for snapshot in &listed {
                let Some(id) = snapshot.id.clone() else { continue };
                match snapshot.phase() {
                    Phase::Completed => {}
                    Phase::Unknown(s) => {
                        warn!(snapshot = %id, status = %s, "snapshot has a status this version does not know; skipping it for now");
                        continue;
                    }
                    other => {
                        info!(snapshot = %id, status = other.as_str(), "snapshot not completed yet; a later run takes it");
                        continue;
                    }
                }
                if self.shutdown.drain.is_cancelled() {
                    info!("shutting down: the remaining snapshots wait for the next run");
                    break;
                }
                let outcome = self.archive_snapshot(target, &id, snapshot).await;
                let journal_failed = matches!(&outcome, Err(ArchiveError::Journal(_)));
                report.snapshots.push(match outcome {
                    Ok(o) => o,
                    Err(e) => SnapshotOutcome::Failed {
                        snapshot_id: id.clone(),
                        reason: e.reason(),
                        error: e.to_string(),
                    },
                });
                if journal_failed {
                    report.error = Some("the journal failed; stopping this target".into());
                    break;
                }
            }
            match self.report_lost(target, &listed).await {
                Ok(lost) => report.snapshots.extend(lost),
                Err(e) => report.error = Some(e.to_string()),
            }
            report
        }
        .instrument(span)
        .await
    }

    /// Snapshots the journal knows as not archived that Atlas no longer lists: reported once,
    /// loudly, because that is the event an operator most needs to hear about.
    async fn report_lost(
        &self,
        target: &Target,
        listed: &[Snapshot],
    ) -> Result<Vec<SnapshotOutcome>, ArchiveError> {
        let mut lost = Vec::new();
        for record in self.journal.snapshots(Some(target.clone())).await? {
            let still_listed = listed
                .iter()
                .any(|s| s.id.as_deref() == Some(record.snapshot_id.as_str()));
            if record.state == SnapshotState::Archived
                || still_listed
                || record.last_reason.as_deref() == Some("SNAPSHOT_LOST")
            {
                continue;
            }
            error!(snapshot = %record.snapshot_id, "snapshot LOST: Atlas no longer holds it and it was never archived");
            self.metrics.record_lost(target);
            self.journal
                .transition(
                    &record.key(),
                    SnapshotState::Failed,
                    Change {
                        error: Some(
                            "Atlas no longer holds this snapshot and it was never archived".into(),
                        ),
                        reason: Some("SNAPSHOT_LOST".into()),
                        ..Change::default()
                    },
                )
                .await?;
            lost.push(SnapshotOutcome::Lost {
                snapshot_id: record.snapshot_id,
            });
        }
        Ok(lost)
    }

    /// One snapshot, with up to [`ATTEMPTS_PER_RUN`] attempts for retryable failures.
    async fn archive_snapshot(
        &self,
        target: &Target,
        id: &str,
        snapshot: &Snapshot,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        // Nested in the target span, which carries `project` and `cluster`.
        let span = info_span!("snapshot", snapshot = %id);
        async {
            let key = SnapshotKey::new(target, id);
            let facts = SnapshotFacts {
                scheduled_at: snapshot.scheduled_time,
                finished_at: snapshot.finish_time,
                mongodb_version: snapshot.mongodb_version.clone(),
                expires_at: snapshot.expiration,
            };
            let record = self.journal.discover(key.clone(), facts).await?;
            if record.state == SnapshotState::Archived {
                return Ok(SnapshotOutcome::AlreadyArchived { snapshot_id: id.to_owned() });
            }
            let object_key = keys::render(
                &self.settings.key_template,
                &keys::KeyParts {
                    prefix: &self.settings.prefix,
                    project_id: &target.project_id,
                    cluster: &target.cluster,
                    snapshot_id: id,
                    finished: snapshot.finish_time.or(snapshot.scheduled_time).unwrap_or_else(Utc::now),
                },
            );
            if let Some(outcome) = self.adopt_existing(&key, &object_key).await? {
                return Ok(outcome);
            }
            if let Some(upload_id) = &record.upload_id {
                // A previous process died mid-upload: abort its parts before starting over.
                if let Err(e) = self.store.abort_multipart(&object_key, upload_id).await {
                    warn!(error = %e, "could not abort the upload left by an earlier attempt");
                }
            }
            let mut attempt = 0;
            let mut reuse_job = record.restore_job_id.clone();
            loop {
                attempt += 1;
                let e = match self.attempt(&key, &object_key, reuse_job.take(), snapshot).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(e @ ArchiveError::Journal(_)) => return Err(e),
                    Err(e) => e,
                };
                if matches!(e, ArchiveError::Transfer(TransferError::Cancelled)) {
                    // Not a failure of the snapshot: leave it resumable, without counting an attempt.
                    self.journal
                        .transition(&key, SnapshotState::DownloadRequested, Change {
                            upload_id: Some(String::new()),
                            note: Some("interrupted by shutdown; the upload was aborted and the next run resumes".into()),
                            ..Change::default()
                        })
                        .await?;
                    warn!("transfer interrupted by shutdown; the next run resumes it");
                    return Err(e);
                }
                self.metrics.record_failure(target, &e.reason());
                let change = Change {
                    error: Some(e.to_string()),
                    reason: Some(e.reason()),
                    upload_id: Some(String::new()),
                    ..Change::default()
                };
                self.journal.transition(&key, SnapshotState::Failed, change).await?;
                if matches!(&e, ArchiveError::Atlas(a) if a.is_not_found()) {
                    error!(error = %e, "snapshot LOST: Atlas no longer holds it and it was never archived");
                    self.metrics.record_lost(target);
                    return Ok(SnapshotOutcome::Lost { snapshot_id: id.to_owned() });
                }
                let retry = e.is_retryable() && attempt < ATTEMPTS_PER_RUN && !self.shutdown.drain.is_cancelled();
                if !retry {
                    error!(error = %e, reason = %e.reason(), attempt, "snapshot not archived; the next run tries again");
                    return Err(e);
                }
                // A dropped connection may reuse the same URL; a refused one needs a new job.
                if !matches!(e, ArchiveError::Transfer(TransferError::UrlRejected { .. }) | ArchiveError::Atlas(_)) {
                    reuse_job = self.journal.get(&key).await?.and_then(|r| r.restore_job_id);
                }
                warn!(error = %e, attempt, "attempt failed; trying again");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
        .instrument(span)
        .await
    }

    /// The bucket already has this snapshot (say, the journal was lost): adopt it if the manifest
    /// names this snapshot and the archive's size matches.
    async fn adopt_existing(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<Option<SnapshotOutcome>, ArchiveError> {
        let manifest_key = keys::manifest_key(object_key);
        let Some(body) = self.store.get_small(&manifest_key).await? else {
            return Ok(None);
        };
        let manifest: Manifest = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                warn!(key = %manifest_key, error = %e, "existing manifest is unreadable; archiving again");
                return Ok(None);
            }
        };
        if !manifest.describes(&key.project_id, &key.cluster, &key.snapshot_id) {
            return Err(ArchiveError::Integrity(format!(
                "{manifest_key} describes snapshot {} of {}/{}, not this one; two snapshots map to one key (check storage.key_template)",
                manifest.snapshot_id, manifest.project_id, manifest.cluster
            )));
        }
        let Some(head) = self.store.head(object_key).await? else {
            warn!(key = %object_key, "manifest without archive; archiving again");
            return Ok(None);
        };
        if head.size != manifest.size_bytes {
            warn!(key = %object_key, size = head.size, manifest_size = manifest.size_bytes, "archive size differs from its manifest; archiving again");
            return Ok(None);
        }
        self.journal
            .transition(
                key,
                SnapshotState::Archived,
                Change {
                    object_key: Some(object_key.to_owned()),
                    size_bytes: Some(manifest.size_bytes),
                    sha256: Some(manifest.sha256.clone()),
                    crc32c: Some(manifest.crc32c.clone()),
                    restore_job_id: manifest.restore_job_id.clone(),
                    upload_id: Some(String::new()),
                    note: Some(
                        "adopted: the bucket already holds this snapshot with a matching manifest"
                            .into(),
                    ),
                    ..Change::default()
                },
            )
            .await?;
        info!(key = %object_key, "already in the bucket with a matching manifest; recorded without a new download");
        self.metrics.record_archived(&key.target(), 0);
        Ok(Some(SnapshotOutcome::Adopted {
            snapshot_id: key.snapshot_id.clone(),
            object_key: object_key.to_owned(),
        }))
    }

    /// Gets a usable download job: the one the journal remembers if Atlas still serves it,
    /// else a new one.
    async fn obtain_job(
        &self,
        key: &SnapshotKey,
        reuse: Option<String>,
    ) -> Result<RestoreJob, ArchiveError> {
        if let Some(job_id) = reuse {
            match self
                .atlas
                .get_restore_job(&key.project_id, &key.cluster, &job_id)
                .await
            {
                Ok(job) if usable(&job) => {
                    info!(job = %job_id, "reusing the download job of an earlier attempt");
                    self.journal
                        .transition(
                            key,
                            SnapshotState::DownloadRequested,
                            Change {
                                restore_job_id: Some(job_id.clone()),
                                note: Some(format!("reusing download job {job_id}")),
                                ..Change::default()
                            },
                        )
                        .await?;
                    return Ok(job);
                }
                Ok(_) => {
                    info!(job = %job_id, "earlier download job is no longer usable; requesting a new one")
                }
                Err(e) => {
                    warn!(job = %job_id, error = %e, "cannot read the earlier download job; requesting a new one")
                }
            }
        }
        self.journal
            .transition(
                key,
                SnapshotState::DownloadRequested,
                Change {
                    note: Some("requesting a download from Atlas".into()),
                    ..Change::default()
                },
            )
            .await?;
        let job = match self
            .atlas
            .request_download(&key.project_id, &key.cluster, &key.snapshot_id)
            .await
        {
            Ok(job) => job,
            Err(AtlasError::Api { status: 409, .. }) => {
                // A download of this snapshot is already being prepared: find and reuse it.
                let jobs = self
                    .atlas
                    .list_restore_jobs(&key.project_id, &key.cluster)
                    .await?;
                jobs.into_iter()
                    .filter(|j| {
                        j.snapshot_id.as_deref() == Some(key.snapshot_id.as_str())
                            && j.is_download()
                    })
                    .find(|j| j.phase() != Phase::Failed && !expired(j))
                    .ok_or_else(|| {
                        ArchiveError::Integrity(
                            "Atlas says a download is in progress but lists none for this snapshot"
                                .into(),
                        )
                    })?
            }
            Err(e) => return Err(e.into()),
        };
        let job_id = job.id.clone().ok_or_else(|| {
            ArchiveError::Integrity("Atlas returned a download job without an id".into())
        })?;
        self.journal
            .transition(
                key,
                SnapshotState::DownloadRequested,
                Change {
                    restore_job_id: Some(job_id.clone()),
                    note: Some(format!("download job {job_id}")),
                    ..Change::default()
                },
            )
            .await?;
        Ok(job)
    }

    /// One attempt: job → URL → stream → HEAD → manifest → archived.
    async fn attempt(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        reuse_job: Option<String>,
        snapshot: &Snapshot,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let job = self.obtain_job(key, reuse_job).await?;
        let job = self
            .atlas
            .wait_for_url(&key.project_id, &key.cluster, job)
            .await?;
        let job_id = job.id.clone();
        let url = SnapshotUrl::parse(job.snapshot_url.as_deref().unwrap_or_default())?;
        info!(url = %url, "download ready");
        // Waiting for Atlas holds no slot; the transfer itself does.
        let _slot = self
            .transfers
            .acquire()
            .await
            .map_err(|_| ArchiveError::Integrity("the transfer limiter was closed".into()))?;
        let _in_flight = InFlight::new(&self.metrics);
        let source = transfer::open(&self.download, &url).await?;
        let part_size = plan_part_size(self.settings.part_size, source.content_length);
        if let Some(len) = source.content_length
            && len.div_ceil(part_size) > crate::store::MAX_PARTS
        {
            return Err(TransferError::Store(StoreError::TooManyParts { part_size }).into());
        }
        self.journal
            .transition(
                key,
                SnapshotState::Uploading,
                Change {
                    object_key: Some(object_key.to_owned()),
                    note: Some("creating the multipart upload".into()),
                    ..Change::default()
                },
            )
            .await?;
        let upload = self
            .store
            .create_multipart(object_key, ARCHIVE_CONTENT_TYPE)
            .await?;
        self.journal
            .transition(
                key,
                SnapshotState::Uploading,
                Change {
                    upload_id: Some(upload.upload_id().to_owned()),
                    note: Some(format!("upload started, part size {part_size}")),
                    ..Change::default()
                },
            )
            .await?;
        let started = std::time::Instant::now();
        let outcome = transfer::pump(
            source,
            &upload,
            part_size,
            self.settings.parts_in_flight,
            &self.shutdown.abort,
        )
        .await?;
        let head = self.store.head(object_key).await?.ok_or_else(|| {
            ArchiveError::Integrity(format!(
                "{object_key} is missing right after its upload completed"
            ))
        })?;
        if head.size != outcome.bytes {
            return Err(StoreError::SizeMismatch {
                key: object_key.to_owned(),
                expected: outcome.bytes,
                found: head.size,
            }
            .into());
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            project_id: key.project_id.clone(),
            cluster: key.cluster.clone(),
            snapshot_id: key.snapshot_id.clone(),
            snapshot_scheduled_at: snapshot.scheduled_time,
            snapshot_finished_at: snapshot.finish_time,
            mongodb_version: snapshot.mongodb_version.clone(),
            object_key: object_key.to_owned(),
            size_bytes: outcome.bytes,
            sha256: outcome.sha256.clone(),
            crc32c: outcome.crc32c.clone(),
            restore_job_id: job_id,
            archived_at: Utc::now(),
            tool: "atlas-archiver".to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ArchiveError::Integrity(format!("cannot encode the manifest: {e}")))?;
        self.store
            .put_small(
                &keys::manifest_key(object_key),
                Bytes::from(body),
                "application/json",
            )
            .await?;
        self.journal
            .transition(
                key,
                SnapshotState::Archived,
                Change {
                    size_bytes: Some(outcome.bytes),
                    sha256: Some(outcome.sha256.clone()),
                    crc32c: Some(outcome.crc32c.clone()),
                    upload_id: Some(String::new()),
                    note: Some(format!("{} parts", outcome.parts)),
                    ..Change::default()
                },
            )
            .await?;
        self.metrics.record_archived(&key.target(), outcome.bytes);
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        info!(
            key = %object_key,
            bytes = outcome.bytes,
            sha256 = %outcome.sha256,
            mib_per_s = format!("{:.1}", outcome.bytes as f64 / secs / 1_048_576.0),
            "archived"
        );
        Ok(SnapshotOutcome::Archived {
            snapshot_id: key.snapshot_id.clone(),
            object_key: object_key.to_owned(),
            size_bytes: outcome.bytes,
            sha256: outcome.sha256,
        })
    }
}

/// Counts a transfer in `atlas_archiver_transfers_in_flight` for as long as it lives.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.transfer_in_flight(1);
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.transfer_in_flight(-1);
    }
}

/// A download job that can still deliver: not failed, a download, URL not (nearly) expired.
fn usable(job: &RestoreJob) -> bool {
    job.is_download() && job.phase() != Phase::Failed && !expired(job)
}

/// Expired, or expiring within ten minutes (too late to start a long transfer).
fn expired(job: &RestoreJob) -> bool {
    job.expiration_date
        .is_some_and(|t| t < Utc::now() + chrono::Duration::minutes(10))
}

/// Whether a journal row means "archived".
pub fn is_archived(record: &SnapshotRecord) -> bool {
    record.state == SnapshotState::Archived
}
