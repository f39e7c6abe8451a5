//! The state machine of one snapshot, one method per edge: [`Journal::request_download`],
//! [`Journal::record_job`], [`Journal::start_upload`], [`Journal::record_upload`],
//! [`Journal::resume_upload`], [`Journal::stream_complete`], [`Journal::object_confirmed`],
//! [`Journal::archive`], [`Journal::adopt`], [`Journal::fail`], [`Journal::discard_object`],
//! [`Journal::forget_job`], [`Journal::forget_upload`], [`Journal::interrupted`]. Each names the
//! states it accepts and the columns it writes (named SQL parameters), and runs in one
//! transaction with its event, durable when it returns. [`Journal::fail`] is the only step that
//! counts an attempt.
//! Must not: decide what to do next (that is the pipeline's), or touch another table than
//! `snapshots`, `snapshot_events` and `upload_parts` (which an upload's end clears).

use rusqlite::types::Value;
use rusqlite::{ToSql, params};

use super::snapshots::{fetch, log_event};
use super::{
    ArchivedObject, Journal, JournalError, SnapshotFacts, SnapshotKey, SnapshotRecord,
    SnapshotState, StreamResult, UploadPlan, int, now, sql_error,
};
use crate::reason::Reason;
use SnapshotState::{Archived, Discovered, DownloadRequested, Failed, Pruned, Uploaded, Uploading};

/// Every state but `archived`, which is final.
const OPEN: &[SnapshotState] = &[Discovered, DownloadRequested, Uploading, Uploaded, Failed];

/// One edge of the state machine: the states it accepts, the state it leads to (`None`: the
/// state stays), the columns it writes besides `state` and `updated_at` (each assignment starts
/// with `, ` and binds named parameters), and the note of its event.
struct Step {
    accepts: &'static [SnapshotState],
    to: Option<SnapshotState>,
    set: &'static str,
    binds: Vec<(&'static str, Value)>,
    note: String,
    forget_parts: bool,
}

impl Step {
    fn new(
        accepts: &'static [SnapshotState],
        to: Option<SnapshotState>,
        note: impl Into<String>,
    ) -> Self {
        Self {
            accepts,
            to,
            set: "",
            binds: Vec::new(),
            note: note.into(),
            forget_parts: false,
        }
    }

    fn set(mut self, set: &'static str) -> Self {
        self.set = set;
        self
    }

    fn bind(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.binds.push((name, value.into()));
        self
    }

    fn forgetting_parts(mut self) -> Self {
        self.forget_parts = true;
        self
    }
}

impl Journal {
    /// Asks for a new download: from any state but `archived` to `download_requested`, forgetting
    /// the previous job. Recorded before Atlas is asked, so that a crash in between is found.
    pub async fn request_download(
        &self,
        key: &SnapshotKey,
    ) -> Result<SnapshotRecord, JournalError> {
        self.step(
            key,
            Step::new(
                OPEN,
                Some(DownloadRequested),
                "requesting a download from Atlas",
            )
            .set(", restore_job_id = NULL"),
        )
        .await
    }

    /// Records the download job Atlas answered with (or the live one found again):
    /// `download_requested | uploading | uploaded | failed` → `download_requested`.
    pub async fn record_job(
        &self,
        key: &SnapshotKey,
        job_id: &str,
    ) -> Result<SnapshotRecord, JournalError> {
        const ACCEPTS: &[SnapshotState] = &[DownloadRequested, Uploading, Uploaded, Failed];
        self.step(
            key,
            Step::new(
                ACCEPTS,
                Some(DownloadRequested),
                format!("download job {job_id}"),
            )
            .set(", restore_job_id = :job_id")
            .bind(":job_id", job_id.to_owned()),
        )
        .await
    }

    /// Records the intent to create a multipart upload (its key, part size, the source's
    /// identity, and the download job that feeds it: the row's job now), forgetting any earlier
    /// stream result: `download_requested | uploading` → `uploading`, with no upload id until
    /// [`Journal::record_upload`].
    pub async fn start_upload(
        &self,
        key: &SnapshotKey,
        plan: UploadPlan,
    ) -> Result<SnapshotRecord, JournalError> {
        const ACCEPTS: &[SnapshotState] = &[DownloadRequested, Uploading];
        let step = Step::new(ACCEPTS, Some(Uploading), "creating the multipart upload")
            .set(", object_key = :object_key, part_size = :part_size, source_etag = :etag, source_length = :length, size_bytes = NULL, sha256 = NULL, crc32c = NULL, upload_job_id = restore_job_id")
            .bind(":object_key", plan.object_key)
            .bind(":part_size", int(plan.part_size))
            .bind(":etag", plan.source_etag)
            .bind(":length", plan.source_length.map(int));
        self.step(key, step).await
    }

