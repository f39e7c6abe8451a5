//! One snapshot end to end, and one target's run: list snapshots → journal → adopt an existing
//! archive, or request a download → wait for the URL → stream into the store → HEAD → manifest →
//! archived. Every side effect is preceded by a journal record of the intent and followed by one
//! of the outcome. Retries within a run live here; one failing snapshot or target never stops
//! the others.
//! Must not: parse CLI flags or schedule anything.

pub mod digest;
pub mod manifest;
pub mod rebuild;
pub mod transfer;
pub mod validate;
pub mod verify;

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
use digest::ResumableSha256;
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
    /// Atlas answered the download request with 404: the snapshot is gone. Only this answer
    /// means LOST; a 404 elsewhere (a restore job garbage-collected while polled) does not.
    #[error("Atlas no longer holds this snapshot and it was never archived: {0}")]
    SnapshotGone(#[source] AtlasError),
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
            Self::SnapshotGone(_) => "SNAPSHOT_LOST".into(),
            Self::Integrity(_) => "INTEGRITY".into(),
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Transfer(e) => e.is_retryable(),
            Self::Atlas(e) => e.is_transient(),
            // A `SlowDown` on the HEAD or the manifest PUT is retried like one on a part.
            Self::Store(e) => e.is_retryable(),
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
    /// `storage.validate_archives`: check that each snapshot is a whole `.tar.gz`.
    pub validate_archives: bool,
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
            validate_archives: config.storage.validate_archives,
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
        /// Tar entries the validation counted (absent when validation is off).
        #[serde(skip_serializing_if = "Option::is_none")]
        tar_entries: Option<u64>,
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
                // Ids become parts of object keys and URL paths: take only what the contract
                // allows (`^[a-f0-9]{24}$`), never a path (audit L18).
                if !is_object_id(&id) {
                    warn!(snapshot = %id.escape_debug().to_string(), "Atlas listed a snapshot id that is not 24 lowercase hex digits; skipping it");
                    continue;
                }
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
                let journal_failed = match &outcome {
                    Err(ArchiveError::Journal(e)) => Some(e.to_string()),
                    _ => None,
                };
                report.snapshots.push(match outcome {
                    Ok(o) => o,
                    Err(e) => SnapshotOutcome::Failed {
                        snapshot_id: id.clone(),
                        reason: e.reason(),
                        error: e.to_string(),
                    },
                });
                if let Some(e) = journal_failed {
                    error!(error = %e, "the journal failed; stopping this target");
                    report.error = Some(format!("{e}; stopping this target"));
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
            // The object may be complete in the bucket, only its manifest missing (a crash, or a
            // store incident on the snapshot's last day): finish it rather than cry LOST (M2).
            if let Some(object_key) = record.object_key.clone() {
                match self.finish_recorded_upload(&record, &object_key).await {
                    Ok(Some(outcome)) => {
                        lost.push(outcome);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(snapshot = %record.snapshot_id, error = %e, "cannot finish the recorded upload of a snapshot Atlas no longer lists");
                        lost.push(SnapshotOutcome::Failed {
                            snapshot_id: record.snapshot_id.clone(),
                            reason: e.reason(),
                            error: e.to_string(),
                        });
                        continue;
                    }
                }
                // An upload still open for it can never be finished now: abort it, so that no
                // billed orphan stays behind.
                if record.upload_id.is_some() {
                    self.abort_recorded_upload(&record.key(), &object_key)
                        .await?;
                }
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
            // Once a key is recorded it stays the snapshot's key: a template or prefix edited
            // since, or a snapshot listed without timestamps, must not move an upload in flight
            // (audit L5).
            let object_key = record.object_key.clone().unwrap_or_else(|| keys::render(
                &self.settings.key_template,
                &keys::KeyParts {
                    prefix: &self.settings.prefix,
                    project_id: &target.project_id,
                    cluster: &target.cluster,
                    snapshot_id: id,
                    finished: snapshot.finish_time.or(snapshot.scheduled_time).unwrap_or_else(Utc::now),
                },
            ));
            if let Some(outcome) = self.finish_recorded_upload(&record, &object_key).await? {
                return Ok(outcome);
            }
            if let Some(outcome) = self.adopt_existing(&key, &object_key).await? {
                return Ok(outcome);
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let e = match self.attempt(&key, &object_key).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(e @ ArchiveError::Journal(_)) => return Err(e),
                    Err(e) => e,
                };
                let retry = e.is_retryable() && attempt < ATTEMPTS_PER_RUN && !self.shutdown.drain.is_cancelled();
                // An upload whose download side failed is kept for a ranged resume by the next
                // attempt of this run; otherwise it is aborted now, so that nothing is left behind.
                // A shutdown keeps the upload too: its parts are journalled, so a planned restart
                // resumes like a crash does (audit L1).
                let cancelled = matches!(e, ArchiveError::Transfer(TransferError::Cancelled));
                let keep_upload = cancelled
                    || (retry && matches!(&e, ArchiveError::Transfer(t) if t.upload_is_resumable()));
                if !keep_upload {
                    self.abort_recorded_upload(&key, &object_key).await?;
                }
                if cancelled {
                    // Not a failure of the snapshot: leave it resumable, without counting an attempt.
                    let state = self.row(&key).await?.state;
                    self.journal
                        .transition(&key, state, Change {
                            note: Some("interrupted by shutdown; the upload is kept for a resume".into()),
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
                    ..Change::default()
                };
                self.journal.transition(&key, SnapshotState::Failed, change).await?;
                if matches!(&e, ArchiveError::SnapshotGone(_)) {
                    error!(error = %e, "snapshot LOST: Atlas no longer holds it and it was never archived");
                    self.metrics.record_lost(target);
                    return Ok(SnapshotOutcome::Lost { snapshot_id: id.to_owned() });
                }
                if !retry {
                    error!(error = %e, reason = %e.reason(), attempt, "snapshot not archived; the next run tries again");
                    return Err(e);
                }
                // A refused URL, or one that served something other than an archive, needs a new
                // download job; anything else may reuse the current one.
                if matches!(
                    e,
                    ArchiveError::Transfer(TransferError::UrlRejected { .. } | TransferError::Content(_))
                ) {
                    self.journal
                        .transition(&key, SnapshotState::Failed, Change {
                            note: Some("a new download job will be requested".into()),
                            restore_job_id: Some(String::new()),
                            ..Change::default()
                        })
                        .await?;
                }
                warn!(error = %e, reason = %e.reason(), attempt, keep_upload, "attempt failed; trying again");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Runs a wait until it ends or shutdown begins (drain or abort), whichever comes first.
    async fn until_shutdown<T>(
        &self,
        wait: impl std::future::Future<Output = T>,
    ) -> Result<T, ArchiveError> {
        tokio::select! {
            out = wait => Ok(out),
            () = self.shutdown.drain.cancelled() => Err(TransferError::Cancelled.into()),
            () = self.shutdown.abort.cancelled() => Err(TransferError::Cancelled.into()),
        }
    }

    /// The journal's row of a snapshot this run already discovered.
    async fn row(&self, key: &SnapshotKey) -> Result<SnapshotRecord, ArchiveError> {
        self.journal.get(key).await?.ok_or_else(|| {
            ArchiveError::Integrity(format!(
                "the journal lost the row of snapshot {}",
                key.snapshot_id
            ))
        })
    }

    /// Aborts the upload the journal records for this snapshot (if any) and forgets it. When the
    /// store refuses the abort (after the SDK's retries), the journal keeps the upload, so that
    /// it stays owned and a later attempt aborts it again (audit L7); the error is returned for
    /// callers that must not go on without a clean slate.
    async fn abort_recorded_upload(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<Option<StoreError>, ArchiveError> {
        let Some(record) = self.journal.get(key).await? else {
            return Ok(None);
        };
        let Some(upload_id) = record.upload_id else {
            return Ok(None);
        };
        let upload = self
            .store
            .existing_multipart(object_key, &upload_id, record.upload_crc32c);
        if let Err(e) = upload.abort().await {
            warn!(error = %e, "could not abort the multipart upload; the journal keeps it and a later attempt aborts it");
            return Ok(Some(e));
        }
        self.journal
            .transition(
                key,
                record.state,
                Change {
                    upload_id: Some(String::new()),
                    note: Some(format!("upload {upload_id} aborted")),
                    ..Change::default()
                },
            )
            .await?;
        self.journal.forget_parts(key).await?;
        Ok(None)
    }

    /// A previous attempt streamed everything and recorded the result, and the object is in the
    /// bucket with that size: the upload was completed before a crash. Finish the job (verify,
    /// manifest) without downloading again.
    async fn finish_recorded_upload(
        &self,
        record: &SnapshotRecord,
        object_key: &str,
    ) -> Result<Option<SnapshotOutcome>, ArchiveError> {
        let (Some(size), Some(_), Some(_)) = (record.size_bytes, &record.sha256, &record.crc32c)
        else {
            return Ok(None);
        };
        if !matches!(
            record.state,
            SnapshotState::Uploading | SnapshotState::Uploaded | SnapshotState::Failed
        ) {
            return Ok(None);
        }
        match self.store.head(object_key).await? {
            Some(head) if head.size == size => {
                info!(key = %object_key, "the upload of an earlier attempt was completed; finishing it without a new download");
                self.finish(&record.key(), object_key, None).await.map(Some)
            }
            _ => Ok(None),
        }
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
        // An upload this journal still holds for the snapshot is not needed any more: abort it
        // rather than forget it (audit L6). If the store refuses, adopting waits for a later run.
        if let Some(e) = self.abort_recorded_upload(key, object_key).await? {
            return Err(e.into());
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

    /// Gets a usable download job: the one the journal remembers if Atlas still serves it; else,
    /// after a crash between asking and recording, one Atlas lists for this snapshot; else a new
    /// one. Records the job before returning it.
    async fn obtain_job(
        &self,
        key: &SnapshotKey,
        record: &SnapshotRecord,
    ) -> Result<RestoreJob, ArchiveError> {
        let remembered = match &record.restore_job_id {
            Some(job_id) => match self
                .atlas
                .get_restore_job(&key.project_id, &key.cluster, job_id)
                .await
            {
                Ok(job) if usable(&job) => Some(job),
                Ok(_) => {
                    info!(job = %job_id, "the earlier download job is no longer usable; requesting a new one");
                    None
                }
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    warn!(job = %job_id, error = %e, "cannot read the earlier download job; requesting a new one");
                    None
                }
            },
            // The intent was recorded but not the answer: Atlas may have created a job.
            None if record.state == SnapshotState::DownloadRequested => {
                self.find_live_job(key).await?
            }
            None => None,
        };
        let job = match remembered {
            Some(job) => job,
            None => {
                self.journal
                    .transition(
                        key,
                        SnapshotState::DownloadRequested,
                        Change {
                            note: Some("requesting a download from Atlas".into()),
                            restore_job_id: Some(String::new()),
                            ..Change::default()
                        },
                    )
                    .await?;
                crate::fault::point("after-download-intent");
                match self.atlas.request_download(&key.project_id, &key.cluster, &key.snapshot_id).await {
                    Ok(job) => job,
                    // A download of this snapshot is already being prepared: find and reuse it.
                    Err(AtlasError::Api { status: 409, .. }) => self
                        .find_live_job(key)
                        .await?
                        .ok_or_else(|| ArchiveError::Integrity("Atlas says a download is in progress but lists none for this snapshot".into()))?,
                    Err(e) if e.is_not_found() => return Err(ArchiveError::SnapshotGone(e)),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let job_id =
            job.id
                .clone()
                .filter(|id| is_object_id(id))
                .ok_or_else(|| {
                    ArchiveError::Integrity(
                "Atlas returned a download job without a valid id (24 lowercase hex digits)".into(),
            )
                })?;
        // Audit S3: the job must be for this snapshot, or its bytes would be archived under
        // another snapshot's key.
        if job
            .snapshot_id
            .as_deref()
            .is_some_and(|s| s != key.snapshot_id)
        {
            return Err(ArchiveError::Integrity(format!(
                "Atlas answered the download request for snapshot {} with a job for snapshot {}",
                key.snapshot_id,
                job.snapshot_id.as_deref().unwrap_or_default()
            )));
        }
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
        crate::fault::point("after-download-requested");
        Ok(job)
    }

    /// A live download job Atlas lists for this snapshot, if any.
    async fn find_live_job(&self, key: &SnapshotKey) -> Result<Option<RestoreJob>, ArchiveError> {
        let jobs = self
            .atlas
            .list_restore_jobs(&key.project_id, &key.cluster)
            .await?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.snapshot_id.as_deref() == Some(key.snapshot_id.as_str()))
            .find(usable))
    }

    /// One attempt: job → URL → stream (fresh, or resumed) → record the result → complete →
    /// finish (HEAD, manifest, archived).
    async fn attempt(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let record = self.row(key).await?;
        let previous_job = record.restore_job_id.clone();
        let job = self.obtain_job(key, &record).await?;
        // The waits (for Atlas to prepare the URL, up to `restore_timeout`, and for a transfer
        // slot) end at once on shutdown: nothing is in flight yet, and the journalled job is
        // reused by the next run (audit L11).
        let job = self
            .until_shutdown(self.atlas.wait_for_url(&key.project_id, &key.cluster, job))
            .await??;
        let url = SnapshotUrl::parse(job.snapshot_url.as_deref().unwrap_or_default())?;
        info!(url = %url, "download ready");
        // Waiting for Atlas holds no slot; the transfer itself does.
        let _slot = self
            .until_shutdown(self.transfers.acquire())
            .await?
            .map_err(|_| ArchiveError::Integrity("the transfer limiter was closed".into()))?;
        let _in_flight = InFlight::new(&self.metrics);

        // Resume only an upload fed by the same download job: another job may serve other bytes.
        let same_job = previous_job.is_some() && previous_job == job.id;
        let resumed = match (&record.upload_id, record.part_size) {
            (Some(upload_id), Some(part_size)) if same_job => {
                self.prepare_resume(key, object_key, &record, upload_id, part_size, &url)
                    .await?
            }
            _ => None,
        };
        let (upload, source, part_size, resume) = match resumed {
            Some((upload, source, part_size, point)) => (upload, source, part_size, Some(point)),
            None => {
                // A new upload replaces the recorded one in the journal: the old one must be gone
                // first, or it would be orphaned.
                if let Some(e) = self.abort_recorded_upload(key, object_key).await? {
                    return Err(e.into());
                }
                let (upload, source, part_size) = self.start_upload(key, object_key, &url).await?;
                (upload, source, part_size, None)
            }
        };
        let log = JournalParts {
            journal: &self.journal,
            key,
            upload_id: upload.upload_id(),
        };
        let started = std::time::Instant::now();
        let resumed_from = resume.as_ref().map_or(0, |r| r.offset);
        let outcome = transfer::pump(
            source,
            &upload,
            transfer::PumpOptions {
                part_size,
                parts_in_flight: self.settings.parts_in_flight,
                validate: self.settings.validate_archives,
            },
            &self.shutdown.abort,
            &log,
            resume,
        )
        .await;
        let outcome = match outcome {
            Err(TransferError::Store(e)) if upload.verifies_crc32c() && e.is_checksum_refusal() => {
                self.store.refuse_checksums(&e);
                return Err(TransferError::Store(e).into());
            }
            other => other?,
        };
        // Intent before CompleteMultipartUpload: after a crash, the recorded size and hashes let
        // a HEAD tell whether the upload was completed, and finish it without a new download.
        self.journal
            .transition(
                key,
                SnapshotState::Uploading,
                Change {
                    size_bytes: Some(outcome.bytes),
                    sha256: Some(outcome.sha256.clone()),
                    crc32c: Some(outcome.crc32c.clone()),
                    note: Some(format!(
                        "stream complete ({} parts); completing the upload",
                        outcome.parts.len()
                    )),
                    ..Change::default()
                },
            )
            .await?;
        crate::fault::point("before-complete");
        let whole_crc = u32::from_str_radix(&outcome.crc32c, 16).unwrap_or_default();
        if let Err(e) = upload.complete(&outcome.parts, whole_crc).await {
            // A store may accept checksums on the parts and refuse them only here.
            if upload.verifies_crc32c() && e.is_checksum_refusal() {
                self.store.refuse_checksums(&e);
            }
            return Err(e.into());
        }
        crate::fault::point("after-complete");
        let archived = self
            .finish(key, object_key, outcome.content.clone())
            .await?;
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        info!(
            key = %object_key,
            bytes = outcome.bytes,
            resumed_from,
            sha256 = %outcome.sha256,
            mib_per_s = format!("{:.1}", (outcome.bytes - resumed_from) as f64 / secs / 1_048_576.0),
            "archived"
        );
        Ok(archived)
    }

    /// Opens the download from the start and creates a new multipart upload, recording intent
    /// and outcome around the creation.
    async fn start_upload(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        url: &SnapshotUrl,
    ) -> Result<(crate::store::MultipartUpload, transfer::Source, u64), ArchiveError> {
        let source = transfer::open(&self.download, url).await?;
        let part_size = plan_part_size(self.settings.part_size, source.total_length);
        if let Some(len) = source.total_length
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
                    clear_result: true,
                    part_size: Some(part_size),
                    source_etag: source.etag.clone(),
                    source_length: source.total_length,
                    note: Some("creating the multipart upload".into()),
                    ..Change::default()
                },
            )
            .await?;
        crate::fault::point("before-create-upload");
        let upload = self
            .store
            .create_multipart(object_key, ARCHIVE_CONTENT_TYPE)
            .await?;
        crate::fault::point("after-create-upload");
        self.journal
            .transition(
                key,
                SnapshotState::Uploading,
                Change {
                    upload_id: Some(upload.upload_id().to_owned()),
                    upload_crc32c: Some(upload.verifies_crc32c()),
                    note: Some(format!("upload started, part size {part_size}")),
                    ..Change::default()
                },
            )
            .await?;
        crate::fault::point("after-upload-recorded");
        Ok((upload, source, part_size))
    }

    /// Reconciles the store's parts with the journal's and reopens the download at the end of
    /// the contiguous parts both agree on. `None` when there is nothing to resume or the source
    /// will not serve a range: the caller then starts over.
    async fn prepare_resume(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        record: &SnapshotRecord,
        upload_id: &str,
        part_size: u64,
        url: &SnapshotUrl,
    ) -> Result<
        Option<(
            crate::store::MultipartUpload,
            transfer::Source,
            u64,
            transfer::ResumePoint,
        )>,
        ArchiveError,
    > {
        let upload = self
            .store
            .existing_multipart(object_key, upload_id, record.upload_crc32c);
        let in_store = match upload.list_parts().await {
            Ok(parts) => Some(parts),
            Err(StoreError::Request {
                code: Some(code), ..
            }) if code == "NoSuchUpload" => {
                info!("the interrupted upload no longer exists; starting over");
                return Ok(None);
            }
            Err(e) => {
                // Some stores answer ListParts in a form the SDK rejects (moto's root element);
                // the journal recorded each part only after the store accepted it, and
                // CompleteMultipartUpload checks every ETag, so the journal alone is safe here.
                warn!(error = %e, "cannot list the parts of the interrupted upload; trusting the journal's record of them");
                None
            }
        };
        let journalled = self.journal.parts(key, upload_id).await?;
        // An upload that exists but lists no parts while the journal recorded parts the store
        // acknowledged is a listing we cannot believe (moto answers so at times): trust the
        // journal, as when the listing fails. CompleteMultipartUpload checks every ETag, so a
        // part that is really missing fails the attempt, and the next one starts over.
        let in_store = in_store.filter(|parts| !parts.is_empty() || journalled.is_empty());
        let mut agreed = Vec::new();
        for (i, part) in journalled.iter().enumerate() {
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            let in_store_too = in_store.as_ref().is_none_or(|parts| {
                parts
                    .iter()
                    .any(|s| s.number == number && s.etag == part.etag && s.size == part.size)
            });
            let consistent = part.number == number
                && part.size == part_size
                && part.bytes_after == part_size * (i as u64 + 1)
                && in_store_too;
            if !consistent {
                break;
            }
            agreed.push(part.clone());
        }
        let Some(last) = agreed.last() else {
            info!("no complete part to resume from; starting over");
            return Ok(None);
        };
        let Some(sha) = ResumableSha256::restore(&last.sha256_state) else {
            return Ok(None);
        };
        let offset = last.bytes_after;
        let source = match transfer::open_from(
            &self.download,
            url,
            offset,
            record.source_etag.as_deref(),
            record.source_length,
        )
        .await
        {
            Ok(source) => source,
            Err(e @ TransferError::UrlRejected { .. }) => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, "cannot resume the download; starting over");
                return Ok(None);
            }
        };
        info!(
            offset,
            parts = agreed.len(),
            "resuming the interrupted upload"
        );
        self.journal
            .transition(
                key,
                SnapshotState::Uploading,
                Change {
                    note: Some(format!(
                        "resuming at byte {offset} after {} parts",
                        agreed.len()
                    )),
                    ..Change::default()
                },
            )
            .await?;
        let point = transfer::ResumePoint {
            parts: agreed
                .iter()
                .map(|p| crate::store::CompletedPartInfo {
                    number: p.number,
                    etag: p.etag.clone(),
                    size: p.size,
                    crc32c: record.upload_crc32c.then_some(p.part_crc32c),
                })
                .collect(),
            sha,
            crc: last.crc32c_after,
            offset,
        };
        Ok(Some((upload, source, part_size, point)))
    }

    /// The object is complete: confirm its size by HEAD, validate its content when the stream's
    /// validator did not see all of it (a resume, a crash after Complete), write the manifest,
    /// mark it archived.
    async fn finish(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        content: Option<validate::ContentFacts>,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let record = self.row(key).await?;
        let (Some(size), Some(sha256), Some(crc32c)) = (
            record.size_bytes,
            record.sha256.clone(),
            record.crc32c.clone(),
        ) else {
            return Err(ArchiveError::Integrity(
                "no recorded size and checksums to finish with".into(),
            ));
        };
        let head = self.store.head(object_key).await?.ok_or_else(|| {
            ArchiveError::Integrity(format!(
                "{object_key} is missing right after its upload completed"
            ))
        })?;
        if head.size != size {
            return Err(StoreError::SizeMismatch {
                key: object_key.to_owned(),
                expected: size,
                found: head.size,
            }
            .into());
        }
        self.journal
            .transition(
                key,
                SnapshotState::Uploaded,
                Change {
                    upload_id: Some(String::new()),
                    note: Some(format!("object complete, {size} bytes confirmed by HEAD")),
                    ..Change::default()
                },
            )
            .await?;
        crate::fault::point("after-uploaded");
        let content = match content {
            Some(facts) => Some(facts),
            None if self.settings.validate_archives => {
                Some(self.validate_stored(key, object_key).await?)
            }
            None => None,
        };
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            project_id: key.project_id.clone(),
            cluster: key.cluster.clone(),
            snapshot_id: key.snapshot_id.clone(),
            snapshot_scheduled_at: record.scheduled_at,
            snapshot_finished_at: record.finished_at,
            mongodb_version: record.mongodb_version.clone(),
            object_key: object_key.to_owned(),
            size_bytes: size,
            sha256: sha256.clone(),
            crc32c,
            restore_job_id: record.restore_job_id.clone(),
            content: content.clone(),
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
        crate::fault::point("after-manifest");
        self.journal
            .transition(
                key,
                SnapshotState::Archived,
                Change {
                    note: Some("manifest written".into()),
                    ..Change::default()
                },
            )
            .await?;
        self.journal.forget_parts(key).await?;
        self.metrics.record_archived(&key.target(), size);
        Ok(SnapshotOutcome::Archived {
            snapshot_id: key.snapshot_id.clone(),
            object_key: object_key.to_owned(),
            size_bytes: size,
            sha256,
            tar_entries: content.map(|c| c.tar_entries),
        })
    }

    /// Reads a completed object back from the store through the content validator. An object
    /// that is not a valid archive is deleted (it is ours: this snapshot's key, completed by this
    /// journal's upload) so that nothing invalid stays under an archive's name.
    async fn validate_stored(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<validate::ContentFacts, ArchiveError> {
        info!(key = %object_key, "validating the completed archive by reading it back (its stream was resumed)");
        let mut reader = self.store.open_read(object_key).await?;
        let mut validator = validate::Validator::start();
        let mut verdict = Ok(());
        while let Some(chunk) = reader.next_chunk().await? {
            if let Err(e) = validator.feed(chunk).await {
                verdict = Err(e);
                break;
            }
        }
        let verdict = match verdict {
            Ok(()) => validator.finish().await,
            Err(e) => Err(e),
        };
        match verdict {
            Ok(facts) => Ok(facts),
            Err(e) => {
                warn!(key = %object_key, error = %e, "the completed object is not a valid archive; deleting it");
                self.store.delete(object_key).await?;
                self.journal
                    .transition(
                        key,
                        SnapshotState::Failed,
                        Change {
                            clear_result: true,
                            restore_job_id: Some(String::new()),
                            note: Some(
                                "the completed object was not a valid archive and was deleted"
                                    .into(),
                            ),
                            ..Change::default()
                        },
                    )
                    .await?;
                Err(TransferError::Content(e).into())
            }
        }
    }

    /// Aborts multipart uploads that are certainly ours and that the journal does not own: those
    /// on the key of a snapshot whose journal row recorded the intent to create an upload but
    /// never its id (a crash in between). Nothing else is touched: an upload the journal knows
    /// nothing about may belong to another writer of the bucket (another instance, another
    /// application; audit H1), and a bucket lifecycle rule that aborts incomplete uploads is the
    /// backstop for those. Stores that cannot list uploads are skipped with a note.
    pub async fn abort_orphan_uploads(&self) -> Result<usize, ArchiveError> {
        let owned = self.journal.owned_uploads().await?;
        let mut aborted = 0;
        for object_key in self.journal.pending_upload_keys().await? {
            let uploads = match self.store.list_multipart_uploads(&object_key).await {
                Ok(u) => u,
                Err(e) => {
                    warn!(key = %object_key, error = %e, "cannot list multipart uploads; orphan cleanup skipped (add a lifecycle rule that aborts incomplete uploads)");
                    return Ok(aborted);
                }
            };
            for (key, upload_id) in uploads {
                // The listing is by prefix: only the exact key is ours.
                if key != object_key || owned.contains(&upload_id) {
                    continue;
                }
                match self.store.abort_multipart(&key, &upload_id).await {
                    Ok(()) => {
                        aborted += 1;
                        info!(key = %key, "aborted an orphan multipart upload left by an interrupted start");
                    }
                    Err(e) => {
                        warn!(key = %key, error = %e, "cannot abort an orphan multipart upload")
                    }
                }
            }
        }
        Ok(aborted)
    }
}

/// Records each part the store accepted in the journal, with the hash state after it.
struct JournalParts<'a> {
    journal: &'a Journal,
    key: &'a SnapshotKey,
    upload_id: &'a str,
}

#[async_trait::async_trait]
impl transfer::PartLog for JournalParts<'_> {
    async fn part_done(&self, part: crate::journal::PartRecord) -> Result<(), String> {
        self.journal
            .record_part(self.key, self.upload_id, part)
            .await
            .map_err(|e| e.to_string())
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

/// `^[a-f0-9]{24}$`: an Atlas object id (the project id's rule, which config already checks).
fn is_object_id(id: &str) -> bool {
    crate::config::validate_project_id(id).is_ok()
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
