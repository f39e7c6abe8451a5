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
