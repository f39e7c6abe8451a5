//! What the journal knows of each target, read in one pass: for the metrics an alert needs
//! from the first scrape (last success and last status, the newest archived snapshot (the
//! recovery point) and its size, LOST snapshots, since when the target is looked after) and for
//! the status page (the archives held and their size, the recent failures and their reasons).
//! Must not: write anything.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::journal::{Journal, JournalError, SnapshotRecord, SnapshotState, TargetHistory};
use crate::target::Target;
use crate::telemetry::TargetFacts;

/// Failed snapshots a summary keeps, newest first.
const RECENT_FAILURES: usize = 5;

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// One target as the journal knows it.
#[derive(Debug, Clone)]
pub struct TargetSummary {
    /// The target.
    pub target: Target,
    /// Its `target_runs` row, when it has run.
    pub history: Option<TargetHistory>,
    /// What the metrics start from.
    pub facts: TargetFacts,
    /// Archives in the bucket (recorded as archived, not pruned).
    pub archives: u64,
    /// Their total size.
    pub archived_bytes: u64,
    /// Its snapshots that failed (LOST ones included), most recently changed first, at most
    /// [`RECENT_FAILURES`].
    pub recent_failures: Vec<SnapshotRecord>,
    /// How many of its snapshots are failed in all.
    pub failed: u64,
}

/// The summary of each of `targets`, from `history` (the journal's `target_runs`) and its
/// snapshot rows; `started` stands in for the first start of a target that has never run.
pub async fn target_summaries(
    journal: &Journal,
    history: &[TargetHistory],
    targets: &[Target],
    started: DateTime<Utc>,
) -> Result<Vec<TargetSummary>, JournalError> {
    // One read of the journal for every target, grouped once: the cost per target does not
    // grow with the number of targets.
    let mut rows: HashMap<Target, Vec<SnapshotRecord>> = HashMap::new();
    for r in journal.snapshots(None).await? {
        rows.entry(r.key().target()).or_default().push(r);
    }
    let runs: HashMap<&Target, &TargetHistory> = history.iter().map(|h| (&h.target, h)).collect();
    Ok(targets
        .iter()
        .map(|target| {
            summarize(
                target,
                runs.get(target).copied(),
                rows.remove(target).unwrap_or_default(),
                started,
            )
        })
        .collect())
}

fn summarize(
    target: &Target,
    runs: Option<&TargetHistory>,
    rows: Vec<SnapshotRecord>,
    started: DateTime<Utc>,
) -> TargetSummary {
    let archived: Vec<&SnapshotRecord> = rows
        .iter()
        .filter(|r| r.state == SnapshotState::Archived)
        .collect();
    let newest = archived
        .iter()
        .filter_map(|r| r.taken_unix().map(|t| (t, r.size_bytes)))
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    let mut failures: Vec<SnapshotRecord> = rows
        .iter()
        .filter(|r| r.state == SnapshotState::Failed)
        .cloned()
        .collect();
    let lost = failures.iter().filter(|r| r.is_lost()).count() as u64;
    let failed = failures.len() as u64;
    failures.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
    failures.truncate(RECENT_FAILURES);
    TargetSummary {
        target: target.clone(),
        history: runs.cloned(),
        facts: TargetFacts {
            last_success: runs.and_then(|h| h.last_success_at).map(unix),
            newest_archived: newest.map(|(t, _)| t),
            newest_archive_size: newest.and_then(|(_, size)| size),
            last_run_ok: runs
                .and_then(|h| h.last_status.as_deref())
                .map(|s| s == "ok"),
            lost,
            watched_since: unix(
                runs.and_then(|h| h.first_started_at.or(h.last_started_at))
                    .unwrap_or(started),
            ),
        },
        archives: archived.len() as u64,
        archived_bytes: archived.iter().filter_map(|r| r.size_bytes).sum(),
        recent_failures: failures,
        failed,
    }
}
