//! Issue 13: notifications and the heartbeat, through the real daemon, received on loopback by
//! an HTTP server of the test's own. A failing target is told once per channel (not once per
//! run), shaped for each kind (our webhook body, signed; Slack; a Teams Adaptive Card), retried
//! after a 503 with the same delivery id; a target that never succeeded is told at its N-th run;
//! its recovery is told once; the heartbeat gets `/start`, `/fail`, then the plain ping. A
//! receiver that never answers delays no archive. `notify-test` reaches every channel.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use atlas_archiver::simulator::scenario;
use common::{World, daemon_config, finish, free_port, signal, spawn_daemon, wait_for};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a8";
const KEY: &str = "a-signing-key-of-the-receiver";

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<Seen>>,
    /// Requests on `/webhook` still to refuse with a 503.
    refuse_webhook: Mutex<u32>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let status = {
        let mut refuse = r.refuse_webhook.lock().unwrap();
        if path == "/webhook" && *refuse > 0 {
            *refuse -= 1;
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    };
    r.seen.lock().unwrap().push(Seen {
        path,
        headers,
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver::default());
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (receiver, base)
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Accepted messages on `path` whose body mentions `needle`.
    fn accepted(&self, path: &str, needle: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path == path && s.answered == 200)
            .filter(|s| String::from_utf8_lossy(&s.body).contains(needle))
            .collect()
    }

    fn pings(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with("/hc"))
            .map(|s| s.path)
            .collect()
    }
}

