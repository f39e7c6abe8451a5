//! The `upload_parts` table: each part the store accepted for an upload in flight, with the hash
//! state after it, so that an interrupted upload resumes where the store and the journal agree.
//! Must not: change a snapshot's state (that is `snapshots.rs`).

use rusqlite::params;
use serde::Serialize;

use super::{Journal, JournalError, SnapshotKey, query_all, sql_error};

impl Journal {
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
