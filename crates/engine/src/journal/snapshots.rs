//! The `snapshots` and `snapshot_events` tables: a snapshot's row, its facts from Atlas, the
//! queries over them, and the event log. Its state changes only through the steps of
//! `transitions.rs`.
//! Must not: change a state here (only `transitions.rs` does).

use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Journal, JournalError, now, query_all, sql_error};
use crate::target::Target;

/// Where a snapshot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    /// Seen in Atlas's list, nothing done yet.
    Discovered,
    /// A download was asked of Atlas (the job id is recorded once Atlas answered).
    DownloadRequested,
    /// Streaming into the store (the upload id is recorded once the store answered; the size
    /// and hashes once the stream ended, before the upload is completed).
    Uploading,
    /// The object is complete and its size confirmed; the manifest is not written yet.
    Uploaded,
    /// In the bucket, size confirmed, manifest written. Final.
    Archived,
    /// The last attempt failed; the next run tries again while Atlas holds the snapshot.
    Failed,
    /// Archived, then removed from the bucket by the retention policy (`prune`). Final: it is
    /// never archived again.
    Pruned,
}

impl SnapshotState {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovered => "discovered",
            Self::DownloadRequested => "download_requested",
            Self::Uploading => "uploading",
            Self::Uploaded => "uploaded",
            Self::Archived => "archived",
            Self::Failed => "failed",
            Self::Pruned => "pruned",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "discovered" => Self::Discovered,
            "download_requested" => Self::DownloadRequested,
            "uploading" => Self::Uploading,
            "uploaded" => Self::Uploaded,
            "archived" => Self::Archived,
            "failed" => Self::Failed,
            "pruned" => Self::Pruned,
            _ => return None,
        })
    }
}

impl fmt::Display for SnapshotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one snapshot of one target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    /// Project id.
    pub project_id: String,
    /// Cluster.
    pub cluster: String,
    /// Snapshot id.
    pub snapshot_id: String,
}

impl SnapshotKey {
    /// The target it belongs to.
    pub fn target(&self) -> Target {
        Target {
            project_id: self.project_id.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// For a target.
    pub fn new(target: &Target, snapshot_id: &str) -> Self {
        Self {
            project_id: target.project_id.clone(),
            cluster: target.cluster.clone(),
            snapshot_id: snapshot_id.to_owned(),
        }
    }
}

/// What Atlas told us about a snapshot when we first saw it.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFacts {
    /// Scheduled time.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Finish time.
    pub finished_at: Option<DateTime<Utc>>,
    /// MongoDB version.
    pub mongodb_version: Option<String>,
    /// When Atlas deletes it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One journal row.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRecord {
    /// Project id.
    pub project_id: String,
    /// Cluster.
    pub cluster: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// State.
    pub state: SnapshotState,
    /// Scheduled time.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Finish time.
    pub finished_at: Option<DateTime<Utc>>,
    /// MongoDB version.
    pub mongodb_version: Option<String>,
    /// When Atlas deletes it.
    pub expires_at: Option<DateTime<Utc>>,
    /// Atlas restore (download) job.
    pub restore_job_id: Option<String>,
    /// Multipart upload id while uploading.
    pub upload_id: Option<String>,
    /// The download job whose bytes the recorded upload holds: a resume must use this job and
    /// no other (another job may serve other bytes; audit M3).
    pub upload_job_id: Option<String>,
    /// Object key.
    pub object_key: Option<String>,
    /// Size in bytes, once archived.
    pub size_bytes: Option<u64>,
    /// SHA-256 (hex), once archived.
    pub sha256: Option<String>,
    /// CRC32C (hex), once archived.
    pub crc32c: Option<String>,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// The last failure, as a short reason code.
    pub last_reason: Option<String>,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Part size of the current upload.
    pub part_size: Option<u64>,
    /// The source's ETag, for `If-Range` on a resumed download.
    pub source_etag: Option<String>,
    /// The source's length, to check a resumed download's `Content-Range`.
    pub source_length: Option<u64>,
    /// Whether the current upload was created with a full-object CRC32C.
    pub upload_crc32c: bool,
}

impl SnapshotRecord {
    /// Unix time Atlas took the snapshot (its finish time, else its scheduled time).
    pub fn taken_unix(&self) -> Option<f64> {
        self.finished_at
            .or(self.scheduled_at)
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
    }

