//! `verify`, `journal rebuild`, `healthcheck` and `notify-test`.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use super::Failure;
use super::once::select_targets;
use super::progress::Display;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::journal::Journal;
use atlas_archiver_engine::pipeline::rebuild::rebuild as rebuild_journal;
use atlas_archiver_engine::pipeline::verify::{Verdict, verify as verify_archives};
use atlas_archiver_engine::progress::Board;
use atlas_archiver_engine::store::ObjectStore;

pub(super) async fn verify(
    path: &Path,
    env: &HashMap<String, String>,
    target_args: &[String],
    all: bool,
    json: bool,
    display: Option<&Display>,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    let targets = if target_args.is_empty() {
        Vec::new()
    } else {
        select_targets(&config, target_args)?
    };
    let journal = Journal::open_read_only(&config.journal.path)?;
    let store = ObjectStore::connect(&config.storage).await;
    let board = Board::default();
    let watch = display.map(|d| d.watch(board.clone()));
    let findings = verify_archives(
        &store,
        &journal,
        &config.storage.prefix,
        &targets,
        all,
        &board,
    )
    .await;
    drop(watch);
    let findings = findings?;
    let bad = findings.iter().filter(|f| f.verdict.is_problem()).count();
    let cold = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Cold)
        .count();
    if json {
        let text = serde_json::to_string_pretty(&findings)?;
        outln!("{text}");
    } else {
        for f in &findings {
            let label = match f.verdict {
                Verdict::Ok => "ok",
                Verdict::Missing => "MISSING",
                Verdict::ManifestMissing => "NO MANIFEST",
                Verdict::Mismatch => "MISMATCH",
                Verdict::Extra => "EXTRA",
                Verdict::Cold => "cold",
            };
            outln!("{label:<12} {}  {}", f.key, f.detail);
        }
        let cold_note = if cold > 0 {
            format!(", {cold} in a cold storage class (sizes checked by HEAD only)")
        } else {
            String::new()
        };
        outln!(
            "\n{} checked, {} ok{cold_note}, {bad} with problems",
            findings.len(),
            findings.len() - bad - cold
        );
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn rebuild(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    let store = super::connect_store(&config).await?;
    let (journal, moved) = Journal::open_fresh(&config.journal.path)?;
    if let Some(old) = &moved {
        outln!("the old journal was moved to {}", old.display());
    }
    let report = rebuild_journal(&store, &journal, &config.storage.prefix)
        .await
        .map_err(|e| Failure::Runtime(format!("rebuild failed: {e}")))?;
    outln!(
        "journal {} rebuilt from the bucket: {} archived snapshots recovered, {} manifests skipped",
        config.journal.path.display(),
        report.recovered,
        report.skipped
    );
    Ok(ExitCode::SUCCESS)
}

/// `healthcheck`: GET the daemon's `/healthz` (at `[server] listen`, or `url`) within 10 s.
pub(super) async fn healthcheck(
    path: &Path,
    env: &HashMap<String, String>,
    url: Option<String>,
) -> Result<ExitCode, Failure> {
    let url = match url {
        Some(u) => u,
        None => {
            let config = Config::load(path, env, Secrets::Skip)?;
            let Some(listen) = config.server.listen else {
                return Err(Failure::Usage(format!(
                    "config file {}: `server.listen` is \"\": the daemon serves no /healthz to ask",
                    path.display()
                )));
            };
            // A wildcard listener is asked on loopback.
            let ip = if listen.ip().is_unspecified() {
                if listen.is_ipv4() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                }
            } else {
                listen.ip()
            };
            format!(
                "http://{}/healthz",
                std::net::SocketAddr::new(ip, listen.port())
            )
        }
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot build an HTTP client: {e}")))?;
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            outln!("healthy: {url} answered {}", r.status());
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            outln!("unhealthy: {url} answered {status}: {}", body.trim());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            outln!("unhealthy: {url} did not answer: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `notify-test`: a test message to each channel, sent now (one try each).
pub(super) async fn notify_test(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    if config.notify.channels.is_empty() {
        return Err(Failure::Usage(format!(
            "config file {} has no [[notify]] channel to test",
            config.source.display()
        )));
    }
    let results = crate::alerts::test_channels(&config.notify).await;
    let mut failed = 0;
    for (channel, result) in &results {
        match result {
            Ok(()) => outln!("ok      {channel}"),
            Err(e) => {
                failed += 1;
                outln!("FAILED  {channel}: {e}");
            }
        }
    }
    if config.notify.heartbeat.is_some() {
        outln!("(the heartbeat is not pinged: a test ping would tell it a run succeeded)");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
