//! `status`: what the journal knows, per target.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::Failure;
use atlas_archiver_engine::config::units::format_bytes;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::journal::{Journal, RunRecord, SnapshotRecord};
use atlas_archiver_engine::target::Target;

#[derive(Serialize)]
struct TargetStatus {
    project_id: String,
    cluster: String,
    snapshots: Vec<SnapshotRecord>,
}

#[derive(Serialize)]
struct StatusReport {
    journal: String,
    targets: Vec<TargetStatus>,
    recent_runs: Vec<RunRecord>,
}

pub(super) async fn run(
    path: &Path,
    env: &HashMap<String, String>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Skip)?;
    let journal = Journal::open_read_only(&config.journal.path)?;
    let all = journal.snapshots(None).await?;
    let mut targets: Vec<Target> = config.targets.clone();
    // Targets removed from the config still show, so that nothing archived is hidden.
    for r in &all {
        let t = Target {
            project_id: r.project_id.clone(),
            cluster: r.cluster.clone(),
        };
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let report = StatusReport {
        journal: config.journal.path.display().to_string(),
        targets: targets
            .into_iter()
            .map(|t| TargetStatus {
                snapshots: all
                    .iter()
                    .filter(|r| r.project_id == t.project_id && r.cluster == t.cluster)
                    .cloned()
                    .collect(),
                project_id: t.project_id,
                cluster: t.cluster,
            })
            .collect(),
        recent_runs: journal.recent_runs(5).await?,
    };
    if json {
        let text = serde_json::to_string_pretty(&report)?;
        outln!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    outln!("journal: {}", report.journal);
    for t in &report.targets {
        outln!("\n{}/{}", t.project_id, t.cluster);
        if t.snapshots.is_empty() {
            outln!("  (nothing recorded yet)");
        }
        for s in &t.snapshots {
            outln!(
                "  {:<24} {:<18} {:>10}  {}  {}",
                s.snapshot_id,
                s.state.as_str(),
                s.size_bytes.map(format_bytes).unwrap_or_default(),
                s.sha256.as_deref().unwrap_or("-"),
                s.object_key.as_deref().unwrap_or("-"),
            );
            if let Some(e) = &s.last_error
                && s.state != atlas_archiver_engine::journal::SnapshotState::Archived
            {
                outln!("      last error ({} attempts): {e}", s.attempts);
            }
        }
    }
    if let Some(last) = report.recent_runs.first() {
        outln!(
            "\nlast run #{} ({}) started {}: {} (archived {}, already archived {}, failed {})",
            last.id,
            last.kind,
            last.started_at,
            last.status,
            last.archived,
            last.skipped,
            last.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}
