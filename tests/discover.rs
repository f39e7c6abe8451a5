//! Issue 12 (auto-discovery): `[[discover]]` by project and by organisation, with a name glob,
//! tags and exclusions, across several pages of each listing, picks exactly the expected
//! clusters (`targets` says why each was taken or not) and `once` archives exactly those.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use atlas_archiver::simulator::scenario;
use common::World;

const PROJECT: &str = "5f0a1b2c3d4e5f60718293c4";
const OTHER: &str = "6a1b2c3d4e5f60718293c4d5";
const EMPTY: &str = "6b2c3d4e5f60718293c4d5e6";
const ORG: &str = "7c3d4e5f60718293c4d5e6f7";

fn tag(env: &str) -> Vec<(String, String)> {
    vec![
        ("env".to_owned(), env.to_owned()),
        ("team".to_owned(), "core".to_owned()),
    ]
}

/// Project `PROJECT` holds a mix that one selector must sort; `OTHER` (with an empty project,
/// in one organisation) holds what the org selector must find.
async fn world(test: &str) -> World {
    let names = [
        "prod-orders",   // dedicated, env=prod: taken by discover[0]
        "prod-users",    // flex, env=prod: taken by discover[0]
        "prod-scratch",  // flex, env=prod: excluded
        "prod-tagged",   // flex, env=dev: wrong tag
        "dev-orders",    // flex, env=prod: wrong name
        "prod-nobackup", // dedicated, env=prod, backups off
        "prod-billing",  // OTHER, flex: taken by discover[1]
        "staging-jobs",  // OTHER, flex: wrong name
    ];
    let mut clusters = scenario(PROJECT, &names, 1, &[64 << 10]);
    for c in &mut clusters {
        c.tags = tag("prod");
        match c.name.as_str() {
            "prod-orders" => c.dedicated = true,
            "prod-nobackup" => {
                c.dedicated = true;
                c.backups_off = true;
            }
            "prod-tagged" => c.tags = tag("dev"),
            "prod-billing" | "staging-jobs" => c.project_id = OTHER.to_owned(),
            _ => {}
        }
    }
    let w = World::new(test, clusters).await;
    w.sim.set_org(ORG, &[EMPTY, OTHER]);
    // Every listing serves two items a page: the projects and each cluster listing page.
    w.sim.set_faults(|f| f.page_cap = Some(2));
    w
}

