//! Getting a download job: reuse the one the journal remembers while Atlas still serves it, find
//! one Atlas created before a crash, or request a new one; record it before using it.
//! Must not: wait for the URL or transfer anything.

use chrono::Utc;
use tracing::{info, warn};

use super::{ArchiveError, Archiver, is_object_id};
use crate::atlas::AtlasError;
use crate::atlas::models::{Phase, RestoreJob};
use crate::journal::{SnapshotKey, SnapshotRecord, SnapshotState};

impl Archiver {
    /// Gets a usable download job: the one the journal remembers if Atlas still serves it; else,
    /// after a crash between asking and recording, one Atlas lists for this snapshot; else a new
    /// one. Records the job before returning it.
    pub(super) async fn obtain_job(
        &self,
        key: &SnapshotKey,
        record: &SnapshotRecord,
    ) -> Result<RestoreJob, ArchiveError> {
        let remembered = match &record.restore_job_id {
            Some(job_id) => match self.backups(key)?.get_restore_job(job_id).await {
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
                self.journal.request_download(key).await?;
                crate::fault::point("after-download-intent");
                match self.backups(key)?.request_download(&key.snapshot_id).await {
                    Ok(job) => job,
                    // A download of this snapshot is already being prepared: find and reuse
                    // it. If Atlas lists none for this snapshot, another download holds the
                    // cluster's slot: this snapshot waits for a later run.
                    Err(e)
                        if matches!(e, AtlasError::Api { status: 409, .. })
                            || e.is_download_slot_taken() =>
                    {
                        match self.find_live_job(key).await? {
                            Some(job) => job,
                            None if e.is_download_slot_taken() => {
                                return Err(ArchiveError::DownloadSlotTaken(e));
                            }
                            None => return Err(ArchiveError::AtlasContract("Atlas says a download is in progress but lists none for this snapshot".into())),
                        }
                    }
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
                    ArchiveError::AtlasContract(
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
            return Err(ArchiveError::AtlasContract(format!(
                "Atlas answered the download request for snapshot {} with a job for snapshot {}",
                key.snapshot_id,
                job.snapshot_id.as_deref().unwrap_or_default()
            )));
        }
        self.journal.record_job(key, &job_id).await?;
        crate::fault::point("after-download-requested");
        Ok(job)
    }

    /// A live download job Atlas lists for this snapshot, if any.
    pub(super) async fn find_live_job(
        &self,
        key: &SnapshotKey,
    ) -> Result<Option<RestoreJob>, ArchiveError> {
        let jobs = self.backups(key)?.list_restore_jobs().await?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.snapshot_id.as_deref() == Some(key.snapshot_id.as_str()))
            .find(usable))
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
