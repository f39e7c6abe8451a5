//! Immutability, storage classes and encryption end to end through the real binary: Object Lock
//! on a bucket that has it (moto implements Object Lock, versioning, GLACIER and RestoreObject),
//! its refusal where the bucket or the store cannot lock (moto's plain bucket, Garage, s3s-fs),
//! pruning that keeps locked archives and removes unlocked ones with every version, cold
//! archives that `verify` and `restore` recognise and `restore --thaw` brings back, and SSE-C.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use atlas_archiver::simulator::content::SnapshotBytes;
use atlas_archiver::simulator::{SimCluster, scenario};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use common::{S3Server, World, parse_json};
use sha2::{Digest, Sha256};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";
const CLUSTER: &str = "orders-flex";
const SSE_C_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn three() -> Vec<SimCluster> {
    scenario(PROJECT, &[CLUSTER], 3, &[3 << 20, 700_001, 123_457])
}

fn target() -> String {
    format!("{PROJECT}/{CLUSTER}")
}

/// A raw S3 client, for what the tool must not do itself (create buckets, force deletes).
fn raw(s3: &S3Server) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&s3.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &s3.access_key,
                &s3.secret_key,
                None,
                None,
                "test",
            ))
            .build(),
    )
}

/// Whether the server under test lacks Object Lock (moto has it; Garage and s3s-fs do not): the
/// test is then skipped, saying so (the refusal test covers those servers).
fn skip_without_locks(w: &World) -> bool {
    let skip = w.s3.name != "moto";
    if skip {
        eprintln!(
            "skipped on {}: it does not implement Object Lock (the refusal test covers it)",
            w.s3.name
        );
    }
    skip
}

/// A new bucket with Object Lock enabled; the config's bucket replaced by it.
async fn locked_bucket(w: &World, config: &std::path::Path, name: &str) -> String {
    let bucket = format!("{name}-{}", std::process::id());
    raw(&w.s3)
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    use_bucket(w, config, &bucket);
    bucket
}

/// `restore --latest --archive FILE` of the target, plus `extra`.
async fn restore_latest(w: &World, cfg: &str, file: &str, extra: &[&str]) -> common::Run {
    let target = target();
    let mut args = vec![
        "restore",
        "--config",
        cfg,
        "--target",
        &target,
        "--latest",
        "--archive",
        file,
    ];
    args.extend_from_slice(extra);
    w.run(&args, &[]).await
}

/// Points `config` at `bucket` instead of the server's test bucket.
fn use_bucket(w: &World, config: &std::path::Path, bucket: &str) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        &format!("bucket = \"{}\"", w.s3.bucket),
        &format!("bucket = \"{bucket}\""),
    );
    std::fs::write(config, text).unwrap();
}

/// One page of the keys under `prefix` (these tests write a handful).
async fn list_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output {
    client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
}

