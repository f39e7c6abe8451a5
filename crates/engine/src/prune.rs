//! `prune`: applies a target's retention policy to the archives its bucket holds. It works from
//! the bucket's manifests (the catalog of `list`), so it is right after a lost journal too. Each
//! removal is recorded in the journal first (`pruned`: never archived again), then the archive is
//! deleted, then its manifest; a prune cut short between any two of those is finished by the next
//! one (a catalog entry or a manifest without its archive whose journal row says `pruned`).
//! An archive (or manifest) whose Object Lock has not expired is kept and reported "locked until
//! …", never an error; with a lock configured, deleting removes every version of the key.
//! Must not: delete anything the policy keeps, anything locked, anything outside the catalog of
//! this target, or anything at all with `dry_run`.

use serde::Serialize;
use tracing::{error, info};

use crate::config::StorageConfig;
use crate::journal::{Journal, JournalError, SnapshotFacts, SnapshotKey, SnapshotState};
use crate::restore::{Catalog, CatalogEntry, CatalogError, ProblemKind};
use crate::retention::{Policy, apply};
use crate::store::{ObjectStore, StoreError};
use crate::target::Target;

/// The verdict on one archive.
#[derive(Debug, Clone, Serialize)]
pub struct PruneItem {
    /// Snapshot id.
    pub snapshot_id: String,
    /// Archive key.
    pub object_key: String,
    /// When the snapshot was taken (what the rules count by).
    pub taken_at: chrono::DateTime<chrono::Utc>,
    /// Its size.
    pub size_bytes: u64,
    /// `keep` or `remove`.
    pub action: Action,
    /// The rules that keep it.
    pub reasons: Vec<String>,
    /// What happened when it was to be removed (absent in a dry run, or when kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Keep or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The policy keeps it.
    Keep,
    /// The policy removes it.
    Remove,
}

/// One target's prune.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The target.
    pub target: Target,
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Every archive, newest first.
    pub archives: Vec<PruneItem>,
    /// Manifests left by a prune cut short, finished now (or that would be, in a dry run).
    pub finished: Vec<String>,
    /// Bytes the removals freed (or would free).
    pub bytes_reclaimed: u64,
}

impl PruneReport {
    /// Archives kept.
    pub fn kept(&self) -> usize {
        self.archives
            .iter()
            .filter(|a| a.action == Action::Keep)
            .count()
    }

    /// Archives removed (or to be removed).
    pub fn removed(&self) -> usize {
        self.archives.len() - self.kept()
    }

    /// Removals that failed.
    pub fn failures(&self) -> usize {
        self.archives.iter().filter(|a| a.error.is_some()).count()
    }
}

