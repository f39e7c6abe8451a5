//! The binary as a user runs it, for what needs no S3 server: `demo`, `check-config`, usage and
//! configuration errors, `--help`.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::run_binary;

const CONFIG: &str = r#"
[atlas]
client_id = "mdb_sa_id_x"
client_secret_file = "secret"

[storage]
bucket = "atlas-archive"
endpoint = "http://127.0.0.1:9"
access_key_id = "AKIAEXAMPLE"
secret_access_key = "storage-secret-value"

[journal]
path = "state/journal.sqlite"

[[target]]
project_id = "32b6e34b3d91647abb20e7b8"
cluster = "orders-flex"
"#;

fn scratch(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    std::fs::write(dir.path().join("secret"), "atlas-secret-value\n").unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_archives_and_verifies_without_any_account() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = run_binary(&["demo", "--dir", &out.to_string_lossy()], &[], dir.path()).await;
    run.assert_code(0);
    let verified = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("ok ") && l.ends_with(".tar.gz"))
        .count();
    // Three snapshots of three clusters, and two of a sharded one, one file per replica set.
    assert_eq!(verified, 9 + 2 * 4, "{}", run.stdout);
    assert!(
        run.stdout.contains("discovered       32b6e34b3d91647abb20e7b8/catalog-sharded  (discover[0]: kind dedicated, tags env=prod)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("MISMATCH"), "{}", run.stdout);
    // The dedicated replica set is found by the demo's [[discover]] selector, and says why.
    assert!(
        run.stdout.contains("discovered       32b6e34b3d91647abb20e7b8/payments-m10  (discover[0]: kind dedicated, tags env=prod)"),
        "{}",
        run.stdout
    );
    // The README's first command: no error, no warning, no debug dump (issue 9), and each
    // archive's validation shown.
    let all = format!("{}{}", run.stdout, run.stderr);
    for noise in ["ERROR", "WARN", "Error {", "{ kind:", "source:"] {
        assert!(!all.contains(noise), "the demo printed {noise:?}:\n{all}");
    }
    assert_eq!(
        run.stdout.matches("valid tar.gz, ").count(),
        11,
        "each archive's validation is shown: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains("11 snapshots already archived"),
        "{}",
        run.stdout
    );
    // And the way back: the newest snapshot restored from the bucket, verified and unpacked.
    assert!(
        run.stdout.contains("sha256 matches the manifest")
            && run.stdout.contains("tar entries unpacked into"),
        "{}",
        run.stdout
    );
    assert!(out.join("restored/WiredTiger").is_file(), "{}", run.stdout);
    let files: Vec<_> = walk(&out.join("s3"))
        .into_iter()
        .filter(|p| p.ends_with(".tar.gz"))
        .collect();
    // Nine archives, and four files for each of the sharded cluster's two snapshots.
    assert_eq!(files.len(), 9 + 2 * 4, "{files:?}");
    let status = run_binary(
        &[
            "status",
            "--config",
            &out.join("config.toml").to_string_lossy(),
        ],
        &[],
        dir.path(),
    )
    .await;
    status.assert_code(0);
    let archived_rows = status
        .stdout
        .lines()
        .filter(|l| l.contains(" archived ") && l.ends_with(".tar.gz"))
        .count();
    assert_eq!(archived_rows, 11, "{}", status.stdout);
    // Two Flex clusters, a dedicated replica set and a sharded cluster, told apart by Atlas itself.
    assert!(status.stdout.contains("payments-m10"), "{}", status.stdout);
    assert!(
        status.stdout.contains("catalog-sharded"),
        "{}",
        status.stdout
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = scratch(CONFIG);
    let run = run_binary(
        &["check-config", "--config", "config.toml"],
        &[("ATLAS_ARCHIVER__STORAGE__PREFIX", "from-env/")],
        dir.path(),
    )
    .await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("prefix = \"from-env/\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("client_secret = \"***\""),
        "{}",
        run.stdout
    );
    assert!(
        !run.all().contains("atlas-secret-value") && !run.all().contains("storage-secret-value"),
        "{}",
        run.all()
    );
    assert!(
        dir.path().join("state").is_dir(),
        "the journal directory was checked by creating it"
    );
}

#[tokio::test]
async fn the_config_path_comes_from_the_environment_variable() {
    let dir = scratch(CONFIG);
    let path = dir.path().join("config.toml");
    let run = run_binary(
        &["check-config"],
        &[("ATLAS_ARCHIVER_CONFIG", &path.to_string_lossy())],
        dir.path(),
    )
    .await;
    run.assert_code(0);
    let missing = run_binary(&["check-config"], &[], dir.path()).await;
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("/etc/atlas-archiver/config.toml"),
        "{}",
        missing.stderr
    );
}

