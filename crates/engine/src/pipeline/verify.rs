//! `verify`: re-reads archived objects, recomputes their SHA-256 and compares it with the
//! manifest and the journal; with `all`, also reports objects under the prefix that the journal
//! does not know and manifests whose archive is gone.

use std::collections::HashSet;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, StoredObject};
use crate::journal::{Journal, JournalError, SnapshotState};
use crate::keys::{MANIFEST_SUFFIX, manifest_key};
use crate::progress::{Board, Ticket};
use crate::store::{ObjectStore, StoreError};
use crate::target::Target;

/// The verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Bytes, manifest and journal agree.
    Ok,
    /// The journal says archived, the bucket has no such object.
    Missing,
    /// The archive exists but its manifest is gone or unreadable.
    ManifestMissing,
    /// Something disagrees (size or SHA-256, between object, manifest and journal).
    Mismatch,
    /// In the bucket but not in the journal (reported with `all`).
    Extra,
    /// In a cold storage class (`GLACIER`, `DEEP_ARCHIVE`) and not thawed: not read, only its
    /// size checked by HEAD. Not a problem; thaw it (`restore --thaw`) to verify its bytes.
    Cold,
}

impl Verdict {
    /// Whether the finding is a problem (exit 1).
    pub fn is_problem(&self) -> bool {
        !matches!(self, Self::Ok | Self::Cold)
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Object key.
    pub key: String,
    /// Snapshot id, when known.
    pub snapshot_id: Option<String>,
    /// Verdict.
    pub verdict: Verdict,
    /// Details.
    pub detail: String,
}

/// Verification failures that stop the command itself (not findings).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Listing the bucket.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies the archived snapshots of `targets` (all in the journal when empty).
pub async fn verify(
    store: &ObjectStore,
    journal: &Journal,
    prefix: &str,
    targets: &[Target],
    all: bool,
    progress: &Board,
) -> Result<Vec<Finding>, VerifyError> {
    let rows = journal.snapshots(None).await?;
    let selected = |project: &str, cluster: &str| crate::target::selects(targets, project, cluster);
    let mut findings = Vec::new();
    let mut known: HashSet<String> = HashSet::new();
    // Snapshots of sharded clusters: their manifests name no object of their own key.
    let mut sharded: HashSet<String> = HashSet::new();
    for row in rows
        .iter()
        .filter(|r| r.state == SnapshotState::Archived && selected(&r.project_id, &r.cluster))
    {
        let Some(key) = row.object_key.clone() else {
            continue;
        };
        known.insert(key.clone());
        let finding = |verdict: Verdict, detail: String| Finding {
            key: key.clone(),
            snapshot_id: Some(row.snapshot_id.clone()),
            verdict,
            detail,
        };
        let manifest: Option<Manifest> = store
            .get_small(&manifest_key(&key))
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(manifest) = manifest else {
            findings.push(if store.head(&key).await?.is_none() {
                finding(
                    Verdict::Missing,
                    "the journal says archived; the bucket has no such object".into(),
                )
            } else {
                finding(
                    Verdict::ManifestMissing,
                    format!("{} is missing or unreadable", manifest_key(&key)),
                )
            });
            continue;
        };
        if !manifest.describes(&row.project_id, &row.cluster, &row.snapshot_id) {
            findings.push(finding(
                Verdict::Mismatch,
                format!(
                    "the manifest describes snapshot {} of {}/{}",
                    manifest.snapshot_id, manifest.project_id, manifest.cluster
                ),
            ));
            continue;
        }
        if manifest.is_sharded() {
            sharded.insert(key.clone());
            if row.size_bytes != Some(manifest.size_bytes)
                || row.sha256.as_deref() != Some(manifest.sha256.as_str())
            {
                findings.push(finding(
                    Verdict::Mismatch,
                    format!(
                        "journal: {:?} bytes, sha256 {:?}; manifest: {} bytes, sha256 {}",
                        row.size_bytes, row.sha256, manifest.size_bytes, manifest.sha256
                    ),
                ));
            }
        }
        for object in manifest.objects() {
            known.insert(object.key.to_owned());
            // A single archive is also checked against the journal's record of it; a
            // component against its manifest entry (the journal records the snapshot).
            let journal =
                (!manifest.is_sharded()).then_some((row.size_bytes, row.sha256.as_deref()));
            let found = verify_object(store, &object, journal, progress).await?;
            findings.push(Finding {
                key: object.key.to_owned(),
                snapshot_id: Some(row.snapshot_id.clone()),
                verdict: found.0,
                detail: found.1,
            });
        }
    }
    if all {
        let listed = store.list_keys(prefix).await?;
        let keys: HashSet<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        // Archives the retention policy removed: a manifest left beside one is the trace of a
        // prune cut short between its two deletions.
        let pruned: HashSet<&str> = rows
            .iter()
            .filter(|r| r.state == SnapshotState::Pruned)
            .filter_map(|r| r.object_key.as_deref())
            .collect();
        for (key, _) in &listed {
            if let Some(archive) = key.strip_suffix(MANIFEST_SUFFIX) {
                if !keys.contains(archive) && !sharded.contains(archive) {
                    let detail = if pruned.contains(archive) {
                        "a manifest left by an interrupted prune (its archive was pruned): the next `prune` removes it"
                    } else {
                        "a manifest whose archive is gone"
                    };
                    findings.push(Finding {
                        key: key.clone(),
                        snapshot_id: None,
                        verdict: Verdict::Extra,
                        detail: detail.into(),
                    });
                }
            } else if !known.contains(key) {
                findings.push(Finding {
                    key: key.clone(),
                    snapshot_id: None,
                    verdict: Verdict::Extra,
                    detail: "in the bucket but not archived according to the journal (run `journal rebuild` if the journal was lost)".into(),
                });
            }
        }
    }
    Ok(findings)
}

/// One object a manifest names: HEAD, then (unless it is cold) a read of every byte, its size
/// and SHA-256 compared with the manifest's and, given `journal`, the journal's.
async fn verify_object(
    store: &ObjectStore,
    object: &StoredObject<'_>,
    journal: Option<(Option<u64>, Option<&str>)>,
    progress: &Board,
) -> Result<(Verdict, String), StoreError> {
    let key = object.key;
    let Some(head) = store.head(key).await? else {
        return Ok((
            Verdict::Missing,
            "the journal says archived; the bucket has no such object".into(),
        ));
    };
    let (journal_size, journal_sha) =
        journal.unwrap_or((Some(object.size_bytes), Some(object.sha256)));
    if head.thaw.blocks_reading() {
        let class = head.storage_class.as_deref().unwrap_or("an archive tier");
        return Ok(
            if head.size == object.size_bytes && Some(head.size) == journal_size {
                (
                    Verdict::Cold,
                    format!(
                        "in {class}, not read ({} bytes by HEAD): thaw it to verify its bytes (`atlas-archiver restore --thaw`, or `aws s3api restore-object`)",
                        head.size
                    ),
                )
            } else {
                (
                    Verdict::Mismatch,
                    format!(
                        "in {class}: HEAD says {} bytes, journal {journal_size:?}, manifest {}",
                        head.size, object.size_bytes
                    ),
                )
            },
        );
    }
    let ticket = progress.start(key.to_owned(), Some(head.size), 0);
    let (size, sha) = read_whole(store, key, &ticket).await?;
    drop(ticket);
    let mut problems = Vec::new();
    if size != head.size || Some(size) != journal_size || size != object.size_bytes {
        problems.push(format!(
            "size: read {size}, HEAD {}, journal {journal_size:?}, manifest {}",
            head.size, object.size_bytes
        ));
    }
    if Some(sha.as_str()) != journal_sha || sha != object.sha256 {
        problems.push(format!(
            "sha256: read {sha}, journal {journal_sha:?}, manifest {}",
            object.sha256
        ));
    }
    Ok(if problems.is_empty() {
        (Verdict::Ok, format!("{size} bytes, sha256 {sha}"))
    } else {
        (Verdict::Mismatch, problems.join("; "))
    })
}

async fn read_whole(
    store: &ObjectStore,
    key: &str,
    progress: &Ticket,
) -> Result<(u64, String), StoreError> {
    let mut hasher = Sha256::new();
    let size = store
        .read_chunks(key, |chunk| {
            hasher.update(chunk);
            progress.add(chunk.len() as u64);
        })
        .await?;
    Ok((size, hex::encode(hasher.finalize())))
}