/// Why a prune could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Reading the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Applies `policy` to `target`'s archives; deletes what it removes unless `dry_run`.
pub async fn prune(
    store: &ObjectStore,
    storage: &StorageConfig,
    journal: &Journal,
    target: &Target,
    policy: &Policy,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let catalog = Catalog::read(store, storage, std::slice::from_ref(target)).await?;
    let entries: Vec<&CatalogEntry> = catalog.of(target).collect();
    // An archive the journal already records as pruned (same key) is the remainder of a prune
    // cut short: it is removed whatever the policy says now, and takes no place in the policy
    // (restic applies its rules to the snapshots that still exist).
    let mut pruned_before = std::collections::HashSet::new();
    // Snapshot id → key, of the same rows: a sharded snapshot's problem names a component.
    let mut pruned_ids = std::collections::HashMap::new();
    for row in journal.snapshots(Some(target.clone())).await? {
        if row.state == SnapshotState::Pruned
            && let Some(key) = row.object_key
        {
            pruned_ids.insert(row.snapshot_id, key.clone());
            pruned_before.insert(key);
        }
    }
    let live: Vec<&CatalogEntry> = entries
        .iter()
        .copied()
        .filter(|e| !pruned_before.contains(&e.manifest.object_key))
        .collect();
    let times: Vec<_> = live.iter().map(|e| e.taken_at()).collect();
    let mut verdicts: std::collections::HashMap<&str, crate::retention::Verdict> = live
        .iter()
        .map(|e| e.manifest.object_key.as_str())
        .zip(apply(policy, &times))
        .collect();
    let mut report = PruneReport {
        target: target.clone(),
        dry_run,
        archives: Vec::new(),
        finished: Vec::new(),
        bytes_reclaimed: 0,
    };
    for entry in &entries {
        let m = &entry.manifest;
        let verdict = verdicts.remove(m.object_key.as_str());
        let unfinished = verdict.is_none();
        let keep = verdict.as_ref().is_some_and(|v| v.keep);
        let mut item = PruneItem {
            snapshot_id: m.snapshot_id.clone(),
            object_key: m.object_key.clone(),
            taken_at: entry.taken_at(),
            size_bytes: m.size_bytes,
            action: if keep { Action::Keep } else { Action::Remove },
            reasons: if keep {
                verdict.map(|v| v.reasons).unwrap_or_default()
            } else if unfinished {
                vec!["pruned before (finishing)".into()]
            } else {
                Vec::new()
            },
            error: None,
        };
        if !keep {
            match remove(store, journal, target, entry, dry_run).await {
                Ok(Removal::Removed) => report.bytes_reclaimed += m.size_bytes,
                Ok(Removal::Locked(lock)) => {
                    info!(snapshot = %m.snapshot_id, lock = %lock, "prune: the policy removes this archive, but it is locked; kept");
                    item.action = Action::Keep;
                    item.reasons = vec![lock];
                }
                Err(e) => {
                    error!(snapshot = %m.snapshot_id, error = %e, "prune: cannot remove the archive");
                    item.error = Some(e.to_string());
                }
            }
        }
        report.archives.push(item);
    }
    // Manifests whose archive is gone and whose snapshot the journal says was pruned: a prune
    // cut short after the archive's deletion.
    for problem in catalog
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ManifestWithoutArchive)
    {
        let archive = match problem
            .snapshot_id
            .as_ref()
            .and_then(|id| pruned_ids.get(id))
        {
            Some(key) => key.clone(),
            None if pruned_before.contains(&problem.key) => problem.key.clone(),
            None => continue,
        };
        let manifest = crate::keys::manifest_key(&archive);
        let finished = async {
            // A sharded snapshot's prune may have stopped between two components: what its
            // manifest still names goes first.
            let named: Vec<String> = store
                .get_small(&manifest)
                .await?
                .and_then(|b| {
                    serde_json::from_slice::<crate::pipeline::manifest::Manifest>(&b).ok()
                })
                .filter(|m| m.is_sharded())
                .map(|m| m.objects().iter().map(|o| o.key.to_owned()).collect())
                .unwrap_or_default();
            for key in named.iter().chain(std::iter::once(&manifest)) {
                if let Some(lock) = lock_now(store, key).await? {
                    info!(key = %key, lock = %lock, "prune: part of a pruned archive is locked; it goes once the lock expires");
                    return Ok(false);
                }
            }
            if !dry_run {
                for key in &named {
                    if store.head(key).await?.is_some() {
                        delete(store, key).await?;
                    }
                }
                delete(store, &manifest).await?;
                info!(key = %manifest, "prune: finished removing the manifest of a pruned archive");
            }
            Ok::<_, StoreError>(true)
        };
        match finished.await {
            Ok(true) => report.finished.push(manifest),
            Ok(false) => {}
            Err(e) => {
                error!(key = %manifest, error = %e, "prune: cannot finish removing a manifest")
            }
        }
    }
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
enum RemoveError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of an archive the policy removes.
enum Removal {
    /// Removed (or, in a dry run, would be).
    Removed,
    /// Kept: the archive or its manifest is locked (how, in words).
    Locked(String),
}

/// The lock that forbids deleting `key` now, in words; `None` when it may go (or is gone).
async fn lock_now(store: &ObjectStore, key: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .head(key)
        .await?
        .map(|info| info.lock)
        .filter(|lock| lock.holds_at(chrono::Utc::now()))
        .map(|lock| lock.describe()))
}

/// Deletes one of our objects for good. With a lock configured the bucket is versioned, and a
/// plain DELETE would only hide the bytes behind a delete marker: every version goes. Without
/// one, a plain DELETE (a versioned bucket's lifecycle rule expires what it leaves).
async fn delete(store: &ObjectStore, key: &str) -> Result<(), StoreError> {
    if store.protection().object_lock.is_some() {
        store.delete_every_version(key).await
    } else {
        store.delete(key).await
    }
}

/// A lock on the archive or its manifest keeps it (never an error: it goes once the lock
/// expires). Otherwise journal first (the intent, and the promise never to archive it again),
/// then the archive, then the manifest. A dry run only looks at the locks.
async fn remove(
    store: &ObjectStore,
    journal: &Journal,
    target: &Target,
    entry: &CatalogEntry,
    dry_run: bool,
) -> Result<Removal, RemoveError> {
    let m = &entry.manifest;
    // The archive, or every component of a sharded cluster's snapshot, then the manifest.
    let objects: Vec<String> = m.objects().iter().map(|o| o.key.to_owned()).collect();
    for key in objects.iter().chain(std::iter::once(&entry.manifest_key)) {
        if let Some(lock) = lock_now(store, key).await? {
            return Ok(Removal::Locked(lock));
        }
    }
    if dry_run {
        return Ok(Removal::Removed);
    }
    let key = SnapshotKey::new(target, &m.snapshot_id);
    let facts = SnapshotFacts {
        scheduled_at: m.snapshot_scheduled_at,
        finished_at: m.snapshot_finished_at,
        mongodb_version: m.mongodb_version.clone(),
        expires_at: None,
    };
    journal
        .prune(
            &key,
            facts,
            m.archived_object(),
            "removed by the retention policy",
        )
        .await?;
    crate::fault::point("prune-recorded");
    for key in &objects {
        delete(store, key).await?;
        crate::fault::point("prune-archive-deleted");
    }
    delete(store, &entry.manifest_key).await?;
    info!(snapshot = %m.snapshot_id, key = %m.object_key, "pruned");
    Ok(Removal::Removed)
}