#[tokio::test]
async fn configuration_mistakes_exit_2_and_name_the_key() {
    let cases = [
        (
            CONFIG.replace("orders-flex", "orders_flex"),
            "target[0].cluster",
        ),
        (CONFIG.replace("bucket =", "buckett ="), "buckett"),
        (CONFIG.replace("[journal]", "[journal]\nsize = 1"), "size"),
        (
            CONFIG.replace(
                "[journal]",
                "[schedule]\ncron = \"0 25 * * *\"\n\n[journal]",
            ),
            "schedule.cron",
        ),
        (
            CONFIG.replace(
                "[journal]",
                "[schedule]\ntimezone = \"Europe/Berln\"\n\n[journal]",
            ),
            "schedule.timezone",
        ),
        (
            CONFIG.replace(
                "client_secret_file = \"secret\"",
                "client_secret_file = \"nope\"",
            ),
            "atlas.client_secret_file",
        ),
        (
            CONFIG.replace("state/journal.sqlite", "/etc/passwd/journal.sqlite"),
            "journal.path",
        ),
    ];
    for (text, key) in cases {
        let dir = scratch(&text);
        for command in ["check-config", "once", "run"] {
            let run = run_binary(&[command, "--config", "config.toml"], &[], dir.path()).await;
            if key == "journal.path" && command != "check-config" {
                continue; // `once` and `run` report an unusable journal as a runtime failure (exit 1).
            }
            run.assert_code(2);
            assert!(
                run.stderr.contains(key) && run.stderr.contains("config.toml"),
                "{command}: {}",
                run.stderr
            );
            assert!(
                !run.all().contains("atlas-secret-value")
                    && !run.all().contains("storage-secret-value")
            );
        }
    }
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = scratch(CONFIG);
    run_binary(&["once", "--no-such-flag"], &[], dir.path())
        .await
        .assert_code(2);
    run_binary(&["frobnicate"], &[], dir.path())
        .await
        .assert_code(2);
    let bad_target = run_binary(
        &["once", "--config", "config.toml", "--target", "nope"],
        &[],
        dir.path(),
    )
    .await;
    bad_target.assert_code(2);
    assert!(
        bad_target.stderr.contains("PROJECT_ID/CLUSTER"),
        "{}",
        bad_target.stderr
    );
}

