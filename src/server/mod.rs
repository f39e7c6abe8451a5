//! The daemon's HTTP endpoints: `/` (the status page, [`page`]), `/healthz` (the scheduler loop
//! is alive), `/readyz` (start-up checks passed), `/metrics` (Prometheus text) and
//! `POST /v1/targets/{project}/{cluster}/run` (a run now, bearer-token guarded when not on
//! loopback).
//! Must not: hold business logic; it reads telemetry and asks the daemon through [`Trigger`]
//! and [`StatusSource`].

pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use atlas_archiver_engine::target::Target;
use atlas_archiver_engine::telemetry::Metrics;
use atlas_archiver_engine::watchdog::Watchdog;

/// What the endpoints need from the daemon.
pub trait Trigger: Send + Sync + 'static {
    /// Starts a run; `Err` carries the HTTP status and a message.
    fn trigger(&self, target: &Target) -> Result<(), (StatusCode, &'static str)>;
    /// Age of the scheduler loop's last round.
    fn heartbeat_age(&self) -> Option<Duration>;
}

/// What the status page shows, gathered by the daemon.
#[async_trait::async_trait]
pub trait StatusSource: Send + Sync + 'static {
    /// The page's content now.
    async fn status(&self) -> page::StatusView;
}

/// Shared state of the endpoints.
pub struct ServerState {
    /// Metrics to render.
    pub metrics: Metrics,
    /// Set once start-up checks passed.
    pub ready: AtomicBool,
    /// The scheduler's control handle.
    pub trigger: Arc<dyn Trigger>,
    /// The status page's content.
    pub status: Arc<dyn StatusSource>,
    /// `/healthz` fails when the loop's heartbeat is older than this.
    pub heartbeat_bound: Duration,
    /// The run watchdog: `/healthz` fails while a snapshot's work has been idle longer than
    /// `stall_bound` (a wedge the watchdog could not end).
    pub watchdog: Watchdog,
    /// `schedule.stall_timeout`.
    pub stall_bound: Duration,
    /// Token for the trigger (required off loopback).
    pub token: Option<SecretString>,
    /// Whether the listener is on a loopback address.
    pub loopback: bool,
}

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 256;
/// Connections served at once from one peer address.
const MAX_PER_PEER: usize = 16;
/// A connection must send its request head within this (idle keep-alive included).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer: every answer here is small.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Open connections per peer address.
#[derive(Default)]
struct PeerSlots(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's place in [`PeerSlots`], given back on drop.
struct PeerSlot(Arc<PeerSlots>, std::net::IpAddr);

impl PeerSlots {
    fn take(this: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = this
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot(Arc::clone(this), ip))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Binds the listener (errors here are start-up errors).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/targets/{project}/{cluster}/run", post(run_now))
        .with_state(state);
    // Our own accept loop rather than `axum::serve`, which bounds neither the number of
    // connections nor how long one may sit idle: idle connections to an unauthenticated
    // `/metrics` must not use up the file descriptors the archiver needs for S3, Atlas and the
    // journal (audit S4). Beyond the limits (all peers, and one peer address) a connection is
    // closed at once, so that one noisy peer cannot lock the kubelet's probes out; every
    // connection must send its request head within `HEADER_TIMEOUT` and ends after
    // `CONNECTION_LIFETIME`.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_peer = Arc::new(PeerSlots::default());
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors or a reset before accept: not the listener's end.
                Err(e) => {
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(peer_slot) = PeerSlots::take(&per_peer, peer.ip()) else {
            drop(stream);
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slots = (slot, peer_slot);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn healthz(State(s): State<Arc<ServerState>>) -> Response {
    if let Some((work, idle)) = s.watchdog.longest_idle()
        && idle > s.stall_bound
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "transfer wedged: {work} made no progress for {}s (schedule.stall_timeout is {}s)\n",
                idle.as_secs(),
                s.stall_bound.as_secs()
            ),
        )
            .into_response();
    }
    match s.trigger.heartbeat_age() {
        Some(age) if age <= s.heartbeat_bound => (StatusCode::OK, "ok\n").into_response(),
        Some(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scheduler loop stalled for {}s\n", age.as_secs()),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler loop not started\n",
        )
            .into_response(),
    }
}

async fn status_page(State(s): State<Arc<ServerState>>) -> Response {
    let html = page::render(&s.status.status().await);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // No script, no external asset, no frame: only the page's own inline style.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<ServerState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<ServerState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            atlas_archiver_engine::telemetry::METRICS_CONTENT_TYPE,
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn run_now(
    State(s): State<Arc<ServerState>>,
    Path((project, cluster)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &s.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.expose_secret().as_bytes()))
        {
            return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n").into_response();
        }
    } else if !s.loopback {
        return (StatusCode::FORBIDDEN, "no server.token configured\n").into_response();
    }
    let target = Target {
        project_id: project,
        cluster,
    };
    match s.trigger.trigger(&target) {
        Ok(()) => (StatusCode::ACCEPTED, "run started\n").into_response(),
        Err((status, message)) => (status, format!("{message}\n")).into_response(),
    }
}

