//! The journal: a local SQLite file (WAL, `synchronous=FULL`) holding every run and the state of
//! every snapshot. States change only through [`Journal::transition`], which refuses impossible
//! moves, and every change is also appended to an event log. One process at a time holds a
//! journal (a lock file with the holder's pid). The only user of `rusqlite`.
//! Must not: call Atlas or S3.

mod lock;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::config::Target;
pub use lock::JournalLock;

/// Journal failures, each with what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the lock.
    #[error(
        "journal {path} is in use by another atlas-archiver process{holder}; stop it first, or point journal.path elsewhere"
    )]
    Locked {
        /// Journal path.
        path: String,
        /// " (pid N)" when known.
        holder: String,
    },
    /// The file was written by a newer atlas-archiver.
    #[error(
        "journal {path} has schema version {found}, newer than this atlas-archiver understands ({supported}); upgrade atlas-archiver, or move the file aside (the next run re-adopts archived snapshots from the manifests in the bucket)"
    )]
    NewerSchema {
        /// Journal path.
        path: String,
        /// Version in the file.
        found: i64,
        /// Version we write.
        supported: i64,
    },
    /// The file is damaged.
    #[error(
        "journal {path} is damaged ({detail}); run `atlas-archiver journal rebuild`: it moves the file aside and recovers the archived snapshots from the manifests in the bucket (nothing is downloaded twice)"
    )]
    Corrupt {
        /// Journal path.
        path: String,
        /// SQLite's words.
        detail: String,
    },
    /// The disk is full.
    #[error(
        "journal {path}: the disk is full; free space on its filesystem (nothing was lost: the last state change was not recorded and will be retried)"
    )]
    DiskFull {
        /// Journal path.
        path: String,
    },
    /// Any other I/O or SQLite failure.
    #[error("journal {path}: {detail}")]
    Io {
        /// Journal path.
        path: String,
        /// What failed.
        detail: String,
    },
    /// A state change that the state machine forbids.
    #[error("journal: snapshot {snapshot} cannot go from {from} to {to}")]
    InvalidTransition {
        /// Snapshot id.
        snapshot: String,
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
    },
    /// A snapshot the journal does not know.
    #[error("journal: unknown snapshot {0}")]
    UnknownSnapshot(String),
}

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
            _ => return None,
        })
    }

    /// The state machine: which states may follow `self`.
    pub fn may_become(self, next: Self) -> bool {
        use SnapshotState::{Archived, Discovered, DownloadRequested, Failed, Uploaded, Uploading};
        match (self, next) {
            (Archived, _) | (_, Discovered) => false,
            // A new download after an expired URL or a failed attempt; a fresh one after a crash;
            // a verified object that has vanished from the bucket.
            (Discovered | DownloadRequested | Uploading | Uploaded | Failed, DownloadRequested) => {
                true
            }
            (DownloadRequested | Uploading, Uploading) => true,
            // The object is complete: found by HEAD after the upload, or after a crash.
            (Uploading | Failed | Uploaded, Uploaded) => true,
            (Discovered | DownloadRequested, Uploaded) => false,
            // Adopted from the bucket (manifest found), or finished.
            (_, Archived) => true,
            (_, Failed) => true,
            (Discovered | Failed | Uploaded, Uploading) => false,
        }
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
    /// Its key.
    pub fn key(&self) -> SnapshotKey {
        SnapshotKey {
            project_id: self.project_id.clone(),
            cluster: self.cluster.clone(),
            snapshot_id: self.snapshot_id.clone(),
        }
    }
}

