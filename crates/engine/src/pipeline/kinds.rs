//! Which kind each target's cluster is: as configured (`kind = "flex" | "dedicated"`), or, for
//! `kind = "auto"`, learnt from Atlas at its first listing (the Flex API refuses a dedicated
//! cluster with its own error code, and then the dedicated listing is the answer) and remembered
//! in the journal; and the one backups interface of a snapshot's cluster that the other steps
//! use. Nothing else in the pipeline asks which kind it talks to.
//! Must not: transfer anything.

use tracing::info;

use super::{ArchiveError, Archiver};
use crate::atlas::models::Snapshot;
use crate::atlas::{AtlasClient, ClusterBackups};
use crate::config::{ClusterOptions, KindChoice};
use crate::journal::{Journal, SnapshotKey};
use crate::target::{ClusterKind, Target};

/// Lists `target`'s snapshots on the API of its kind: configured, recorded in `journal`, or
/// found by trying the Flex listing first (and then recorded, when `record`; the dry run and
/// the preflight pass `false`). A recorded kind that Atlas refuses as the other kind is learnt
/// again. A kind learnt costs no extra request for a Flex cluster and one
/// refused request for a dedicated one, once.
pub async fn list_snapshots(
    atlas: &AtlasClient,
    journal: Option<&Journal>,
    target: &Target,
    choice: KindChoice,
    record: bool,
) -> Result<(ClusterKind, Vec<Snapshot>), ArchiveError> {
    let known = match choice {
        KindChoice::Known(kind) => Some(kind),
        KindChoice::Auto => match journal {
            Some(j) => j.target_kind(target).await?,
            None => None,
        },
    };
    let list = |kind: ClusterKind| async move {
        atlas
            .cluster(kind, &target.project_id, &target.cluster)
            .list_snapshots()
            .await
    };
    let first = known.unwrap_or(ClusterKind::Flex);
    let (kind, listed) = match list(first).await {
        Ok(listed) if known.is_some() => return Ok((first, listed)),
        Ok(listed) => (first, listed),
        // Learnt (or remembered: a cluster upgraded from Flex, a name reused) and refused by
        // Atlas as the other kind: learnt again. A configured kind is the operator's to fix.
        Err(e) => match e.actual_kind() {
            Some(actual) if actual != first && choice == KindChoice::Auto => {
                (actual, list(actual).await?)
            }
            _ => return Err(e.into()),
        },
    };
    info!(project = %target.project_id, cluster = %target.cluster, kind = kind.name(), "Atlas says what kind of cluster this is");
    if record && let Some(j) = journal {
        j.record_target_kind(target, kind).await?;
    }
    Ok((kind, listed))
}

impl Archiver {
    /// The options of a target: the config's, or those a discovery gave it
    /// ([`Archiver::add_discovered`]), else the defaults.
    pub(super) fn options(&self, target: &Target) -> ClusterOptions {
        if let Some(options) = self
            .discovered
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(target)
        {
            return options.clone();
        }
        ClusterOptions::of(&self.settings.clusters, target)
    }

    /// Makes a target found by a later discovery (the daemon's) known with its options.
    pub fn add_discovered(&self, target: Target, options: ClusterOptions) {
        self.discovered
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(target, options);
    }

    /// Lists a target's snapshots for this run, and keeps its cluster's kind for its snapshots.
    pub(super) async fn list_target(&self, target: &Target) -> Result<Vec<Snapshot>, ArchiveError> {
        let choice = self.options(target).kind;
        let (kind, listed) =
            list_snapshots(&self.atlas, Some(&self.journal), target, choice, true).await?;
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(target.clone(), kind);
        Ok(listed)
    }

    /// The backups of a snapshot's cluster, of the kind its target's listing found.
    pub(super) fn backups<'a>(
        &'a self,
        key: &'a SnapshotKey,
    ) -> Result<ClusterBackups<'a>, ArchiveError> {
        let kind = self
            .kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key.target())
            .copied()
            .ok_or_else(|| {
                ArchiveError::Internal(format!(
                    "the kind of cluster {}/{} was not resolved before its snapshots",
                    key.project_id, key.cluster
                ))
            })?;
        Ok(self.atlas.cluster(kind, &key.project_id, &key.cluster))
    }
}
