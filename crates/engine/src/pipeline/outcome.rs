//! What a run reports: each snapshot's outcome and each target's report (printed by `once
//! --json`, counted into the run's summary).
//! Must not: do I/O.

use serde::Serialize;

use crate::target::Target;

/// What happened to one snapshot in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SnapshotOutcome {
    /// Archived now.
    Archived {
        /// Snapshot id.
        snapshot_id: String,
        /// Object key.
        object_key: String,
        /// Size.
        size_bytes: u64,
        /// SHA-256.
        sha256: String,
        /// Tar entries the validation counted (absent when validation is off).
        #[serde(skip_serializing_if = "Option::is_none")]
        tar_entries: Option<u64>,
    },
    /// The bucket already held it (manifest and size match): recorded without a download.
    Adopted {
        /// Snapshot id.
        snapshot_id: String,
        /// Object key.
        object_key: String,
    },
    /// Archived in an earlier run.
    AlreadyArchived {
        /// Snapshot id.
        snapshot_id: String,
    },
    /// Archived earlier and since removed by the retention policy: not archived again.
    Pruned {
        /// Snapshot id.
        snapshot_id: String,
    },
    /// Failed; a later run tries again while Atlas holds it.
    Failed {
        /// Snapshot id.
        snapshot_id: String,
        /// Reason code.
        reason: String,
        /// Message.
        error: String,
    },
    /// Atlas no longer holds it and it was never archived.
    Lost {
        /// Snapshot id.
        snapshot_id: String,
    },
}

/// One target's run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target.
    pub target: Target,
    /// Per-snapshot outcomes.
    pub snapshots: Vec<SnapshotOutcome>,
    /// A target-level failure (listing failed), if any.
    pub error: Option<String>,
    /// Completed snapshots left for later runs (not failures): by `max_per_run`, or because
    /// another download held the cluster's download slot at Atlas.
    pub waiting: u64,
}

impl TargetReport {
    /// Whether every snapshot ended archived (now or before).
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
            && self.snapshots.iter().all(|s| {
                !matches!(
                    s,
                    SnapshotOutcome::Failed { .. } | SnapshotOutcome::Lost { .. }
                )
            })
    }
}