/// The data a transition records. Fields left `None` keep their stored value.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Restore job id (`Some("")` clears it).
    pub restore_job_id: Option<String>,
    /// Upload id (`Some("")` clears it).
    pub upload_id: Option<String>,
    /// Object key.
    pub object_key: Option<String>,
    /// Size.
    pub size_bytes: Option<u64>,
    /// SHA-256.
    pub sha256: Option<String>,
    /// CRC32C.
    pub crc32c: Option<String>,
    /// Failure text (only with `Failed`).
    pub error: Option<String>,
    /// Failure reason code (only with `Failed`).
    pub reason: Option<String>,
    /// A note for the event log.
    pub note: Option<String>,
    /// Forget size and hashes (a new upload starts).
    pub clear_result: bool,
    /// Part size of a new upload.
    pub part_size: Option<u64>,
    /// The source's ETag.
    pub source_etag: Option<String>,
    /// The source's length.
    pub source_length: Option<u64>,
    /// Whether a new upload uses a full-object CRC32C.
    pub upload_crc32c: Option<bool>,
}

/// How a run ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Snapshots archived in this run.
    pub archived: u32,
    /// Snapshots already archived before.
    pub skipped: u32,
    /// Snapshots that failed.
    pub failed: u32,
    /// A run-level error (Atlas unreachable, …).
    pub error: Option<String>,
}

