//! `prune` (and `once --prune`): each target's retention policy applied to its archives in the
//! bucket; a table (or JSON) of every archive with keep/remove and the rules that keep it.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use super::Failure;
use super::once::select_targets;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::journal::Journal;
use atlas_archiver_engine::prune::{Action, PruneReport, prune};
use atlas_archiver_engine::store::ObjectStore;
use atlas_archiver_engine::target::Target;

/// `prune`.
pub(super) async fn run(
    path: &Path,
    env: &HashMap<String, String>,
    target_args: &[String],
    dry_run: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::StorageOnly)?;
    let targets = select_targets(&config, target_args)?;
    if targets.iter().all(|t| config.retention_for(t).is_none()) {
        return Err(Failure::Usage(format!(
            "config file {}: no [retention] table and no target with `retention = {{ … }}`: nothing may be pruned (see README \"Retention\")",
            config.source.display()
        )));
    }
    let store = ObjectStore::connect(&config.storage).await;
    let pruned = prune_targets(&config, &store, &targets, dry_run).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&pruned.reports)?);
    } else {
        print_reports(&pruned.reports);
    }
    Ok(exit_code(&pruned))
}

/// What the prunes of several targets came to: a report per target that could be pruned, and
/// how many could not be (each logged at `error`; the others still ran).
pub(super) struct Pruned {
    pub reports: Vec<PruneReport>,
    pub failed_targets: usize,
}

/// Prunes each of `targets` that has a policy; the others keep everything. A target whose
/// prune cannot run does not stop the others'.
pub(super) async fn prune_targets(
    config: &Config,
    store: &ObjectStore,
    targets: &[Target],
    dry_run: bool,
) -> Result<Pruned, Failure> {
    // A dry run writes nothing, the journal included: it reads the journal there is, or an
    // empty one of its own when there is none yet.
    let scratch;
    let journal = if !dry_run {
        Journal::open(&config.journal.path)?
    } else if config.journal.path.exists() {
        Journal::open_read_only(&config.journal.path)?
    } else {
        scratch = tempfile::tempdir()
            .map_err(|e| Failure::Runtime(format!("cannot create a scratch directory: {e}")))?;
        Journal::open(&scratch.path().join("journal.sqlite"))?
    };
    let mut pruned = Pruned {
        reports: Vec::new(),
        failed_targets: 0,
    };
    for target in targets {
        let Some(policy) = config.retention_for(target) else {
            continue;
        };
        match prune(store, &config.storage, &journal, target, policy, dry_run).await {
            Ok(report) => pruned.reports.push(report),
            Err(e) => {
                tracing::error!(project = %target.project_id, cluster = %target.cluster, error = %e, "prune failed");
                pruned.failed_targets += 1;
            }
        }
    }
    Ok(pruned)
}

/// 0 when every target was pruned and every removal succeeded, 1 otherwise.
pub(super) fn exit_code(pruned: &Pruned) -> ExitCode {
    if pruned.failed_targets == 0 && pruned.reports.iter().all(|r| r.failures() == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(super) fn print_reports(reports: &[PruneReport]) {
    for r in reports {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        outln!(
            "{}: keep {}, {verb} {} ({} bytes){}",
            r.target,
            r.kept(),
            r.removed(),
            r.bytes_reclaimed,
            if r.dry_run {
                " [dry run: nothing deleted]"
            } else {
                ""
            }
        );
        for a in &r.archives {
            let action = match (a.action, &a.error) {
                (Action::Keep, _) => "keep  ",
                (Action::Remove, None) => "remove",
                (Action::Remove, Some(_)) => "FAILED",
            };
            let why = match &a.error {
                Some(e) => e.clone(),
                None => a.reasons.join(", "),
            };
            outln!(
                "  {action}  {}  {}  {}  {why}",
                a.snapshot_id,
                a.taken_at.format("%Y-%m-%d %H:%M"),
                a.object_key
            );
        }
        for m in &r.finished {
            outln!("  finished an interrupted prune: {m}");
        }
    }
}