#[tokio::test]
async fn help_never_shows_secrets_from_the_environment() {
    let dir = scratch(CONFIG);
    let env = [
        ("MONGODB_ATLAS_CLIENT_SECRET", "env-secret-123"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-456"),
    ];
    for args in [
        &["--help"][..],
        &["once", "--help"],
        &["demo", "--help"],
        &["list", "--help"],
        &["restore", "--help"],
    ] {
        let run = run_binary(args, &env, dir.path()).await;
        run.assert_code(0);
        assert!(run.stdout.contains("Usage"), "{}", run.stdout);
        assert!(!run.all().contains("env-secret-123") && !run.all().contains("aws-secret-456"));
    }
}

#[tokio::test]
async fn status_without_a_journal_says_so() {
    let dir = scratch(CONFIG);
    let run = run_binary(&["status", "--config", "config.toml"], &[], dir.path()).await;
    run.assert_code(1);
    assert!(run.stderr.contains("does not exist yet"), "{}", run.stderr);
}

#[tokio::test]
async fn an_unreachable_bucket_fails_the_run_with_exit_1() {
    let dir = scratch(&CONFIG.replace("[atlas]", "[atlas]\nbase_url = \"http://127.0.0.1:9\""));
    let run = run_binary(&["once", "--config", "config.toml"], &[], dir.path()).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("cannot reach bucket atlas-archive"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("storage-secret-value"));
    // One readable line, never the SDK's Debug dump of the raw response.
    for line in run.stderr.lines().filter(|l| l.contains("bucket")) {
        assert!(
            !line.contains("ErrorMetadata") && !line.contains("SdkBody") && line.len() < 400,
            "{line}"
        );
    }
}

/// Issue 14: completions for each shell and the manual page, generated from the clap
/// definitions, so they name every subcommand; bash and zsh accept the scripts' syntax.
#[tokio::test]
async fn completions_and_the_manual_page_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let subcommands = [
        "once",
        "run",
        "verify",
        "list",
        "restore",
        "prune",
        "check-config",
    ];
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = run_binary(&["completions", shell], &[], dir.path()).await;
        run.assert_code(0);
        for sub in subcommands {
            assert!(run.stdout.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(run.stdout.contains("--thaw"), "{shell}: restore's flags");
        let file = dir.path().join(format!("completion.{shell}"));
        std::fs::write(&file, &run.stdout).unwrap();
        let checker = match shell {
            "bash" => Some("bash"),
            "zsh" if std::path::Path::new("/usr/bin/zsh").exists() => Some("zsh"),
            _ => None,
        };
        if let Some(program) = checker {
            let check =
                common::run_program(program, &["-n", &file.to_string_lossy()], &[], dir.path())
                    .await;
            check.assert_code(0);
        }
    }
    let bad = run_binary(&["completions", "tcsh"], &[], dir.path()).await;
    bad.assert_code(2);
    let man = run_binary(&["man"], &[], dir.path()).await;
    man.assert_code(0);
    assert!(
        man.stdout.contains(".TH atlas-archiver 1"),
        "{}",
        man.stdout
    );
    let pages = dir.path().join("man1");
    std::fs::create_dir(&pages).unwrap();
    let all = run_binary(&["man", "--dir", &pages.to_string_lossy()], &[], dir.path()).await;
    all.assert_code(0);
    for sub in subcommands {
        // roff escapes '-' as "\-" in the text; file names are plain.
        assert!(
            man.stdout.contains(&format!(
                "atlas\\-archiver\\-{}(1)",
                sub.replace('-', "\\-")
            )),
            "the manual page does not point to {sub}"
        );
        let page = std::fs::read_to_string(pages.join(format!("atlas-archiver-{sub}.1"))).unwrap();
        assert!(page.contains(".TH atlas-archiver-"), "{sub}: {page}");
    }
    let restore = std::fs::read_to_string(pages.join("atlas-archiver-restore.1")).unwrap();
    assert!(restore.contains("thaw"), "{restore}");
}

/// Serves one HTTP answer with `status` on loopback; returns the URL of its /healthz.
fn one_answer(status: &'static str) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let body = "watchdog: idle\n";
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/healthz")
}

/// Issue 14: `healthcheck`, the container's HEALTHCHECK, asks /healthz over real HTTP: 200 is
/// healthy (0), anything else or no answer is not (1), and it says which.
#[tokio::test]
async fn healthcheck_asks_the_daemon_and_exits_by_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run_binary(
        &["healthcheck", "--url", &one_answer("200 OK")],
        &[],
        dir.path(),
    )
    .await;
    ok.assert_code(0);
    assert!(ok.stdout.starts_with("healthy"), "{}", ok.stdout);
    let bad = run_binary(
        &[
            "healthcheck",
            "--url",
            &one_answer("503 Service Unavailable"),
        ],
        &[],
        dir.path(),
    )
    .await;
    bad.assert_code(1);
    assert!(
        bad.stdout.contains("503") && bad.stdout.contains("watchdog: idle"),
        "{}",
        bad.stdout
    );
    // Nothing listening there (the port of a listener just closed).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = run_binary(
        &["healthcheck", "--url", &format!("http://{closed}/healthz")],
        &[],
        dir.path(),
    )
    .await;
    gone.assert_code(1);
    assert!(gone.stdout.contains("did not answer"), "{}", gone.stdout);
    // From the config: [server] listen "" serves nothing, which is a config error.
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, format!("{CONFIG}\n[server]\nlisten = \"\"\n")).unwrap();
    let off = run_binary(
        &["healthcheck", "--config", &cfg.to_string_lossy()],
        &[],
        dir.path(),
    )
    .await;
    off.assert_code(2);
    assert!(off.stderr.contains("server.listen"), "{}", off.stderr);
}

