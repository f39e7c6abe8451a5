//! The journal: a local SQLite file (WAL, `synchronous=FULL`) holding every run and the state of
//! every snapshot. A snapshot's state changes only through the typed steps of `transitions.rs`
//! (one method per edge of the state machine, each refusing the states it does not accept), and
//! every change is also appended to an event log. One process at a time holds a journal (a lock
//! file with the holder's pid). The only user of `rusqlite`.
//! Files: `snapshots.rs` (the `snapshots` and `snapshot_events` tables), `transitions.rs` (the
//! state machine), `parts.rs` (`upload_parts`), `runs.rs` (`runs` and `target_runs`),
//! `schema.rs` (migrations), `lock.rs` (the lock file).
//! Must not: call Atlas or S3.

mod components;
mod lock;
mod parts;
mod runs;
mod schema;
mod snapshots;
mod transitions;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use rusqlite::{Connection, OpenFlags};

pub use components::{ComponentDone, ComponentRecord};
pub use lock::JournalLock;
pub use parts::PartRecord;
pub use runs::{RunRecord, RunSummary, TargetHistory};
pub use snapshots::{
    ArchivedObject, SnapshotFacts, SnapshotKey, SnapshotRecord, SnapshotState, StreamResult,
    UploadPlan,
};

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
    #[cfg(test)]
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
}

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

/// A byte count as SQLite's integer.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
