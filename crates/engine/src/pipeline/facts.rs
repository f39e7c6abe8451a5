//! What the journal knows of each target when the daemon starts, for the metrics an alert
//! needs from the first scrape: last success and last status, the newest archived snapshot (the
//! recovery point) and its size, LOST snapshots, and since when the target is looked after.
//! Must not: write anything.

use chrono::{DateTime, Utc};

use crate::journal::{Journal, JournalError, SnapshotState, TargetHistory};
use crate::reason::Reason;
use crate::target::Target;
use crate::telemetry::TargetFacts;

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The facts of each of `targets`, from `history` (the journal's `target_runs`) and its
/// snapshot rows; `started` stands in for a target that has never run.
pub async fn target_facts(
    journal: &Journal,
    history: &[TargetHistory],
    targets: &[Target],
    started: DateTime<Utc>,
) -> Result<Vec<(Target, TargetFacts)>, JournalError> {
    // One read of the journal for every target, not one per target.
    let all = journal.snapshots(None).await?;
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let runs = history.iter().find(|h| &h.target == target);
        let rows: Vec<_> = all
            .iter()
            .filter(|r| r.project_id == target.project_id && r.cluster == target.cluster)
            .collect();
        let newest = rows
            .iter()
            .filter(|r| r.state == SnapshotState::Archived)
            .filter_map(|r| r.taken_unix().map(|t| (t, r.size_bytes)))
            .reduce(|a, b| if b.0 > a.0 { b } else { a });
        let lost = rows
            .iter()
            .filter(|r| {
                r.state == SnapshotState::Failed
                    && Reason::SnapshotLost.is(r.last_reason.as_deref())
            })
            .count() as u64;
        out.push((
            target.clone(),
            TargetFacts {
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
        ));
    }
    Ok(out)
}
