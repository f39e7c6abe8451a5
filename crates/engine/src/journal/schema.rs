//! Journal schema, versioned with `PRAGMA user_version` and migrated on open.

use std::path::Path;

use rusqlite::Connection;

use super::{JournalError, sql_error};

/// The version this build writes.
pub const SCHEMA_VERSION: i64 = 9;

/// Migrations; entry `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: [&str; 9] = [
    r"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE snapshots (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('discovered','download_requested','uploading','archived','failed')),
    scheduled_at TEXT,
    finished_at TEXT,
    mongodb_version TEXT,
    expires_at TEXT,
    restore_job_id TEXT,
    upload_id TEXT,
    object_key TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    crc32c TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_reason TEXT,
    archived_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project_id, cluster, snapshot_id)
);
CREATE TABLE snapshot_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    note TEXT
);
CREATE INDEX snapshot_events_by_snapshot ON snapshot_events (project_id, cluster, snapshot_id);
",
    r"
CREATE TABLE target_runs (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    last_started_at TEXT,
    last_finished_at TEXT,
    last_status TEXT,
    last_success_at TEXT,
    PRIMARY KEY (project_id, cluster)
);
",
    // v3: the `uploaded` state (object complete and verified, manifest pending), the source's
    // identity for ranged resumes, the part size and checksum mode of the current upload, and one
    // row per uploaded part with the hash state after it, so that an interrupted upload resumes
    // where it stopped.
    r"
CREATE TABLE snapshots_v3 (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('discovered','download_requested','uploading','uploaded','archived','failed')),
    scheduled_at TEXT,
    finished_at TEXT,
    mongodb_version TEXT,
    expires_at TEXT,
    restore_job_id TEXT,
    upload_id TEXT,
    object_key TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    crc32c TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_reason TEXT,
    archived_at TEXT,
    updated_at TEXT NOT NULL,
    part_size INTEGER,
    source_etag TEXT,
    source_length INTEGER,
    upload_crc32c INTEGER,
    PRIMARY KEY (project_id, cluster, snapshot_id)
);
INSERT INTO snapshots_v3 (project_id, cluster, snapshot_id, state, scheduled_at, finished_at, mongodb_version, expires_at,
    restore_job_id, upload_id, object_key, size_bytes, sha256, crc32c, attempts, last_error, last_reason, archived_at, updated_at)
  SELECT project_id, cluster, snapshot_id, state, scheduled_at, finished_at, mongodb_version, expires_at,
    restore_job_id, upload_id, object_key, size_bytes, sha256, crc32c, attempts, last_error, last_reason, archived_at, updated_at
  FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_v3 RENAME TO snapshots;
CREATE TABLE upload_parts (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    sha256_state TEXT NOT NULL,
    part_crc32c INTEGER NOT NULL,
    crc32c_after INTEGER NOT NULL,
    bytes_after INTEGER NOT NULL,
    PRIMARY KEY (project_id, cluster, snapshot_id, upload_id, part_number)
);
",
    // 3 → 4: the download job that fed the recorded upload (audit M3). A resume is allowed
    // only with that job; rows migrated with an open upload have none, so they start over.
    "ALTER TABLE snapshots ADD COLUMN upload_job_id TEXT",
    // 4 → 5: the `pruned` state (archived, then removed from the bucket by the retention
    // policy; never archived again). SQLite cannot alter a CHECK: the table is rebuilt.
    r"
CREATE TABLE snapshots_v5 (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('discovered','download_requested','uploading','uploaded','archived','failed','pruned')),
    scheduled_at TEXT,
    finished_at TEXT,
    mongodb_version TEXT,
    expires_at TEXT,
    restore_job_id TEXT,
    upload_id TEXT,
    object_key TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    crc32c TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_reason TEXT,
    archived_at TEXT,
    updated_at TEXT NOT NULL,
    part_size INTEGER,
    source_etag TEXT,
    source_length INTEGER,
    upload_crc32c INTEGER,
    upload_job_id TEXT,
    PRIMARY KEY (project_id, cluster, snapshot_id)
);
INSERT INTO snapshots_v5 SELECT project_id, cluster, snapshot_id, state, scheduled_at, finished_at, mongodb_version,
    expires_at, restore_job_id, upload_id, object_key, size_bytes, sha256, crc32c, attempts, last_error, last_reason,
    archived_at, updated_at, part_size, source_etag, source_length, upload_crc32c, upload_job_id FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_v5 RENAME TO snapshots;
",
    // 5 → 6: when each target's first run started, where an alert on "never succeeded" counts
    // from. Journals from before know only the last start: the best they can say.
    r"
ALTER TABLE target_runs ADD COLUMN first_started_at TEXT;
UPDATE target_runs SET first_started_at = last_started_at;
",
    // 6 → 7: why a target's last run failed as a whole (its listing), for the status page;
    // failures of single snapshots are on their rows.
    "ALTER TABLE target_runs ADD COLUMN last_error TEXT",
    // 7 → 8: the kind Atlas said each `kind = "auto"` target's cluster is, asked once.
    r"
CREATE TABLE target_kinds (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('flex','dedicated')),
    detected_at TEXT NOT NULL,
    PRIMARY KEY (project_id, cluster)
);
",
    // 8 → 9: a sharded cluster's snapshot is one file per replica set (`components.rs`).
    r"
CREATE TABLE snapshot_components (
    project_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    replica_set TEXT NOT NULL,
    object_key TEXT NOT NULL,
    upload_id TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    crc32c TEXT,
    content TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project_id, cluster, snapshot_id, replica_set)
);
",
];

/// Sets durability pragmas, checks integrity and version, and migrates.
pub fn prepare(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    // WAL: a torn write never corrupts committed data; FULL: a commit survives power loss.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| sql_error(path, &e))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| sql_error(path, &e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| sql_error(path, &e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| sql_error(path, &e))?;
    check_readable(conn, path)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| sql_error(path, &e))?;
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(usize::MAX))
    {
        let to = i64::try_from(from).unwrap_or(i64::MAX) + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {to}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK;");
            sql_error(path, &e)
        })?;
    }
    Ok(())
}

/// Refuses damaged files and files from a newer version.
pub fn check_readable(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| sql_error(path, &e))?;
    if check != "ok" {
        return Err(JournalError::Corrupt {
            path: path.display().to_string(),
            detail: check,
        });
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| sql_error(path, &e))?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::NewerSchema {
            path: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}
