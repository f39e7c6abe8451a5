//! `run`: the long-lived service. Wires the journal, clients and pipeline to the scheduling loop
//! ([`scheduler`]), the HTTP endpoints (`server`), systemd ([`notify`]) and the people to tell
//! (`alerts`); owns the shutdown
//! sequence: stop scheduling, let transfers finish within `shutdown_grace`, then abort what
//! remains cleanly (a second signal aborts at once).
//! Must not: archive anything itself (that is `pipeline`).

mod discovery;
pub mod notify;
pub mod scheduler;
pub mod status;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alerts::Alerts;
use crate::alerts::deliver::RetryPolicy;
use crate::server::{self, ServerState, Trigger};
use atlas_archiver_engine::atlas::AtlasClient;
use atlas_archiver_engine::config::Config;
use atlas_archiver_engine::journal::{Journal, TargetHistory};
use atlas_archiver_engine::pipeline::facts::target_summaries;
use atlas_archiver_engine::pipeline::{Archiver, PipelineSettings, Shutdown};
use atlas_archiver_engine::store::ObjectStore;
use atlas_archiver_engine::target::Target;
use atlas_archiver_engine::telemetry::Metrics;
use notify::Notifier;
use scheduler::{Control, LoopSettings, SystemClock, TargetRunner, TriggerError};

/// Longest nap of the loop between two looks at the wall clock.
const LOOP_SLICE: Duration = Duration::from_secs(1);
/// `/healthz` fails when the loop has not gone round for this long.
const HEARTBEAT_BOUND: Duration = Duration::from_secs(60);
/// At shutdown, how long the notifications still being sent may take.
const NOTIFY_FLUSH_BOUND: Duration = Duration::from_secs(5);
/// After the grace period, how long aborting the remaining transfers may take.
const ABORT_BOUND: Duration = Duration::from_secs(60);

/// Start-up failures of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Could not set something up.
    #[error("{0}")]
    Startup(String),
    /// The configuration asks for what the store cannot give (exit 2: restarting will not help).
    #[error("{0}")]
    Refused(String),
}

/// The pipeline as the scheduler's runner; remembers the last failure for STATUS=.
struct ArchiverRunner {
    archiver: Archiver,
    config: Arc<Config>,
    last_failure: Arc<Mutex<Option<String>>>,
    alerts: Alerts,
}

impl ArchiverRunner {
    /// Applies the target's retention policy after a run in which every snapshot archived
    /// and verified; never after a failed one. Returns whether the prune succeeded.
    async fn prune(&self, target: &Target) -> bool {
        let Some(policy) = self.config.retention_for(target) else {
            return true;
        };
        let metrics = self.archiver.metrics();
        match atlas_archiver_engine::prune::prune(
            self.archiver.store(),
            &self.config.storage,
            self.archiver.journal(),
            target,
            policy,
            false,
        )
        .await
        {
            Ok(report) => {
                let ok = report.failures() == 0;
                metrics.record_prune(
                    target,
                    report.kept(),
                    report.removed() - report.failures(),
                    report.bytes_reclaimed,
                    ok,
                    Utc::now().timestamp() as f64,
                );
                if ok {
                    info!(project = %target.project_id, cluster = %target.cluster, kept = report.kept(), removed = report.removed(), bytes = report.bytes_reclaimed, "pruned by the retention policy");
                } else {
                    error!(project = %target.project_id, cluster = %target.cluster, failures = report.failures(), "prune: some archives could not be removed (the next prune tries again)");
                }
                ok
            }
            Err(e) => {
                metrics.record_prune_failure(target);
                error!(project = %target.project_id, cluster = %target.cluster, error = %e, "prune failed");
                false
            }
        }
    }
}

#[async_trait]
impl TargetRunner for ArchiverRunner {
    async fn run_target(&self, target: Target) -> bool {
        self.alerts.run_started();
        let report = self.archiver.archive_target(&target).await;
        let pruned = !report.succeeded() || self.prune(&target).await;
        self.alerts.run_finished(&report, !pruned);
        let ok = report.succeeded() && pruned;
        if !ok && let Ok(mut slot) = self.last_failure.lock() {
            *slot = Some(format!(
                "{target} at {}",
                Utc::now().format("%Y-%m-%d %H:%M UTC")
            ));
        }
        ok
    }
}

struct ControlTrigger(Arc<Control<ArchiverRunner, SystemClock>>);

impl Trigger for ControlTrigger {
    fn trigger(&self, target: &Target) -> Result<(), (StatusCode, &'static str)> {
        self.0.trigger(target, "HTTP request").map_err(|e| match e {
            TriggerError::AlreadyRunning => {
                (StatusCode::CONFLICT, "a run of this target is in progress")
            }
            TriggerError::UnknownTarget => (StatusCode::NOT_FOUND, "no such target in the config"),
            TriggerError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        })
    }

    fn heartbeat_age(&self) -> Option<Duration> {
        self.0.heartbeat.age(Utc::now())
    }
}

