//! `once`: archive every target's new snapshots, print a summary, exit 0 or 1; `once --dry-run`:
//! what it would do.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use tracing::warn;

use super::Failure;
use super::progress::Display;
use atlas_archiver_engine::atlas::AtlasClient;
use atlas_archiver_engine::config::units::format_bytes;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::journal::Journal;
use atlas_archiver_engine::pipeline::plan::{self, PlannedAction};
use atlas_archiver_engine::pipeline::{
    Archiver, PipelineSettings, Shutdown, SnapshotOutcome, TargetReport,
};
use atlas_archiver_engine::store::ObjectStore;
use atlas_archiver_engine::target::Target;
use atlas_archiver_engine::telemetry::Metrics;

pub(super) async fn run(
    path: &Path,
    env: &HashMap<String, String>,
    target_args: &[String],
    json: bool,
    prune: bool,
    display: Option<&Display>,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    let (config, resolved) = super::targets::resolve(config).await?;
    let targets = select_targets(&config, target_args)?;
    if prune && targets.iter().all(|t| config.retention_for(t).is_none()) {
        return Err(Failure::Usage(format!(
            "--prune: config file {} has no [retention] table and no target with `retention = {{ … }}`",
            config.source.display()
        )));
    }
    let shutdown = Shutdown::default();
    spawn_signal_handler(shutdown.clone());
    let reports = execute(&config, &targets, "once", shutdown, display).await?;
    // Only a target whose every snapshot archived and verified is pruned: never after a
    // failure, when the newest archive may not be the one the policy expects.
    if !json || !prune {
        // The run's report first: a prune that cannot run must not hide it.
        if json {
            outln!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            print_reports(&reports);
        }
    }
    let mut pruned_ok = true;
    if prune {
        let pruned = prune_clean(&config, &reports).await;
        pruned_ok = super::prune::exit_code(&pruned) == ExitCode::SUCCESS;
        if json {
            let text = serde_json::json!({"runs": reports, "prunes": pruned.reports});
            outln!("{}", serde_json::to_string_pretty(&text)?);
        } else {
            outln!();
            super::prune::print_reports(&pruned.reports);
        }
    }
    Ok(
        if reports.iter().all(TargetReport::succeeded) && pruned_ok && resolved.failures.is_empty()
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// `once --dry-run`: what a run would do with each listed snapshot, from Atlas's listing and the
/// journal (read only, if there is one); with `--prune`, what the policy would remove from the
/// bucket as it is now. Nothing is downloaded or written.
pub(super) async fn dry_run(
    path: &Path,
    env: &HashMap<String, String>,
    target_args: &[String],
    json: bool,
    prune: bool,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    let (config, _) = super::targets::resolve(config).await?;
    let targets = select_targets(&config, target_args)?;
    let atlas = AtlasClient::new(&config.atlas)?;
    let journal = if config.journal.path.exists() {
        Some(Journal::open_read_only(&config.journal.path)?)
    } else {
        None
    };
    let mut plans = Vec::new();
    for target in &targets {
        let options = config.cluster_options(target);
        plans.push(plan::plan(&atlas, journal.as_ref(), target, &options).await);
    }
    let pruned = if prune {
        let store = ObjectStore::connect(&config.storage).await;
        Some(super::prune::prune_targets(&config, &store, &targets, true).await?)
    } else {
        None
    };
    if json {
        let prunes = pruned.as_ref().map(|p| &p.reports);
        let text = serde_json::json!({"dry_run": true, "plans": plans, "prunes": prunes});
        outln!("{}", serde_json::to_string_pretty(&text)?);
    } else {
        for p in &plans {
            outln!("{} (dry run: nothing downloaded or written)", p.target);
            if let Some(e) = &p.error {
                outln!("  FAILED: {e}");
            }
            for s in &p.snapshots {
                let action = match s.action {
                    PlannedAction::Archive => "archive",
                    PlannedAction::Resume => "resume",
                    PlannedAction::AlreadyArchived => "archived",
                    PlannedAction::Pruned => "pruned",
                    PlannedAction::NotCompleted => "waiting",
                    PlannedAction::Skipped => "skipped",
                    PlannedAction::Deferred => "deferred (max_per_run)",
                };
                let finished = s.finished_at.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                );
                outln!(
                    "  {action:<9} {}  {:<10} {finished}",
                    s.snapshot_id,
                    s.status
                );
            }
            outln!("  {} to download", p.to_archive());
        }
        if let Some(pruned) = &pruned {
            outln!();
            super::prune::print_reports(&pruned.reports);
        }
    }
    let failed = plans.iter().any(|p| p.error.is_some())
        || pruned.is_some_and(|p| super::prune::exit_code(&p) != ExitCode::SUCCESS);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--prune`: only a target whose every snapshot archived and verified is pruned, never one
/// whose run failed (its newest archive may not be the one the policy expects). A prune that
/// cannot run is reported and counted, never hides the run's report.
async fn prune_clean(config: &Config, reports: &[TargetReport]) -> super::prune::Pruned {
    let clean: Vec<Target> = reports
        .iter()
        .filter(|r| r.succeeded())
        .map(|r| r.target.clone())
        .collect();
    if clean.is_empty() {
        return super::prune::Pruned {
            reports: Vec::new(),
            failed_targets: 0,
        };
    }
    let result = match super::connect_store(config).await {
        Ok(store) => super::prune::prune_targets(config, &store, &clean, false).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        eprintln!(
            "{}",
            atlas_archiver_engine::telemetry::error_line(&format!("error: prune not run: {e}"))
        );
        super::prune::Pruned {
            reports: Vec::new(),
            failed_targets: clean.len(),
        }
    })
}

/// `--target` values must name configured targets. A target named twice runs once: two
/// pipelines on the same journal rows would race each other (audit L19).
pub(super) fn select_targets(config: &Config, args: &[String]) -> Result<Vec<Target>, Failure> {
    if args.is_empty() {
        return Ok(config.targets.clone());
    }
    let mut selected: Vec<Target> = Vec::new();
    for t in args.iter().map(|a| {
        let t = Target::parse(a).map_err(|m| Failure::Usage(format!("--target: {m}")))?;
        if config.targets.contains(&t) {
            Ok(t)
        } else {
            Err(Failure::Usage(format!(
                "--target {t} is not in {}; configured targets: {}",
                config.source.display(),
                config
                    .targets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }) {
        let t = t?;
        if !selected.contains(&t) {
            selected.push(t);
        }
    }
    Ok(selected)
}

/// Opens the journal, connects to Atlas and the store, and runs the pipeline over `targets`.
/// Shared by `once` and `demo`.
pub(super) async fn execute(
    config: &Config,
    targets: &[Target],
    kind: &str,
    shutdown: Shutdown,
    display: Option<&Display>,
) -> Result<Vec<TargetReport>, Failure> {
    let journal = Journal::open(&config.journal.path)?;
    let atlas = AtlasClient::new(&config.atlas)?;
    let store = super::connect_store(config).await?;
    store.settle_checksum(&config.storage).await;
    let archiver = Archiver::new(
        atlas,
        store,
        journal,
        PipelineSettings::from_config(config),
        shutdown,
        Metrics::default(),
    )?;
    archiver.abort_orphan_uploads().await?;
    let _watch = display.map(|d| d.watch(archiver.progress().clone()));
    archiver
        .run(kind, targets)
        .await
        .map_err(|e| Failure::Runtime(format!("run aborted: {e}")))
}

/// SIGINT/SIGTERM: stop at once, cleanly (uploads aborted, journal rows resumable).
pub(super) fn spawn_signal_handler(shutdown: Shutdown) {
    tokio::spawn(async move {
        wait_for_signal().await;
        warn!("signal received: stopping; transfers in flight are aborted cleanly");
        shutdown.now();
    });
}

/// Resolves on SIGTERM or SIGINT.
pub(super) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) fn print_reports(reports: &[TargetReport]) {
    for r in reports {
        outln!("{}", r.target);
        if let Some(e) = &r.error {
            outln!("  FAILED: {e}");
        }
        for s in &r.snapshots {
            match s {
                SnapshotOutcome::Archived {
                    snapshot_id,
                    object_key,
                    size_bytes,
                    sha256,
                    tar_entries,
                } => {
                    let checked = tar_entries
                        .map(|n| format!("  valid tar.gz, {n} entries"))
                        .unwrap_or_default();
                    outln!(
                        "  archived  {snapshot_id}  {:>10}  sha256 {sha256}{checked}  -> {object_key}",
                        format_bytes(*size_bytes)
                    );
                }
                SnapshotOutcome::Adopted {
                    snapshot_id,
                    object_key,
                } => {
                    outln!("  adopted   {snapshot_id}  already in the bucket at {object_key}");
                }
                SnapshotOutcome::AlreadyArchived { snapshot_id } => {
                    outln!("  ok        {snapshot_id}  archived earlier");
                }
                SnapshotOutcome::Pruned { snapshot_id } => {
                    outln!(
                        "  pruned    {snapshot_id}  archived earlier, since removed by the retention policy"
                    );
                }
                SnapshotOutcome::Failed {
                    snapshot_id,
                    reason,
                    error,
                } => {
                    outln!("  FAILED    {snapshot_id}  {reason}: {error}");
                }
                SnapshotOutcome::Lost { snapshot_id } => {
                    outln!(
                        "  LOST      {snapshot_id}  Atlas no longer holds it and it was never archived"
                    );
                }
            }
        }
        if r.waiting > 0 {
            outln!(
                "  waiting   {} more snapshots, left for later runs (max_per_run, or Atlas's download slot for the cluster was taken; newest first)",
                r.waiting
            );
        }
        if r.snapshots.is_empty() && r.error.is_none() && r.waiting == 0 {
            outln!("  no completed snapshots listed");
        }
    }
}
