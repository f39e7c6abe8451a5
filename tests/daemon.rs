//! `atlas-archiver run` as a process: schedule, HTTP endpoints, systemd notifications, and the
//! shutdown sequence, against the Atlas simulator and a real S3 server.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atlas_archiver::simulator::scenario;
use common::{World, daemon_config, finish, free_port, parse_json, signal, spawn_daemon, wait_for};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";

/// Collects sd_notify datagrams sent to a socket the test owns.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn new(dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(300) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(text);
                }
            }
        });
        Self { path, messages }
    }

    fn all(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn saw(&self, needle: &str) -> bool {
        self.all()
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with(needle)))
    }
}

fn spawn_run(w: &World, config: &str, notify: &NotifySocket) -> tokio::process::Child {
    spawn_daemon(
        w,
        config,
        &[("NOTIFY_SOCKET", &notify.path.to_string_lossy())],
    )
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_archives_on_schedule_and_reports_health_readiness_and_metrics() {
    let w = World::new(
        "daemon",
        scenario(PROJECT, &["one-flex", "two-flex"], 2, &[1 << 20]),
    )
    .await;
    let port = free_port();
    let config = daemon_config(&w, port, "5s", "");
    let notify = NotifySocket::new(w.dir.path());
    let child = spawn_run(&w, &config, &notify);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    wait_for("READY=1", Duration::from_secs(30), async || {
        notify.saw("READY=1")
    })
    .await;
    wait_for("/readyz 200", Duration::from_secs(30), async || {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    wait_for("8 objects", Duration::from_secs(60), async || {
        w.keys().await.len() == 8
    })
    .await;
    for cluster in w.sim.clusters() {
        for snap in &cluster.snapshots {
            let key = w
                .keys()
                .await
                .into_keys()
                .find(|k| k.ends_with(&format!("{}.tar.gz", snap.id)));
            let key = key.unwrap_or_else(|| panic!("no archive of {}", snap.id));
            assert_eq!(w.sha256_of_object(&key).await, snap.sha256());
        }
    }
    // The metrics reflect it; counters are per target.
    let mut text = String::new();
    wait_for("metrics", Duration::from_secs(20), async || {
        text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        ["one-flex", "two-flex"].iter().all(|c| {
            let l = format!("{{project=\"{PROJECT}\",cluster=\"{c}\"}}");
            metric(
                &text,
                &format!("atlas_archiver_snapshots_archived_total{l}"),
            ) == Some(2.0)
                && metric(&text, &format!("atlas_archiver_last_run_status{l}")) == Some(1.0)
        })
    })
    .await;
    let l = format!("{{project=\"{PROJECT}\",cluster=\"one-flex\"}}");
    let now = chrono::Utc::now().timestamp() as f64;
    let last_success = metric(
        &text,
        &format!("atlas_archiver_last_success_timestamp_seconds{l}"),
    )
    .unwrap_or_default();
    assert!(
        (now - last_success).abs() < 120.0,
        "last success {last_success} vs now {now}\n{text}"
    );
    let next_run = metric(
        &text,
        &format!("atlas_archiver_next_run_timestamp_seconds{l}"),
    )
    .unwrap_or_default();
    assert!(
        next_run >= now - 5.0 && next_run <= now + 10.0,
        "next run {next_run}\n{text}"
    );
    assert_eq!(
        metric(&text, "atlas_archiver_bytes_uploaded_total"),
        Some(f64::from(4u32 << 20))
    );
    assert_eq!(
        metric(&text, "atlas_archiver_transfers_in_flight"),
        Some(0.0)
    );
    assert!(
        metric(&text, "atlas_archiver_run_duration_seconds_count").is_some_and(|c| c >= 2.0),
        "{text}"
    );
    assert!(
        !text.contains("http://") && !text.contains("sig="),
        "no URL in labels"
    );
    // Runs every two seconds archive nothing twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.sim.observed().snapshot_downloads, 4);

    // The trigger: 202 (or 409 while a scheduled run is in progress), 404 for unknown targets.
    let trigger = http
        .post(format!("{base}/v1/targets/{PROJECT}/one-flex/run"))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(trigger.status().as_u16(), 202 | 409),
        "{}",
        trigger.status()
    );
    let unknown = http
        .post(format!("{base}/v1/targets/{PROJECT}/nope/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(notify.saw("STATUS=next run"), "{:?}", notify.all());

    signal(&child, "-TERM");
    let (code, stderr, took) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    wait_for("STOPPING=1", Duration::from_secs(5), async || {
        notify.saw("STOPPING=1")
    })
    .await;
    for s in w.secrets() {
        assert!(!stderr.contains(&s), "secret-like {s:?} in the log");
    }
}

/// Starts `run` on one 12 MiB snapshot served at `rate` bytes/s and waits for its download.
async fn slow_transfer(
    name: &str,
    rate: u64,
    grace: &str,
) -> (World, String, NotifySocket, tokio::process::Child) {
    let w = World::new(name, scenario(PROJECT, &["slow-flex"], 1, &[12 << 20])).await;
    w.sim.set_faults(|f| f.throttle_bytes_per_sec = Some(rate));
    let config = daemon_config(&w, free_port(), grace, "part_size = \"5MiB\"");
    let notify = NotifySocket::new(w.dir.path());
    let child = spawn_run(&w, &config, &notify);
    wait_for(
        "the download to start",
        Duration::from_secs(30),
        async || w.sim.observed().snapshot_downloads >= 1,
    )
    .await;
    (w, config, notify, child)
}

/// SIGTERM during a slow transfer: with a short grace the transfer stops cleanly, its upload
/// and journalled parts are kept for a resume (audit L1: a planned restart must not throw away
/// progress that a crash would keep), nothing half-written is visible, and a restart finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_sigterm_during_a_transfer_keeps_the_upload_and_a_restart_finishes() {
    let (w, config, _notify, child) = slow_transfer("sigterm", 2 << 20, "1s").await;
    if w.s3.lists_uploads() {
        wait_for(
            "an open multipart upload",
            Duration::from_secs(10),
            async || !w.open_uploads().await.is_empty(),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    signal(&child, "-TERM");
    let (code, stderr, took) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took < Duration::from_secs(8),
        "grace 1s, then a clean stop; took {took:?}\n{stderr}"
    );
    assert!(stderr.contains("grace period over"), "{stderr}");
    assert!(
        w.keys().await.is_empty(),
        "nothing half-written: {:?}",
        w.keys().await
    );
    let status = parse_json(
        &w.run(&["status", "--config", &config, "--json"], &[])
            .await
            .stdout,
    );
    let row = &status["targets"][0]["snapshots"][0];
    assert_eq!(row["state"], "uploading", "resumable: {row}");
    assert!(!row["upload_id"].is_null(), "the upload is kept: {row}");
    assert_eq!(row["attempts"], 0, "a shutdown is not a failed attempt");
    if w.s3.lists_uploads() {
        let open = w.open_uploads().await;
        assert!(
            open.iter().any(|(_, id)| row["upload_id"] == id.as_str()),
            "the kept upload is the journal's: {open:?}"
        );
    }

    // A restart completes the work.
    w.sim.set_faults(|f| f.throttle_bytes_per_sec = None);
    let notify = NotifySocket::new(&w.path("again"));
    let child = spawn_run(&w, &config, &notify);
    wait_for("the archive", Duration::from_secs(60), async || {
        w.keys().await.len() == 2
    })
    .await;
    let snap = w.sim.clusters()[0].snapshots[0].clone();
    let key = w
        .keys()
        .await
        .into_keys()
        .find(|k| k.ends_with(".tar.gz"))
        .unwrap_or_default();
    assert_eq!(w.sha256_of_object(&key).await, snap.sha256());
    signal(&child, "-TERM");
    let (code, _, _) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0);
    assert!(
        w.open_uploads().await.is_empty(),
        "the resumed or restarted upload was completed or aborted"
    );
}

/// A second signal during the grace period aborts at once, still cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_aborts_at_once() {
    let (w, config, _notify, child) = slow_transfer("twice", 1 << 20, "10m").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "-INT");
    let (code, stderr, took) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(stderr.contains("second signal"), "{stderr}");
    // Any upload left open is the journal's, kept for a resume (L1).
    let status = parse_json(
        &w.run(&["status", "--config", &config, "--json"], &[])
            .await
            .stdout,
    );
    let row = &status["targets"][0]["snapshots"][0];
    for (_, id) in w.open_uploads().await {
        assert_eq!(
            row["upload_id"],
            id.as_str(),
            "an upload the journal does not own"
        );
    }
    assert!(w.keys().await.is_empty());
}

/// Audit L11: a shutdown while waiting for Atlas to prepare a download ends the wait at once
/// (for `once` and for the daemon), instead of after `restore_timeout` or the grace period; the
/// journalled job is reused by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l11_a_signal_while_waiting_for_atlas_ends_the_wait() {
    let w = World::new("waiting", scenario(PROJECT, &["w-flex"], 1, &[1 << 20])).await;
    w.sim.set_faults(|f| f.jobs_never_complete = true);
    let config = w
        .write_config("restore_timeout = \"10m\"", "")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    let daemon = long_grace_daemon(&w, &text);
    for (command, config) in [("once", &config), ("run", &daemon)] {
        let child = spawn(&w, command, config);
        let before = w.sim.observed().api_requests;
        wait_for(
            "polling a restore job",
            Duration::from_secs(30),
            async || {
                w.sim.observed().download_requests >= 1
                    && w.sim.observed().api_requests > before + 2
            },
        )
        .await;
        signal(&child, "-TERM");
        let (_, stderr, _) = finish(child, Duration::from_secs(60)).await;
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(
        w.sim.observed().download_requests,
        1,
        "the journalled job was reused, not requested again"
    );
}

/// Issue 8: a signal while a snapshot listing backs off on a 429 (Atlas asks to wait five
/// minutes) ends the wait, in `once` and in the daemon (whose grace period is far longer than the
/// test may take: only the wait's own cancellation can end it in time).
#[tokio::test]
async fn a_signal_while_a_listing_backs_off_ends_the_wait() {
    let w = World::new("listing", scenario(PROJECT, &["l-flex"], 1, &[1 << 20])).await;
    w.sim.set_faults(|f| {
        f.api_429_burst = 1000;
        f.retry_after_secs = Some(300);
    });
    let config = w
        .write_config("max_attempts = 50", "")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("retry_max_delay = \"2s\"", "retry_max_delay = \"10m\"");
    std::fs::write(&config, &text).unwrap();
    let daemon = long_grace_daemon(&w, &text);
    for (command, config) in [("once", &config), ("run", &daemon)] {
        let child = spawn(&w, command, config);
        let before = w.sim.observed().throttled;
        wait_for("a throttled listing", Duration::from_secs(30), async || {
            w.sim.observed().throttled > before
        })
        .await;
        signal(&child, "-TERM");
        let (_, stderr, _) = finish(child, Duration::from_secs(60)).await;
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains("interrupted") || stderr.contains("cancelled"),
            "{command}: the run says it was interrupted: {stderr}"
        );
    }
    assert_eq!(w.sim.observed().download_requests, 0);
}

