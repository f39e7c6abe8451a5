//! Issue 13: notifications and the heartbeat, through the real daemon, received on loopback by
//! an HTTP server of the test's own. A failing target is told once per channel (not once per
//! run), shaped for each kind (our webhook body, signed; Slack; a Teams Adaptive Card), retried
//! after a 503 with the same delivery id; a target that never succeeded is told at its N-th run;
//! its recovery is told once; the heartbeat gets `/start`, `/fail`, then the plain ping. A
//! receiver that never answers delays no archive. `notify-test` reaches every channel. Email
//! goes to a real SMTP server (aiosmtpd) over STARTTLS with a login, its certificate verified.
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

/// The login of the SMTP test server.
const SMTP_USER: &str = "archiver";
const SMTP_PASSWORD: &str = "smtp-pass-secretpart";

/// The Python that runs `tests/fixtures/smtp_server.py`: `ATLAS_ARCHIVER_TEST_SMTP_PYTHON`
/// (scripts/test.sh sets it, so CI cannot skip), else `python3` when it has aiosmtpd.
fn smtp_python() -> Option<String> {
    if let Ok(p) = std::env::var("ATLAS_ARCHIVER_TEST_SMTP_PYTHON") {
        return Some(p);
    }
    std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "python3".to_owned())
}

/// aiosmtpd on loopback, STARTTLS and a login required, its certificate signed by a CA of the
/// test's own (`ca`); killed when dropped.
struct SmtpServer {
    _child: tokio::process::Child,
    port: u16,
    out: std::path::PathBuf,
    ca: std::path::PathBuf,
}

impl SmtpServer {
    async fn start(w: &World, python: &str) -> Self {
        let dir = w.path("smtp");
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("openssl: {e}"));
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=atlas-archiver test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ]);
        let port = free_port();
        let out = dir.join("mails.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smtp_server.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .arg(&out)
            .args([SMTP_USER, SMTP_PASSWORD])
            .stdout(std::process::Stdio::piped())
            // The refused handshake of the test without the CA logs a traceback there.
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        assert!(
            matches!(&ready, Ok(Ok(Some(l))) if l == "READY"),
            "the SMTP server did not start: {ready:?}"
        );
        Self {
            _child: child,
            port,
            out,
            ca: dir.join("ca.pem"),
        }
    }

    fn mails(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_over_starttls_with_the_login_to_a_verified_server() {
    let Some(python) = smtp_python() else {
        eprintln!(
            "SKIPPED: no Python with aiosmtpd (scripts/test.sh installs it and runs this test)"
        );
        return;
    };
    let w = World::new(
        "notify-email",
        scenario(PROJECT, &["mail-flex"], 1, &[256 << 10]),
    )
    .await;
    let bad = w.sim.clusters()[0].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(bad.clone());
    });
    let smtp = SmtpServer::start(&w, &python).await;
    std::fs::write(
        w.path("smtp_url"),
        format!(
            "smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}\n",
            smtp.port
        ),
    )
    .unwrap();
    let channel = |ca: &str| {
        format!(
            "\n[[notify]]\nkind = \"email\"\nurl_file = \"smtp_url\"\nto = [\"oncall@example.com\", \"Backup Team <backup@example.com>\"]\nfrom = \"atlas-archiver <archiver@example.com>\"\n{ca}"
        )
    };
    let with_ca = channel(&format!("ca_file = \"{}\"\n", smtp.ca.display()));

    // notify-test: the channel that trusts the test CA delivers; the one that trusts only the
    // system's roots refuses the server's certificate (it is checked, not waved through).
    let config = w.write_config("", "");
    let text = std::fs::read_to_string(&config).unwrap() + &with_ca + &channel("");
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_string_lossy().into_owned();
    let run = w.run(&["notify-test", "--config", &cfg], &[]).await;
    run.assert_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("ok") && l.contains("email smtp://127.0.0.1/")),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("FAILED") && l.to_lowercase().contains("certificate")),
        "{}",
        run.stdout
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let test = &mails[0];
    assert_eq!(test["tls"], true, "STARTTLS before the mail: {test}");
    assert_eq!(test["authenticated"], true, "logged in: {test}");
    assert_eq!(test["from"], "archiver@example.com");
    assert_eq!(
        test["to"],
        serde_json::json!(["oncall@example.com", "backup@example.com"])
    );
    assert!(
        test["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("[atlas-archiver]")),
        "{test}"
    );
    assert!(!run.all().contains(SMTP_PASSWORD), "{}", run.all());

    // The daemon: a failing target is mailed once, its facts in the body, however many runs
    // fail (the heartbeat's /fail pings count the runs).
    let (receiver, base) = start_receiver().await;
    let config = with_channels(
        &w,
        &format!("\n[heartbeat]\nurl = \"{base}/hc/mail\"\n{with_ca}"),
    );
    // The secret ends in 5 days: told once, not at every run.
    let expires = (chrono::Utc::now() + chrono::Duration::days(5)).format("%Y-%m-%d");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[atlas]\n",
        &format!("[atlas]\nclient_secret_expires_at = \"{expires}\"\n"),
        1,
    );
    assert!(text.contains("client_secret_expires_at"), "{text}");
    std::fs::write(&config, text).unwrap();
    let child = spawn_run(&w, &config);
    wait_for("three failed runs", Duration::from_secs(120), async || {
        receiver
            .pings()
            .iter()
            .filter(|p| p.ends_with("/fail"))
            .count()
            >= 3
    })
    .await;
    let stderr = stop(child).await;
    let failures: Vec<serde_json::Value> = smtp
        .mails()
        .into_iter()
        .filter(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains("event: failure"))
        })
        .collect();
    assert_eq!(failures.len(), 1, "one mail, not one per run: {failures:?}");
    let body = failures[0]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("cluster: mail-flex")
            && body.contains(&format!("snapshot: {bad}"))
            && body.contains("reason: RESTORE_JOB_FAILED"),
        "{body}"
    );
    assert!(
        failures[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("mail-flex")),
        "{}",
        failures[0]
    );
    let credential: Vec<serde_json::Value> = smtp
        .mails()
        .into_iter()
        .filter(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains("event: credential_expiring"))
        })
        .collect();
    assert_eq!(credential.len(), 1, "told once: {credential:?}");
    assert!(
        credential[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains(&format!("expires at {expires} 00:00 UTC"))),
        "{}",
        credential[0]
    );
    assert!(!stderr.contains(SMTP_PASSWORD), "{stderr}");
}
