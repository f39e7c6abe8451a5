//! Issue 12 (dedicated replica sets): a dedicated cluster beside a Flex one, both `kind =
//! "auto"`, archived end to end through the dedicated endpoints of the simulator (lower-case
//! statuses, restore jobs without a status, the URL listed twice, one GET per URL) and restored
//! byte for byte; the kind is asked once and remembered; a one-time URL cut mid-body leads to a
//! new restore job and a whole archive; fallback snapshots wait for `snapshot_types`; a wrong
//! `kind` is refused with what to set.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use atlas_archiver::simulator::scenario;
use common::World;
use sha2::Digest as _;

const PROJECT: &str = "5f0a1b2c3d4e5f60718293c4";

/// A Flex cluster and a dedicated replica set with `per_cluster` snapshots each.
async fn world(test: &str, per_cluster: usize) -> World {
    let mut clusters = scenario(
        PROJECT,
        &["app-flex", "orders-m10"],
        per_cluster,
        &[(3 << 20) + 17, 5 << 20],
    );
    clusters[1].dedicated = true;
    World::new(test, clusters).await
}

fn config(w: &World) -> String {
    w.write_config("", "part_size = \"5MiB\"")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_replica_set_is_archived_and_restored_byte_for_byte() {
    let w = world("dedicated", 2).await;
    let cfg = config(&w);
    let run = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    run.assert_code(0);
    run.assert_no_secrets(&w.secrets());
    let report = common::parse_json(&run.stdout);
    let archived = report.to_string().matches("\"archived\"").count();
    assert_eq!(archived, 4, "two snapshots of each cluster: {report}");
    let keys = w.keys().await;
    for c in w.sim.clusters() {
        for snap in &c.snapshots {
            let key = keys
                .keys()
                .find(|k| k.contains(&snap.id) && k.ends_with(".tar.gz"))
                .unwrap_or_else(|| panic!("no archive of {} in {keys:?}", snap.id));
            assert_eq!(
                w.sha256_of_object(key).await,
                snap.sha256(),
                "{key} is the snapshot served"
            );
        }
    }
    assert!(w.open_uploads().await.is_empty());

    // The kind was asked once: the next run lists the dedicated cluster on its own API at
    // once (the Flex API is not asked again), and archives nothing twice.
    let before = w.sim.observed();
    let again = w.run(&["once", "--config", &cfg], &[]).await;
    again.assert_code(0);
    let after = w.sim.observed();
    assert_eq!(
        after.api_requests - before.api_requests,
        3,
        "one listing per cluster (two for the dedicated one: its replica-set and sharded snapshots), no kind probe, no download request: {}",
        again.stderr
    );

    // Restored, byte for byte, from the bucket.
    let dedicated = &w.sim.clusters()[1];
    let newest = dedicated.snapshots.last().unwrap();
    let file = w.path("orders.tar.gz");
    let file_text = file.to_string_lossy().into_owned();
    let target = format!("{PROJECT}/orders-m10");
    let restore = w
        .run(
            &[
                "restore",
                "--config",
                &cfg,
                "--target",
                &target,
                "--latest",
                "--archive",
                &file_text,
            ],
            &[],
        )
        .await;
    restore.assert_code(0);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), newest.sha256());
    let dir = w.path("orders-restored");
    let dir_text = dir.to_string_lossy().into_owned();
    let to = w
        .run(
            &[
                "restore", "--config", &cfg, "--target", &target, "--latest", "--to", &dir_text,
            ],
            &[],
        )
        .await;
    to.assert_code(0);
    assert!(dir.join("WiredTiger").is_file(), "{}", to.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_url_cut_mid_body_gets_a_new_restore_job() {
    let w = world("dedicated-cut", 1).await;
    let snap = w.sim.clusters()[1].snapshots[0].clone();
    w.sim.set_faults(|f| {
        f.cut_after.insert(snap.id.clone(), 3 << 20);
        f.cut_times = 1;
        // Ranges are honoured, but the URL serves one GET: a resume is refused.
        f.range_support = true;
    });
    let cfg = config(&w);
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    let seen = w.sim.observed();
    // Flex: one job; dedicated: the cut one and a new one.
    assert_eq!(seen.download_requests, 3, "{seen:?}\n{}", run.stderr);
    let key = w
        .keys()
        .await
        .into_keys()
        .find(|k| k.contains(&snap.id) && k.ends_with(".tar.gz"))
        .unwrap();
    assert_eq!(w.sha256_of_object(&key).await, snap.sha256());
    assert!(w.open_uploads().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_snapshots_wait_for_snapshot_types_and_a_wrong_kind_says_what_to_set() {
    let w = world("dedicated-types", 2).await;
    let fallback = w.sim.clusters()[1].snapshots[0].id.clone();
    w.sim.set_faults(|f| {
        f.fallback_snapshots.insert(fallback.clone());
    });
    let cfg = config(&w);
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    let has = |keys: &std::collections::HashMap<String, u64>, id: &str| {
        keys.keys()
            .any(|k| k.contains(id) && k.ends_with(".tar.gz"))
    };
    assert!(
        !has(&w.keys().await, &fallback),
        "fallback skipped by default"
    );

    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "cluster = \"orders-m10\"\n",
        "cluster = \"orders-m10\"\nkind = \"dedicated\"\nsnapshot_types = [\"scheduled\", \"onDemand\", \"fallback\"]\n",
    );
    std::fs::write(&cfg, &text).unwrap();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    assert!(has(&w.keys().await, &fallback), "archived once asked for");

    // A Flex cluster configured as dedicated: Atlas refuses it, and the message says how.
    let wrong = text.replace(
        "cluster = \"app-flex\"\n",
        "cluster = \"app-flex\"\nkind = \"dedicated\"\n",
    );
    std::fs::write(&cfg, wrong).unwrap();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(1);
    assert!(
        run.all().contains("CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API"),
        "{}",
        run.all()
    );
    assert!(run.all().contains("set kind = "), "{}", run.all());
}

/// A dedicated cluster that keeps 300 daily snapshots: `since = "30d"` bounds the backlog to
/// the 29 taken within 30 days, and `max_per_run = 10` works it off run by run, newest first,
/// reporting what waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_max_per_run_bound_a_backlog_of_300_snapshots() {
    let mut clusters = scenario(PROJECT, &["history-m10"], 300, &[64 << 10]);
    clusters[0].dedicated = true;
    let w = World::new("dedicated-backlog", clusters).await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "cluster = \"history-m10\"\n",
        "cluster = \"history-m10\"\nsince = \"30d\"\nmax_per_run = 10\n",
    );
    assert!(text.contains("max_per_run = 10"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let mut by_age = w.sim.clusters()[0].snapshots.clone();
    by_age.sort_by_key(|s| std::cmp::Reverse(s.finished));
    let archived = |keys: &std::collections::HashMap<String, u64>| -> Vec<String> {
        by_age
            .iter()
            .filter(|s| {
                keys.keys()
                    .any(|k| k.contains(&s.id) && k.ends_with(".tar.gz"))
            })
            .map(|s| s.id.clone())
            .collect()
    };
    // The dry run judges as the run does: 10 to archive, 19 deferred, the rest out of scope.
    let plan = w
        .run(&["once", "--config", &cfg, "--dry-run", "--json"], &[])
        .await;
    plan.assert_code(0);
    let plan = plan.stdout;
    assert_eq!(plan.matches("\"archive\"").count(), 10, "{plan}");
    assert_eq!(plan.matches("\"deferred\"").count(), 19, "{plan}");
    for (run, (total, waiting)) in [(10, 19), (20, 9), (29, 0), (29, 0)]
        .into_iter()
        .enumerate()
    {
        let out = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
        out.assert_code(0);
        let report = common::parse_json(&out.stdout);
        assert_eq!(
            report
                .to_string()
                .matches(&format!("\"waiting\":{waiting}"))
                .count(),
            1,
            "run {run}: {report}"
        );
        let done = archived(&w.keys().await);
        assert_eq!(done.len(), total, "run {run}");
        let newest: Vec<String> = by_age.iter().take(total).map(|s| s.id.clone()).collect();
        assert_eq!(done, newest, "run {run}: newest first");
    }
}

/// A cluster whose kind the journal remembers (`kind = "auto"`), upgraded from Flex to
/// dedicated: Atlas refuses it on the Flex API, and the next run learns the kind again instead
/// of failing for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_kind_that_atlas_refuses_is_learnt_again() {
    let w = World::new(
        "dedicated-upgrade",
        scenario(PROJECT, &["grow-flex"], 1, &[1 << 20]),
    )
    .await;
    let cfg = w.write_config("", "").to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    w.sim.set_dedicated(PROJECT, "grow-flex", true);
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("dedicated"), "{}", run.stderr);
    let before = w.sim.observed().api_requests;
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    assert_eq!(
        w.sim.observed().api_requests - before,
        2,
        "the new kind is remembered: one listing, on the dedicated API (its replica-set and its sharded snapshots)"
    );
}