/// Issue 14: under systemd's journal (JOURNAL_STREAM set) every stderr line opens with its syslog
/// priority, so `journalctl -p err` shows the failure; without it, no prefix.
#[tokio::test]
async fn under_the_journal_each_line_carries_its_priority() {
    let dir = scratch(&CONFIG.replace("[atlas]", "[atlas]\nbase_url = \"http://127.0.0.1:9\""));
    let journal = run_binary(
        &["once", "--config", "config.toml"],
        &[("JOURNAL_STREAM", "8:12345")],
        dir.path(),
    )
    .await;
    journal.assert_code(1);
    let lines: Vec<&str> = journal.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let priority = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .and_then(|(n, _)| n.parse::<u8>().ok());
        assert!(
            priority.is_some_and(|p| p <= 7),
            "no priority: {line}\n{}",
            journal.stderr
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>error: cannot reach bucket")),
        "{}",
        journal.stderr
    );
    let plain = run_binary(&["once", "--config", "config.toml"], &[], dir.path()).await;
    assert!(
        plain.stderr.lines().all(|l| !l.starts_with('<')),
        "{}",
        plain.stderr
    );
}

/// Issue 14: `--log-level` wins over `RUST_LOG` (the harness sets `RUST_LOG=atlas_archiver=debug`
/// for every run); without the flag, `RUST_LOG` wins over the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_flag_wins_over_rust_log() {
    let w = common::World::new(
        "log-level",
        atlas_archiver::simulator::scenario(
            "5f0a1b2c3d4e5f60718293a7",
            &["logs-flex"],
            1,
            &[200_000],
        ),
    )
    .await;
    let config = w.write_config("", "");
    let cfg = config.to_string_lossy().into_owned();
    let chatty = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.contains(" DEBUG ") || l.contains(" INFO "))
    };
    let by_flag = w
        .run(&["once", "--config", &cfg, "--log-level", "error"], &[])
        .await;
    by_flag.assert_code(0);
    assert!(!chatty(&by_flag.stderr), "{}", by_flag.stderr);
    let by_env = w.run(&["once", "--config", &cfg], &[]).await;
    by_env.assert_code(0);
    assert!(chatty(&by_env.stderr), "{}", by_env.stderr);
}

/// A stdout that cannot be written (here `/dev/full`, which answers every write with ENOSPC, as
/// a full disk under `> report.json` does): the demo's work still completes, the failure is
/// one readable line on stderr and the exit code is 1; no panic, no backtrace.
#[test]
fn a_full_disk_under_stdout_is_an_error_line_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"))
        .args(["demo", "--dir", &out.to_string_lossy()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("cannot write the output to stdout: No space left on device"))
            .count(),
        1,
        "{stderr}"
    );
    // The work itself was done: the demo's journal holds its archives.
    assert!(out.join("journal.sqlite").is_file());
}

/// `simulate --clusters N` serves N Flex clusters (the scale benchmark's organisation), prints a
/// `[[target]]` for each, and tells what it served on `/_simulator/observed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_serves_many_clusters_and_counts_what_it_served() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let port = common::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"))
        .args([
            "simulate",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--snapshot-size",
            "64KiB",
            "--snapshots",
            "2",
            "--clusters",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let stop = line.starts_with("Stop with Ctrl-C");
        printed.push(line);
        if stop {
            break;
        }
    }
    let clusters: Vec<&String> = printed
        .iter()
        .filter(|l| l.starts_with("cluster = "))
        .collect();
    assert_eq!(
        clusters,
        [
            "cluster = \"bench-flex-0001\"",
            "cluster = \"bench-flex-0002\"",
            "cluster = \"bench-flex-0003\""
        ],
        "{printed:#?}"
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let observed = |http: reqwest::Client| {
        let url = format!("{base}/_simulator/observed");
        async move { common::parse_json(&http.get(url).send().await.unwrap().text().await.unwrap()) }
    };
    assert_eq!(observed(http.clone()).await["api_requests"], 0);
    // A request without credentials is refused, and still counted as an API request.
    let listing = http
        .get(format!(
            "{base}/api/atlas/v2/groups/32b6e34b3d91647abb20e7b8/flexClusters/bench-flex-0002/backup/snapshots"
        ))
        .header("accept", "application/vnd.atlas.2024-11-13+json")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(observed(http.clone()).await["api_requests"], 1);
    assert_eq!(observed(http).await["snapshot_downloads"], 0);
}
