//! The daemon's discovery: `[[discover]]` resolved at the start, then again at every slot of
//! `schedule.cron`. A cluster that appears joins the plan and runs at once (then on the
//! schedule, with its own stable jitter); one that disappears is reported once (`warn` and
//! `atlas_archiver_target_discovered 0`, its other series dropped so that the staleness alerts
//! do not fire for it for ever), leaves the plan (so retention stops pruning it) and keeps its
//! archives. A selector whose listing fails changes nothing of what it found before.
//! Must not: archive anything, or read a failed listing as clusters gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::DaemonError;
use super::scheduler::{Clock, Control, TargetRunner};
use atlas_archiver_engine::atlas::AtlasClient;
use atlas_archiver_engine::config::Config;
use atlas_archiver_engine::discover::{self, Origin, Resolved};
use atlas_archiver_engine::pipeline::Archiver;
use atlas_archiver_engine::pipeline::facts::target_summaries;
use atlas_archiver_engine::target::Target;

/// Longest sleep between two looks at the wall clock while waiting for the next slot.
const SLICE: Duration = Duration::from_secs(1);

/// What the daemon discovered, and how to look again.
pub struct Discovery {
    /// The config as written (without discovered targets).
    config: Config,
    client: AtlasClient,
    /// Each discovered target, with the selector that found it.
    known: HashMap<Target, usize>,
}

impl Discovery {
    /// Resolves the config's `[[discover]]` once, for the start. Returns the config with the
    /// discovered targets added, and the discovery to keep running (none without selectors).
    pub async fn start(config: Config) -> Result<(Config, Option<Self>), DaemonError> {
        if config.discover.is_empty() {
            return Ok((config, None));
        }
        let client = AtlasClient::new(&config.atlas)
            .map_err(|e| DaemonError::Startup(format!("Atlas client: {e}")))?;
        let resolved = discover::resolve(&config, &client).await;
        let applied = resolved.apply(&config);
        let known = discovered(&resolved);
        Ok((
            applied,
            Some(Self {
                config,
                client,
                known,
            }),
        ))
    }

    /// The targets found at the start.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.known.keys()
    }

    /// Looks again at every slot of `schedule.cron` until `stop`.
    pub fn spawn<R: TargetRunner, C: Clock>(
        mut self,
        control: Arc<Control<R, C>>,
        archiver: Archiver,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let schedule = self.config.schedule.default.clone();
            loop {
                let Some(slot) = schedule.next_after(control.now()) else {
                    return;
                };
                // Wall-clock slices, as the scheduling loop does: a suspend or a clock step
                // never skips a slot.
                while control.now() < slot {
                    tokio::select! {
                        () = tokio::time::sleep(SLICE) => {}
                        () = stop.cancelled() => return,
                    }
                }
                let resolved = tokio::select! {
                    r = discover::resolve(&self.config, &self.client) => r,
                    () = stop.cancelled() => return,
                };
                self.apply(&resolved, &control, &archiver).await;
            }
        })
    }

    async fn apply<R: TargetRunner, C: Clock>(
        &mut self,
        resolved: &Resolved,
        control: &Control<R, C>,
        archiver: &Archiver,
    ) {
        let metrics = archiver.metrics();
        for _ in &resolved.failures {
            metrics.record_discovery_failure();
        }
        let failed: HashSet<usize> = resolved.failures.iter().map(|f| f.rule).collect();
        let found = discovered(resolved);
        let options: HashMap<Target, _> = resolved.discovered(&self.config).into_iter().collect();
        for (target, rule) in &found {
            if self.known.contains_key(target) {
                continue;
            }
            info!(project = %target.project_id, cluster = %target.cluster, selector = %format!("discover[{rule}]"), "a new cluster was discovered: archiving it now, then on the schedule");
            if let Some(o) = options.get(target) {
                archiver.add_discovered(target.clone(), o.clone());
            }
            register(archiver, target).await;
            metrics.record_discovered(target, true);
            control.add_target(target.clone(), self.config.schedule_for(target).clone());
            self.known.insert(target.clone(), *rule);
        }
        let gone: Vec<Target> = self
            .known
            .iter()
            .filter(|(t, rule)| !found.contains_key(*t) && !failed.contains(rule))
            .map(|(t, _)| t.clone())
            .collect();
        for target in gone {
            warn!(project = %target.project_id, cluster = %target.cluster, "a discovered cluster has disappeared from Atlas: no longer archived; its archives are kept and retention no longer prunes them");
            control.remove_target(&target);
            metrics.forget_target(&target);
            metrics.record_discovered(&target, false);
            self.known.remove(&target);
        }
    }
}

/// The discovered targets of a resolution, with their selectors.
fn discovered(resolved: &Resolved) -> HashMap<Target, usize> {
    resolved
        .targets
        .iter()
        .filter_map(|r| match r.origin {
            Origin::Discovered { rule, .. } => Some((r.target.clone(), rule)),
            Origin::Configured => None,
        })
        .collect()
}

/// Makes a newly found target's metrics visible, from what the journal holds of it (a cluster
/// that comes back has history).
async fn register(archiver: &Archiver, target: &Target) {
    let journal = archiver.journal();
    let summaries = match journal.target_history().await {
        Ok(history) => {
            target_summaries(journal, &history, std::slice::from_ref(target), Utc::now()).await
        }
        Err(e) => Err(e),
    };
    match summaries {
        Ok(list) => {
            for s in list {
                archiver.metrics().register_target(&s.target, &s.facts);
            }
        }
        Err(e) => {
            error!(project = %target.project_id, cluster = %target.cluster, error = %e, "cannot read the journal for the new target's metrics")
        }
    }
}
