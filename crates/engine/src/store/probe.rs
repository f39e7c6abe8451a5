//! Whether the store verifies a full-object CRC32C, asked once at the start of an archiving
//! command when `storage.checksum = "auto"` meets a custom endpoint: a multipart upload with a
//! full-object CRC32C, one part with its right checksum (which must be accepted) and one with a
//! wrong one (which a verifying store refuses), then aborted. When the store verifies, uploads
//! carry CRC32C and, with it, unsigned payloads: the store checks every part, and the client
//! hashes nothing for SigV4 (issue 15's cheap path). When it does not, nothing changes: SigV4's
//! payload hash stays the per-part integrity, so no check is lost either way.
//! Must not: touch any key but its own probe's, or leave its upload open.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::{info, warn};

use super::codes::CodeKind;
use super::multipart::MultipartUpload;
use super::{ObjectStore, StoreError};

/// Tries of the probe's own abort.
const ABORT_TRIES: u32 = 3;

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc32cSupport {
    /// The store refused a part whose CRC32C is wrong: it verifies.
    Verified,
    /// The store refused the checksum headers.
    Refused,
    /// The store accepted a wrong CRC32C: it ignores the checksum.
    Ignored,
}

impl ObjectStore {
    /// For an archiving command's start: when the config leaves the checksum to the store
    /// (`checksum = "auto"` with a custom endpoint), asks it. A store that cannot be asked keeps
    /// SigV4's payload hashes, and says so; nothing fails for it.
    pub async fn settle_checksum(&self, config: &crate::config::StorageConfig) {
        if !config.probe_checksum {
            return;
        }
        if let Err(e) = self.probe_crc32c(&config.prefix).await {
            warn!(error = %e, "cannot ask the store whether it verifies CRC32C; parts keep SigV4's payload hash (set storage.checksum = \"crc32c\" or \"none\" to skip this probe)");
        }
    }

    /// Asks the store whether it verifies a full-object CRC32C (under `prefix`, a key of our
    /// own), and turns CRC32C on for this process when it does.
    pub async fn probe_crc32c(&self, prefix: &str) -> Result<Crc32cSupport, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let probes = format!("{prefix}.atlas-archiver-probe/");
        self.sweep_probes(&probes).await;
        let key = format!("{probes}checksum-{nanos:x}-{}", std::process::id());
        let created = MultipartUpload::create(
            self.client.clone(),
            &self.bucket,
            &key,
            "application/octet-stream",
            true,
            &self.protection,
            None,
        )
        .await;
        let upload = match created {
            Ok(u) => u.on_tls(self.tls),
            Err(e) if e.is_checksum_refusal() => return Ok(self.decide(Crc32cSupport::Refused)),
            Err(e) => return Err(e),
        };
        let verdict = probe_parts(&upload).await;
        let mut tries = 0;
        while let Err(e) = upload.abort().await {
            tries += 1;
            if tries == ABORT_TRIES {
                warn!(key = %key, error = %e, "cannot abort the checksum probe's upload; the next probe aborts it (or a lifecycle rule that aborts incomplete uploads)");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250 << tries)).await;
        }
        Ok(self.decide(verdict?))
    }

    /// Aborts probe uploads an earlier probe could not (under `probes`, a namespace only
    /// probes use: no archive is ever there). Best effort: a store that cannot list uploads
    /// keeps them until a lifecycle rule removes them.
    async fn sweep_probes(&self, probes: &str) {
        let Ok(left) = self.list_multipart_uploads(probes).await else {
            return;
        };
        for (key, upload_id) in left.into_iter().filter(|(k, _)| k.starts_with(probes)) {
            match self.abort_multipart(&key, &upload_id).await {
                Ok(()) => info!(key = %key, "aborted an earlier checksum probe's upload"),
                Err(e) => {
                    warn!(key = %key, error = %e, "cannot abort an earlier checksum probe's upload")
                }
            }
        }
    }

    fn decide(&self, support: Crc32cSupport) -> Crc32cSupport {
        if support == Crc32cSupport::Verified {
            self.crc32c.store(true, Ordering::Relaxed);
            info!(
                "the store verifies CRC32C: uploads carry a full-object CRC32C and unsigned payloads"
            );
        } else {
            info!(
                found = ?support,
                "the store does not verify CRC32C: parts keep SigV4's payload hash as their integrity check"
            );
        }
        support
    }
}

async fn probe_parts(upload: &MultipartUpload) -> Result<Crc32cSupport, StoreError> {
    let part = Bytes::from_static(b"atlas-archiver checksum probe");
    let right = crc32c::crc32c(&part);
    match upload.upload_part(1, part.clone(), right).await {
        Ok(_) => {}
        Err(e) if e.is_checksum_refusal() => return Ok(Crc32cSupport::Refused),
        Err(e) => return Err(e),
    }
    match upload.upload_part(2, part, right ^ 0x5a5a_5a5a).await {
        Ok(_) => Ok(Crc32cSupport::Ignored),
        Err(e)
            if matches!(
                e.code_kind(),
                Some(CodeKind::DigestMismatch | CodeKind::ChecksumRefused)
            ) =>
        {
            Ok(Crc32cSupport::Verified)
        }
        Err(e) => Err(e),
    }
}