/// Compares without leaking the position of the first difference through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Marks the daemon ready.
pub fn set_ready(state: &ServerState) {
    state.ready.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AlwaysStarts;

    impl Trigger for AlwaysStarts {
        fn trigger(&self, _: &Target) -> Result<(), (StatusCode, &'static str)> {
            Ok(())
        }
        fn heartbeat_age(&self) -> Option<Duration> {
            Some(Duration::from_secs(1))
        }
    }

    struct NothingYet;

    #[async_trait::async_trait]
    impl StatusSource for NothingYet {
        async fn status(&self) -> page::StatusView {
            page::StatusView {
                now: chrono::Utc::now(),
                targets: Vec::new(),
                transfers: Vec::new(),
                journal_error: None,
                credential_expires: None,
            }
        }
    }

    async fn start(token: Option<&str>, loopback: bool) -> (String, CancellationToken) {
        start_with(token, loopback, Watchdog::default()).await
    }

    async fn start_with(
        token: Option<&str>,
        loopback: bool,
        watchdog: Watchdog,
    ) -> (String, CancellationToken) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            trigger: Arc::new(AlwaysStarts),
            status: Arc::new(NothingYet),
            heartbeat_bound: Duration::from_secs(60),
            watchdog,
            stall_bound: Duration::from_secs(1),
            token: token.map(SecretString::from),
            loopback,
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, state, stop.clone()));
        (format!("http://{addr}"), stop)
    }

    #[tokio::test]
    async fn the_trigger_needs_the_token_off_loopback() {
        let (base, stop) = start(Some("s3cret-token"), false).await;
        let http = reqwest::Client::new();
        let url = format!("{base}/v1/targets/32b6e34b3d91647abb20e7b8/orders-flex/run");
        let status = |r: Result<reqwest::Response, reqwest::Error>| {
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        };
        assert_eq!(status(http.post(&url).send().await), 401);
        assert_eq!(
            status(http.post(&url).bearer_auth("wrong").send().await),
            401
        );
        assert_eq!(
            status(http.post(&url).bearer_auth("s3cret-token").send().await),
            202
        );
        assert_eq!(
            status(http.get(format!("{base}/readyz")).send().await),
            503,
            "not ready until set_ready"
        );
        assert_eq!(
            status(http.get(format!("{base}/healthz")).send().await),
            200
        );
        stop.cancel();
        let (base, stop) = start(None, false).await;
        assert_eq!(
            status(http.post(format!("{base}/v1/targets/a/b/run")).send().await),
            403
        );
        stop.cancel();
        let (base, stop) = start(None, true).await;
        assert_eq!(
            status(http.post(format!("{base}/v1/targets/a/b/run")).send().await),
            202,
            "loopback needs no token"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn healthz_reports_a_wedged_transfer() {
        let watchdog = Watchdog::default();
        let (base, stop) = start_with(None, true, watchdog.clone()).await;
        let health = || async {
            let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        assert_eq!(health().await.0, 200, "nothing watched: healthy");
        // Work whose own limit is an hour, silent for longer than the health bound (1 s here):
        // the wedge the watchdog has not ended shows on /healthz.
        let wedged = tokio::spawn(async move {
            watchdog
                .watch(
                    "32b6e34b3d91647abb20e7b8/orders-flex/6a6f78e0cab84da5c4476b25",
                    Duration::from_secs(3600),
                    tokio::time::sleep(Duration::from_secs(3600)),
                )
                .await
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (status, text) = health().await;
        assert_eq!(status, 503, "{text}");
        assert!(
            text.contains("transfer wedged")
                && text.contains("orders-flex/6a6f78e0cab84da5c4476b25"),
            "{text}"
        );
        wedged.abort();
        let _ = wedged.await;
        assert_eq!(
            health().await.0,
            200,
            "the wedged work is gone: healthy again"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn s4_idle_connections_are_bounded_and_closed() {
        use tokio::io::AsyncReadExt;
        let (base, stop) = start(None, true).await;
        let addr = base.trim_start_matches("http://").to_owned();
        // More idle connections than one peer may hold, none sending a byte.
        let mut idle = Vec::new();
        for _ in 0..(MAX_PER_PEER + 36) {
            idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        // Each one is closed by the server: at once beyond the limit, after the header
        // timeout within it. (The outer bound only turns a hang into a failure.)
        let closed = tokio::time::timeout(Duration::from_secs(120), async {
            for mut c in idle {
                let mut byte = [0u8; 1];
                assert_eq!(
                    c.read(&mut byte).await.unwrap_or(0),
                    0,
                    "closed without an answer"
                );
            }
        })
        .await;
        assert!(closed.is_ok(), "idle connections were never closed");
        let status = reqwest::get(format!("{base}/healthz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 200, "the endpoints answer again");
        stop.cancel();
    }
}
