//! End to end through the real binary: the Atlas simulator on loopback, a real S3-compatible
//! server (moto or Garage via scripts/test.sh), a real SQLite journal.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use atlas_archiver::simulator::{
    RangeFault, SIM_PRIVATE_KEY, SIM_PUBLIC_KEY, SimSnapshot, scenario,
};
use common::{World, parse_json};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";

fn two_targets() -> Vec<atlas_archiver::simulator::SimCluster> {
    // Sizes: one that spans three 5 MiB parts, one smaller than a part, one odd size.
    scenario(
        PROJECT,
        &["orders-flex", "billing-flex"],
        3,
        &[(12 << 20) + 7, 3 << 20, 777_777],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_archives_every_snapshot_of_two_targets_exactly_once() {
    let w = World::new("all", two_targets()).await;
    let config = w.write_config("", "part_size = \"5MiB\"\nparts_in_flight = 2");
    let cfg = config.to_string_lossy().into_owned();

    let first = w.run(&["once", "--config", &cfg], &[]).await;
    first.assert_code(0);
    first.assert_no_secrets(&w.secrets());

    let keys = w.keys().await;
    let mut archives = 0;
    for cluster in w.sim.clusters() {
        for snap in &cluster.snapshots {
            let (key, size) = keys
                .iter()
                .find(|(k, _)| k.ends_with(&format!("{}.tar.gz", snap.id)))
                .unwrap_or_else(|| panic!("no archive for {} in {keys:?}", snap.id));
            let date = snap.finished.format("%Y-%m-%d").to_string();
            assert_eq!(
                key,
                &format!(
                    "{}{PROJECT}/{}/{date}/{}.tar.gz",
                    w.prefix, cluster.name, snap.id
                )
            );
            assert_eq!(*size, snap.size, "{key}");
            assert_eq!(
                w.sha256_of_object(key).await,
                snap.sha256(),
                "bytes of {key}"
            );
            let manifest =
                w.s3.client()
                    .await
                    .get_small(&format!("{key}.manifest.json"))
                    .await;
            let manifest = parse_json(&String::from_utf8_lossy(
                &manifest
                    .unwrap()
                    .unwrap_or_else(|| panic!("no manifest for {key}")),
            ));
            assert_eq!(manifest["snapshot_id"], snap.id.as_str());
            assert_eq!(manifest["project_id"], PROJECT);
            assert_eq!(manifest["cluster"], cluster.name.as_str());
            assert_eq!(manifest["size_bytes"], snap.size);
            assert_eq!(manifest["sha256"], snap.sha256().as_str());
            assert_eq!(manifest["mongodb_version"], "8.0.29");
            assert_eq!(manifest["crc32c"].as_str().map(str::len), Some(8));
            assert!(manifest["restore_job_id"].is_string());
            assert!(manifest["tool_version"].is_string());
            // What the content validation saw is recorded for a restore to check against.
            let entries = manifest["content"]["tar_entries"].as_u64().unwrap_or(0);
            let built = atlas_archiver::simulator::content::SnapshotBytes::new(&snap.id, snap.size);
            assert_eq!(entries, built.entry_count() as u64, "{manifest}");
            assert!(entries > 0);
            let top: Vec<String> = manifest["content"]["top_level"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            assert_eq!(top, built.top_level_entries());
            archives += 1;
        }
    }
    assert_eq!(archives, 6);
    assert_eq!(
        keys.len(),
        12,
        "six archives and six manifests, nothing else: {keys:?}"
    );
    assert!(
        w.open_uploads().await.is_empty(),
        "no multipart upload may stay open"
    );
    let seen = w.sim.observed();
    assert_eq!(seen.credentials_sent_to_snapshot_url, 0);
    assert_eq!(seen.missing_accept, 0);
    assert_eq!(seen.snapshot_downloads, 6);
    assert_eq!(seen.token_requests, 1, "the token is cached across calls");

    let second = w.run(&["once", "--config", &cfg], &[]).await;
    second.assert_code(0);
    let again = w.sim.observed();
    assert_eq!(
        again.download_requests, seen.download_requests,
        "a second run requests nothing"
    );
    assert_eq!(
        again.snapshot_downloads, seen.snapshot_downloads,
        "a second run downloads nothing"
    );
    assert!(
        second.stdout.contains("archived earlier"),
        "{}",
        second.stdout
    );

    let status = w.run(&["status", "--config", &cfg, "--json"], &[]).await;
    status.assert_code(0);
    let report = parse_json(&status.stdout);
    let targets = report["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("targets: {report}"));
    assert_eq!(targets.len(), 2);
    for t in targets {
        let snaps = t["snapshots"]
            .as_array()
            .unwrap_or_else(|| panic!("snapshots: {t}"));
        assert_eq!(snaps.len(), 3);
        for s in snaps {
            assert_eq!(s["state"], "archived");
            assert_eq!(s["sha256"].as_str().map(str::len), Some(64));
            assert!(
                s["object_key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(&w.prefix))
            );
            assert!(s["last_error"].is_null());
        }
    }
    let human = w.run(&["status", "--config", &cfg], &[]).await;
    human.assert_code(0);
    assert!(
        human.stdout.contains("archived") && human.stdout.contains("orders-flex"),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_flag_limits_the_run() {
    let w = World::new("target", two_targets()).await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let run = w
        .run(
            &[
                "once",
                "--config",
                &cfg,
                "--target",
                &format!("{PROJECT}/billing-flex"),
            ],
            &[],
        )
        .await;
    run.assert_code(0);
    let keys = w.keys().await;
    assert_eq!(keys.len(), 6);
    assert!(
        keys.keys().all(|k| k.contains("/billing-flex/")),
        "{keys:?}"
    );
    let unknown = w
        .run(
            &[
                "once",
                "--config",
                &cfg,
                "--target",
                &format!("{PROJECT}/nope"),
            ],
            &[],
        )
        .await;
    unknown.assert_code(2);
    assert!(unknown.stderr.contains("not in"), "{}", unknown.stderr);
}

async fn truncated_download_leaves_nothing_behind(chunked: bool) {
    let w = World::new(if chunked { "cut-chunked" } else { "cut" }, two_targets()).await;
    let victim = w.sim.clusters()[0]
        .snapshots
        .iter()
        .max_by_key(|s| s.size)
        .cloned()
        .unwrap_or_else(|| panic!("snapshots"));
    assert!(victim.size > 6 << 20);
    w.sim.set_faults(|f| {
        f.cut_after.insert(victim.id.clone(), 6 << 20);
        f.chunked = chunked;
    });
    let cfg = w
        .write_config("", "part_size = \"5MiB\"")
        .to_string_lossy()
        .into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(1);
    run.assert_no_secrets(&w.secrets());
    let keys = w.keys().await;
    assert_eq!(
        keys.len(),
        10,
        "the five other snapshots and their manifests: {keys:?}"
    );
    assert!(
        !keys.keys().any(|k| k.contains(&victim.id)),
        "nothing of the cut snapshot: {keys:?}"
    );
    assert!(
        w.open_uploads().await.is_empty(),
        "the multipart upload was aborted"
    );
    // Three attempts; with parts already uploaded, a second GET per retry asks for a range first.
    let downloads = w.sim.observed().snapshot_downloads;
    assert!(
        (5 + 3..=5 + 5).contains(&downloads),
        "{downloads} downloads"
    );

    let status = parse_json(
        &w.run(&["status", "--config", &cfg, "--json"], &[])
            .await
            .stdout,
    );
    let row = status["targets"][0]["snapshots"]
        .as_array()
        .and_then(|s| s.iter().find(|r| r["snapshot_id"] == victim.id.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no row for the victim: {status}"));
    assert_eq!(row["state"], "failed");
    assert_eq!(row["attempts"], 3);
    let reason = row["last_reason"].as_str().unwrap_or_default();
    assert!(
        matches!(reason, "DOWNLOAD_INTERRUPTED" | "TRUNCATED_DOWNLOAD"),
        "reason {reason}"
    );
    assert!(row["upload_id"].is_null());

    // The fault clears: the next run archives it, and only it.
    w.sim.set_faults(|f| f.cut_after.clear());
    let next = w.run(&["once", "--config", &cfg], &[]).await;
    next.assert_code(0);
    let key = w
        .keys()
        .await
        .into_keys()
        .find(|k| k.ends_with(&format!("{}.tar.gz", victim.id)));
    let key = key.unwrap_or_else(|| panic!("victim archived on the next run"));
    assert_eq!(w.sha256_of_object(&key).await, victim.sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_with_content_length_leaves_no_object_and_no_orphan_upload() {
    truncated_download_leaves_nothing_behind(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_chunked_download_leaves_no_object_and_no_orphan_upload() {
    truncated_download_leaves_nothing_behind(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restore_job_is_reported_and_retried_on_the_next_run() {
    let w = World::new("jobfail", scenario(PROJECT, &["one-flex"], 2, &[1 << 20])).await;
    let victim = w.sim.clusters()[0].snapshots[1].id.clone();
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(victim.clone());
    });
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(1);
    assert!(run.stdout.contains("RESTORE_JOB_FAILED"), "{}", run.stdout);
    assert_eq!(w.keys().await.len(), 2);
    w.sim.set_faults(|f| f.fail_jobs_for.clear());
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    assert_eq!(w.keys().await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_exit_1_with_a_clear_message_and_no_retry_storm() {
    let w = World::new("badcreds", two_targets()).await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let wrong = "definitely-not-the-secret-1234";
    std::fs::write(w.path("atlas_secret"), wrong).unwrap();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(1);
    assert!(
        run.all().contains("rejected the credentials"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(wrong), "the wrong secret is not echoed");
    let seen = w.sim.observed();
    assert_eq!(
        seen.token_requests, 1,
        "one login attempt for the whole run, not one per target or retry"
    );
    assert_eq!(seen.api_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_api_key_with_digest_auth_archives() {
    let w = World::new("digest", scenario(PROJECT, &["key-flex"], 1, &[2 << 20])).await;
    w.write_config("", "");
    std::fs::write(w.path("private_key"), SIM_PRIVATE_KEY).unwrap();
    let text = std::fs::read_to_string(w.path("config.toml")).unwrap();
    let text = text
        .replace(
            "client_id = \"mdb_sa_id_simulator\"\n",
            &format!("public_key = \"{SIM_PUBLIC_KEY}\"\n"),
        )
        .replace(
            "client_secret_file = \"atlas_secret\"\n",
            "private_key_file = \"private_key\"\n",
        );
    std::fs::write(w.path("config.toml"), text).unwrap();
    let run = w
        .run(
            &["once", "--config", &w.path("config.toml").to_string_lossy()],
            &[],
        )
        .await;
    run.assert_code(0);
    assert!(!run.all().contains(SIM_PRIVATE_KEY));
    let seen = w.sim.observed();
    assert!(
        seen.digest_ok >= 3,
        "list, request, poll went through Digest: {seen:?}"
    );
    assert_eq!(seen.token_requests, 0);
    assert_eq!(w.keys().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried() {
    let w = World::new("throttle", scenario(PROJECT, &["busy-flex"], 2, &[1 << 20])).await;
    w.sim.set_faults(|f| {
        f.api_429_burst = 3;
        f.retry_after_secs = Some(1);
        f.api_500_burst = 0;
    });
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    assert_eq!(w.sim.observed().throttled, 3);
    assert!(
        run.stderr.contains("429"),
        "retries are logged: {}",
        run.stderr
    );
    // 5xx runs on reads and 503 on the POST, without Retry-After.
    w.sim.add_snapshot(
        PROJECT,
        "busy-flex",
        SimSnapshot {
            id: "6a6f78e0ffffffffffff0001".into(),
            size: 1 << 20,
            status: "COMPLETED".into(),
            scheduled: chrono::Utc::now(),
            finished: chrono::Utc::now(),
        },
    );
    w.sim.set_faults(|f| {
        f.retry_after_secs = None;
        f.api_429_burst = 2;
        f.api_500_burst = 2;
        f.api_503_burst = 1;
    });
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    assert_eq!(w.keys().await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_journal_does_not_cause_a_second_copy() {
    let w = World::new("adopt", scenario(PROJECT, &["adopt-flex"], 2, &[1 << 20])).await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let downloads = w.sim.observed().snapshot_downloads;
    std::fs::remove_dir_all(w.path("state")).unwrap();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    assert_eq!(
        w.sim.observed().snapshot_downloads,
        downloads,
        "adopted, not downloaded again"
    );
    assert_eq!(run.stdout.matches("adopted").count(), 2, "{}", run.stdout);
    let status = parse_json(
        &w.run(&["status", "--config", &cfg, "--json"], &[])
            .await
            .stdout,
    );
    assert_eq!(status["targets"][0]["snapshots"][0]["state"], "archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statuses_and_pending_snapshots_are_skipped_not_fatal() {
    let mut clusters = scenario(PROJECT, &["odd-flex"], 1, &[1 << 20]);
    let now = chrono::Utc::now();
    for (id, status) in [
        ("6a6f78e0eeeeeeeeeeee0001", "ARCHIVING"),
        ("6a6f78e0eeeeeeeeeeee0002", "RUNNING"),
    ] {
        clusters[0].snapshots.push(SimSnapshot {
            id: id.into(),
            size: 10,
            status: status.into(),
            scheduled: now,
            finished: now,
        });
    }
    let w = World::new("odd", clusters).await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("ARCHIVING"),
        "the unknown status is logged: {}",
        run.stderr
    );
    assert_eq!(w.keys().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_vanishes_is_reported_lost() {
    let w = World::new("lost", scenario(PROJECT, &["gone-flex"], 2, &[1 << 20])).await;
    let gone = w.sim.clusters()[0].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.vanished.insert(gone.clone());
    });
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains("LOST") && run.stdout.contains(&gone),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("ERROR") && run.stderr.contains("LOST"),
        "an error-level log line: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_override_the_file() {
    let w = World::new("env", scenario(PROJECT, &["env-flex"], 1, &[1 << 20])).await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    // Credentials only from the variables Atlas users already have; the prefix from ATLAS_ARCHIVER__.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace("client_id = \"mdb_sa_id_simulator\"\n", "")
        .replace("client_secret_file = \"atlas_secret\"\n", "");
    std::fs::write(&cfg, text).unwrap();
    let other_prefix = format!("{}moved/", w.prefix);
    let run = w
        .run(
            &["once", "--config", &cfg],
            &[
                (
                    "MONGODB_ATLAS_CLIENT_ID",
                    atlas_archiver::simulator::SIM_CLIENT_ID,
                ),
                (
                    "MONGODB_ATLAS_CLIENT_SECRET",
                    atlas_archiver::simulator::SIM_CLIENT_SECRET,
                ),
                ("ATLAS_ARCHIVER__STORAGE__PREFIX", &other_prefix),
            ],
        )
        .await;
    run.assert_code(0);
    run.assert_no_secrets(&w.secrets());
    let keys = w.keys().await;
    assert_eq!(keys.len(), 2);
    assert!(
        keys.keys().all(|k| k.starts_with(&other_prefix)),
        "{keys:?}"
    );
}

/// A connection cut mid-body once: with Range support the next attempt resumes after the parts
/// already uploaded (one ranged GET); without it, the upload starts over. Either way the object
/// is whole and no upload stays open.
async fn cut_once_then_resume(range_support: bool) {
    cut_once_then_resume_through(range_support, false).await;
}

/// A download cut at 11 MiB of 12, resumed (or started over when the source ignores ranges);
/// with `bare_etags`, through a proxy that rewrites ListParts's ETags (audit S5).
async fn cut_once_then_resume_through(range_support: bool, bare_etags: bool) {
    let name = match (range_support, bare_etags) {
        (_, true) => "s5-etags",
        (true, false) => "resume",
        (false, false) => "noresume",
    };
    let mut w = World::new(
        name,
        scenario(PROJECT, &["big-flex"], 1, &[(12 << 20) + 100]),
    )
    .await;
    if bare_etags {
        w.attach_proxy().await;
        w.proxy
            .as_ref()
            .unwrap()
            .set(|f| f.list_parts_bare_etags = true);
    }
    let snap = w.sim.clusters()[0].snapshots[0].clone();
    w.sim.set_faults(|f| {
        f.cut_after.insert(snap.id.clone(), 11 << 20);
        f.cut_times = 1;
        f.range_support = range_support;
    });
    let run = w.once("", "part_size = \"5MiB\"", 0).await;
    let seen = w.sim.observed();
    if range_support {
        assert_eq!(
            (seen.snapshot_downloads, seen.ranged_downloads),
            (2, 1),
            "one full GET, one resumed: {seen:?}\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("resuming the interrupted upload"),
            "{}",
            run.stderr
        );
    } else {
        assert_eq!(
            (seen.snapshot_downloads, seen.ranged_downloads),
            (3, 0),
            "a refused range, then a fresh GET: {seen:?}\n{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("cannot resume the download; starting over"),
            "{}",
            run.stderr
        );
    }
    w.assert_sole_archive_is(&snap, &run.stderr).await;
    assert_eq!(w.keys().await.len(), 2);
    if bare_etags {
        assert!(
            w.proxy.as_ref().unwrap().seen().injected > 0,
            "the listing went through the rewriting proxy"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_resumes_with_a_range_request() {
    cut_once_then_resume(true).await;
}

/// Audit S5: a store that writes a part's ETag quoted in UploadPart and bare, upper-case, in
/// ListParts (the proxy rewrites the listing) still resumes from the journalled parts instead
/// of starting over, and the object is whole. Garage's listing carries the ETags this compares;
/// s3s-fs and moto list none (the journal decides there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_etags_written_differently_by_listparts_still_resume() {
    cut_once_then_resume_through(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_starts_over_when_the_source_ignores_ranges() {
    cut_once_then_resume(false).await;
}

/// Issue 15: `atlas.download_connections = 3` spreads one snapshot over ranged GETs (the
/// opening `bytes=0-`, then 8 MiB ranges), in order into the hash, the validator and the parts.
/// `fault` cuts (or stalls: it stops sending and hangs) the ranged GET that holds that byte
/// once, after the opening GET was let go: the attempt fails as interrupted (or, after
/// `download_read_timeout`, as stalled) and the next one resumes after the journalled parts,
/// over ranged GETs again. A source that ignores ranges (`ranges` false) answers the opening
/// GET with a 200: one GET, read as such.
async fn spread_download(name: &str, ranges: bool, fault: Option<RangeFault>) {
    let size = (30 << 20) + 123;
    let w = World::new(name, scenario(PROJECT, &["wide-flex"], 1, &[size])).await;
    let snap = w.sim.clusters()[0].snapshots[0].clone();
    w.sim.set_faults(|f| {
        f.range_support = ranges;
        f.bounded_range = fault.map(|fault| (fault, 1));
    });
    let run = w
        .once(
            "download_connections = 3\ndownload_read_timeout = \"1s\"",
            "part_size = \"8MiB\"",
            0,
        )
        .await;
    let seen = w.sim.observed();
    w.assert_sole_archive_is(&snap, &run.stderr).await;
    if let Some(RangeFault::Stall(_)) = fault {
        assert!(
            run.stderr.contains("DOWNLOAD_STALLED"),
            "the hung range ended the attempt as stalled: {}",
            run.stderr
        );
    }
    match fault {
        None if !ranges => {
            assert_eq!(
                (
                    seen.snapshot_downloads,
                    seen.ranged_downloads,
                    seen.bounded_ranges
                ),
                (1, 0, 0),
                "{seen:?}\n{}",
                run.stderr
            );
        }
        None => {
            // The opening GET serves 0..8 MiB, three ranges the rest: 8, 16, 24..30 MiB.
            assert_eq!(
                (
                    seen.snapshot_downloads,
                    seen.ranged_downloads,
                    seen.bounded_ranges
                ),
                (4, 4, 3),
                "{seen:?}\n{}",
                run.stderr
            );
            assert!(!run.stderr.contains("attempt failed"), "{}", run.stderr);
        }
        Some(_) => {
            assert!(
                run.stderr.contains("resuming the interrupted upload"),
                "{}",
                run.stderr
            );
            // The resumed attempt opened at the first part not journalled (`bytes=N-`) and
            // spread again.
            assert!(
                seen.ranged_downloads > seen.bounded_ranges + 1 && seen.bounded_ranges >= 4,
                "{seen:?}\n{}",
                run.stderr
            );
            assert_eq!(seen.download_requests, 1, "the same job: {seen:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_over_three_connections_is_the_snapshot_byte_for_byte() {
    spread_download("spread", true, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_range_of_a_spread_download_resumes_after_the_journalled_parts() {
    spread_download("spread-cut", true, Some(RangeFault::Cut(20 << 20))).await;
}

/// A black-holed range (the server stops sending and keeps the connection open) ends the
/// attempt after `download_read_timeout`, and the next resumes after the journalled parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_range_of_a_spread_download_resumes_after_the_journalled_parts() {
    spread_download("spread-stall", true, Some(RangeFault::Stall(20 << 20))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_download_is_one_get_where_the_source_ignores_ranges() {
    spread_download("spread-noranges", false, None).await;
}

/// Issue 15: a one-time URL (a dedicated cluster's) with `download_connections = 4` refuses
/// the second GET; the download goes on over the opening one, and the object is whole. A
/// source that ignores ranges answers the opening GET with a 200, read as a single GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_download_falls_back_to_one_get_where_the_url_allows_one() {
    let size = (20 << 20) + 5;
    let mut clusters = scenario(PROJECT, &["once-m10", "plain-flex"], 1, &[size]);
    clusters[0].dedicated = true;
    let w = World::new("spread-fallback", clusters).await;
    w.sim.set_faults(|f| f.range_support = true);
    let cfg = w
        .write_config("download_connections = 4", "part_size = \"8MiB\"")
        .to_string_lossy()
        .into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("the download goes on over one connection"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("attempt failed"), "{}", run.stderr);
    let seen = w.sim.observed();
    // Dedicated: one job, its opening GET, refused second GETs (410, not a range served).
    // Flex: spread as usual (0..8 MiB opening, then 8 and 16..20 MiB).
    assert_eq!(seen.download_requests, 2, "{seen:?}\n{}", run.stderr);
    assert_eq!(seen.bounded_ranges, 2, "{seen:?}\n{}", run.stderr);
    let keys = w.keys().await;
    for cluster in w.sim.clusters() {
        let snap = &cluster.snapshots[0];
        let key = keys
            .keys()
            .find(|k| k.ends_with(&format!("{}.tar.gz", snap.id)))
            .unwrap();
        assert_eq!(
            w.sha256_of_object(key).await,
            snap.sha256(),
            "{}",
            cluster.name
        );
    }
}

/// Audit H1: the start-up cleanup aborts only uploads the journal proves are its own (the
/// crash between CreateMultipartUpload and recording its id is covered by the reliability
/// suite's `after-create-upload` scenario). Another writer's uploads, under our prefix or
/// outside it, even on a key that looks like ours, are never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_the_startup_cleanup_never_aborts_uploads_it_does_not_own() {
    let w = World::new("orphan", scenario(PROJECT, &["o-flex"], 1, &[1 << 20])).await;
    if !w.s3.lists_uploads() {
        eprintln!(
            "note: {} cannot list multipart uploads; the cleanup is skipped there by design",
            w.s3.name
        );
        return;
    }
    let client = w.s3.client().await;
    let foreign_keys = [
        format!("other-app-{}big.bin", w.prefix.replace('/', "-")),
        format!("{}not-ours.bin", w.prefix),
        format!(
            "{}{PROJECT}/o-flex/2026-01-01/0123456789abcdef01234567.tar.gz",
            w.prefix
        ),
    ];
    let mut foreign = Vec::new();
    for key in &foreign_keys {
        let upload = client
            .create_multipart(key, "application/octet-stream")
            .await
            .unwrap();
        foreign.push((key.clone(), upload.upload_id().to_owned()));
    }
    // Once with the test's prefix, once with an empty prefix (the whole bucket).
    for prefix in [None, Some("")] {
        let cfg = match prefix {
            None => w.write_config("", ""),
            Some(p) => w.write_config_with_prefix(p),
        };
        let cfg = cfg.to_string_lossy().into_owned();
        let run = w.run(&["once", "--config", &cfg], &[]).await;
        run.assert_code(0);
        assert!(!run.stderr.contains("aborted an orphan"), "{}", run.stderr);
    }
    for (key, upload_id) in &foreign {
        let open = client.list_multipart_uploads(key).await.unwrap();
        assert!(
            open.iter().any(|(k, id)| k == key && id == upload_id),
            "{key}: another writer's upload was aborted"
        );
        client.abort_multipart(key, upload_id).await.unwrap();
    }
}

/// Audit S1: two writers with their own journals on one prefix (outside the supported layout:
/// one writer per prefix), running at once over the same snapshots. Atlas serves a snapshot's
/// bytes whoever asks, so their archives are the same bytes: both runs succeed, each snapshot
/// ends as one object whose manifest describes it, `verify` passes for both journals, and
/// neither left or aborted an upload of the other's. (Different bytes under one key, a race no
/// unconditional write can rule out, is what `verify` reports as a mismatch: see
/// `verify_reports_missing_mismatched_and_extra_objects`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_two_writers_on_one_prefix_end_with_consistent_archives() {
    let w = World::new(
        "s1-writers",
        scenario(
            PROJECT,
            &["twin-flex"],
            3,
            &[6 << 20, (7 << 20) + 3, 5 << 20],
        ),
    )
    .await;
    // Slow enough that the two runs overlap on every snapshot.
    w.sim
        .set_faults(|f| f.throttle_bytes_per_sec = Some(16 << 20));
    let a = w.write_config("", "part_size = \"5MiB\"");
    let text = std::fs::read_to_string(&a).unwrap();
    let b = a.with_file_name("second-writer.toml");
    std::fs::write(
        &b,
        text.replace("state/journal.sqlite", "second/journal.sqlite"),
    )
    .unwrap();
    let (a, b) = (
        a.to_string_lossy().into_owned(),
        b.to_string_lossy().into_owned(),
    );
    let (args_a, args_b) = (
        ["once", "--config", a.as_str()],
        ["once", "--config", b.as_str()],
    );
    let (ra, rb) = tokio::join!(w.run(&args_a, &[]), w.run(&args_b, &[]));
    ra.assert_code(0);
    rb.assert_code(0);
    for run in [&ra, &rb] {
        assert!(!run.stderr.contains("aborted an orphan"), "{}", run.stderr);
    }
    let keys = w.keys().await;
    for snap in &w.sim.clusters()[0].snapshots {
        let archives: Vec<&String> = keys
            .keys()
            .filter(|k| k.contains(&snap.id) && k.ends_with(".tar.gz"))
            .collect();
        assert_eq!(archives.len(), 1, "one archive of {}: {keys:?}", snap.id);
        assert_eq!(w.sha256_of_object(archives[0]).await, snap.sha256());
    }
    for cfg in [&a, &b] {
        let verify = w.run(&["verify", "--config", cfg, "--all"], &[]).await;
        verify.assert_code(0);
        assert!(
            verify.stdout.contains("3 checked, 3 ok, 0 with problems"),
            "{}",
            verify.stdout
        );
    }
    assert!(w.open_uploads().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_missing_mismatched_and_extra_objects() {
    let w = World::new(
        "verify",
        scenario(PROJECT, &["v-flex"], 3, &[1 << 20, 2 << 20, 3 << 20]),
    )
    .await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let clean = w.run(&["verify", "--config", &cfg, "--all"], &[]).await;
    clean.assert_code(0);
    assert!(
        clean.stdout.contains("3 checked, 3 ok, 0 with problems"),
        "{}",
        clean.stdout
    );

    let client = w.s3.client().await;
    let mut archives: Vec<String> = w
        .keys()
        .await
        .into_keys()
        .filter(|k| k.ends_with(".tar.gz"))
        .collect();
    archives.sort();
    client.delete(&archives[0]).await.unwrap();
    let size = w.keys().await[&archives[1]];
    let tampered = vec![0x42u8; usize::try_from(size).unwrap_or_default()];
    client
        .put_small(
            &archives[1],
            bytes::Bytes::from(tampered),
            "application/gzip",
        )
        .await
        .unwrap();
    client
        .put_small(
            &format!("{}stray.tar.gz", w.prefix),
            bytes::Bytes::from_static(b"x"),
            "application/gzip",
        )
        .await
        .unwrap();
    let report = w
        .run(&["verify", "--config", &cfg, "--all", "--json"], &[])
        .await;
    report.assert_code(1);
    let findings = parse_json(&report.stdout);
    let verdict_of = |key: &str| -> String {
        findings
            .as_array()
            .and_then(|a| a.iter().find(|f| f["key"] == key))
            .map(|f| f["verdict"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(verdict_of(&archives[0]), "missing");
    assert_eq!(verdict_of(&archives[1]), "mismatch");
    assert_eq!(verdict_of(&archives[2]), "ok");
    assert_eq!(verdict_of(&format!("{}stray.tar.gz", w.prefix)), "extra");
    assert_eq!(
        verdict_of(&format!("{}.manifest.json", archives[0])),
        "extra",
        "a manifest whose archive is gone"
    );
    let without_all = w.run(&["verify", "--config", &cfg], &[]).await;
    without_all.assert_code(1);
    assert!(
        without_all.stdout.contains("MISSING")
            && without_all.stdout.contains("MISMATCH")
            && !without_all.stdout.contains("EXTRA")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_journal_is_refused_with_advice_and_rebuilt_from_the_bucket() {
    let w = World::new(
        "rebuild",
        scenario(PROJECT, &["r-flex", "s-flex"], 2, &[1 << 20]),
    )
    .await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let journal = w.path("state/journal.sqlite");
    let len = std::fs::metadata(&journal)
        .map(|m| m.len())
        .unwrap_or_default();
    assert!(len > 8192, "journal of {len} bytes");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(len / 2 + 100).unwrap();
    drop(file);
    let refused = w.run(&["once", "--config", &cfg], &[]).await;
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("damaged") && refused.stderr.contains("journal rebuild"),
        "{}",
        refused.stderr
    );
    let downloads = w.sim.observed().snapshot_downloads;

    let rebuilt = w.run(&["journal", "rebuild", "--config", &cfg], &[]).await;
    rebuilt.assert_code(0);
    assert!(
        rebuilt.stdout.contains("4 archived snapshots recovered"),
        "{}",
        rebuilt.stdout
    );
    assert!(rebuilt.stdout.contains("moved to"), "{}", rebuilt.stdout);
    let again = w.run(&["once", "--config", &cfg], &[]).await;
    again.assert_code(0);
    assert_eq!(
        w.sim.observed().snapshot_downloads,
        downloads,
        "nothing downloaded twice"
    );
    assert_eq!(
        again.stdout.matches("archived earlier").count(),
        4,
        "{}",
        again.stdout
    );
    w.run(&["verify", "--config", &cfg, "--all"], &[])
        .await
        .assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_journal_is_refused() {
    let w = World::new("twoproc", scenario(PROJECT, &["slow-flex"], 1, &[4 << 20])).await;
    w.sim
        .set_faults(|f| f.throttle_bytes_per_sec = Some(1 << 20));
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let first = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"))
        .args(["once", "--config", &cfg])
        .current_dir(w.dir.path())
        .env_clear()
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().unwrap_or_default();
    let started = std::time::Instant::now();
    while w.sim.observed().snapshot_downloads == 0
        && started.elapsed() < std::time::Duration::from_secs(20)
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = w.run(&["once", "--config", &cfg], &[]).await;
    second.assert_code(1);
    assert!(
        second
            .stderr
            .contains("in use by another atlas-archiver process")
            && second.stderr.contains(&format!("pid {pid}")),
        "{}",
        second.stderr
    );
    let out = first.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(w.keys().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_verified_crc32c_checksums_work_or_fall_back_cleanly() {
    let w = World::new(
        "crc",
        scenario(PROJECT, &["crc-flex"], 2, &[(11 << 20) + 5, 1 << 20]),
    )
    .await;
    let cfg = w
        .write_config("", "part_size = \"5MiB\"\nchecksum = \"crc32c\"")
        .to_string_lossy()
        .into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    let refused = run.stderr.contains("refuses S3 checksum headers");
    eprintln!(
        "{}: full-object CRC32C {}",
        w.s3.name,
        if refused {
            "refused; fell back"
        } else {
            "accepted"
        }
    );
    for snap in &w.sim.clusters()[0].snapshots {
        let key = w
            .keys()
            .await
            .into_keys()
            .find(|k| k.ends_with(&format!("{}.tar.gz", snap.id)))
            .unwrap_or_default();
        assert_eq!(w.sha256_of_object(&key).await, snap.sha256());
    }
    w.run(&["verify", "--config", &cfg], &[])
        .await
        .assert_code(0);
}

/// Audit L19: a target named twice on the command line runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l19_a_target_named_twice_runs_once() {
    let w = World::new("twice", scenario(PROJECT, &["t-flex"], 1, &[4 << 20])).await;
    w.sim
        .set_faults(|f| f.throttle_bytes_per_sec = Some(8 << 20));
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let target = format!("{PROJECT}/t-flex");
    let run = w
        .run(
            &[
                "once", "--config", &cfg, "--target", &target, "--target", &target,
            ],
            &[],
        )
        .await;
    run.assert_code(0);
    assert_eq!(w.sim.observed().snapshot_downloads, 1, "{}", run.stderr);
    assert!(w.open_uploads().await.is_empty());
}

/// Issue 15: with `checksum = "auto"` and a custom endpoint, the store is asked at start
/// whether it verifies a full-object CRC32C (a part with a wrong one must be refused). The
/// parts then carry CRC32C (and unsigned payloads) exactly when it does; otherwise they keep
/// SigV4's payload hash. Either way the archive is whole, and the probe leaves no upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_checksum_asks_the_store_and_uses_crc32c_only_when_it_verifies() {
    let mut w = World::new(
        "auto-crc",
        scenario(PROJECT, &["crc-flex"], 1, &[(6 << 20) + 9]),
    )
    .await;
    w.attach_proxy().await;
    let cfg = w
        .write_config("", "part_size = \"5MiB\"")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains("checksum = "), "the default is auto: {text}");
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    let verified = run.stderr.contains("the store verifies CRC32C");
    assert!(
        verified || run.stderr.contains("the store does not verify CRC32C"),
        "the probe's verdict is logged: {}",
        run.stderr
    );
    let seen = w.proxy.as_ref().unwrap().seen();
    // The probe's own two parts carry a checksum in both cases; the archive's parts only when
    // the store verifies.
    if verified {
        assert!(seen.parts_with_checksum >= 4, "{seen:?}");
        assert_eq!(seen.parts_without_checksum, 0, "{seen:?}");
    } else {
        assert_eq!(seen.parts_without_checksum, 2, "{seen:?}");
    }
    let snap = &w.sim.clusters()[0].snapshots[0];
    let key = w
        .keys()
        .await
        .into_keys()
        .find(|k| k.ends_with(".tar.gz"))
        .unwrap();
    assert_eq!(w.sha256_of_object(&key).await, snap.sha256());
    assert!(
        !w.keys()
            .await
            .keys()
            .any(|k| k.contains(".atlas-archiver-probe")),
        "the probe wrote no object"
    );
    assert!(
        w.open_uploads().await.is_empty(),
        "the probe's upload was aborted"
    );
    eprintln!("{}: CRC32C verified = {verified}", w.s3.name);
}
