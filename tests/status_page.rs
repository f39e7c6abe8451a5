//! Issue 13: the status page (`GET /`) in a real browser. The daemon runs four targets: one that
//! archives, one whose restore jobs fail, one whose snapshot is still streaming (the simulator
//! throttles downloads), one whose schedule has not come yet. Headless Chromium loads the page
//! from the running daemon; the rendered DOM (`--dump-dom`) must show each target's state, last
//! success, recovery point, next run, archives, the failure's reason and the transfer in
//! flight, and no secret or URL; screenshots at phone and desktop width are kept as test
//! artifacts (`target/tmp/status-page/`).
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use atlas_archiver::simulator::scenario;
use common::{World, daemon_config, finish, free_port, signal, spawn_daemon, wait_for};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293b1";
/// Far more than any step here takes: a hang fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

/// The browser: `ATLAS_ARCHIVER_TEST_BROWSER` (scripts/test.sh sets it, so CI cannot skip),
/// else `chromium` when installed.
fn browser() -> Option<String> {
    if let Ok(b) = std::env::var("ATLAS_ARCHIVER_TEST_BROWSER") {
        return Some(b);
    }
    std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "chromium".to_owned())
}

/// Runs headless Chromium with `args` on `url` and returns its stdout.
async fn chromium(browser: &str, profile: &Path, args: &[String], url: &str) -> String {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args([
        "--headless",
        // The tests run as root in CI, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{browser} did not finish within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {browser} (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{browser} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<article>` of one target in `dom`.
fn article<'a>(dom: &'a str, cluster: &str) -> &'a str {
    let marker = format!("data-target=\"{PROJECT}/{cluster}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no article for {cluster} in\n{dom}"));
    let end = dom[start..]
        .find("</article>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_state_in_a_real_browser() {
    let Some(browser) = browser() else {
        eprintln!(
            "SKIPPED: no chromium (scripts/test.sh installs Debian's chromium and runs this test)"
        );
        return;
    };
    let mut clusters = scenario(
        PROJECT,
        &["good-flex", "bad-flex", "slow-flex", "later-flex"],
        1,
        &[256 << 10],
    );
    clusters[2].snapshots[0].size = 48 << 20;
    let w = World::new("status-page", clusters).await;
    let bad = w.sim.clusters()[1].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(bad.clone());
        // 48 MiB at 1 MiB/s: the slow snapshot is in flight while the browser looks.
        f.throttle_bytes_per_sec = Some(1 << 20);
    });
    let port = free_port();
    let config = daemon_config(&w, port, "1s", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "cluster = \"later-flex\"\n",
        "cluster = \"later-flex\"\ncron = \"0 0 0 1 1 *\"\n",
    );
    assert!(text.contains("cron = \"0 0 0 1 1 *\""), "{text}");
    std::fs::write(&config, text).unwrap();
    let daemon = spawn_daemon(&w, &config, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    // Until the good target has archived, the bad one has failed and the slow one streams.
    let mut page = String::new();
    wait_for("the page to show every state", PATIENCE, async || {
        let Ok(r) = http.get(format!("{base}/")).send().await else {
            return false;
        };
        page = r.text().await.unwrap_or_default();
        page.contains("data-state=\"failing\"")
            && page.contains(&format!(
                "data-target=\"{PROJECT}/good-flex\" data-state=\"ok\""
            ))
            && page.contains("slow-flex")
            && page.contains("<progress max=")
    })
    .await;
    let response = http.get(format!("{base}/")).send().await.unwrap();
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'"),
        "no script or external asset may load: {csp:?}"
    );
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html")),
    );

    let dir = artifacts();
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(
        &browser,
        profile.path(),
        &["--dump-dom".into()],
        &format!("{base}/"),
    )
    .await;
    std::fs::write(dir.join("status-page.dom.html"), &dom).unwrap();

    assert!(
        dom.contains("<meta name=\"viewport\""),
        "readable on a phone"
    );
    assert!(
        dom.contains("id=\"summary\"") && dom.contains("1 failing, 1 OK, 2 new"),
        "the headline counts the states: {dom}"
    );

    let good = article(&dom, "good-flex");
    assert!(good.contains("data-state=\"ok\""), "{good}");
    assert!(good.contains("data-field=\"last-success\""), "{good}");
    assert!(!good.contains(">never<"), "{good}");
    assert!(good.contains("snapshot taken"), "a recovery point: {good}");
    assert!(
        good.contains("<dd>1 archive · 256.0 KiB</dd>"),
        "archives: {good}"
    );
    assert!(good.contains("data-field=\"next-run\""), "{good}");
    // Its cron fires every 2 s, so the browser may catch one of its runs in progress (found
    // by CI): the row then says so, and otherwise names the next run to come.
    if good.contains("data-running=\"true\"") {
        assert!(good.contains("<dd>running now</dd>"), "{good}");
    } else {
        assert!(good.contains("UTC (in "), "a next run to come: {good}");
    }

    let failing = article(&dom, "bad-flex");
    assert!(failing.contains("data-state=\"failing\""), "{failing}");
    assert!(failing.contains("Recent failures (1)"), "{failing}");
    assert!(
        failing.contains(&format!("data-failure=\"{bad}\"")),
        "{failing}"
    );
    assert!(
        failing.contains("class=\"reason\">RESTORE_JOB_FAILED<"),
        "the failure's reason code: {failing}"
    );
    assert!(
        failing.contains("<dd>never</dd>") && failing.contains("no snapshot archived yet"),
        "{failing}"
    );

    let streaming = article(&dom, "slow-flex");
    assert!(
        streaming.contains("data-state=\"never-run\" data-running=\"true\""),
        "its first run is in progress: {streaming}"
    );
    assert!(streaming.contains("running now"), "{streaming}");
    let transfers =
        &dom[dom.find("id=\"transfers\"").unwrap()..dom.find("id=\"targets\"").unwrap()];
    assert!(
        transfers.contains(&format!("{PROJECT}/slow-flex")) && transfers.contains("of 48.0 MiB"),
        "the transfer in flight with its size: {transfers}"
    );

    let later = article(&dom, "later-flex");
    assert!(later.contains("data-state=\"never-run\""), "{later}");
    assert!(
        later.contains(">NEW<") && later.contains("<dd>none yet</dd>"),
        "{later}"
    );
    assert!(
        later.contains("-01-01 00:00 UTC (in "),
        "its next run is its own cron's: {later}"
    );

    for secret in w.secrets() {
        assert!(!dom.contains(&secret), "the page shows {secret:?}");
    }
    assert!(!dom.contains("<script"), "no script");
    assert!(!dom.contains(&w.sim.base_url()), "no Atlas URL on the page");

    for (name, size) in [("phone", "412,1600"), ("desktop", "1280,1000")] {
        let shot = dir.join(format!("status-page-{name}.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(
            &browser,
            profile.path(),
            &[
                format!("--screenshot={}", shot.display()),
                format!("--window-size={size}"),
            ],
            &format!("{base}/"),
        )
        .await;
        let png = std::fs::read(&shot).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "a screenshot of the page at {name} width ({} bytes)",
            png.len()
        );
        eprintln!("screenshot: {}", shot.display());
    }

    signal(&daemon, "-TERM");
    let (code, _, _) = finish(daemon, PATIENCE).await;
    assert_eq!(code, 0);
}
