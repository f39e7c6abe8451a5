//! `list` and `restore` end to end through the real binary, on the real S3 server of
//! scripts/test.sh (moto, then Garage): snapshots archived from the simulator, the journal
//! deleted, and every way back checked byte for byte; tampered, truncated and hostile archives
//! refused with nothing left behind.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use atlas_archiver::simulator::content::SnapshotBytes;
use atlas_archiver::simulator::{SimCluster, scenario};
use bytes::Bytes;
use common::{World, parse_json};
use sha2::{Digest, Sha256};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";
const CLUSTER: &str = "orders-flex";

fn three_snapshots() -> Vec<SimCluster> {
    // One that takes three 8 MiB ranges, one under a range, one odd size.
    scenario(PROJECT, &[CLUSTER], 3, &[(20 << 20) + 13, 3 << 20, 777_777])
}

/// The bytes the simulator serves for a snapshot.
fn served(id: &str, size: u64) -> Vec<u8> {
    let mut bytes = SnapshotBytes::new(id, size);
    let mut out = vec![0u8; usize::try_from(size).unwrap()];
    let n = bytes.fill(&mut out);
    assert_eq!(n as u64, size);
    out
}

/// Every regular file of a `.tar.gz`, by path, and every directory.
fn archive_files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(bytes));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(path, data);
        }
    }
    files
}

/// Every regular file under `dir`, by relative path.
fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap() {
            let item = item.unwrap();
            let kind = item.file_type().unwrap();
            if kind.is_dir() {
                stack.push(item.path());
            } else if kind.is_file() {
                let rel = item
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, std::fs::read(item.path()).unwrap());
            }
        }
    }
    files
}

/// The names in a directory (to prove nothing was left beside a failed restore).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Archives the world's snapshots, then deletes the journal: a fresh machine.
async fn archive_then_lose_journal(w: &World) -> String {
    let config = w.write_config("", "part_size = \"5MiB\"");
    let cfg = config.to_string_lossy().into_owned();
    w.run(&["once", "--config", &cfg], &[]).await.assert_code(0);
    std::fs::remove_file(w.path("state/journal.sqlite")).unwrap();
    cfg
}

/// A config with `[storage]` only: no Atlas credentials, no targets (a fresh machine with
/// read-only bucket credentials).
fn storage_only_config(w: &World) -> String {
    storage_only_config_with(w, "")
}