/// A daemon config running every two seconds, with `channels` (TOML) appended.
fn spawn_run(w: &World, config: &str) -> tokio::process::Child {
    spawn_daemon(w, config, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_hears_of_a_failure_once_and_of_its_recovery() {
    let w = World::new(
        "notify",
        scenario(PROJECT, &["good-flex", "bad-flex"], 1, &[1 << 20]),
    )
    .await;
    let bad = w.sim.clusters()[1].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(bad.clone());
    });
    let (receiver, base) = start_receiver().await;
    *receiver.refuse_webhook.lock().unwrap() = 1;
    std::fs::write(w.path("hook_url"), format!("{base}/webhook\n")).unwrap();
    std::fs::write(w.path("hook_key"), KEY).unwrap();
    let config = with_channels(
        &w,
        &format!(
            "\n[heartbeat]\nurl = \"{base}/hc/check-1\"\n\
             \n[[notify]]\nkind = \"webhook\"\nurl_file = \"hook_url\"\nsigning_key_file = \"hook_key\"\nnever_succeeded_after = 2\n\
             \n[[notify]]\nkind = \"slack\"\nurl = \"{base}/slack\"\non = [\"failure\", \"recovered\"]\n\
             \n[[notify]]\nkind = \"teams\"\nurl = \"{base}/teams\"\non = [\"failure\", \"recovered\"]\n"
        ),
    );
    let child = spawn_run(&w, &config);

    // bad-flex fails run after run: one failure message per channel, the N-th run told once.
    wait_for(
        "never_succeeded on the webhook",
        Duration::from_secs(120),
        async || !receiver.accepted("/webhook", "never_succeeded").is_empty(),
    )
    .await;
    wait_for("three /fail pings", Duration::from_secs(120), async || {
        receiver
            .pings()
            .iter()
            .filter(|p| p.ends_with("/fail"))
            .count()
            >= 3
    })
    .await;
    let failures = receiver.accepted("/webhook", "\"failure\"");
    assert_eq!(
        failures.len(),
        1,
        "one failure message, not one per run: {failures:?}"
    );
    let hook = &failures[0];
    let body = hook.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["tool"], "atlas-archiver");
    let event = &body["events"][0];
    assert_eq!(
        (
            event["event"].as_str(),
            event["project"].as_str(),
            event["cluster"].as_str()
        ),
        (Some("failure"), Some(PROJECT), Some("bad-flex")),
        "{body}"
    );
    assert_eq!(event["snapshot"].as_str(), Some(bad.as_str()), "{body}");
    assert!(
        event["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    // Signed: HMAC-SHA256 of the exact body under the shared key.
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(&hook.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hook.header("x-atlas-archiver-signature"), expected);
    // The 503 was retried with the same delivery id (the receiver can drop a duplicate).
    let id = hook.header("x-atlas-archiver-delivery");
    let attempts: Vec<u16> = receiver
        .seen()
        .iter()
        .filter(|s| s.header("x-atlas-archiver-delivery") == id)
        .map(|s| s.answered)
        .collect();
    assert_eq!(attempts, [503, 200], "first refused, then delivered");
    let never = receiver.accepted("/webhook", "never_succeeded");
    assert_eq!(never.len(), 1);
    assert_eq!(never[0].json()["events"][0]["runs"], 2);
    for path in ["/slack", "/teams"] {
        assert_eq!(receiver.accepted(path, "bad-flex").len(), 1, "{path}");
    }
    let slack = &receiver.accepted("/slack", "bad-flex")[0].json();
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.contains("archiving failed")),
        "{slack}"
    );
    let teams = &receiver.accepted("/teams", "bad-flex")[0].json();
    assert_eq!(
        teams["attachments"][0]["content"]["type"], "AdaptiveCard",
        "{teams}"
    );
    assert!(
        receiver.accepted("/webhook", "good-flex").is_empty(),
        "a target that works is no news"
    );
    let pings = receiver.pings();
    assert_eq!(
        pings.first().map(String::as_str),
        Some("/hc/check-1/start"),
        "{pings:?}"
    );
    assert!(
        !pings.iter().any(|p| p == "/hc/check-1"),
        "no success ping while bad-flex fails: {pings:?}"
    );

    // The job works again: one recovery per channel, and the plain ping.
    w.sim.set_faults(|f| f.fail_jobs_for.clear());
    wait_for(
        "recovery on every channel",
        Duration::from_secs(120),
        async || {
            ["/webhook", "/slack", "/teams"]
                .iter()
                .all(|p| !receiver.accepted(p, "recovered").is_empty())
        },
    )
    .await;
    wait_for("the success ping", Duration::from_secs(60), async || {
        receiver.pings().iter().any(|p| p == "/hc/check-1")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for path in ["/webhook", "/slack", "/teams"] {
        assert_eq!(receiver.accepted(path, "recovered").len(), 1, "{path}");
    }
    let stderr = stop(child).await;
    for secret in [KEY, "/webhook", "/slack", "/hc/check-1"] {
        assert!(!stderr.contains(secret), "{secret:?} in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_delays_no_archive() {
    let w = World::new(
        "notify-down",
        scenario(PROJECT, &["slow-flex"], 2, &[1 << 20]),
    )
    .await;
    // Accepts connections and never answers; and a port nobody listens on.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let closed = free_port();
    let first = w.sim.clusters()[0].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(first);
    });
    let config = with_channels(
        &w,
        &format!(
            "\n[heartbeat]\nurl = \"http://{hole_addr}/hc\"\n\
             \n[[notify]]\nkind = \"webhook\"\nurl = \"http://{hole_addr}/webhook\"\n\
             \n[[notify]]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{closed}/slack\"\n"
        ),
    );
    let child = spawn_run(&w, &config);
    // The failure's message hangs on the black hole; the runs go on: the other snapshot is
    // archived, and once the job works, the first too.
    let objects = async |n: usize| {
        let started = Instant::now();
        while w.keys().await.len() < n {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the runs stopped"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    objects(2).await;
    w.sim.set_faults(|f| f.fail_jobs_for.clear());
    objects(4).await;
    let stderr = stop(child).await;
    assert!(
        !stderr.contains("/webhook") && !stderr.contains("/slack"),
        "{stderr}"
    );
    drop(hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reaches_every_channel_and_says_which_failed() {
    let w = World::new("notify-test", scenario(PROJECT, &["t-flex"], 1, &[1 << 20])).await;
    let (receiver, base) = start_receiver().await;
    let closed = free_port();
    let config = w.write_config("", "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[notify]]\nkind = \"webhook\"\nurl = \"{base}/webhook\"\nsigning_key = \"{KEY}\"\n\
         \n[[notify]]\nkind = \"slack\"\nurl = \"{base}/slack\"\n\
         \n[[notify]]\nkind = \"teams\"\nurl = \"http://127.0.0.1:{closed}/teams?sig=secret\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_string_lossy().into_owned();
    let run = w.run(&["notify-test", "--config", &cfg], &[]).await;
    run.assert_code(1);
    assert_eq!(
        receiver.accepted("/webhook", "\"test\"").len(),
        1,
        "{}",
        run.stdout
    );
    assert_eq!(
        receiver.accepted("/slack", "test message").len(),
        1,
        "{}",
        run.stdout
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ok") && l.contains("webhook")),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FAILED") && l.contains("teams")),
        "{}",
        run.stdout
    );
    assert!(
        !run.all().contains("sig=secret") && !run.all().contains("/teams"),
        "{}",
        run.all()
    );
}

/// The world's daemon config with `channels` (TOML) appended.
fn with_channels(w: &World, channels: &str) -> String {
    let path = daemon_config(w, free_port(), "5s", "");
    let text = std::fs::read_to_string(&path).unwrap() + channels;
    std::fs::write(&path, text).unwrap();
    path
}

/// SIGTERM, then a clean exit within a minute: its stderr.
async fn stop(child: tokio::process::Child) -> String {
    signal(&child, "-TERM");
    let (code, stderr, _) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, 0, "{stderr}");
    stderr
}