    /// Whether Atlas deleted it before it was archived (LOST).
    pub fn is_lost(&self) -> bool {
        self.state == SnapshotState::Failed
            && crate::reason::Reason::SnapshotLost.is(self.last_reason.as_deref())
    }

    /// Its key.
    pub fn key(&self) -> SnapshotKey {
        SnapshotKey {
            project_id: self.project_id.clone(),
            cluster: self.cluster.clone(),
            snapshot_id: self.snapshot_id.clone(),
        }
    }
}

/// What a new multipart upload will be, recorded before it is created.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    /// The object's key.
    pub object_key: String,
    /// Part size.
    pub part_size: u64,
    /// The source's ETag, for `If-Range` on a resumed download.
    pub source_etag: Option<String>,
    /// The source's length, to check a resumed download's `Content-Range`.
    pub source_length: Option<u64>,
}

/// What the stream measured, recorded before the upload is completed.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// Bytes streamed.
    pub size_bytes: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// CRC32C (hex).
    pub crc32c: String,
    /// Parts uploaded.
    pub parts: usize,
}

/// An archive found complete in the bucket with its manifest (adopted, or rebuilt).
#[derive(Debug, Clone)]
pub struct ArchivedObject {
    /// The object's key.
    pub object_key: String,
    /// Size.
    pub size_bytes: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// CRC32C (hex).
    pub crc32c: String,
    /// The download job that fed it, if the manifest says.
    pub restore_job_id: Option<String>,
}

