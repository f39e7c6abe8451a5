//! Retention end to end through the real binary (moto and Garage via scripts/test.sh): forty
//! archives spanning more than a year, `prune --dry-run` then `prune`, a crash between the two
//! deletions of one archive finished by the next prune, a failed run that prunes nothing, and
//! pruned snapshots never archived again.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use atlas_archiver::simulator::{SimCluster, SimSnapshot};
use chrono::{Duration, TimeZone, Utc};
use common::{World, parse_json};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";

/// Forty snapshots, one every 11 days from 2025-09-01: the 12th (index 11) is on 2025-12-31,
/// the last in 2025; the 40th on 2026-11-15.
fn forty() -> Vec<SimCluster> {
    let start = Utc.with_ymd_and_hms(2025, 9, 1, 6, 0, 0).single().unwrap();
    let snapshots = (0..40u64)
        .map(|i| {
            let finished = start + Duration::days(11 * i64::try_from(i).unwrap());
            SimSnapshot {
                id: format!("6a6f78e0{i:016x}"),
                size: 4096 + i * 7,
                status: "COMPLETED".into(),
                scheduled: finished - Duration::minutes(5),
                finished,
            }
        })
        .collect();
    vec![SimCluster {
        project_id: PROJECT.into(),
        name: "orders-flex".into(),
        snapshots,
        dedicated: false,
        ..SimCluster::default()
    }]
}

/// The test's config with `retention` (TOML lines) as its `[retention]` table; its path.
fn config_with_retention(w: &World, retention: &str) -> String {
    let config = w.write_config("", "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[retention]\n{retention}"));
    std::fs::write(&config, text).unwrap();
    config.to_string_lossy().into_owned()
}

/// The simulated cluster's snapshot ids, oldest first.
fn snapshot_ids(w: &World) -> Vec<String> {
    w.sim.clusters()[0]
        .snapshots
        .iter()
        .map(|s| s.id.clone())
        .collect()
}