/// A handle on the journal. Clones share one connection; SQLite calls run on the blocking pool.
#[derive(Clone)]
pub struct Journal {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    _lock: Option<Arc<JournalLock>>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating if needed) for writing, taking the lock.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let lock = lock_in_place(path)?;
        Self::with_lock(path, lock)
    }

    /// Starts a new, empty journal at `path` under the lock, moving an existing one (and its
    /// WAL files) aside to `<path>.replaced-<time>`. Returns the journal and where the old one went.
    pub fn open_fresh(path: &Path) -> Result<(Self, Option<PathBuf>), JournalError> {
        let lock = lock_in_place(path)?;
        let mut moved = None;
        if path.exists() {
            // Never overwrite an earlier saved journal (two rebuilds in one second, audit L13):
            // add a counter until the name is free.
            let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
            let mut aside = PathBuf::from(format!("{}.replaced-{stamp}", path.display()));
            let mut n = 1;
            while aside.exists() {
                n += 1;
                aside = PathBuf::from(format!("{}.replaced-{stamp}-{n}", path.display()));
            }
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", path.display()));
                if from.exists() {
                    let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                    std::fs::rename(&from, &to).map_err(|e| {
                        io_error(path, &format!("cannot move {} aside: {e}", from.display()))
                    })?;
                }
            }
            moved = Some(aside);
        }
        Ok((Self::with_lock(path, lock)?, moved))
    }

    /// Opens the file (migrating it) while holding `lock`.
    fn with_lock(path: &Path, lock: JournalLock) -> Result<Self, JournalError> {
        let conn = Connection::open(path).map_err(|e| sql_error(path, &e))?;
        schema::prepare(&conn, path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            _lock: Some(Arc::new(lock)),
        })
    }

    /// Opens read-only without the lock (for `status` while the daemon runs).
    pub fn open_read_only(path: &Path) -> Result<Self, JournalError> {
        if !path.exists() {
            return Err(io_error(
                path,
                "does not exist yet (no run has happened with this config)",
            ));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| sql_error(path, &e))?;
        schema::check_readable(&conn, path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on the blocking pool. The std mutex is never held across an await.
    async fn with<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> Result<T, JournalError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| io_error(&path, "journal connection poisoned by an earlier panic"))?;
            f(&mut guard, &path)
        })
        .await
        .map_err(|e| io_error(&self.path, &format!("journal task failed: {e}")))?
    }

    /// Records the start of a run.
    pub async fn start_run(&self, kind: &str) -> Result<i64, JournalError> {
        let kind = kind.to_owned();
        self.with(move |c, p| {
            c.execute(
                "INSERT INTO runs (kind, started_at, status) VALUES (?1, ?2, 'running')",
                params![kind, now()],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// Records the end of a run.
    pub async fn finish_run(&self, run_id: i64, summary: RunSummary) -> Result<(), JournalError> {
        self.with(move |c, p| {
            let status = if summary.failed > 0 || summary.error.is_some() { "failed" } else { "ok" };
            c.execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, archived = ?4, skipped = ?5, failed = ?6, error = ?7 WHERE id = ?1",
                params![run_id, now(), status, summary.archived, summary.skipped, summary.failed, summary.error],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

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
    /// (fsynced) when this returns.
    pub async fn transition(
        &self,
        key: &SnapshotKey,
        to: SnapshotState,
        change: Change,
    ) -> Result<SnapshotRecord, JournalError> {
        let key = key.clone();
        self.with(move |c, p| {
            let tx = c.transaction().map_err(|e| sql_error(p, &e))?;
            let current = fetch(&tx, p, &key)?.ok_or_else(|| JournalError::UnknownSnapshot(key.snapshot_id.clone()))?;
            if !current.state.may_become(to) {
                return Err(JournalError::InvalidTransition {
                    snapshot: key.snapshot_id.clone(),
                    from: current.state.to_string(),
                    to: to.to_string(),
                });
            }
            // An attempt is counted where a failure is recorded with its error, once: a later
            // transition that only updates a field of a failed row is not another attempt
            // (audit L9: a refused URL counted two).
            let failed = to == SnapshotState::Failed && change.error.is_some();
            let archived = to == SnapshotState::Archived;
            tx.execute(
                "UPDATE snapshots SET
                    state = ?4,
                    restore_job_id = CASE WHEN ?5 IS NULL THEN restore_job_id WHEN ?5 = '' THEN NULL ELSE ?5 END,
                    upload_id = CASE WHEN ?6 IS NULL THEN upload_id WHEN ?6 = '' THEN NULL ELSE ?6 END,
                    object_key = COALESCE(?7, object_key),
                    size_bytes = CASE WHEN ?16 THEN NULL ELSE COALESCE(?8, size_bytes) END,
                    sha256 = CASE WHEN ?16 THEN NULL ELSE COALESCE(?9, sha256) END,
                    crc32c = CASE WHEN ?16 THEN NULL ELSE COALESCE(?10, crc32c) END,
                    part_size = COALESCE(?17, part_size),
                    source_etag = CASE WHEN ?16 THEN ?18 ELSE COALESCE(?18, source_etag) END,
                    source_length = CASE WHEN ?16 THEN ?19 ELSE COALESCE(?19, source_length) END,
                    upload_crc32c = COALESCE(?20, upload_crc32c),
                    attempts = attempts + ?11,
                    last_error = CASE WHEN ?12 THEN NULL WHEN ?13 IS NULL THEN last_error ELSE ?13 END,
                    last_reason = CASE WHEN ?12 THEN NULL WHEN ?14 IS NULL THEN last_reason ELSE ?14 END,
                    archived_at = CASE WHEN ?12 THEN ?15 ELSE archived_at END,
                    updated_at = ?15
                 WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3",
                params![
                    key.project_id,
                    key.cluster,
                    key.snapshot_id,
                    to.as_str(),
                    change.restore_job_id,
                    change.upload_id,
                    change.object_key,
                    change.size_bytes.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    change.sha256,
                    change.crc32c,
                    i64::from(failed),
                    archived,
                    change.error,
                    change.reason,
                    now(),
                    change.clear_result,
                    change.part_size.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    change.source_etag,
                    change.source_length.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    change.upload_crc32c,
                ],
            )
            .map_err(|e| sql_error(p, &e))?;
            let note = change.note.or(change.error);
            log_event(&tx, p, &key, Some(current.state), to, note.as_deref())?;
            let record = fetch(&tx, p, &key)?.ok_or_else(|| JournalError::UnknownSnapshot(key.snapshot_id.clone()))?;
            tx.commit().map_err(|e| sql_error(p, &e))?;
            Ok(record)
        })
        .await
    }

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

    /// The most recent runs, newest first.
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RunRecord>, JournalError> {
        self.with(move |c, p| {
            query_all(c, p, "SELECT id, kind, started_at, finished_at, status, archived, skipped, failed, error FROM runs ORDER BY id DESC LIMIT ?1", params![limit], |r| {
                    Ok(RunRecord {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        started_at: r.get(2)?,
                        finished_at: r.get(3)?,
                        status: r.get(4)?,
                        archived: r.get(5)?,
                        skipped: r.get(6)?,
                        failed: r.get(7)?,
                        error: r.get(8)?,
                    })
                })
        })
        .await
    }

    /// Records a part the store accepted, with the hash state after it (durable on return).
    pub async fn record_part(
        &self,
        key: &SnapshotKey,
        upload_id: &str,
        part: PartRecord,
    ) -> Result<(), JournalError> {
        let key = key.clone();
        let upload_id = upload_id.to_owned();
        self.with(move |c, p| {
            c.execute(
                "INSERT OR REPLACE INTO upload_parts (project_id, cluster, snapshot_id, upload_id, part_number, size, etag, sha256_state, part_crc32c, crc32c_after, bytes_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    key.project_id,
                    key.cluster,
                    key.snapshot_id,
                    upload_id,
                    part.number,
                    i64::try_from(part.size).unwrap_or(i64::MAX),
                    part.etag,
                    part.sha256_state,
                    part.part_crc32c,
                    part.crc32c_after,
                    i64::try_from(part.bytes_after).unwrap_or(i64::MAX)
                ],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// The parts recorded for an upload, by part number.
    pub async fn parts(
        &self,
        key: &SnapshotKey,
        upload_id: &str,
    ) -> Result<Vec<PartRecord>, JournalError> {
        let key = key.clone();
        let upload_id = upload_id.to_owned();
        self.with(move |c, p| {
            query_all(c, p, "SELECT part_number, size, etag, sha256_state, part_crc32c, crc32c_after, bytes_after FROM upload_parts
                     WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3 AND upload_id = ?4 ORDER BY part_number", params![key.project_id, key.cluster, key.snapshot_id, upload_id], |r| {
                    Ok(PartRecord {
                        number: r.get(0)?,
                        size: r.get::<_, i64>(1).map(|n| u64::try_from(n).unwrap_or(0))?,
                        etag: r.get(2)?,
                        sha256_state: r.get(3)?,
                        part_crc32c: r.get(4)?,
                        crc32c_after: r.get(5)?,
                        bytes_after: r.get::<_, i64>(6).map(|n| u64::try_from(n).unwrap_or(0))?,
                    })
                })
        })
        .await
    }

    /// Forgets the parts of uploads of this snapshot (after it was archived, or its upload aborted).
    pub async fn forget_parts(&self, key: &SnapshotKey) -> Result<(), JournalError> {
        let key = key.clone();
        self.with(move |c, p| {
            c.execute(
                "DELETE FROM upload_parts WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3",
                params![key.project_id, key.cluster, key.snapshot_id],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
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

    /// Records that a target's run started (the daemon's catch-up rule reads it back).
    pub async fn target_started(
        &self,
        target: &Target,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let target = target.clone();
        self.with(move |c, p| {
            c.execute(
                "INSERT INTO target_runs (project_id, cluster, last_started_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, cluster) DO UPDATE SET last_started_at = excluded.last_started_at",
                params![target.project_id, target.cluster, at.to_rfc3339()],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// Records how a target's run ended.
    pub async fn target_finished(
        &self,
        target: &Target,
        success: bool,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let target = target.clone();
        self.with(move |c, p| {
            c.execute(
                "UPDATE target_runs SET last_finished_at = ?3, last_status = ?4,
                    last_success_at = CASE WHEN ?5 THEN ?3 ELSE last_success_at END
                 WHERE project_id = ?1 AND cluster = ?2",
                params![
                    target.project_id,
                    target.cluster,
                    at.to_rfc3339(),
                    if success { "ok" } else { "failed" },
                    success
                ],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// Each target's last run, as recorded.
    pub async fn target_history(&self) -> Result<Vec<TargetHistory>, JournalError> {
        self.with(|c, p| {
            query_all(c, p, "SELECT project_id, cluster, last_started_at, last_success_at, last_status FROM target_runs", [], |r| {
                    Ok(TargetHistory {
                        target: Target {
                            project_id: r.get(0)?,
                            cluster: r.get(1)?,
                        },
                        last_started_at: parse_time(r.get(2)?),
                        last_success_at: parse_time(r.get(3)?),
                        last_status: r.get(4)?,
                    })
                })
        })
        .await
    }

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

/// One uploaded part, with the hash state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartRecord {
    /// 1-based part number.
    pub number: i32,
    /// Size in bytes.
    pub size: u64,
    /// ETag the store returned.
    pub etag: String,
    /// `ResumableSha256` checkpoint after this part.
    pub sha256_state: String,
    /// CRC32C of this part alone.
    pub part_crc32c: u32,
    /// CRC32C of the stream up to the end of this part.
    pub crc32c_after: u32,
    /// Bytes of the stream up to the end of this part.
    pub bytes_after: u64,
}

/// One row of `target_runs`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetHistory {
    /// The target.
    pub target: Target,
    /// When its last run started.
    pub last_started_at: Option<DateTime<Utc>>,
    /// When a run last archived everything.
    pub last_success_at: Option<DateTime<Utc>>,
    /// `ok` or `failed`.
    pub last_status: Option<String>,
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// `once`, `run`, `demo`.
    pub kind: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time, if it ended.
    pub finished_at: Option<String>,
    /// `running`, `ok` or `failed`.
    pub status: String,
    /// Archived in this run.
    pub archived: u32,
    /// Already archived before.
    pub skipped: u32,
    /// Failed.
    pub failed: u32,
    /// Run-level error.
    pub error: Option<String>,
}

const COLUMNS: &str = "project_id, cluster, snapshot_id, state, scheduled_at, finished_at, mongodb_version, expires_at, restore_job_id, upload_id, object_key, size_bytes, sha256, crc32c, attempts, last_error, last_reason, archived_at, updated_at, part_size, source_etag, source_length, upload_crc32c";

/// Creates the journal's directory if needed and takes the lock.
fn lock_in_place(path: &Path) -> Result<JournalLock, JournalError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            io_error(
                path,
                &format!("cannot create directory {}: {e}", dir.display()),
            )
        })?;
    }
    JournalLock::acquire(path)
}

/// Runs a query and collects every row, mapping SQLite errors.
fn query_all<T>(
    c: &Connection,
    p: &Path,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, JournalError> {
    let mut stmt = c.prepare(sql).map_err(|e| sql_error(p, &e))?;
    let rows = stmt.query_map(params, map).map_err(|e| sql_error(p, &e))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| sql_error(p, &e))
}

fn fetch(
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

fn parse_time(text: Option<String>) -> Option<DateTime<Utc>> {
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
    })
}

fn log_event(
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

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn io_error(path: &Path, detail: &str) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        detail: detail.to_owned(),
    }
}

/// Whether the journal's filesystem has no room left: SQLite reports a full disk as SQLITE_FULL
/// or, for a failed WAL write, as a plain I/O error, so ask the filesystem.
fn filesystem_full(path: &Path) -> bool {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = dir.join(format!(
        ".atlas-archiver-space-probe-{}",
        std::process::id()
    ));
    let result = std::fs::write(&probe, [0u8; 4096]);
    let _ = std::fs::remove_file(&probe);
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::StorageFull)
}

/// Maps SQLite's error codes to errors that say what to do.
fn sql_error(path: &Path, error: &rusqlite::Error) -> JournalError {
    use rusqlite::ErrorCode;
    let p = path.display().to_string();
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => JournalError::DiskFull { path: p },
        Some(ErrorCode::SystemIoFailure) if filesystem_full(path) => {
            JournalError::DiskFull { path: p }
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => JournalError::Corrupt {
            path: p,
            detail: error.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => JournalError::Locked {
            path: p,
            holder: String::new(),
        },
        _ => JournalError::Io {
            path: p,
            detail: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
