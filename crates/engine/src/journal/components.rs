//! A sharded cluster's snapshot is one file per replica set (its components): the table
//! `snapshot_components` records, for each, the upload in flight (intent before
//! CreateMultipartUpload, its id after) and, once the object is complete and confirmed, its
//! size and hashes. The snapshot's own row stays the unit of the state machine
//! (`transitions.rs`); a component never resumes (its URL is one-time), so an upload recorded
//! here is aborted, not continued, by whoever finds it.
//! Must not: touch `snapshots` (the snapshot's state is `transitions.rs`'s).

use rusqlite::params;

use super::{Journal, JournalError, SnapshotKey, int, now, query_all, sql_error};

/// One component as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRecord {
    /// The shard's or config server's replica set.
    pub replica_set: String,
    /// Its object's key.
    pub object_key: String,
    /// The multipart upload in flight, if any.
    pub upload_id: Option<String>,
    /// Set once the object is complete and HEAD confirmed it.
    pub done: Option<ComponentDone>,
}

/// A component archived: its object's size and hashes, and what its validation saw (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDone {
    /// Bytes.
    pub size_bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// CRC32C, hex.
    pub crc32c: String,
    /// The validation's facts, as the manifest writes them.
    pub content: Option<String>,
}

impl Journal {
    /// Records the intent to create a component's upload (no id yet) or, with `upload_id`, the
    /// upload created; either forgets what the component held before.
    pub async fn component_upload(
        &self,
        key: &SnapshotKey,
        replica_set: &str,
        object_key: &str,
        upload_id: Option<&str>,
    ) -> Result<(), JournalError> {
        let (key, rs, object, upload) = (
            key.clone(),
            replica_set.to_owned(),
            object_key.to_owned(),
            upload_id.map(str::to_owned),
        );
        self.with(move |c, p| {
            c.execute(
                "INSERT OR REPLACE INTO snapshot_components
                   (project_id, cluster, snapshot_id, replica_set, object_key, upload_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key.project_id, key.cluster, key.snapshot_id, rs, object, upload, now()],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// A component's object is complete and confirmed: its upload is spent.
    pub async fn component_done(
        &self,
        key: &SnapshotKey,
        replica_set: &str,
        done: ComponentDone,
    ) -> Result<(), JournalError> {
        let (key, rs) = (key.clone(), replica_set.to_owned());
        self.with(move |c, p| {
            c.execute(
                "UPDATE snapshot_components SET upload_id = NULL, size_bytes = ?5, sha256 = ?6,
                   crc32c = ?7, content = ?8, updated_at = ?9
                 WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3 AND replica_set = ?4",
                params![
                    key.project_id,
                    key.cluster,
                    key.snapshot_id,
                    rs,
                    int(done.size_bytes),
                    done.sha256,
                    done.crc32c,
                    done.content,
                    now()
                ],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// A snapshot's components, by replica set name.
    pub async fn components(
        &self,
        key: &SnapshotKey,
    ) -> Result<Vec<ComponentRecord>, JournalError> {
        let key = key.clone();
        self.with(move |c, p| {
            query_all(
                c,
                p,
                "SELECT replica_set, object_key, upload_id, size_bytes, sha256, crc32c, content
                 FROM snapshot_components WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3
                 ORDER BY replica_set",
                params![key.project_id, key.cluster, key.snapshot_id],
                |r| {
                    let size: Option<i64> = r.get(3)?;
                    let sha256: Option<String> = r.get(4)?;
                    let crc32c: Option<String> = r.get(5)?;
                    let done = match (size, sha256, crc32c) {
                        (Some(size), Some(sha256), Some(crc32c)) => Some(ComponentDone {
                            size_bytes: u64::try_from(size).unwrap_or_default(),
                            sha256,
                            crc32c,
                            content: r.get(6)?,
                        }),
                        _ => None,
                    };
                    Ok(ComponentRecord {
                        replica_set: r.get(0)?,
                        object_key: r.get(1)?,
                        upload_id: r.get(2)?,
                        done,
                    })
                },
            )
        })
        .await
    }

    /// Forgets a snapshot's components (their objects were deleted, or the snapshot archived
    /// under its manifest, which names them from then on).
    pub async fn forget_components(&self, key: &SnapshotKey) -> Result<(), JournalError> {
        let key = key.clone();
        self.with(move |c, p| {
            c.execute(
                "DELETE FROM snapshot_components WHERE project_id = ?1 AND cluster = ?2 AND snapshot_id = ?3",
                params![key.project_id, key.cluster, key.snapshot_id],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// Every component upload in flight, and every component key whose upload was intended but
    /// not recorded, for the start-up cleanup: `(object_key, upload_id)`.
    pub async fn component_uploads(&self) -> Result<Vec<(String, Option<String>)>, JournalError> {
        self.with(|c, p| {
            query_all(
                c,
                p,
                "SELECT object_key, upload_id FROM snapshot_components WHERE size_bytes IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
    }
}