/// Archive ids under the prefix (`….tar.gz`) and manifest ids (`….tar.gz.manifest.json`).
async fn in_bucket(w: &World) -> (BTreeSet<String>, BTreeSet<String>) {
    let keys = w.keys().await;
    let id = |k: &str| {
        k.rsplit('/')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned()
    };
    let archives = keys
        .keys()
        .filter(|k| k.ends_with(".tar.gz"))
        .map(|k| id(k))
        .collect();
    let manifests = keys
        .keys()
        .filter(|k| k.ends_with(".manifest.json"))
        .map(|k| id(k))
        .collect();
    (archives, manifests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_exactly_what_the_policy_does_not_keep_and_never_rearchives_it() {
    let w = World::new("prune", forty()).await;
    // keep_last 5 keeps indexes 35-39; keep_yearly 2 keeps the newest of 2026 (39) and of 2025
    // (11, on 2025-12-31), and its two counts are then spent: 6 kept, 34 removed.
    let cfg = config_with_retention(&w, "keep_last = 5\nkeep_yearly = 2\nmin_keep = 3\n");
    let ids = snapshot_ids(&w);
    let expected_kept: BTreeSet<String> = [11, 35, 36, 37, 38, 39]
        .iter()
        .map(|i| ids[*i].clone())
        .collect();

    // A failed run prunes nothing.
    w.sim.set_faults(|f| {
        f.fail_jobs_for.insert(ids[39].clone());
    });
    let failed = w.run(&["once", "--config", &cfg, "--prune"], &[]).await;
    failed.assert_code(1);
    let (archives, _) = in_bucket(&w).await;
    assert_eq!(
        archives.len(),
        39,
        "a failed run must not prune: {}",
        failed.stdout
    );
    w.sim.set_faults(|f| f.fail_jobs_for.clear());
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let (archives, manifests) = in_bucket(&w).await;
    assert_eq!((archives.len(), manifests.len()), (40, 40));

    // --dry-run: the plan, nothing deleted.
    let dry = w
        .run(&["prune", "--config", &cfg, "--dry-run", "--json"], &[])
        .await;
    dry.assert_code(0);
    let plan = parse_json(&dry.stdout);
    let items = plan[0]["archives"].as_array().unwrap();
    assert_eq!(items.len(), 40);
    let kept: BTreeSet<String> = items
        .iter()
        .filter(|a| a["action"] == "keep")
        .map(|a| a["snapshot_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, expected_kept, "{}", dry.stdout);
    let newest = items
        .iter()
        .find(|a| a["snapshot_id"] == ids[39].as_str())
        .unwrap();
    assert!(
        newest["reasons"].to_string().contains("last 1")
            && newest["reasons"].to_string().contains("yearly 1"),
        "{newest}"
    );
    assert_eq!(in_bucket(&w).await.0.len(), 40, "a dry run deletes nothing");

    // A crash after the first archive is deleted, before its manifest: the next prune finishes.
    let crashed = w
        .run(
            &["prune", "--config", &cfg],
            &[("ATLAS_ARCHIVER_CRASH_AT", "prune-archive-deleted")],
        )
        .await;
    assert_ne!(crashed.code, 0, "{}", crashed.stderr);
    let (archives, manifests) = in_bucket(&w).await;
    assert_eq!(
        (archives.len(), manifests.len()),
        (39, 40),
        "one archive gone, its manifest left"
    );
    // verify --all recognises what is left and says the next prune finishes it.
    let verify = w.run(&["verify", "--config", &cfg, "--all"], &[]).await;
    verify.assert_code(1);
    assert!(
        verify.stdout.contains("left by an interrupted prune"),
        "{}",
        verify.stdout
    );

    let done = w.run(&["prune", "--config", &cfg, "--json"], &[]).await;
    done.assert_code(0);
    let report = parse_json(&done.stdout);
    assert_eq!(
        report[0]["finished"].as_array().map(Vec::len),
        Some(1),
        "{}",
        done.stdout
    );
    let (archives, manifests) = in_bucket(&w).await;
    assert_eq!(archives, expected_kept, "archives left");
    assert_eq!(
        manifests, expected_kept,
        "manifests left, together with their archives"
    );

    // Pruned snapshots are not archived again while Atlas still lists them.
    let downloads = w.sim.observed().snapshot_downloads;
    let again = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    again.assert_code(0);
    assert_eq!(
        w.sim.observed().snapshot_downloads,
        downloads,
        "{}",
        again.stdout
    );
    assert_eq!(
        again.stdout.matches("\"pruned\"").count(),
        34,
        "{}",
        again.stdout
    );
    assert_eq!(in_bucket(&w).await.0, expected_kept);

    // verify and list agree with the bucket: nothing missing, nothing extra.
    let verify = w.run(&["verify", "--config", &cfg, "--all"], &[]).await;
    verify.assert_code(0);
    let list = w.run(&["list", "--config", &cfg, "--json"], &[]).await;
    list.assert_code(0);
    let catalog = parse_json(&list.stdout);
    assert_eq!(catalog["snapshots"].as_array().map(Vec::len), Some(6));
    // list shows the policy's verdict: every archive left is a keeper.
    for s in catalog["snapshots"].as_array().unwrap() {
        assert_eq!(s["retention"]["keep"], true, "{s}");
    }
    assert_eq!(
        catalog["problems"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.stdout
    );

    // A config without a policy refuses to prune (usage error).
    let plain = w.write_config("", "");
    let refused = w
        .run(&["prune", "--config", &plain.to_string_lossy()], &[])
        .await;
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("no [retention]"),
        "{}",
        refused.stderr
    );
}

/// Review finding: an archive a cut-short prune already recorded as pruned is removed, and
/// takes no place in the policy: after the policy grows, the keepers are counted among the
/// archives that remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_prune_is_finished_without_costing_a_keeper() {
    let w = World::new(
        "prune-resume",
        atlas_archiver::simulator::scenario(PROJECT, &["orders-flex"], 6, &[4096]),
    )
    .await;
    let config = w.write_config("", "");
    let base = std::fs::read_to_string(&config).unwrap();
    let with_policy = |keep_last: u32| {
        std::fs::write(
            &config,
            format!("{base}\n[retention]\nkeep_last = {keep_last}\nmin_keep = 1\n"),
        )
        .unwrap();
    };
    with_policy(2);
    let cfg = config.to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let mut snaps = w.sim.clusters()[0].snapshots.clone();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.finished));
    let ids: Vec<String> = snaps.iter().map(|s| s.id.clone()).collect();
    // The first removal (the third newest) is recorded, then the process dies before deleting.
    let crashed = w
        .run(
            &["prune", "--config", &cfg],
            &[("ATLAS_ARCHIVER_CRASH_AT", "prune-recorded")],
        )
        .await;
    assert_ne!(crashed.code, 0);
    assert_eq!(in_bucket(&w).await.0.len(), 6, "nothing deleted yet");
    // The policy grows to four: the recorded one goes, and four others stay.
    with_policy(4);
    w.run(&["prune", "--config", &cfg], &[])
        .await
        .assert_code(0);
    let (archives, manifests) = in_bucket(&w).await;
    let expected: BTreeSet<String> = [0, 1, 3, 4].iter().map(|i| ids[*i].clone()).collect();
    assert_eq!(archives, expected);
    assert_eq!(manifests, expected);
}

/// Issue 14: `once --dry-run` says what a run would do with each listed snapshot (and, with
/// `--prune`, what the policy would remove now) and downloads and writes nothing: no download
/// job, no journal file, no object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_dry_run_plans_without_downloading_or_writing() {
    let mut clusters = atlas_archiver::simulator::scenario(PROJECT, &["orders-flex"], 4, &[3000]);
    clusters[0].snapshots[3].status = "QUEUED".into();
    let w = World::new("dry-run", clusters).await;
    let cfg = config_with_retention(&w, "keep_last = 1\nmin_keep = 1\n");
    let ids = snapshot_ids(&w);
    let action = |plan: &serde_json::Value, id: &str| -> String {
        plan["plans"][0]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["snapshot_id"] == id)
            .map(|s| s["action"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{id} not in {plan}"))
    };

    let fresh = w
        .run(&["once", "--config", &cfg, "--dry-run", "--json"], &[])
        .await;
    fresh.assert_code(0);
    let plan = parse_json(&fresh.stdout);
    for id in &ids[..3] {
        assert_eq!(action(&plan, id), "archive", "{}", fresh.stdout);
    }
    assert_eq!(action(&plan, &ids[3]), "not_completed");
    assert!(
        !w.path("state/journal.sqlite").exists(),
        "a dry run creates no journal"
    );
    assert!(w.keys().await.is_empty());
    let seen = w.sim.observed();
    assert_eq!((seen.download_requests, seen.snapshot_downloads), (0, 0));

    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let keys = w.keys().await;
    let again = w
        .run(&["once", "--config", &cfg, "--dry-run", "--prune"], &[])
        .await;
    again.assert_code(0);
    assert_eq!(
        again.stdout.matches("  archived  ").count(),
        3,
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("0 to download"), "{}", again.stdout);
    let with_prune = w
        .run(
            &["once", "--config", &cfg, "--dry-run", "--prune", "--json"],
            &[],
        )
        .await;
    with_prune.assert_code(0);
    let plan = parse_json(&with_prune.stdout);
    let removed = plan["prunes"][0]["archives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "remove")
        .count();
    assert_eq!(removed, 2, "{}", with_prune.stdout);
    assert_eq!(w.keys().await, keys, "a dry run deletes nothing");
    assert_eq!(
        w.sim.observed().download_requests,
        3,
        "only the real run asked for downloads"
    );
}