    /// Records the id of the upload the store created: `uploading` → `uploading`.
    pub async fn record_upload(
        &self,
        key: &SnapshotKey,
        upload_id: &str,
        crc32c: bool,
    ) -> Result<SnapshotRecord, JournalError> {
        let checksum = if crc32c {
            "full-object CRC32C"
        } else {
            "no full-object checksum"
        };
        let step = Step::new(
            &[Uploading],
            None,
            format!("upload {upload_id} created ({checksum})"),
        )
        .set(", upload_id = :upload_id, upload_crc32c = :crc32c")
        .bind(":upload_id", upload_id.to_owned())
        .bind(":crc32c", crc32c);
        self.step(key, step).await
    }

    /// Records that the recorded upload is resumed at `offset`: `download_requested | uploading`
    /// → `uploading`.
    pub async fn resume_upload(
        &self,
        key: &SnapshotKey,
        offset: u64,
        parts: usize,
    ) -> Result<SnapshotRecord, JournalError> {
        const ACCEPTS: &[SnapshotState] = &[DownloadRequested, Uploading];
        self.step(
            key,
            Step::new(
                ACCEPTS,
                Some(Uploading),
                format!("resuming at byte {offset} after {parts} parts"),
            ),
        )
        .await
    }

    /// Records the stream's size and hashes before CompleteMultipartUpload, so that after a
    /// crash a HEAD tells whether the upload was completed: `uploading` → `uploading`.
    pub async fn stream_complete(
        &self,
        key: &SnapshotKey,
        result: &StreamResult,
    ) -> Result<SnapshotRecord, JournalError> {
        let step = Step::new(
            &[Uploading],
            None,
            format!(
                "stream complete ({} parts); completing the upload",
                result.parts
            ),
        )
        .set(", size_bytes = :size, sha256 = :sha256, crc32c = :crc32c")
        .bind(":size", int(result.size_bytes))
        .bind(":sha256", result.sha256.clone())
        .bind(":crc32c", result.crc32c.clone());
        self.step(key, step).await
    }

    /// The object is complete and HEAD confirmed its size; the upload id is spent:
    /// `uploading | uploaded | failed` → `uploaded`.
    pub async fn object_confirmed(
        &self,
        key: &SnapshotKey,
        size: u64,
    ) -> Result<SnapshotRecord, JournalError> {
        const ACCEPTS: &[SnapshotState] = &[Uploading, Uploaded, Failed];
        self.step(
            key,
            Step::new(
                ACCEPTS,
                Some(Uploaded),
                format!("object complete, {size} bytes confirmed by HEAD"),
            )
            .set(", upload_id = NULL, upload_job_id = NULL"),
        )
        .await
    }

    /// The manifest is written: `uploaded` → `archived` (final), clearing the last error and the
    /// upload's parts.
    pub async fn archive(&self, key: &SnapshotKey) -> Result<SnapshotRecord, JournalError> {
        let step = Step::new(&[Uploaded], Some(Archived), "manifest written")
            .set(", archived_at = :now, last_error = NULL, last_reason = NULL")
            .forgetting_parts();
        self.step(key, step).await
    }

    /// Records an archive found complete in the bucket with a matching manifest (`note` says
    /// how): any state but `archived` → `archived`, forgetting any upload.
    pub async fn adopt(
        &self,
        key: &SnapshotKey,
        object: ArchivedObject,
        note: &str,
    ) -> Result<SnapshotRecord, JournalError> {
        let step = Step::new(OPEN, Some(Archived), note)
            .set(", object_key = :object_key, size_bytes = :size, sha256 = :sha256, crc32c = :crc32c, restore_job_id = COALESCE(:job_id, restore_job_id), upload_id = NULL, upload_job_id = NULL, archived_at = :now, last_error = NULL, last_reason = NULL")
            .bind(":object_key", object.object_key)
            .bind(":size", int(object.size_bytes))
            .bind(":sha256", object.sha256)
            .bind(":crc32c", object.crc32c)
            .bind(":job_id", object.restore_job_id)
            .forgetting_parts();
        self.step(key, step).await
    }

    /// The retention policy removes the archive: `archived` → `pruned`, recorded *before* the
    /// objects are deleted, so that a prune cut short is finished by the next one and the
    /// snapshot is never archived again. A snapshot the journal did not know (a lost journal)
    /// is recorded as archived from its manifest first.
    pub async fn prune(
        &self,
        key: &SnapshotKey,
        facts: SnapshotFacts,
        object: ArchivedObject,
        note: &str,
    ) -> Result<SnapshotRecord, JournalError> {
        let row = self.discover(key.clone(), facts).await?;
        match row.state {
            Pruned => return Ok(row),
            Archived => {}
            _ => {
                self.adopt(key, object, "recorded from the manifest before pruning")
                    .await?;
            }
        }
        self.step(key, Step::new(&[Archived], Some(Pruned), note))
            .await
    }

