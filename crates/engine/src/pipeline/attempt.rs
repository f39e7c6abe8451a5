//! One snapshot: up to `ATTEMPTS_PER_RUN` attempts for failures a retry may cure, and one
//! attempt end to end: job → URL → transfer slot → stream (fresh or resumed) → record the result
//! → complete → finish.
//! Must not: decide which parts to resume from (that is `upload.rs`) or write the manifest
//! (that is `finish.rs`).

use std::time::Duration;

use chrono::Utc;
use tracing::{Instrument, error, info, info_span, warn};

use super::transfer::{self, SnapshotUrl, TransferError};
use super::upload::{InFlight, JournalParts};
use super::{ATTEMPTS_PER_RUN, ArchiveError, Archiver, SnapshotOutcome};
use crate::atlas::models::Snapshot;
use crate::journal::{SnapshotFacts, SnapshotKey, SnapshotState, StreamResult};
use crate::keys;
use crate::retry::Backoff;
use crate::target::Target;

/// The wait between attempts of one snapshot within a run.
const BETWEEN_ATTEMPTS: Backoff = Backoff {
    base: Duration::from_millis(500),
    max: Duration::from_secs(10),
};

impl Archiver {
    /// One snapshot, with up to [`ATTEMPTS_PER_RUN`] attempts for retryable failures.
    pub(super) async fn archive_snapshot(
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
            if record.state == SnapshotState::Pruned {
                return Ok(SnapshotOutcome::Pruned { snapshot_id: id.to_owned() });
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
                let e = match self.attempt(&key, &object_key, &snapshot.replica_sets).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(e @ ArchiveError::Journal(_)) => return Err(e),
                    Err(e) => e,
                };
                let retry = e.is_retryable() && attempt < ATTEMPTS_PER_RUN && !self.shutdown.drain.is_cancelled();
                // An upload whose download side failed is kept for a ranged resume by the next
                // attempt of this run; otherwise it is aborted now, so that nothing is left behind.
                // A shutdown keeps the upload too: its parts are journalled, so a planned restart
                // resumes like a crash does (audit L1).
                if matches!(e, ArchiveError::DownloadSlotTaken(_)) {
                    // Nothing was started: the snapshot waits for a later run, uncounted.
                    return Err(e);
                }
                let cancelled = matches!(e, ArchiveError::Transfer(TransferError::Cancelled));
                let keep_upload = cancelled
                    || (retry && matches!(&e, ArchiveError::Transfer(t) if t.upload_is_resumable()));
                if !keep_upload {
                    self.abort_recorded_upload(&key, &object_key).await?;
                }
                if cancelled {
                    // Not a failure of the snapshot: leave it resumable, without counting an attempt.
                    self.journal.interrupted(&key).await?;
                    warn!("transfer interrupted by shutdown; the next run resumes it");
                    return Err(e);
                }
                self.metrics.record_failure(target, &e.reason());
                self.journal.fail(&key, &e.reason(), &e.to_string()).await?;
                if !retry {
                    // A sharded snapshot that gives up leaves no component behind.
                    self.discard_components(&key).await?;
                }
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
                    self.journal.forget_job(&key).await?;
                }
                warn!(error = %e, reason = %e.reason(), attempt, keep_upload, "attempt failed; trying again");
                // The same jittered exponential policy as every other retry (`retry::Backoff`);
                // the wait ends at once on shutdown.
                if self
                    .until_shutdown(tokio::time::sleep(BETWEEN_ATTEMPTS.delay(attempt)))
                    .await
                    .is_err()
                {
                    return Err(e);
                }
            }
        }
        .instrument(span)
        .await
    }

    /// A store that accepted an upload's checksums and refused them later (on a part, or only
    /// at Complete): the store stops being asked for them.
    pub(super) fn note_checksum_refusal(
        &self,
        upload: &crate::store::MultipartUpload,
        e: &crate::store::StoreError,
    ) {
        if upload.verifies_crc32c() && e.is_checksum_refusal() {
            self.store.refuse_checksums(e);
        }
    }

    /// A transfer slot (`storage.max_concurrent_transfers`). Waiting for Atlas holds none; the
    /// transfer itself does. Waiting for a slot that another snapshot's transfer holds is not
    /// a stall, and the wait ends at once on shutdown.
    pub(super) async fn transfer_slot(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ArchiveError> {
        self.until_shutdown(crate::watchdog::exempt(self.transfers.acquire()))
            .await?
            .map_err(|_| ArchiveError::Internal("the transfer limiter was closed".into()))
    }

    /// One attempt: job → URL → stream (fresh, or resumed) → record the result → complete →
    /// finish (HEAD, manifest, archived).
    pub(super) async fn attempt(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        members: &[String],
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let record = self.row(key).await?;
        let job = self.obtain_job(key, &record).await?;
        // The waits (for Atlas to prepare the URL, up to `restore_timeout`, and for a transfer
        // slot) end at once on shutdown: nothing is in flight yet, and the journalled job is
        // reused by the next run (audit L11).
        let job = self
            .until_shutdown(self.backups(key)?.wait_for_url(job))
            .await??;
        if !job.components.is_empty() {
            // A sharded cluster's snapshot: one file per replica set (`sharded.rs`).
            return self.attempt_sharded(key, object_key, &job, members).await;
        }
        if !members.is_empty() {
            return Err(ArchiveError::AtlasContract(format!(
                "the download job of a sharded cluster's snapshot ({} replica sets) lists no components",
                members.len()
            )));
        }
        let url = SnapshotUrl::parse(job.snapshot_url.as_deref().unwrap_or_default())?;
        info!(url = %url, "download ready");
        let _slot = self.transfer_slot().await?;
        let _in_flight = InFlight::new(&self.metrics);

        // Resume only an upload fed by this very download job: another job may serve other
        // bytes, and a splice of two jobs is not the snapshot (audit M3). The journal names the
        // job that fed the upload; the row's current job may have changed since (a crash right
        // after recording a new job leaves the old upload beside it).
        let same_job = record.upload_job_id.is_some() && record.upload_job_id == job.id;
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
            metrics: &self.metrics,
        };
        let started = std::time::Instant::now();
        let resumed_from = resume.as_ref().map_or(0, |r| r.offset);
        let ticket = self.progress.start(
            format!("{}/{} {}", key.project_id, key.cluster, key.snapshot_id),
            source.total_length,
            resumed_from,
        );
        let outcome = transfer::pump(
            source,
            &upload,
            self.pump_options(part_size),
            &self.shutdown.abort,
            &log,
            resume,
            &ticket,
        )
        .await;
        drop(ticket);
        let outcome = match outcome {
            Err(TransferError::Store(e)) if upload.verifies_crc32c() && e.is_checksum_refusal() => {
                self.store.refuse_checksums(&e);
                return Err(TransferError::Store(e).into());
            }
            other => other?,
        };
        // Intent before CompleteMultipartUpload: after a crash, the recorded size and hashes let
        // a HEAD tell whether the upload was completed, and finish it without a new download.
        let result = StreamResult {
            size_bytes: outcome.bytes,
            sha256: outcome.sha256.clone(),
            crc32c: outcome.crc32c.clone(),
            parts: outcome.parts.len(),
        };
        self.journal.stream_complete(key, &result).await?;
        crate::fault::point("before-complete");
        let whole_crc = u32::from_str_radix(&outcome.crc32c, 16).unwrap_or_default();
        if let Err(e) = upload.complete(&outcome.parts, whole_crc).await {
            // A store may accept checksums on the parts and refuse them only here.
            self.note_checksum_refusal(&upload, &e);
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
}
