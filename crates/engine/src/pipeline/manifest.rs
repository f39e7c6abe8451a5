//! The manifest written beside each archive (`{key}.manifest.json`): what the archive is, and the
//! checksums to verify it by, readable without atlas-archiver.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::validate::ContentFacts;
use crate::config::{Encryption, LockMode};
use crate::journal::ArchivedObject;

/// Identifies the manifest format.
pub const MANIFEST_FORMAT: &str = "atlas-archiver-manifest/1";

/// Contents of `{archive}.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Atlas project id.
    pub project_id: String,
    /// Flex cluster.
    pub cluster: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// Snapshot scheduled time.
    pub snapshot_scheduled_at: Option<DateTime<Utc>>,
    /// Snapshot finish time.
    pub snapshot_finished_at: Option<DateTime<Utc>>,
    /// MongoDB version of the cluster.
    pub mongodb_version: Option<String>,
    /// Key of the archive object.
    pub object_key: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the whole archive, hex.
    pub sha256: String,
    /// CRC32C (Castagnoli) of the whole archive, hex.
    pub crc32c: String,
    /// The Atlas download job that produced it.
    pub restore_job_id: Option<String>,
    /// What the content validation saw (absent in manifests written before it existed, or
    /// when `storage.validate_archives = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentFacts>,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// `atlas-archiver`.
    pub tool: String,
    /// Version of the tool.
    pub tool_version: String,
    /// The archive's storage class, when one was set (`GLACIER` and `DEEP_ARCHIVE` archives
    /// need a thaw before they can be read; the manifest itself is always in the default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The server-side encryption asked for (absent: the bucket's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ManifestEncryption>,
    /// The Object Lock on the archive and on this manifest (absent: not locked by us).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ManifestLock>,
    /// A sharded cluster's snapshot: one archive per replica set (the shards and the config
    /// server), each at its own key. The snapshot is then these files: `object_key` names the
    /// snapshot (no object is stored under it), `size_bytes` is their sum, `sha256` the SHA-256
    /// of their listing in `sha256sum` format (`<sha256>  <replica set>.tar.gz\n` each, in this
    /// order; [`components_digest`]), and `crc32c` is empty. Absent for a single archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ManifestComponent>,
}

/// One file of a sharded cluster's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestComponent {
    /// The shard's or the config server's replica set (`members[].replicaSetName`).
    pub replica_set: String,
    /// Key of its archive.
    pub object_key: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    /// CRC32C (Castagnoli) of the archive, hex.
    pub crc32c: String,
    /// What the content validation saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentFacts>,
}

/// The digest that stands for a sharded snapshot's files: the SHA-256 of their listing in
/// `sha256sum` format, so `sha256sum -c` on that listing checks every file.
pub fn components_digest(components: &[ManifestComponent]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for c in components {
        h.update(format!("{}  {}.tar.gz\n", c.sha256, c.replica_set));
    }
    hex::encode(h.finalize())
}

/// One object a manifest describes: its key and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject<'a> {
    /// Key.
    pub key: &'a str,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256, hex.
    pub sha256: &'a str,
    /// The replica set, for a sharded cluster's component.
    pub replica_set: Option<&'a str>,
}

/// How the archive is encrypted at rest, as far as reading it back needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEncryption {
    /// `AES256`, `aws:kms` or `SSE-C`.
    pub sse: String,
    /// The KMS key named in the config, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// MD5 (base64) of the SSE-C key: which key reads it back, without revealing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key_md5: Option<String>,
}

impl ManifestEncryption {
    /// What the manifest records for `encryption` (`None` for the bucket's default).
    pub fn of(encryption: &Encryption) -> Option<Self> {
        let sse = encryption.name()?.to_owned();
        Some(Self {
            sse,
            kms_key_id: match encryption {
                Encryption::Kms { key_id } => key_id.clone(),
                _ => None,
            },
            customer_key_md5: encryption.customer_key().map(|k| k.md5_base64().to_owned()),
        })
    }
}

/// The lock placed on an archive and its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLock {
    /// `governance` or `compliance`.
    pub mode: LockMode,
    /// Locked until.
    pub retain_until: DateTime<Utc>,
    /// Under a legal hold too.
    #[serde(default)]
    pub legal_hold: bool,
}

impl Manifest {
    /// The archive it describes, as the journal records an adopted one.
    pub fn archived_object(&self) -> ArchivedObject {
        ArchivedObject {
            object_key: self.object_key.clone(),
            size_bytes: self.size_bytes,
            sha256: self.sha256.clone(),
            crc32c: self.crc32c.clone(),
            restore_job_id: self.restore_job_id.clone(),
        }
    }

    /// Whether this is a sharded cluster's snapshot (several files).
    pub fn is_sharded(&self) -> bool {
        !self.components.is_empty()
    }

    /// The objects in the bucket that hold the snapshot: the archive, or every component.
    pub fn objects(&self) -> Vec<StoredObject<'_>> {
        if self.components.is_empty() {
            return vec![StoredObject {
                key: &self.object_key,
                size_bytes: self.size_bytes,
                sha256: &self.sha256,
                replica_set: None,
            }];
        }
        self.components
            .iter()
            .map(|c| StoredObject {
                key: &c.object_key,
                size_bytes: c.size_bytes,
                sha256: &c.sha256,
                replica_set: Some(&c.replica_set),
            })
            .collect()
    }

    /// Whether this manifest describes the given snapshot of the given target.
    pub fn describes(&self, project_id: &str, cluster: &str, snapshot_id: &str) -> bool {
        self.project_id == project_id && self.cluster == cluster && self.snapshot_id == snapshot_id
    }
}