/// Atlas holds one download job at a time for a dedicated cluster: while a person's download
/// in the Atlas UI holds the slot, every snapshot waits for a later run (no failure, no
/// alert-worthy run, one refused request rather than one per snapshot); once the slot is free,
/// the next run archives them all, one job after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_download_slot_defers_the_cluster_to_a_later_run() {
    let w = world("dedicated-slot", 3).await;
    w.sim.set_faults(|f| f.one_download_per_cluster = true);
    w.sim
        .start_foreign_download(PROJECT, "orders-m10", "0123456789abcdef01234567");
    let cfg = config(&w);
    let before = w.sim.observed().download_requests;
    let run = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    run.assert_code(0);
    let report = common::parse_json(&run.stdout);
    let text = report.to_string();
    assert!(!text.contains("\"failed\""), "{report}");
    assert!(text.contains("\"waiting\":3"), "{report}");
    assert!(
        run.stderr.contains("CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY"),
        "{}",
        run.stderr
    );
    // Three Flex downloads and one refused dedicated request: the other two did not ask.
    assert_eq!(w.sim.observed().download_requests - before, 4);
    let keys = w.keys().await;
    let dedicated = w.sim.clusters()[1].clone();
    assert!(
        dedicated
            .snapshots
            .iter()
            .all(|s| !keys.keys().any(|k| k.contains(&s.id))),
        "{keys:?}"
    );
    assert!(w.open_uploads().await.is_empty());

    // The person's download expires: the next run takes the three, one job at a time.
    w.sim.expire_jobs();
    let again = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    again.assert_code(0);
    let report = common::parse_json(&again.stdout);
    assert!(report.to_string().contains("\"waiting\":0"), "{report}");
    // A new snapshot while the slot is taken again: it waits, and only it (the archived ones
    // are not counted as waiting).
    w.sim.add_snapshot(
        PROJECT,
        "orders-m10",
        atlas_archiver::simulator::SimSnapshot {
            id: "6a6f78e1fa11fa11fa110001".into(),
            size: 1 << 20,
            status: "COMPLETED".into(),
            scheduled: chrono::Utc::now(),
            finished: chrono::Utc::now(),
        },
    );
    w.sim
        .start_foreign_download(PROJECT, "orders-m10", "0123456789abcdef01234568");
    let third = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    third.assert_code(0);
    let report = common::parse_json(&third.stdout);
    assert!(report.to_string().contains("\"waiting\":1"), "{report}");
    let keys = w.keys().await;
    for snap in &dedicated.snapshots {
        let key = keys
            .keys()
            .find(|k| k.contains(&snap.id) && k.ends_with(".tar.gz"))
            .unwrap_or_else(|| panic!("no archive of {} in {keys:?}", snap.id));
        assert_eq!(w.sha256_of_object(key).await, snap.sha256());
    }
}