    /// An attempt failed: any state but `archived` → `failed`, with the error and its reason.
    /// The only step that counts an attempt.
    pub async fn fail(
        &self,
        key: &SnapshotKey,
        reason: &Reason,
        error: &str,
    ) -> Result<SnapshotRecord, JournalError> {
        let step = Step::new(OPEN, Some(Failed), error)
            .set(", attempts = attempts + 1, last_error = :error, last_reason = :reason")
            .bind(":error", error.to_owned())
            .bind(":reason", reason.code().into_owned());
        self.step(key, step).await
    }

    /// The completed object was not a valid archive and was deleted: `uploaded` → `failed`,
    /// forgetting the stream's result and the job that served it (no attempt is counted here:
    /// the attempt's failure is recorded by [`Journal::fail`]).
    pub async fn discard_object(&self, key: &SnapshotKey) -> Result<SnapshotRecord, JournalError> {
        let step = Step::new(&[Uploaded], Some(Failed), "the completed object was not a valid archive and was deleted")
            .set(", size_bytes = NULL, sha256 = NULL, crc32c = NULL, source_etag = NULL, source_length = NULL, restore_job_id = NULL");
        self.step(key, step).await
    }

    /// Forgets the download job (its URL was refused or served something else), so that the next
    /// attempt requests a new one; the state stays.
    pub async fn forget_job(&self, key: &SnapshotKey) -> Result<SnapshotRecord, JournalError> {
        self.step(
            key,
            Step::new(OPEN, None, "a new download job will be requested")
                .set(", restore_job_id = NULL"),
        )
        .await
    }

    /// Forgets an upload the store aborted, and its parts; the state stays.
    pub async fn forget_upload(
        &self,
        key: &SnapshotKey,
        upload_id: &str,
    ) -> Result<SnapshotRecord, JournalError> {
        let step = Step::new(OPEN, None, format!("upload {upload_id} aborted"))
            .set(", upload_id = NULL, upload_job_id = NULL")
            .forgetting_parts();
        self.step(key, step).await
    }

    /// Notes that shutdown interrupted an attempt; the state and the upload stay for a resume,
    /// and no attempt is counted.
    pub async fn interrupted(&self, key: &SnapshotKey) -> Result<SnapshotRecord, JournalError> {
        self.step(
            key,
            Step::new(
                OPEN,
                None,
                "interrupted by shutdown; the upload is kept for a resume",
            ),
        )
        .await
    }

    /// Applies one step in one transaction: checks the current state, writes the columns, clears
    /// the parts if asked, logs the event. Durable (fsynced) when it returns.
    async fn step(&self, key: &SnapshotKey, step: Step) -> Result<SnapshotRecord, JournalError> {
        let key = key.clone();
        self.with(move |c, p| {
            let tx = c.transaction().map_err(|e| sql_error(p, &e))?;
            let current = fetch(&tx, p, &key)?.ok_or_else(|| JournalError::UnknownSnapshot(key.snapshot_id.clone()))?;
            let to = step.to.unwrap_or(current.state);
            if !step.accepts.contains(&current.state) {
                return Err(JournalError::InvalidTransition {
                    snapshot: key.snapshot_id.clone(),
                    from: current.state.to_string(),
                    to: to.to_string(),
                });
            }
            let sql = format!(
                "UPDATE snapshots SET state = :state, updated_at = :now{}
                 WHERE project_id = :project_id AND cluster = :cluster AND snapshot_id = :snapshot_id",
                step.set
            );
            let now = now();
            let state = to.as_str();
            let mut binds: Vec<(&str, &dyn ToSql)> = vec![
                (":state", &state),
                (":now", &now),
                (":project_id", &key.project_id),
                (":cluster", &key.cluster),
                (":snapshot_id", &key.snapshot_id),
            ];
            binds.extend(step.binds.iter().map(|(name, value)| (*name, value as &dyn ToSql)));
            tx.execute(&sql, binds.as_slice()).map_err(|e| sql_error(p, &e))?;
            if step.forget_parts {
                tx.execute(
                    "DELETE FROM upload_parts WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3",
                    params![key.project_id, key.cluster, key.snapshot_id],
                )
                .map_err(|e| sql_error(p, &e))?;
            }
            log_event(&tx, p, &key, Some(current.state), to, Some(&step.note))?;
            let record = fetch(&tx, p, &key)?.ok_or_else(|| JournalError::UnknownSnapshot(key.snapshot_id.clone()))?;
            tx.commit().map_err(|e| sql_error(p, &e))?;
            Ok(record)
        })
        .await
    }
}