impl Journal {
    /// Adds a snapshot in state `discovered` unless known, refreshes its facts, and returns its row.
    pub async fn discover(
        &self,
        key: SnapshotKey,
        facts: SnapshotFacts,
    ) -> Result<SnapshotRecord, JournalError> {
        self.with(move |c, p| {
            let tx = c.transaction().map_err(|e| sql_error(p, &e))?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO snapshots (project_id, cluster, snapshot_id, state, scheduled_at, finished_at, mongodb_version, expires_at, attempts, updated_at)
                     VALUES (?1, ?2, ?3, 'discovered', ?4, ?5, ?6, ?7, 0, ?8)",
                    params![
                        key.project_id,
                        key.cluster,
                        key.snapshot_id,
                        facts.scheduled_at.map(|t| t.to_rfc3339()),
                        facts.finished_at.map(|t| t.to_rfc3339()),
                        facts.mongodb_version,
                        facts.expires_at.map(|t| t.to_rfc3339()),
                        now()
                    ],
                )
                .map_err(|e| sql_error(p, &e))?;
            if inserted == 1 {
                log_event(&tx, p, &key, None, SnapshotState::Discovered, None)?;
            }
            let record = fetch(&tx, p, &key)?.ok_or_else(|| JournalError::UnknownSnapshot(key.snapshot_id.clone()))?;
            tx.commit().map_err(|e| sql_error(p, &e))?;
            Ok(record)
        })
        .await
    }

    /// Moves a snapshot to `to`, recording `change`, if the state machine allows it. Durable
    /// One snapshot's row.
    pub async fn get(&self, key: &SnapshotKey) -> Result<Option<SnapshotRecord>, JournalError> {
        let key = key.clone();
        self.with(move |c, p| fetch(c, p, &key)).await
    }

    /// Every row, optionally of one target, ordered by target and finish time.
    pub async fn snapshots(
        &self,
        target: Option<Target>,
    ) -> Result<Vec<SnapshotRecord>, JournalError> {
        self.with(move |c, p| {
            let (project, cluster) = target
                .map(|t| (Some(t.project_id), Some(t.cluster)))
                .unwrap_or_default();
            query_all(c, p, &format!(
                    "SELECT {COLUMNS} FROM snapshots WHERE (?1 IS NULL OR (project_id = ?1 AND cluster = ?2))
                     ORDER BY project_id, cluster, finished_at, snapshot_id"
                ), params![project, cluster], row_to_record)
        })
        .await
    }

    /// Upload ids the journal still owns (kept for a resume), for the start-up cleanup.
    pub async fn owned_uploads(&self) -> Result<Vec<String>, JournalError> {
        self.with(|c, p| {
            query_all::<String>(c, p, "SELECT upload_id FROM snapshots WHERE upload_id IS NOT NULL AND state != 'archived'", [], |r| r.get(0))
        })
        .await
    }

    /// Object keys for which the journal recorded the intent to create a multipart upload but
    /// no upload id: a crash between CreateMultipartUpload and recording its answer leaves an
    /// upload there that is certainly ours. The start-up cleanup aborts uploads on these keys only.
    pub async fn pending_upload_keys(&self) -> Result<Vec<String>, JournalError> {
        self.with(|c, p| {
            query_all::<String>(c, p, "SELECT object_key FROM snapshots WHERE state = 'uploading' AND upload_id IS NULL AND object_key IS NOT NULL", [], |r| r.get(0))
        })
        .await
    }

    #[cfg(test)]
    /// The event log of one snapshot, oldest first: `(time, from, to, note)`.
    pub async fn events(
        &self,
        key: &SnapshotKey,
    ) -> Result<Vec<(String, Option<String>, String, Option<String>)>, JournalError> {
        let key = key.clone();
        self.with(move |c, p| {
            query_all(c, p, "SELECT at, from_state, to_state, note FROM snapshot_events WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3 ORDER BY id", params![key.project_id, key.cluster, key.snapshot_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .await
    }
}

const COLUMNS: &str = "project_id, cluster, snapshot_id, state, scheduled_at, finished_at, mongodb_version, expires_at, restore_job_id, upload_id, object_key, size_bytes, sha256, crc32c, attempts, last_error, last_reason, archived_at, updated_at, part_size, source_etag, source_length, upload_crc32c, upload_job_id";

pub(super) fn fetch(
    c: &Connection,
    p: &Path,
    key: &SnapshotKey,
) -> Result<Option<SnapshotRecord>, JournalError> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM snapshots WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3"),
        params![key.project_id, key.cluster, key.snapshot_id],
        row_to_record,
    )
    .optional()
    .map_err(|e| sql_error(p, &e))
}

pub(super) fn parse_time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    let state_text: String = r.get(3)?;
    let state = SnapshotState::parse(&state_text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown state {state_text}").into(),
        )
    })?;
    Ok(SnapshotRecord {
        project_id: r.get(0)?,
        cluster: r.get(1)?,
        snapshot_id: r.get(2)?,
        state,
        scheduled_at: parse_time(r.get(4)?),
        finished_at: parse_time(r.get(5)?),
        mongodb_version: r.get(6)?,
        expires_at: parse_time(r.get(7)?),
        restore_job_id: r.get(8)?,
        upload_id: r.get(9)?,
        object_key: r.get(10)?,
        size_bytes: r
            .get::<_, Option<i64>>(11)?
            .and_then(|n| u64::try_from(n).ok()),
        sha256: r.get(12)?,
        crc32c: r.get(13)?,
        attempts: r.get(14)?,
        last_error: r.get(15)?,
        last_reason: r.get(16)?,
        archived_at: parse_time(r.get(17)?),
        updated_at: parse_time(r.get(18)?).unwrap_or_else(Utc::now),
        part_size: r
            .get::<_, Option<i64>>(19)?
            .and_then(|n| u64::try_from(n).ok()),
        source_etag: r.get(20)?,
        source_length: r
            .get::<_, Option<i64>>(21)?
            .and_then(|n| u64::try_from(n).ok()),
        upload_crc32c: r.get::<_, Option<bool>>(22)?.unwrap_or(false),
        upload_job_id: r.get(23)?,
    })
}

pub(super) fn log_event(
    c: &Connection,
    p: &Path,
    key: &SnapshotKey,
    from: Option<SnapshotState>,
    to: SnapshotState,
    note: Option<&str>,
) -> Result<(), JournalError> {
    c.execute(
        "INSERT INTO snapshot_events (project_id, cluster, snapshot_id, at, from_state, to_state, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![key.project_id, key.cluster, key.snapshot_id, now(), from.map(SnapshotState::as_str), to.as_str(), note],
    )
    .map_err(|e| sql_error(p, &e))?;
    Ok(())
}