/// Runs the daemon until `signals` yields twice or the first shutdown completes.
/// `signals` is a stream of shutdown requests (SIGTERM/SIGINT in production).
pub async fn run<S, F>(config: Config, mut next_signal: S) -> Result<(), DaemonError>
where
    S: FnMut() -> F + Send,
    F: Future<Output = ()> + Send,
{
    let notifier = Notifier::from_env();
    let (config, discovery) = discovery::Discovery::start(config).await?;
    let engine = Engine::start(&config).await?;
    for target in discovery.iter().flat_map(|d| d.targets()) {
        engine.metrics.record_discovered(target, true);
    }
    let archiver = engine.archiver.clone();
    let last_failure = Arc::new(Mutex::new(None));
    let watchdog = engine.archiver.watchdog().clone();
    let journal = engine.archiver.journal().clone();
    let board = engine.archiver.progress().clone();
    let alerts = Alerts::new(
        config.notify.clone(),
        config.atlas.secret_expires_at,
        &engine.history,
        RetryPolicy::default(),
    );
    let control = Control::new(
        Arc::new(ArchiverRunner {
            archiver: engine.archiver,
            config: Arc::new(config.clone()),
            last_failure: Arc::clone(&last_failure),
            alerts: alerts.clone(),
        }),
        Arc::new(SystemClock),
        config.targets.clone(),
        engine.shutdown.stopping.clone(),
    );
    let next_runs = status::NextRuns::default();
    let running = Arc::clone(&control);
    let planned = Arc::clone(&control);
    let server_state = Arc::new(ServerState {
        metrics: engine.metrics.clone(),
        ready: AtomicBool::new(false),
        trigger: Arc::new(ControlTrigger(Arc::clone(&control))),
        status: Arc::new(status::DaemonStatus::new(
            journal,
            move || planned.targets(),
            (board, next_runs.clone()),
            move || running.running_targets(),
            config.atlas.secret_expires_at,
        )),
        heartbeat_bound: HEARTBEAT_BOUND,
        watchdog,
        stall_bound: config.schedule.stall_timeout,
        token: config.server.token.clone(),
        loopback: config.server.listen.is_none_or(|a| a.ip().is_loopback()),
    });
    let server_stop = CancellationToken::new();
    let server_task = start_server(&config, &server_state, &server_stop).await?;
    spawn_readiness(
        engine.store,
        Arc::clone(&server_state),
        engine.shutdown.stopping.clone(),
    );
    let loop_task = spawn_loop(
        &config,
        &engine.history,
        Arc::clone(&control),
        &notifier,
        (engine.metrics, next_runs),
        last_failure,
        engine.shutdown.stopping.clone(),
    );
    let discovery_task = discovery.map(|d| {
        d.spawn(
            Arc::clone(&control),
            archiver,
            engine.shutdown.stopping.clone(),
        )
    });
    notifier.ready();
    info!(targets = config.targets.len(), "daemon started");

    next_signal().await;
    info!(grace = ?config.schedule.shutdown_grace, "shutting down: no new runs; transfers in flight may finish");
    notifier.stopping();
    // Cancels `stopping` too (one tree: abort → drain → stopping).
    engine.shutdown.drain.cancel();
    let _ = loop_task.await;
    if let Some(task) = discovery_task {
        let _ = task.await;
    }
    tokio::select! {
        () = control.wait_idle() => info!("all runs finished"),
        () = tokio::time::sleep(config.schedule.shutdown_grace) => {
            warn!("grace period over: stopping the transfers still running (their uploads and journalled parts are kept; they resume at the next start)");
        }
        () = next_signal() => warn!("second signal: stopping the transfers still running"),
    }
    engine.shutdown.abort.cancel();
    if tokio::time::timeout(ABORT_BOUND, control.wait_idle())
        .await
        .is_err()
    {
        error!(
            "transfers did not stop within {ABORT_BOUND:?}; exiting anyway (the next start resumes or cleans up their uploads)"
        );
    }
    // The last run's messages are worth a few seconds; not more.
    alerts.flush(NOTIFY_FLUSH_BOUND).await;
    server_stop.cancel();
    if let Some(task) = server_task {
        let _ = task.await;
    }
    info!("stopped");
    Ok(())
}

fn startup(what: &str, e: &dyn std::fmt::Display) -> DaemonError {
    DaemonError::Startup(format!("{what}: {e}"))
}

/// The engine as the daemon starts it: journal, clients, metrics seeded from the journal's
/// history, the start-up cleanup of our own orphan uploads done.
struct Engine {
    archiver: Archiver,
    store: ObjectStore,
    metrics: Metrics,
    history: Vec<TargetHistory>,
    shutdown: Shutdown,
}