fn storage_only_config_with(w: &World, extra_storage: &str) -> String {
    std::fs::write(w.path("s3_secret"), &w.s3.secret_key).unwrap();
    let text = format!(
        "[storage]\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nprefix = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key_file = \"s3_secret\"\n{extra_storage}\n\n[journal]\npath = \"state/journal.sqlite\"\n",
        w.s3.bucket,
        w.endpoint(),
        w.prefix,
        w.s3.access_key
    );
    let path = w.path("storage-only.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `restore --config CFG --target TARGET ARGS...` through the binary.
async fn restore(w: &World, cfg: &str, target: &str, args: &[&str]) -> common::Run {
    let mut all = vec!["restore", "--config", cfg, "--target", target];
    all.extend_from_slice(args);
    w.run(&all, &[]).await
}

/// The archive key of snapshot `id` in a listing.
fn archive_key(keys: &std::collections::HashMap<String, u64>, id: &str) -> String {
    keys.keys()
        .find(|k| k.ends_with(&format!("{id}.tar.gz")))
        .unwrap_or_else(|| panic!("no archive of {id} in {keys:?}"))
        .clone()
}

fn target() -> String {
    format!("{PROJECT}/{CLUSTER}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_back_gives_the_archived_bytes_with_the_journal_lost() {
    let w = World::new("restore-all", three_snapshots()).await;
    archive_then_lose_journal(&w).await;
    let cfg = storage_only_config(&w);
    let snaps = w.sim.clusters()[0].snapshots.clone();

    // list --json: the catalog read from the bucket alone matches what is in it.
    let list = w.run(&["list", "--config", &cfg, "--json"], &[]).await;
    list.assert_code(0);
    list.assert_no_secrets(&w.secrets());
    let catalog = parse_json(&list.stdout);
    let listed = catalog["snapshots"].as_array().unwrap();
    assert_eq!(listed.len(), snaps.len(), "{}", list.stdout);
    assert_eq!(
        catalog["problems"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.stdout
    );
    let keys = w.keys().await;
    for entry in listed {
        let key = entry["object_key"].as_str().unwrap();
        assert_eq!(
            keys.get(key).copied(),
            entry["size_bytes"].as_u64(),
            "{key}"
        );
        assert_eq!(
            entry["sha256"].as_str().unwrap(),
            w.sha256_of_object(key).await
        );
        assert_eq!(entry["mongodb_version"], "8.0.29");
        assert!(entry["content"]["tar_entries"].as_u64().unwrap() > 0);
        assert!(entry["content"]["uncompressed_bytes"].as_u64().unwrap() > 0);
    }
    // Newest first.
    let finished: Vec<&str> = listed
        .iter()
        .map(|e| e["snapshot_finished_at"].as_str().unwrap())
        .collect();
    let mut sorted = finished.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(finished, sorted);

    // The human table names each snapshot.
    let table = w.run(&["list", "--config", &cfg], &[]).await;
    table.assert_code(0);
    for s in &snaps {
        assert!(table.stdout.contains(&s.id), "{}", table.stdout);
    }

    // --snapshot, --latest and --before, each to a directory, byte for byte.
    let newest = snaps.iter().max_by_key(|s| s.finished).unwrap();
    let middle = snaps
        .iter()
        .filter(|s| s.id != newest.id)
        .max_by_key(|s| s.finished)
        .unwrap();
    // The newest's finish time as recorded (Atlas gives whole seconds).
    let before = listed[0]["snapshot_finished_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(Vec<&str>, &atlas_archiver::simulator::SimSnapshot)> = vec![
        (vec!["--snapshot", &snaps[0].id], &snaps[0]),
        (vec!["--latest"], newest),
        (vec!["--before", &before], middle),
    ];
    for (i, (which, snap)) in cases.iter().enumerate() {
        let dir = w.path(&format!("restored-{i}"));
        let dir_text = dir.to_string_lossy().into_owned();
        let tgt = target();
        let mut args = vec![
            "restore", "--config", &cfg, "--target", &tgt, "--to", &dir_text,
        ];
        args.extend(which.iter().copied());
        let run = w.run(&args, &[]).await;
        run.assert_code(0);
        run.assert_no_secrets(&w.secrets());
        assert!(run.stdout.contains(&snap.id), "{}", run.stdout);
        assert!(run.stdout.contains("mongod --dbpath"), "{}", run.stdout);
        assert!(run.stdout.contains("8.0"), "{}", run.stdout);
        assert!(run.stdout.contains("mongorestore"), "{}", run.stdout);
        let expected = archive_files(&served(&snap.id, snap.size));
        assert!(!expected.is_empty());
        let got = dir_files(&dir);
        assert_eq!(got.len(), expected.len(), "files of {}", snap.id);
        for (path, data) in &expected {
            assert!(got.get(path) == Some(data), "{path} of {} differs", snap.id);
        }
        assert!(dir.join("WiredTiger").is_file(), "{:?}", got.keys());
    }
    // No staging directory was left beside them.
    assert!(
        names_in(w.dir.path())
            .iter()
            .all(|n| !n.contains("restoring")),
        "{:?}",
        names_in(w.dir.path())
    );

    // --archive: the exact bytes, with a JSON report.
    let file = w.path("out/latest.tar.gz");
    let file_text = file.to_string_lossy().into_owned();
    let tgt = target();
    let run = restore(
        &w,
        &cfg,
        &tgt,
        &[
            "--latest",
            "--archive",
            &file_text,
            "--json",
            "--parallel",
            "3",
        ],
    )
    .await;
    run.assert_code(0);
    let report = parse_json(&run.stdout);
    assert_eq!(report["sha256"], newest.sha256().as_str());
    assert_eq!(report["bytes"], newest.size);
    let written = std::fs::read(&file).unwrap();
    assert_eq!(sha256_hex(&written), newest.sha256());
    assert_eq!(names_in(&w.path("out")), vec!["latest.tar.gz".to_owned()]);

    // Not a terminal: no progress line.
    assert!(!run.stderr.contains("/20.00 MiB"), "{}", run.stderr);
    // On a terminal (a pty from script(1)), the progress line is drawn (tests/terminal.rs reads
    // it off a real screen) and the summary follows it.
    let tty_file = w.path("out/tty.tar.gz").to_string_lossy().into_owned();
    let command = format!(
        // script(1)'s pty has no size and no TERM when the test has no terminal; a real one has both.
        "stty cols 160 rows 40; TERM=xterm {} restore --config {cfg} --target {tgt} --latest --archive {tty_file}",
        env!("CARGO_BIN_EXE_atlas-archiver")
    );
    let tty = w
        .run_program("script", &["-qec", &command, "/dev/null"])
        .await;
    tty.assert_code(0);
    assert!(
        tty.stdout.contains("orders-flex") && tty.stdout.contains("/20.00 MiB"),
        "{}",
        tty.stdout
    );
    assert!(
        tty.stdout.contains("restored snapshot") && tty.stdout.contains("MiB/s)"),
        "{}",
        tty.stdout
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&tty_file).unwrap()),
        newest.sha256()
    );

    // Neither an existing file nor a non-empty directory is ever overwritten (usage: exit 2).
    let again = restore(&w, &cfg, &tgt, &["--latest", "--archive", &file_text]).await;
    again.assert_code(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let full = w.path("restored-0").to_string_lossy().into_owned();
    let again = restore(&w, &cfg, &tgt, &["--latest", "--to", &full]).await;
    again.assert_code(2);
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);

    // An empty directory is fine.
    let empty = w.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty_text = empty.to_string_lossy().into_owned();
    let run = restore(
        &w,
        &cfg,
        &tgt,
        &["--snapshot", &snaps[2].id, "--to", &empty_text],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        dir_files(&empty),
        archive_files(&served(&snaps[2].id, snaps[2].size))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_truncated_archive_is_refused_and_nothing_is_left() {
    let w = World::new("restore-tamper", three_snapshots()).await;
    archive_then_lose_journal(&w).await;
    let cfg = storage_only_config(&w);
    let snaps = w.sim.clusters()[0].snapshots.clone();
    let client = w.s3.client().await;
    let keys = w.keys().await;
    let key = |id: &str| archive_key(&keys, id);

    // One byte flipped in the middle, same size.
    let tampered = &snaps[1];
    let mut bytes = served(&tampered.id, tampered.size);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    client
        .put_small(&key(&tampered.id), Bytes::from(bytes), "application/gzip")
        .await
        .unwrap();
    // The last 100 bytes cut off.
    let truncated = &snaps[2];
    let mut bytes = served(&truncated.id, truncated.size);
    bytes.truncate(bytes.len() - 100);
    client
        .put_small(&key(&truncated.id), Bytes::from(bytes), "application/gzip")
        .await
        .unwrap();

    let tgt = target();
    for (snap, expect) in [(tampered, "SHA-256"), (truncated, "manifest says")] {
        for mode in ["--to", "--archive"] {
            let dest = w.path(&format!(
                "dest-{}-{}",
                snap.id,
                mode.trim_start_matches('-')
            ));
            let dest_text = dest.to_string_lossy().into_owned();
            let before = names_in(w.dir.path());
            let run = restore(&w, &cfg, &tgt, &["--snapshot", &snap.id, mode, &dest_text]).await;
            run.assert_code(1);
            assert!(
                run.stderr.contains(expect),
                "{mode} {}: {}",
                snap.id,
                run.stderr
            );
            assert!(run.stderr.contains(&snap.id), "{}", run.stderr);
            assert!(!dest.exists(), "{} was left behind", dest.display());
            assert_eq!(
                names_in(w.dir.path()),
                before,
                "something was left beside it"
            );
        }
    }
    // list says which one is truncated.
    let list = w.run(&["list", "--config", &cfg, "--json"], &[]).await;
    list.assert_code(0);
    let catalog = parse_json(&list.stdout);
    let problems = catalog["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "size_mismatch" && p["snapshot_id"] == truncated.id.as_str()),
        "{}",
        list.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_manifests_archives_and_targets_give_clear_messages() {
    let w = World::new("restore-missing", three_snapshots()).await;
    let cfg_full = archive_then_lose_journal(&w).await;
    let cfg = storage_only_config(&w);
    let snaps = w.sim.clusters()[0].snapshots.clone();
    let client = w.s3.client().await;
    let keys = w.keys().await;
    let key = |id: &str| archive_key(&keys, id);
    // Rebuild the journal, so that list can compare it with the bucket afterwards.
    w.run(&["journal", "rebuild", "--config", &cfg_full], &[])
        .await
        .assert_code(0);

    let no_manifest = &snaps[0];
    client
        .delete(&format!("{}.manifest.json", key(&no_manifest.id)))
        .await
        .unwrap();
    let no_archive = &snaps[1];
    client.delete(&key(&no_archive.id)).await.unwrap();

    let tgt = target();
    let dest = w.path("dest").to_string_lossy().into_owned();
    let run = restore(
        &w,
        &cfg,
        &tgt,
        &["--snapshot", &no_manifest.id, "--to", &dest],
    )
    .await;
    run.assert_code(1);
    assert!(run.stderr.contains("manifest"), "{}", run.stderr);
    assert!(run.stderr.contains("cannot be verified"), "{}", run.stderr);

    let run = restore(
        &w,
        &cfg,
        &tgt,
        &["--snapshot", &no_archive.id, "--to", &dest],
    )
    .await;
    run.assert_code(1);
    assert!(run.stderr.contains("no such object"), "{}", run.stderr);

    let other = format!("{PROJECT}/billing-flex");
    let run = restore(&w, &cfg, &other, &["--latest", "--to", &dest]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("holds no archive of this target"),
        "{}",
        run.stderr
    );

    let run = restore(
        &w,
        &cfg,
        &tgt,
        &["--snapshot", "ffffffffffffffffffffffff", "--to", &dest],
    )
    .await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("1 archived snapshots of it"),
        "{}",
        run.stderr
    );
    assert!(!w.path("dest").exists());

    // A bad --before is a usage error.
    let run = restore(&w, &cfg, &tgt, &["--before", "yesterday", "--to", &dest]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("RFC 3339"), "{}", run.stderr);

    // list reports each disagreement, the journal's included.
    let list = w.run(&["list", "--config", &cfg, "--json"], &[]).await;
    list.assert_code(0);
    let catalog = parse_json(&list.stdout);
    assert_eq!(
        catalog["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.stdout
    );
    let kinds: Vec<(&str, &str)> = catalog["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["key"].as_str().unwrap()))
        .collect();
    let has = |kind: &str, key: &str| kinds.iter().any(|(k, v)| *k == kind && *v == key);
    assert!(
        has("archive_without_manifest", &key(&no_manifest.id)),
        "{kinds:?}"
    );
    assert!(
        has("manifest_without_archive", &key(&no_archive.id)),
        "{kinds:?}"
    );
    assert!(
        has("journal_without_object", &key(&no_archive.id)),
        "{kinds:?}"
    );
    let table = w.run(&["list", "--config", &cfg], &[]).await;
    table.assert_code(0);
    assert!(table.stdout.contains("3 problems"), "{}", table.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_cut_and_black_holed_ranged_gets_are_retried_and_the_restore_is_whole() {
    let mut w = World::new("restore-faults", three_snapshots()).await;
    w.attach_proxy().await;
    archive_then_lose_journal(&w).await;
    let cfg = storage_only_config_with(&w, "request_timeout = \"3s\"");
    let snap = w.sim.clusters()[0]
        .snapshots
        .iter()
        .max_by_key(|s| s.size)
        .cloned()
        .unwrap();
    let proxy = w.proxy.as_ref().unwrap();
    let before = proxy.seen().injected;
    proxy.set(|f| {
        f.ranged_get_500 = 2;
        f.ranged_get_cut = 2;
        f.black_hole_ranged_get = 1;
    });
    let tgt = target();
    for (mode, dest) in [("--archive", "whole.tar.gz"), ("--to", "whole")] {
        let dest = w.path(dest);
        let dest_text = dest.to_string_lossy().into_owned();
        let run = restore(
            &w,
            &cfg,
            &tgt,
            &["--snapshot", &snap.id, mode, &dest_text, "--parallel", "2"],
        )
        .await;
        run.assert_code(0);
        if mode == "--archive" {
            assert_eq!(sha256_hex(&std::fs::read(&dest).unwrap()), snap.sha256());
            // Every fault was met on the way, and survived.
            assert_eq!(proxy.seen().injected - before, 5, "{}", run.stderr);
            proxy.set(|f| f.ranged_get_cut = 1);
        } else {
            assert_eq!(
                dir_files(&dest),
                archive_files(&served(&snap.id, snap.size))
            );
        }
    }
}

// ---- hostile archives -------------------------------------------------------------------

/// One entry of a hand-made archive: a raw header (so that names a well-behaved builder
/// refuses can be written) and its data.
struct Raw {
    name: &'static str,
    kind: tar::EntryType,
    link: Option<&'static str>,
    mode: u32,
    data: Vec<u8>,
}

fn file(name: &'static str, data: &[u8]) -> Raw {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        link: None,
        mode: 0o644,
        data: data.to_vec(),
    }
}

fn special(name: &'static str, kind: tar::EntryType, link: Option<&'static str>) -> Raw {
    Raw {
        name,
        kind,
        link,
        mode: 0o777,
        data: Vec::new(),
    }
}

fn hostile_tar_gz(entries: &[Raw]) -> Vec<u8> {
    let mut tar = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_ustar();
        {
            let raw = header.as_old_mut();
            raw.name = [0; 100];
            raw.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            if let Some(link) = e.link {
                raw.linkname = [0; 100];
                raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(e.kind);
        header.set_mode(e.mode);
        header.set_size(e.data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(&e.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// Puts an archive and a manifest that vouches for it (as whoever can write the bucket could).
async fn plant(w: &World, id: &str, archive: Vec<u8>, uncompressed: Option<u64>) {
    let key = format!(
        "{}{PROJECT}/{CLUSTER}/2026-11-0{}/{id}.tar.gz",
        w.prefix,
        id.len() % 9
    );
    let content = uncompressed.map(
        |n| serde_json::json!({"uncompressed_bytes": n, "tar_entries": 1, "top_level": ["x"]}),
    );
    let manifest = serde_json::json!({
        "format": "atlas-archiver-manifest/1",
        "project_id": PROJECT,
        "cluster": CLUSTER,
        "snapshot_id": id,
        "snapshot_scheduled_at": "2026-11-01T00:00:00Z",
        "snapshot_finished_at": "2026-11-01T00:05:00Z",
        "mongodb_version": "8.0.29",
        "object_key": key,
        "size_bytes": archive.len(),
        "sha256": sha256_hex(&archive),
        "crc32c": "00000000",
        "restore_job_id": null,
        "content": content,
        "archived_at": "2026-11-01T00:10:00Z",
        "tool": "atlas-archiver",
        "tool_version": "0.1.0",
    });
    let client = w.s3.client().await;
    client
        .put_small(&key, Bytes::from(archive), "application/gzip")
        .await
        .unwrap();
    client
        .put_small(
            &format!("{key}.manifest.json"),
            Bytes::from(serde_json::to_vec(&manifest).unwrap()),
            "application/json",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_and_nothing_is_written_outside() {
    let w = World::new("restore-hostile", Vec::new()).await;
    let cfg = storage_only_config(&w);
    let outside = w.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let bomb = vec![0u8; 32 << 20];
    // (snapshot id, entries, recorded inflated size, the entry named, why)
    type Case = (
        &'static str,
        Vec<Raw>,
        Option<u64>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "a00000000000000000000001",
            vec![file("/tmp/atlas-archiver-evil", b"x")],
            None,
            "/tmp/atlas-archiver-evil",
            "absolute path",
        ),
        (
            "a00000000000000000000002",
            vec![file("../outside/evil", b"x")],
            None,
            "../outside/evil",
            "`..`",
        ),
        (
            "a00000000000000000000003",
            vec![special(
                "escape",
                tar::EntryType::Symlink,
                Some("../outside"),
            )],
            None,
            "escape",
            "outside the restore directory",
        ),
        (
            "a0000000000000000000000c",
            vec![
                special("sub", tar::EntryType::Directory, None),
                special("b", tar::EntryType::Symlink, Some("sub")),
                special("c", tar::EntryType::Symlink, Some("b/../../outside")),
            ],
            None,
            "c",
            "outside the restore directory",
        ),
        (
            "a00000000000000000000004",
            vec![special("root", tar::EntryType::Symlink, Some("/etc"))],
            None,
            "root",
            "outside the restore directory",
        ),
        (
            "a00000000000000000000005",
            vec![
                special("inner", tar::EntryType::Directory, None),
                special("via", tar::EntryType::Symlink, Some("inner")),
                file("via/evil", b"x"),
            ],
            None,
            "via/evil",
            "through the symbolic link",
        ),
        (
            "a00000000000000000000006",
            vec![special("hard", tar::EntryType::Link, Some("/etc/passwd"))],
            None,
            "hard",
            "hard link",
        ),
        (
            "a00000000000000000000007",
            vec![special("hard", tar::EntryType::Link, Some("../outside/x"))],
            None,
            "hard",
            "hard link",
        ),
        (
            "a00000000000000000000008",
            vec![special("dev", tar::EntryType::Char, None)],
            None,
            "dev",
            "device file",
        ),
        (
            "a00000000000000000000009",
            vec![special("pipe", tar::EntryType::Fifo, None)],
            None,
            "pipe",
            "FIFO",
        ),
        (
            "a0000000000000000000000a",
            vec![file("zeros", &bomb)],
            Some(4096),
            "",
            "inflates to more than",
        ),
    ];
    let tgt = target();
    for (id, entries, uncompressed, entry, why) in cases {
        plant(&w, id, hostile_tar_gz(&entries), uncompressed).await;
        let dest = w.path(&format!("dest-{id}"));
        let dest_text = dest.to_string_lossy().into_owned();
        let before = names_in(w.dir.path());
        let run = restore(&w, &cfg, &tgt, &["--snapshot", id, "--to", &dest_text]).await;
        run.assert_code(1);
        assert!(run.stderr.contains(why), "{id}: {}", run.stderr);
        if !entry.is_empty() {
            assert!(
                run.stderr.contains(&format!("`{entry}`")),
                "{id} names the entry: {}",
                run.stderr
            );
        }
        assert!(!dest.exists(), "{id}: {} was left", dest.display());
        assert_eq!(
            names_in(w.dir.path()),
            before,
            "{id}: something was left beside it"
        );
        assert!(
            names_in(&outside).is_empty(),
            "{id} wrote outside: {:?}",
            names_in(&outside)
        );
        assert!(
            !Path::new("/tmp/atlas-archiver-evil").exists(),
            "{id} wrote /tmp"
        );
    }

    // What a data directory may hold passes, with no setuid bit and links kept inside.
    let id = "a0000000000000000000000b";
    let mut setuid = file("bin", b"#!/bin/sh\n");
    setuid.mode = 0o4755;
    plant(
        &w,
        id,
        hostile_tar_gz(&[
            special("journal", tar::EntryType::Directory, None),
            file("journal/WiredTigerLog.0000000001", b"log"),
            setuid,
            special(
                "alias",
                tar::EntryType::Symlink,
                Some("journal/WiredTigerLog.0000000001"),
            ),
            special("twin", tar::EntryType::Link, Some("bin")),
        ]),
        None,
    )
    .await;
    let dest = w.path("dest-fine");
    let dest_text = dest.to_string_lossy().into_owned();
    let run = restore(&w, &cfg, &tgt, &["--snapshot", id, "--to", &dest_text]).await;
    run.assert_code(0);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dest.join("bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "setuid must be dropped: {mode:o}");
    assert_eq!(std::fs::read(dest.join("alias")).unwrap(), b"log");
    assert_eq!(std::fs::read(dest.join("twin")).unwrap(), b"#!/bin/sh\n");
}