/// A daemon config from a `once` config's text, with a grace period far longer than a test may
/// take: only a wait's own cancellation can end a shutdown in time.
fn long_grace_daemon(w: &World, once_config: &str) -> String {
    let daemon = w.path("daemon.toml");
    std::fs::write(
        &daemon,
        once_config.replace(
            "[journal]",
            "[schedule]\ncron = \"*/2 * * * * *\"\nshutdown_grace = \"10m\"\n\n[server]\nlisten = \"\"\n\n[journal]",
        ),
    )
    .unwrap();
    daemon.to_string_lossy().into_owned()
}

/// The binary as a user runs it, with a clean environment, its output captured.
fn spawn(w: &World, command: &str, config: &str) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"));
    cmd.args([command, "--config", config])
        .current_dir(w.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// Issue 11: after a run in which every snapshot of a target archived, the daemon applies its
/// retention policy; the metrics say what was kept, removed and reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_prunes_a_target_after_a_clean_run() {
    let w = World::new(
        "daemon-prune",
        scenario(PROJECT, &["one-flex"], 5, &[64 << 10]),
    )
    .await;
    let port = free_port();
    let config = daemon_config(&w, port, "5s", "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[retention]\nkeep_last = 2\nmin_keep = 2\n");
    std::fs::write(&config, text).unwrap();
    let notify = NotifySocket::new(w.dir.path());
    let child = spawn_run(&w, &config, &notify);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let l = format!("{{project=\"{PROJECT}\",cluster=\"one-flex\"}}");
    let mut page = String::new();
    wait_for(
        "a prune in the metrics",
        Duration::from_secs(90),
        async || {
            page = match http.get(format!("{base}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            metric(&page, &format!("atlas_archiver_archives_pruned_total{l}")) == Some(3.0)
        },
    )
    .await;
    assert_eq!(
        metric(&page, &format!("atlas_archiver_archives_kept{l}")),
        Some(2.0),
        "{page}"
    );
    assert!(
        metric(
            &page,
            &format!("atlas_archiver_prune_bytes_reclaimed_total{l}")
        )
        .is_some_and(|b| b > 0.0)
    );
    assert!(
        metric(
            &page,
            &format!("atlas_archiver_last_prune_timestamp_seconds{l}")
        )
        .is_some_and(|t| t > 0.0)
    );
    // Two archives and their manifests remain: the two newest.
    let newest: Vec<String> = {
        let mut snaps = w.sim.clusters()[0].snapshots.clone();
        snaps.sort_by_key(|s| std::cmp::Reverse(s.finished));
        snaps.iter().take(2).map(|s| s.id.clone()).collect()
    };
    let keys = w.keys().await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    for id in &newest {
        assert!(
            keys.keys().any(|k| k.ends_with(&format!("{id}.tar.gz"))),
            "{keys:?}"
        );
    }
    signal(&child, "-TERM");
    let (code, _, _) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0);
}

/// The sample names `/metrics` can ever carry: from its `# TYPE` lines, with the suffixes
/// each type's samples take (`_total` for counters, `_bucket`, `_sum` and `_count` for
/// histograms); with `families`, the bare family names too (as the README's table names them).
fn exposed_names(text: &str, families: bool) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        if families {
            names.insert(name.to_owned());
        }
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `atlas_archiver_*` name in `text`.
fn named_metrics(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("atlas_archiver_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Issue 13: from its first scrape the daemon has a series for every configured target (a
/// target that never succeeded included, with 0 for "never" and the time since it is looked
/// after), the recovery point and the LOST count from the journal, and its build; and every
/// metric that the shipped alert rules, their tests, the Grafana dashboard and the README's
/// table name is one the daemon exports, so none of them drifts from the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_start_from_the_journal_and_cover_every_name_the_kit_uses() {
    let w = World::new(
        "daemon-kit",
        scenario(PROJECT, &["one-flex", "two-flex"], 2, &[1 << 20]),
    )
    .await;
    let gone = w.sim.clusters()[1].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.vanished.insert(gone.clone());
    });
    let once = w.write_config("", "").to_string_lossy().into_owned();
    // two-flex loses a snapshot; one-flex archives both of its own.
    w.run(&["once", "--config", &once], &[])
        .await
        .assert_code(1);
    let newest_one = w.sim.clusters()[0]
        .snapshots
        .iter()
        .map(|s| s.finished.timestamp())
        .max()
        .unwrap() as f64;

    let port = free_port();
    let config = daemon_config(&w, port, "5s", "");
    // A yearly schedule, and a third target that has never run: nothing runs while we look.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "cron = \"*/2 * * * * *\"",
        "cron = \"0 0 0 1 1 *\"\nrun_on_first_start = false",
    ) + &format!("\n[[target]]\nproject_id = \"{PROJECT}\"\ncluster = \"new-flex\"\n");
    // The secret's end, as the operator declared it: a gauge the credential alert reads.
    let text = text.replacen(
        "[atlas]\n",
        "[atlas]\nclient_secret_expires_at = \"2027-03-01\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let notify = NotifySocket::new(w.dir.path());
    let child = spawn_run(&w, &config, &notify);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut page = String::new();
    wait_for("/metrics", Duration::from_secs(30), async || {
        page = match http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        page.contains("# EOF")
    })
    .await;
    assert_eq!(
        metric(
            &page,
            "atlas_archiver_credential_expiry_timestamp_seconds{}"
        ),
        Some(1_803_859_200.0),
        "2027-03-01T00:00:00Z"
    );
    let started = chrono::Utc::now().timestamp() as f64;
    let l = |c: &str| format!("{{project=\"{PROJECT}\",cluster=\"{c}\"}}");
    let m = |name: &str, c: &str| metric(&page, &format!("{name}{}", l(c)));
    assert_eq!(
        m(
            "atlas_archiver_newest_archived_snapshot_timestamp_seconds",
            "one-flex"
        ),
        Some(newest_one),
        "{page}"
    );
    assert!(
        m("atlas_archiver_last_success_timestamp_seconds", "one-flex").is_some_and(|t| t > 0.0),
        "{page}"
    );
    assert_eq!(
        m("atlas_archiver_snapshots_lost_total", "two-flex"),
        Some(1.0)
    );
    assert_eq!(
        m("atlas_archiver_snapshots_lost_total", "one-flex"),
        Some(0.0)
    );
    // Never run: every series there, 0 for "never", looked after since this start.
    assert_eq!(
        m("atlas_archiver_last_success_timestamp_seconds", "new-flex"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        m(
            "atlas_archiver_newest_archived_snapshot_timestamp_seconds",
            "new-flex"
        ),
        Some(0.0)
    );
    let since = m(
        "atlas_archiver_target_watched_since_timestamp_seconds",
        "new-flex",
    )
    .unwrap();
    assert!((started - since).abs() < 120.0, "{since} vs {started}");
    // two-flex ran before: it is looked after since that run, not since this start.
    let since_two = m(
        "atlas_archiver_target_watched_since_timestamp_seconds",
        "two-flex",
    )
    .unwrap();
    assert!(since_two <= since, "{since_two} > {since}");
    assert!(
        page.contains(&format!(
            "atlas_archiver_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{page}"
    );

    assert_eq!(
        m("atlas_archiver_last_run_status", "two-flex"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        m("atlas_archiver_last_archive_size_bytes", "one-flex"),
        Some(f64::from(1u32 << 20))
    );
    signal(&child, "-TERM");
    let (code, stderr, _) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");

    // A second daemon that runs every two seconds, prunes and meets a failing job: every family
    // has a series, so its names can all be checked.
    let failing = atlas_archiver::simulator::SimSnapshot {
        id: "6a6f78e0fa11fa11fa110001".into(),
        size: 1 << 20,
        status: "COMPLETED".into(),
        scheduled: chrono::Utc::now(),
        finished: chrono::Utc::now(),
    };
    w.sim.add_snapshot(PROJECT, "two-flex", failing.clone());
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(failing.id.clone());
    });
    // And a cluster that only a [[discover]] selector finds.
    w.sim.add_cluster(atlas_archiver::simulator::SimCluster {
        project_id: PROJECT.into(),
        name: "found-flex".into(),
        ..Default::default()
    });
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "cron = \"0 0 0 1 1 *\"\nrun_on_first_start = false",
        "cron = \"*/2 * * * * *\"",
    ) + &format!(
        "\n[[discover]]\nprojects = [\"{PROJECT}\"]\nname = \"found-*\"\n\n[retention]\nkeep_last = 1\nmin_keep = 1\n"
    );
    std::fs::write(&config, text).unwrap();
    let child = spawn_run(&w, &config, &notify);
    wait_for(
        "every family in /metrics",
        Duration::from_secs(90),
        async || {
            page = match http.get(format!("{base}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            page.contains("atlas_archiver_archive_failures_total{")
                && metric(
                    &page,
                    &format!("atlas_archiver_archives_kept{}", l("one-flex")),
                ) == Some(1.0)
        },
    )
    .await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let readme_table: String = read("README.md")
        .lines()
        .filter(|l| l.starts_with("| `atlas_archiver_"))
        .collect::<Vec<_>>()
        .join("\n");
    // Queries must name the samples exactly; the README's table may name a family.
    let samples = exposed_names(&page, false);
    let with_families = exposed_names(&page, true);
    for (file, text, exposed) in [
        (
            "deploy/prometheus/alerts.yaml",
            read("deploy/prometheus/alerts.yaml"),
            &samples,
        ),
        (
            "deploy/prometheus/alerts.test.yaml",
            read("deploy/prometheus/alerts.test.yaml"),
            &samples,
        ),
        (
            "deploy/grafana/atlas-archiver.json",
            read("deploy/grafana/atlas-archiver.json"),
            &samples,
        ),
        ("README.md (metrics table)", readme_table, &with_families),
    ] {
        let named = named_metrics(&text);
        assert!(!named.is_empty(), "{file} names no metric");
        let missing: Vec<&String> = named.iter().filter(|n| !exposed.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics the daemon does not export: {missing:?}\nexported: {exposed:?}"
        );
    }
    signal(&child, "-TERM");
    let (code, stderr, _) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");
}