/// A sharded cluster (3 shards and a config server), `kind = "auto"`, whose snapshots Atlas
/// lists on D3 and serves as one file per replica set.
async fn sharded_world(test: &str, per_cluster: usize) -> World {
    let mut clusters = scenario(PROJECT, &["shop-sharded"], per_cluster, &[(1 << 20) + 77]);
    clusters[0].dedicated = true;
    clusters[0].shards = 3;
    World::new(test, clusters).await
}

/// The manifest of a snapshot, read from the bucket.
async fn manifest_of(w: &World, snapshot_id: &str) -> serde_json::Value {
    let keys = w.keys().await;
    let key = keys
        .keys()
        .find(|k| k.contains(snapshot_id) && k.ends_with(".manifest.json"))
        .unwrap_or_else(|| panic!("no manifest of {snapshot_id} in {keys:?}"));
    let client = w.s3.client().await;
    let body = client.get_small(key).await.unwrap().unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_cluster_is_archived_one_object_per_replica_set_and_restored_into_one_directory_each()
 {
    let w = sharded_world("sharded", 2).await;
    let cfg = config(&w);
    let run = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    run.assert_code(0);
    run.assert_no_secrets(&w.secrets());
    let report = common::parse_json(&run.stdout);
    assert_eq!(
        report.to_string().matches("\"archived\"").count(),
        2,
        "{report}"
    );
    let cluster = w.sim.clusters()[0].clone();
    let sets = cluster.replica_sets();
    assert_eq!(sets.len(), 4, "three shards and the config server");
    let keys = w.keys().await;
    for snap in &cluster.snapshots {
        // One object per replica set, byte for byte what Atlas served for it.
        for rs in &sets {
            let key = keys
                .keys()
                .find(|k| k.ends_with(&format!("/{}/{rs}.tar.gz", snap.id)))
                .unwrap_or_else(|| panic!("no {rs} of {} in {keys:?}", snap.id));
            assert_eq!(
                w.sha256_of_object(key).await,
                snap.component_sha256(rs),
                "{key}"
            );
        }
        // One manifest for the snapshot, listing every component with its size and SHA-256.
        let m = manifest_of(&w, &snap.id).await;
        let components = m["components"].as_array().unwrap();
        let listed: Vec<&str> = components
            .iter()
            .map(|c| c["replica_set"].as_str().unwrap())
            .collect();
        assert_eq!(listed, sets.iter().map(String::as_str).collect::<Vec<_>>());
        for c in components {
            let rs = c["replica_set"].as_str().unwrap();
            assert_eq!(c["sha256"], snap.component_sha256(rs).as_str());
            assert_eq!(c["size_bytes"], snap.size);
            assert!(c["content"]["tar_entries"].as_u64().unwrap() > 0, "{c}");
        }
        assert_eq!(m["size_bytes"], snap.size * 4);
        // Nothing else: the components, the manifest, no archive under the snapshot's own key.
        let of_snapshot = keys.keys().filter(|k| k.contains(&snap.id)).count();
        assert_eq!(of_snapshot, 5, "{keys:?}");
    }
    assert!(w.open_uploads().await.is_empty());

    // `list` shows the snapshot as one unit; `verify` reads every component back.
    let target = format!("{PROJECT}/shop-sharded");
    let list = w
        .run(&["list", "--config", &cfg, "--target", &target], &[])
        .await;
    list.assert_code(0);
    assert_eq!(
        list.stdout.matches("(4 components: ").count(),
        2,
        "{}",
        list.stdout
    );
    let verify = w.run(&["verify", "--config", &cfg, "--all"], &[]).await;
    verify.assert_code(0);
    assert!(!verify.stdout.contains("EXTRA"), "{}", verify.stdout);
    assert_eq!(
        verify.stdout.matches(".tar.gz").count(),
        8,
        "every component of both snapshots: {}",
        verify.stdout
    );

    // `restore --to DIR` puts each replica set's files in DIR/<replica set>/.
    let newest = cluster.snapshots.last().unwrap();
    let dir = w.path("shop-restored");
    let dir_text = dir.to_string_lossy().into_owned();
    let to = w
        .run(
            &[
                "restore", "--config", &cfg, "--target", &target, "--latest", "--to", &dir_text,
            ],
            &[],
        )
        .await;
    to.assert_code(0);
    let mut restored: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    restored.sort();
    let mut expected = sets.clone();
    expected.sort();
    assert_eq!(restored, expected, "{}", to.stdout);
    for rs in &sets {
        assert!(
            std::fs::read_dir(dir.join(rs)).unwrap().next().is_some(),
            "{rs} holds its files"
        );
    }
    // `--archive DIR` writes each component's verified .tar.gz.
    let files = w.path("shop-archives");
    let files_text = files.to_string_lossy().into_owned();
    let archive = w
        .run(
            &[
                "restore",
                "--config",
                &cfg,
                "--target",
                &target,
                "--latest",
                "--archive",
                &files_text,
            ],
            &[],
        )
        .await;
    archive.assert_code(0);
    for rs in &sets {
        let bytes = std::fs::read(files.join(format!("{rs}.tar.gz"))).unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            newest.component_sha256(rs)
        );
    }

    // A lost journal is rebuilt from the one manifest: both snapshots archived, none fetched again.
    std::fs::remove_file(w.path("state/journal.sqlite")).unwrap();
    let rebuilt = w.run(&["journal", "rebuild", "--config", &cfg], &[]).await;
    rebuilt.assert_code(0);
    let before = w.sim.observed().download_requests;
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    assert_eq!(
        w.sim.observed().download_requests,
        before,
        "nothing downloaded again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_component_gets_a_new_job_and_one_that_keeps_failing_leaves_nothing_behind() {
    let w = sharded_world("sharded-cut", 1).await;
    let cfg = config(&w);
    let snap = w.sim.clusters()[0].snapshots[0].clone();
    let config_server = w.sim.clusters()[0].replica_sets().pop().unwrap();

    // The config server's file is cut every time: after three attempts the snapshot is not
    // archived, and the shards archived on the way are gone again.
    w.sim.set_faults(|f| {
        f.cut_component.insert(config_server.clone(), (300_000, 0));
    });
    let failed = w.run(&["once", "--config", &cfg], &[]).await;
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    let left: Vec<String> = w
        .keys()
        .await
        .into_keys()
        .filter(|k| k.contains(&snap.id))
        .collect();
    assert!(left.is_empty(), "no orphan: {left:?}\n{}", failed.stderr);
    assert!(w.open_uploads().await.is_empty());

    // Cut once: the next attempt asks for a new job and fetches only the config server again.
    w.sim.set_faults(|f| {
        f.cut_component.insert(config_server.clone(), (300_000, 1));
    });
    let before = w.sim.observed();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    let after = w.sim.observed();
    assert_eq!(
        after.download_requests - before.download_requests,
        2,
        "the cut job and a new one: {}",
        run.stderr
    );
    assert_eq!(
        after.snapshot_downloads - before.snapshot_downloads,
        5,
        "four files, then the config server's again: {}",
        run.stderr
    );
    let m = manifest_of(&w, &snap.id).await;
    assert_eq!(m["components"].as_array().unwrap().len(), 4, "{m}");
    for rs in w.sim.clusters()[0].replica_sets() {
        let key = w
            .keys()
            .await
            .into_keys()
            .find(|k| k.ends_with(&format!("/{}/{rs}.tar.gz", snap.id)))
            .unwrap();
        assert_eq!(w.sha256_of_object(&key).await, snap.component_sha256(&rs));
    }
    assert!(w.open_uploads().await.is_empty());
}

/// `kill -9` between any two steps of a sharded snapshot (mid-component, after a component,
/// before a component's Complete, after the manifest's PUT): the next run finishes it, the
/// components already archived are kept, and nothing is left open or undescribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_anywhere_in_a_sharded_snapshot_is_finished_by_the_next_run() {
    for (i, crash) in [
        ("ATLAS_ARCHIVER_CRASH_AT_BYTE", "400000"),
        ("ATLAS_ARCHIVER_CRASH_AT", "after-component"),
        ("ATLAS_ARCHIVER_CRASH_AT", "before-component-complete"),
        ("ATLAS_ARCHIVER_CRASH_AT", "after-manifest"),
    ]
    .into_iter()
    .enumerate()
    {
        let w = sharded_world(&format!("sharded-crash-{i}"), 1).await;
        let cfg = config(&w);
        let snap = w.sim.clusters()[0].snapshots[0].clone();
        let crashed = w.run(&["once", "--config", &cfg], &[crash]).await;
        assert_ne!(crashed.code, 0, "{crash:?} crashed: {}", crashed.stderr);
        assert!(
            crashed.stderr.contains("fault injection: crashing"),
            "{crash:?}: {}",
            crashed.stderr
        );
        let run = w.run(&["once", "--config", &cfg], &[]).await;
        run.assert_code(0);
        let keys = w.keys().await;
        for rs in w.sim.clusters()[0].replica_sets() {
            let key = keys
                .keys()
                .find(|k| k.ends_with(&format!("/{}/{rs}.tar.gz", snap.id)))
                .unwrap_or_else(|| panic!("{crash:?}: no {rs} in {keys:?}"));
            assert_eq!(
                w.sha256_of_object(key).await,
                snap.component_sha256(&rs),
                "{crash:?}"
            );
        }
        assert_eq!(
            keys.keys().filter(|k| k.contains(&snap.id)).count(),
            5,
            "{crash:?}: four components and one manifest: {keys:?}"
        );
        assert_eq!(
            manifest_of(&w, &snap.id).await["components"]
                .as_array()
                .map(Vec::len),
            Some(4),
            "{crash:?}"
        );
        assert!(w.open_uploads().await.is_empty(), "{crash:?}");
        let verify = w.run(&["verify", "--config", &cfg, "--all"], &[]).await;
        verify.assert_code(0);
    }
}

/// Retention counts a sharded snapshot once, and `prune` removes all of it: every component,
/// then the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_a_sharded_snapshot_as_one_unit() {
    let w = sharded_world("sharded-prune", 3).await;
    let path = w.write_config("", "part_size = \"5MiB\"");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[retention]\nkeep_last = 1\nmin_keep = 1\n");
    std::fs::write(&path, text).unwrap();
    let cfg = path.to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    assert_eq!(
        w.keys().await.len(),
        3 * 5,
        "three snapshots of four files and a manifest"
    );
    let pruned = w.run(&["prune", "--config", &cfg], &[]).await;
    pruned.assert_code(0);
    let newest = w.sim.clusters()[0].snapshots.last().unwrap().clone();
    let left: Vec<String> = w.keys().await.into_keys().collect();
    assert_eq!(left.len(), 5, "{left:?}\n{}", pruned.stdout);
    assert!(left.iter().all(|k| k.contains(&newest.id)), "{left:?}");
    let verify = w.run(&["verify", "--config", &cfg, "--all"], &[]).await;
    verify.assert_code(0);
    assert!(!verify.stdout.contains("EXTRA"), "{}", verify.stdout);
}