fn append(config: &std::path::Path, text: &str) {
    let mut all = std::fs::read_to_string(config).unwrap();
    all.push_str(text);
    std::fs::write(config, all).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_cold_encrypted_archives_survive_prune_and_come_back_with_a_thaw() {
    let w = World::new("lock", three()).await;
    if skip_without_locks(&w) {
        return;
    }
    let config = w.write_config(
        "",
        "storage_class = \"GLACIER\"\nsse = \"AES256\"\n\n[storage.object_lock]\nmode = \"governance\"\nretain = \"35d\"",
    );
    let bucket = locked_bucket(&w, &config, "locked").await;
    append(&config, "\n[retention]\nkeep_last = 1\nmin_keep = 1\n");
    let cfg = config.to_string_lossy().into_owned();
    let before = chrono::Utc::now();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    let after = chrono::Utc::now();

    // Every archive and manifest is locked as configured, read back from the store.
    let client = raw(&w.s3);
    let listed = list_prefix(&client, &bucket, &w.prefix).await;
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    let horizon = |t: chrono::DateTime<chrono::Utc>| (t + chrono::Duration::days(35)).timestamp();
    for key in &keys {
        let head = client
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("GOVERNANCE"),
            "{key}"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        assert!(
            (horizon(before) - 1..=horizon(after)).contains(&until),
            "{key}: locked until {until}, expected archive time + 35 d"
        );
        let class = head.storage_class().map(|c| c.as_str().to_owned());
        if key.ends_with(".manifest.json") {
            assert_ne!(
                class.as_deref(),
                Some("GLACIER"),
                "manifests stay readable: {key}"
            );
            let body = client
                .get_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            let manifest = parse_json(
                &String::from_utf8(body.body.collect().await.unwrap().to_vec()).unwrap(),
            );
            assert_eq!(manifest["object_lock"]["mode"], "governance", "{manifest}");
            assert_eq!(manifest["storage_class"], "GLACIER", "{manifest}");
            assert_eq!(manifest["encryption"]["sse"], "AES256", "{manifest}");
        } else {
            assert_eq!(class.as_deref(), Some("GLACIER"), "{key}");
            assert_eq!(
                head.server_side_encryption().map(|s| s.as_str()),
                Some("AES256")
            );
            // The lock is the store's, not ours: a delete of the version is refused.
            let refused = client
                .delete_object()
                .bucket(&bucket)
                .key(key)
                .version_id(head.version_id().unwrap())
                .send()
                .await;
            assert!(refused.is_err(), "{key}: a locked version was deleted");
        }
    }

    // The policy removes two archives; both are locked, so both are kept and said to be.
    let prune = w.run(&["prune", "--config", &cfg, "--json"], &[]).await;
    prune.assert_code(0);
    let report = parse_json(&prune.stdout);
    let items = report[0]["archives"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{}", prune.stdout);
    for item in items {
        assert_eq!(item["action"], "keep", "{item}");
        assert!(item.get("error").is_none(), "{item}");
    }
    let locked = items
        .iter()
        .filter(|i| i["reasons"].to_string().contains("locked until"))
        .count();
    assert_eq!(locked, 2, "{}", prune.stdout);
    assert_eq!(report[0]["bytes_reclaimed"], 0);
    let listed = list_prefix(&client, &bucket, &w.prefix).await;
    assert_eq!(listed.contents().len(), 6, "nothing locked was deleted");

    // Cold archives: verify checks sizes by HEAD and says so; restore needs --thaw.
    let verify = w.run(&["verify", "--config", &cfg], &[]).await;
    verify.assert_code(0);
    assert_eq!(
        verify
            .stdout
            .lines()
            .filter(|l| l.starts_with("cold "))
            .count(),
        3,
        "{}",
        verify.stdout
    );
    let out = w.path("latest.tar.gz");
    let out_s = out.to_string_lossy().into_owned();
    let cold = restore_latest(&w, &cfg, &out_s, &[]).await;
    cold.assert_code(1);
    assert!(
        cold.stderr.contains("storage class GLACIER") && cold.stderr.contains("--thaw"),
        "{}",
        cold.stderr
    );
    assert!(!out.exists());
    let thawed = restore_latest(&w, &cfg, &out_s, &["--thaw", "--thaw-days", "2"]).await;
    thawed.assert_code(0);
    assert!(
        thawed
            .stderr
            .contains("asked the store to thaw it for 2 days"),
        "{}",
        thawed.stderr
    );
    let newest = w.sim.clusters()[0].snapshots.last().cloned().unwrap();
    let mut served = vec![0u8; usize::try_from(newest.size).unwrap()];
    SnapshotBytes::new(&newest.id, newest.size).fill(&mut served);
    assert_eq!(
        sha256_hex(&std::fs::read(&out).unwrap()),
        sha256_hex(&served)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_locks_with_a_legal_hold_and_unlocked_archives_are_pruned_with_every_version() {
    let w = World::new("compliance", three()).await;
    if skip_without_locks(&w) {
        return;
    }
    // Archived before a lock was configured: versions without a lock.
    let config = w.write_config("", "");
    let bucket = locked_bucket(&w, &config, "compliance").await;
    let cfg = config.to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    // Then the lock, and a policy that keeps only the newest.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[journal]",
        "[storage.object_lock]\nmode = \"compliance\"\nretain = \"2d\"\nlegal_hold = true\n\n[journal]",
    );
    std::fs::write(
        &config,
        text + "\n[retention]\nkeep_last = 1\nmin_keep = 1\n",
    )
    .unwrap();
    let prune = w.run(&["prune", "--config", &cfg, "--json"], &[]).await;
    prune.assert_code(0);
    let report = parse_json(&prune.stdout);
    let removed = report[0]["archives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "remove")
        .count();
    assert_eq!(removed, 2, "{}", prune.stdout);
    // Gone for good: no version and no delete marker left of the removed keys.
    let client = raw(&w.s3);
    let versions = client
        .list_object_versions()
        .bucket(&bucket)
        .prefix(&w.prefix)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.versions().len(),
        2,
        "the newest archive and its manifest"
    );
    assert!(
        versions.delete_markers().is_empty(),
        "{:?}",
        versions.delete_markers()
    );

    // A new archive under the compliance lock, with its legal hold.
    let w2 = World::new(
        "compliance2",
        scenario(PROJECT, &["billing"], 1, &[200_003]),
    )
    .await;
    let config2 = w2.write_config(
        "",
        "[storage.object_lock]\nmode = \"compliance\"\nretain = \"2d\"\nlegal_hold = true",
    );
    use_bucket(&w2, &config2, &bucket);
    let cfg2 = config2.to_string_lossy().into_owned();
    w2.run(&["once", "--config", &cfg2], &[])
        .await
        .assert_code(0);
    let listed = list_prefix(&client, &bucket, &w2.prefix).await;
    assert_eq!(listed.contents().len(), 2);
    for o in listed.contents() {
        let head = client
            .head_object()
            .bucket(&bucket)
            .key(o.key().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("COMPLIANCE")
        );
        assert_eq!(
            head.object_lock_legal_hold_status().map(|s| s.as_str()),
            Some("ON")
        );
    }
}

/// Runs on every server: moto's test bucket has no Object Lock, Garage and s3s-fs implement
/// none. `once` and `run` refuse to start (exit 2) and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_the_bucket_cannot_give_refuses_the_start() {
    let w = World::new("nolock", three()).await;
    let config = w.write_config(
        "",
        "[storage.object_lock]\nmode = \"governance\"\nretain = \"35d\"",
    );
    let cfg = config.to_string_lossy().into_owned();
    let once = w.run(&["once", "--config", &cfg], &[]).await;
    once.assert_code(2);
    assert!(
        once.stderr
            .contains("storage.object_lock is configured, but")
            && once.stderr.contains(&cfg),
        "{}",
        once.stderr
    );
    assert_eq!(
        once.stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "{}",
        once.stderr
    );
    let daemon = w.run(&["run", "--config", &cfg], &[]).await;
    daemon.assert_code(2);
    assert!(
        daemon
            .stderr
            .contains("storage.object_lock is configured, but"),
        "{}",
        daemon.stderr
    );
    assert!(w.keys().await.is_empty(), "nothing may be written unlocked");
    assert_eq!(w.sim.observed().snapshot_downloads, 0);
}

/// SSE-C: archives written and read back with the configured key; a restore with another key
/// is refused before any byte is read, naming the key the archive needs by its MD5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_keys_write_and_read_back_and_the_wrong_key_is_named() {
    let w = World::new("ssec", three()).await;
    if w.s3.name != "moto" {
        eprintln!("skipped on {}: SSE-C is tested on moto", w.s3.name);
        return;
    }
    std::fs::write(w.path("ssec_key"), SSE_C_KEY).unwrap();
    let config = w.write_config("", "sse_customer_key_file = \"ssec_key\"");
    let cfg = config.to_string_lossy().into_owned();
    let run = w.run(&["once", "--config", &cfg], &[]).await;
    run.assert_code(0);
    run.assert_no_secrets(&[SSE_C_KEY.to_owned()]);
    let out = w.path("back.tar.gz");
    let out_s = out.to_string_lossy().into_owned();
    let back = restore_latest(&w, &cfg, &out_s, &[]).await;
    back.assert_code(0);
    let list = w.run(&["list", "--config", &cfg, "--json"], &[]).await;
    list.assert_code(0);
    let catalog = parse_json(&list.stdout);
    let md5 = catalog["snapshots"][0]["encryption"]["customer_key_md5"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", list.stdout))
        .to_owned();
    assert_eq!(catalog["snapshots"][0]["encryption"]["sse"], "SSE-C");

    std::fs::write(w.path("ssec_key"), OTHER_KEY).unwrap();
    let wrong = restore_latest(&w, &cfg, &w.path("other.tar.gz").to_string_lossy(), &[]).await;
    wrong.assert_code(2);
    assert!(
        wrong.stderr.contains(&md5) && wrong.stderr.contains("sse_customer_key_file"),
        "{}",
        wrong.stderr
    );
    wrong.assert_no_secrets(&[SSE_C_KEY.to_owned(), OTHER_KEY.to_owned()]);
}
