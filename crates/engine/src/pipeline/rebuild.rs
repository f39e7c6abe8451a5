//! `journal rebuild`: recovers the archived state from the manifests in the bucket, for when the
//! journal was lost or damaged. Only snapshots whose manifest and archive (with the manifest's
//! size; for a sharded cluster's snapshot, every component) are present are recorded as
//! archived; everything else is left to the next run.

use tracing::warn;

use super::manifest::Manifest;
use crate::journal::{Journal, JournalError, SnapshotFacts, SnapshotKey, SnapshotState};
use crate::keys::MANIFEST_SUFFIX;
use crate::store::{ObjectStore, StoreError};

/// What a rebuild found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Snapshots recorded as archived.
    pub recovered: usize,
    /// Manifests skipped (unreadable, archive missing or of another size).
    pub skipped: usize,
}

/// Rebuild failures.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The bucket.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records every verifiable manifest under `prefix` as an archived snapshot in `journal`.
pub async fn rebuild(
    store: &ObjectStore,
    journal: &Journal,
    prefix: &str,
) -> Result<RebuildReport, RebuildError> {
    let mut report = RebuildReport::default();
    for (key, _) in store.list_keys(prefix).await? {
        let Some(archive) = key.strip_suffix(MANIFEST_SUFFIX) else {
            continue;
        };
        let manifest: Option<Manifest> = store
            .get_small(&key)
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(m) = manifest else {
            warn!(key = %key, "unreadable manifest; skipped");
            report.skipped += 1;
            continue;
        };
        // Every object it names (the archive, or each component of a sharded cluster's
        // snapshot) must be there with the manifest's size.
        let mut whole = m.object_key == archive;
        for object in m.objects() {
            if !whole {
                break;
            }
            whole = store
                .head(object.key)
                .await?
                .is_some_and(|h| h.size == object.size_bytes);
        }
        if !whole {
            warn!(key = %archive, "archive missing or not the manifest's size; skipped (the next run archives it again if Atlas still holds it)");
            report.skipped += 1;
            continue;
        }
        let snapshot = SnapshotKey {
            project_id: m.project_id.clone(),
            cluster: m.cluster.clone(),
            snapshot_id: m.snapshot_id.clone(),
        };
        let facts = SnapshotFacts {
            scheduled_at: m.snapshot_scheduled_at,
            finished_at: m.snapshot_finished_at,
            mongodb_version: m.mongodb_version.clone(),
            expires_at: None,
        };
        let row = journal.discover(snapshot.clone(), facts).await?;
        if row.state == SnapshotState::Archived {
            continue;
        }
        journal
            .adopt(
                &snapshot,
                m.archived_object(),
                "rebuilt from the manifest in the bucket",
            )
            .await?;
        report.recovered += 1;
    }
    Ok(report)
}