fn config(w: &World) -> String {
    let path = w.write_config("", "");
    let text = std::fs::read_to_string(&path).unwrap();
    let head = text.split("\n[[target]]").next().unwrap().to_owned();
    let text = format!(
        r#"{head}
[[discover]]
projects = ["{PROJECT}"]
name = "prod-*"
tags = {{ env = "prod" }}
exclude = ["prod-scratch"]

[[discover]]
org_id = "{ORG}"
kinds = ["flex"]
name = "prod-*"
"#
    );
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn expected() -> BTreeSet<String> {
    [
        format!("{PROJECT}/prod-orders"),
        format!("{PROJECT}/prod-users"),
        format!("{OTHER}/prod-billing"),
    ]
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_by_project_and_by_org_takes_exactly_the_matching_clusters() {
    let w = world("discover").await;
    let cfg = config(&w);

    let out = w.run(&["targets", "--config", &cfg, "--json"], &[]).await;
    out.assert_code(0);
    out.assert_no_secrets(&w.secrets());
    let v = common::parse_json(&out.stdout);
    let taken: BTreeSet<String> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["origin"], "discovered", "{t}");
            format!(
                "{}/{}",
                t["target"]["project_id"].as_str().unwrap(),
                t["target"]["cluster"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(taken, expected(), "{v}");
    let why = |cluster: &str| -> String {
        v["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["target"]["cluster"] == cluster)
            .map(|s| s["why"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{cluster} not reported as skipped: {v}"))
    };
    assert_eq!(why("prod-scratch"), "excluded by prod-scratch");
    assert_eq!(why("prod-tagged"), "tag env=dev, not prod");
    assert_eq!(why("dev-orders"), "name does not match prod-*");
    assert!(why("prod-nobackup").contains("no backups"), "{v}");
    assert_eq!(why("staging-jobs"), "name does not match prod-*");
    let orders = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"]["cluster"] == "prod-orders")
        .unwrap();
    assert_eq!(orders["kind"], "dedicated");
    assert_eq!(orders["why"], "kind dedicated, name prod-*, tags env=prod");

    // The text form says the same, one line per cluster.
    let text = w.run(&["targets", "--config", &cfg], &[]).await;
    text.assert_code(0);
    assert_eq!(
        text.stdout.matches("discovered  ").count(),
        3,
        "{}",
        text.stdout
    );
    assert_eq!(
        text.stdout.matches("skipped     ").count(),
        5,
        "{}",
        text.stdout
    );

    // `once` archives exactly the discovered clusters, byte for byte, and nothing else.
    let run = w.run(&["once", "--config", &cfg, "--json"], &[]).await;
    run.assert_code(0);
    let keys = w.keys().await;
    for c in w.sim.clusters() {
        let wanted = expected().contains(&format!("{}/{}", c.project_id, c.name));
        for snap in &c.snapshots {
            let key = keys
                .keys()
                .find(|k| k.contains(&snap.id) && k.ends_with(".tar.gz"));
            match (wanted, key) {
                (true, Some(key)) => assert_eq!(w.sha256_of_object(key).await, snap.sha256()),
                (true, None) => panic!("{} not archived: {keys:?}", c.name),
                (false, Some(key)) => panic!("{} archived though not selected: {key}", c.name),
                (false, None) => {}
            }
        }
    }
}

/// A selector whose listing fails (an organisation the credentials cannot read) is reported
/// and fails the run, while the other selector's clusters are still archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_whose_listing_fails_fails_the_run_but_not_the_others() {
    let w = world("discover-fail").await;
    let cfg = config(&w);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(ORG, "7c3d4e5f60718293c4d5e6f8");
    std::fs::write(&cfg, text).unwrap();
    let out = w.run(&["targets", "--config", &cfg], &[]).await;
    out.assert_code(1);
    assert!(
        out.stdout.contains("FAILED      discover[1]"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ORG_NOT_FOUND"), "{}", out.stdout);
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("discovery failed"), "{}", run.stderr);
    let keys = w.keys().await;
    let orders = &w.sim.clusters()[0].snapshots[0];
    assert!(keys.keys().any(|k| k.contains(&orders.id)), "{keys:?}");
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// The daemon looks again at every slot: a cluster created in Atlas between two firings is
/// archived at the next one; one that disappears is reported once (a `warn` line and
/// `atlas_archiver_target_discovered 0`), and its archive is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_picks_up_a_new_cluster_and_reports_a_removed_one_once() {
    use std::time::Duration;
    let mut clusters = scenario(PROJECT, &["prod-first", "prod-later"], 1, &[256 << 10]);
    let later = clusters.pop().unwrap();
    let first = clusters[0].clone();
    let w = World::new("discover-daemon", clusters).await;
    let port = common::free_port();
    let cfg = common::daemon_config(&w, port, "10s", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let head = text.split("\n[[target]]").next().unwrap().to_owned();
    std::fs::write(
        &cfg,
        format!("{head}\n[[discover]]\nprojects = [\"{PROJECT}\"]\nname = \"prod-*\"\n"),
    )
    .unwrap();
    let child = common::spawn_daemon(&w, &cfg, &[]);
    let archived = |c: &atlas_archiver::simulator::SimCluster,
                    keys: &std::collections::HashMap<String, u64>| {
        c.snapshots.iter().all(|s| {
            keys.keys()
                .any(|k| k.contains(&s.id) && k.ends_with(".tar.gz"))
        })
    };
    common::wait_for(
        "the first cluster archived",
        Duration::from_secs(60),
        async || archived(&first, &w.keys().await),
    )
    .await;
    w.sim.add_cluster(later.clone());
    common::wait_for(
        "the new cluster archived",
        Duration::from_secs(60),
        async || archived(&later, &w.keys().await),
    )
    .await;

    w.sim.remove_cluster(PROJECT, "prod-first");
    let http = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let gauge = |cluster: &str| {
        format!("atlas_archiver_target_discovered{{project=\"{PROJECT}\",cluster=\"{cluster}\"}}")
    };
    let mut seen = String::new();
    common::wait_for(
        "the removed cluster reported",
        Duration::from_secs(60),
        async || {
            seen = http
                .get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metric(&seen, &gauge("prod-first")) == Some(0.0)
        },
    )
    .await;
    assert_eq!(metric(&seen, &gauge("prod-later")), Some(1.0), "{seen}");
    // Its other series are gone, so that no staleness alert fires for it; the new one's stay.
    let success = |cluster: &str| {
        format!(
            "atlas_archiver_last_success_timestamp_seconds{{project=\"{PROJECT}\",cluster=\"{cluster}\"}}"
        )
    };
    assert_eq!(metric(&seen, &success("prod-first")), None, "{seen}");
    assert!(
        metric(&seen, &success("prod-later")).is_some_and(|t| t > 0.0),
        "{seen}"
    );
    assert_eq!(
        metric(&seen, "atlas_archiver_discovery_failures_total"),
        Some(0.0),
        "{seen}"
    );
    // More discoveries: the disappearance is not reported again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    common::signal(&child, "-TERM");
    let (code, stderr, _) = common::finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr.matches("has disappeared from Atlas").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.matches("discovery done").count() >= 4,
        "discovery looked again after the removal: {stderr}"
    );
    // Its archive is kept.
    assert!(archived(&first, &w.keys().await));
}
