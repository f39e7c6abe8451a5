//! `once --dry-run`: what a run would do with each snapshot Atlas lists, from the listing and the
//! journal alone, through the same filter as the run ([`super::run::Listed`]).
//! Must not: request a download, or write the journal or the bucket.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::run::{Listed, in_scope};
use crate::atlas::AtlasClient;
use crate::config::ClusterOptions;
use crate::journal::{Journal, SnapshotKey, SnapshotState};
use crate::target::Target;

/// What a run would do with one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedAction {
    /// Download and archive it (or adopt it, if the bucket already holds it with its manifest).
    Archive,
    /// Go on with the upload an earlier attempt left (resumed where the store and the journal
    /// agree, else started over).
    Resume,
    /// Nothing: already archived.
    AlreadyArchived,
    /// Nothing: the retention policy removed it; it is never archived again.
    Pruned,
    /// Nothing yet: not completed; a later run takes it.
    NotCompleted,
    /// Nothing: an id or a status this version does not take.
    Skipped,
    /// Nothing this run: beyond the target's `max_per_run`; a later run takes it.
    Deferred,
}

/// One snapshot of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Snapshot id, as listed.
    pub snapshot_id: String,
    /// Atlas's status.
    pub status: String,
    /// When it finished, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// What a run would do.
    pub action: PlannedAction,
}

/// One target's plan.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPlan {
    /// The target.
    pub target: Target,
    /// Every listed snapshot.
    pub snapshots: Vec<Planned>,
    /// Why the plan is incomplete (the listing or the journal failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetPlan {
    /// Snapshots a run would download (archive or resume).
    pub fn to_archive(&self) -> usize {
        self.snapshots
            .iter()
            .filter(|s| matches!(s.action, PlannedAction::Archive | PlannedAction::Resume))
            .count()
    }
}

/// The plan for `target`: its listing, each snapshot judged as a run would judge it. `journal`
/// is `None` when there is none yet (every completed snapshot is then to archive).
pub async fn plan(
    atlas: &AtlasClient,
    journal: Option<&Journal>,
    target: &Target,
    options: &ClusterOptions,
) -> TargetPlan {
    let mut plan = TargetPlan {
        target: target.clone(),
        snapshots: Vec::new(),
        error: None,
    };
    let listed =
        match super::kinds::list_snapshots(atlas, journal, target, options.kind, false).await {
            Ok((_, l)) => l,
            Err(e) => {
                plan.error = Some(e.to_string());
                return plan;
            }
        };
    let mut downloads = 0u32;
    for snapshot in in_scope(&listed, options, Utc::now()) {
        let status = snapshot.status.clone().unwrap_or_default();
        let (id, action) = match Listed::of(snapshot, options) {
            Listed::NoId => continue,
            Listed::BadId(id) | Listed::UnknownStatus { id, .. } | Listed::OtherType { id, .. } => {
                (id, PlannedAction::Skipped)
            }
            Listed::NotCompleted { id, .. } => (id, PlannedAction::NotCompleted),
            Listed::Completed(id) => {
                let row = match journal {
                    Some(j) => match j.get(&SnapshotKey::new(target, &id)).await {
                        Ok(row) => row,
                        Err(e) => {
                            plan.error = Some(e.to_string());
                            return plan;
                        }
                    },
                    None => None,
                };
                let action = match row {
                    Some(r) if r.state == SnapshotState::Archived => PlannedAction::AlreadyArchived,
                    Some(r) if r.state == SnapshotState::Pruned => PlannedAction::Pruned,
                    _ if options.max_per_run.is_some_and(|max| downloads >= max) => {
                        PlannedAction::Deferred
                    }
                    Some(r) if r.upload_id.is_some() => PlannedAction::Resume,
                    _ => PlannedAction::Archive,
                };
                if matches!(action, PlannedAction::Archive | PlannedAction::Resume) {
                    downloads += 1;
                }
                (id, action)
            }
        };
        plan.snapshots.push(Planned {
            snapshot_id: id,
            status,
            finished_at: snapshot.finish_time,
            action,
        });
    }
    plan
}