impl Engine {
    async fn start(config: &Config) -> Result<Self, DaemonError> {
        let journal = Journal::open(&config.journal.path).map_err(|e| startup("journal", &e))?;
        let atlas = AtlasClient::new(&config.atlas).map_err(|e| startup("Atlas client", &e))?;
        let store = ObjectStore::connect(&config.storage).await;
        store.settle_checksum(&config.storage).await;
        // A lock the bucket cannot give refuses the start. A store that cannot be asked now
        // delays nothing: every archive's lock is read back before it counts as archived.
        match store.check_object_lock().await {
            Err(e) if e.is_config_problem() => {
                return Err(DaemonError::Refused(format!(
                    "config file {}: {e}",
                    config.source.display()
                )));
            }
            Err(e) => {
                warn!(error = %e, "cannot check the bucket's Object Lock configuration now; each archive's lock is checked as it is written")
            }
            Ok(()) => {}
        }
        let history = journal
            .target_history()
            .await
            .map_err(|e| startup("journal", &e))?;
        let metrics = Metrics::default();
        if let Some(expires) = config.atlas.secret_expires_at {
            metrics.record_credential_expiry(expires.timestamp() as f64);
        }
        for s in target_summaries(&journal, &history, &config.targets, Utc::now())
            .await
            .map_err(|e| startup("journal", &e))?
        {
            metrics.register_target(&s.target, &s.facts);
        }
        let shutdown = Shutdown::default();
        let archiver = Archiver::new(
            atlas,
            store.clone(),
            journal,
            PipelineSettings::from_config(config),
            shutdown.clone(),
            metrics.clone(),
        )
        .map_err(|e| startup("pipeline", &e))?;
        archiver
            .abort_orphan_uploads()
            .await
            .map_err(|e| startup("journal", &e))?;
        Ok(Self {
            archiver,
            store,
            metrics,
            history,
            shutdown,
        })
    }
}

/// The HTTP listener, bound before READY=1 so that a port conflict is a start-up failure.
async fn start_server(
    config: &Config,
    state: &Arc<ServerState>,
    stop: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, DaemonError> {
    let Some(addr) = config.server.listen else {
        return Ok(None);
    };
    let listener = server::bind(addr)
        .await
        .map_err(|e| startup(&format!("cannot listen on {addr} (server.listen)"), &e))?;
    info!(%addr, "HTTP endpoints listening: / (status page) /healthz /readyz /metrics");
    let state = Arc::clone(state);
    let stop = stop.clone();
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = server::serve(listener, state, stop).await {
            error!(error = %e, "HTTP server failed");
        }
    })))
}

/// Readiness: the bucket must answer. Retried until it does, so that a store that is down at
/// boot delays readiness instead of crash-looping the service.
fn spawn_readiness(store: ObjectStore, state: Arc<ServerState>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match store.check_bucket().await {
                Ok(()) => {
                    server::set_ready(&state);
                    info!(bucket = store.bucket(), "bucket reachable: ready");
                    break;
                }
                Err(e) => error!(error = %e, "bucket not reachable; retrying in 30s"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
                () = stop.cancelled() => break,
            }
        }
    });
}

/// The scheduling loop, planned from the journal's last runs; each turn publishes the next
/// runs as metrics, the STATUS= line and the watchdog ping.
fn spawn_loop(
    config: &Config,
    history: &[TargetHistory],
    control: Arc<Control<ArchiverRunner, SystemClock>>,
    notifier: &Notifier,
    (metrics, next_runs): (Metrics, status::NextRuns),
    last_failure: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let settings = LoopSettings {
        slice: notifier
            .watchdog()
            .map_or(LOOP_SLICE, |w| LOOP_SLICE.min(w / 3)),
        jitter: config.schedule.jitter,
        run_on_first_start: config.schedule.run_on_first_start,
    };
    let last_runs: Vec<scheduler::LastRun> = history
        .iter()
        .filter_map(|h| {
            h.last_started_at.map(|started_at| scheduler::LastRun {
                target: h.target.clone(),
                started_at,
                finished: h.last_finished_at.is_some_and(|f| f >= started_at),
            })
        })
        .collect();
    let schedules = config
        .targets
        .iter()
        .map(|t| (t.clone(), config.schedule_for(t).clone()))
        .collect();
    let planned = scheduler::plan(schedules, &last_runs, Utc::now(), &settings);
    let notifier = notifier.clone();
    let mut last_status = String::new();
    tokio::spawn(scheduler::run_loop(
        control,
        planned,
        settings,
        stop,
        move |planned| {
            for p in planned {
                if let Some(due) = p.due {
                    metrics.record_next_run(&p.target, due.timestamp_millis() as f64 / 1000.0);
                }
                next_runs.set(&p.target, p.due);
            }
            let status = status_line(planned, metrics.transfers_in_flight_now(), &last_failure);
            if status != last_status {
                notifier.status(&status);
                last_status = status;
            }
            // Driven from the loop itself: a wedged loop stops the pings and systemd restarts us.
            notifier.watchdog_ping();
        },
    ))
}

fn status_line(
    planned: &[scheduler::PlannedTarget],
    in_flight: i64,
    last_failure: &Mutex<Option<String>>,
) -> String {
    let next = planned
        .iter()
        .filter_map(|p| p.due.map(|d| (d, &p.target)))
        .min_by_key(|(d, _)| *d)
        .map_or_else(
            || "no run planned".to_owned(),
            |(d, t)| format!("next run {} at {}", t, d.format("%Y-%m-%d %H:%M:%S UTC")),
        );
    let failure = last_failure
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .map_or_else(|| "no failures".to_owned(), |f| format!("last failure {f}"));
    format!("{next}; {in_flight} transfers in flight; {failure}")
}
