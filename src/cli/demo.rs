//! `demo` and `simulate`: the built-in Atlas simulator, and (for `demo`) an S3 server over a
//! local directory, driven through exactly the same config loading, client, pipeline and journal
//! as `once`. Only the endpoints differ.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sha2::{Digest, Sha256};

use super::Failure;
use super::once::{execute, print_reports, spawn_signal_handler};
use atlas_archiver_engine::config::units::format_bytes;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::pipeline::SnapshotOutcome;
use atlas_archiver_simulator::embedded_store::{ACCESS_KEY, EmbeddedStore, SECRET_KEY};
use atlas_archiver_simulator::{
    SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_PRIVATE_KEY, SIM_PUBLIC_KEY, Simulator, demo_clusters,
};

const DEMO_BUCKET: &str = "atlas-archive";

pub(super) async fn run(dir: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "atlas-archiver-demo-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp()
        )),
    };
    let runtime_error =
        |what: &str, e: &dyn std::fmt::Display| Failure::Runtime(format!("demo: {what}: {e}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| runtime_error(&format!("cannot create {}", dir.display()), &e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| runtime_error("cannot resolve the demo directory", &e))?;

    let simulator = Simulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), demo_clusters())
        .await
        .map_err(|e| runtime_error("cannot start the Atlas simulator", &e))?;
    let store = EmbeddedStore::start(&dir.join("s3"), DEMO_BUCKET)
        .await
        .map_err(|e| runtime_error("cannot start the local S3 server", &e))?;

    // A real config file, so that the demo goes through the same loading and validation as `once`.
    std::fs::write(dir.join("atlas_client_secret"), SIM_CLIENT_SECRET)
        .map_err(|e| runtime_error("cannot write the secret file", &e))?;
    // The Flex clusters are listed as targets; the dedicated one is found by a selector.
    let targets: String = simulator
        .clusters()
        .iter()
        .filter(|c| !c.dedicated)
        .map(|c| {
            format!(
                "\n[[target]]\nproject_id = \"{}\"\ncluster = \"{}\"\n",
                c.project_id, c.name
            )
        })
        .collect();
    let config_text = format!(
        r#"# Written by `atlas-archiver demo`: the built-in Atlas simulator and a local S3 server.
[atlas]
base_url = "{atlas}"
client_id = "{SIM_CLIENT_ID}"
client_secret_file = "atlas_client_secret"
poll_interval = "200ms"

[storage]
bucket = "{DEMO_BUCKET}"
endpoint = "{s3}"
region = "us-east-1"
prefix = "atlas/"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"

[journal]
path = "journal.sqlite"
{targets}
# Every dedicated cluster of the project tagged env=prod (`atlas-archiver targets` shows why).
[[discover]]
projects = ["{project}"]
kinds = ["dedicated"]
tags = {{ env = "prod" }}
"#,
        project = atlas_archiver_simulator::DEMO_PROJECT_ID,
        atlas = simulator.base_url(),
        s3 = store.endpoint(),
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config_text)
        .map_err(|e| runtime_error("cannot write the config", &e))?;
    // The demo ignores the caller's environment, so that AWS_* or ATLAS_ARCHIVER__* variables
    // meant for a real setup cannot point it elsewhere.
    let config = Config::load(&config_path, &HashMap::new(), Secrets::Load)?;
    let (config, resolved) = super::targets::resolve(config).await?;

    outln!("atlas-archiver demo");
    outln!(
        "  Atlas simulator  {}  ({} clusters)",
        simulator.base_url(),
        config.targets.len()
    );
    for r in &resolved.targets {
        if let atlas_archiver_engine::discover::Origin::Discovered { rule, why } = &r.origin {
            outln!("  discovered       {}  (discover[{rule}]: {why})", r.target);
        }
    }
    outln!(
        "  local S3 server  {}  (bucket {DEMO_BUCKET}, files under {})",
        store.endpoint(),
        dir.join("s3").display()
    );
    outln!("  config           {}", config_path.display());
    outln!("\nfirst run: archive every completed snapshot");
    let shutdown = atlas_archiver_engine::pipeline::Shutdown::default();
    spawn_signal_handler(shutdown.clone());
    let reports = execute(&config, &config.targets, "demo", shutdown.clone(), None).await?;
    print_reports(&reports);

    let mut all_good = reports
        .iter()
        .all(atlas_archiver_engine::pipeline::TargetReport::succeeded);
    outln!("\nverification: SHA-256 of each file on disk against the bytes Atlas served");
    // Each file Atlas served: a snapshot's archive, or one per replica set of a sharded
    // cluster's snapshot.
    let mut served: HashMap<String, Vec<(Option<String>, String, u64)>> = HashMap::new();
    for c in simulator.clusters() {
        let sets = c.replica_sets();
        for s in &c.snapshots {
            let files = if sets.is_empty() {
                vec![(None, s.sha256(), s.size)]
            } else {
                sets.iter()
                    .map(|rs| (Some(rs.clone()), s.component_sha256(rs), s.size))
                    .collect()
            };
            served.insert(s.id.clone(), files);
        }
    }
    for outcome in reports.iter().flat_map(|r| r.snapshots.iter()) {
        if let SnapshotOutcome::Archived {
            snapshot_id,
            object_key,
            ..
        } = outcome
        {
            for (replica_set, sha256, size) in served.get(snapshot_id).into_iter().flatten() {
                let key = match replica_set {
                    None => Some(object_key.clone()),
                    Some(rs) => atlas_archiver_engine::keys::component_key(object_key, rs),
                };
                let path = store.path_of(DEMO_BUCKET, key.as_deref().unwrap_or_default());
                let on_disk = sha256_file(&path)
                    .map_err(|e| runtime_error(&format!("cannot read {}", path.display()), &e))?;
                let ok = *sha256 == on_disk;
                all_good &= ok;
                outln!(
                    "  {}  {:>9}  {}  {}",
                    if ok { "ok      " } else { "MISMATCH" },
                    format_bytes(*size),
                    on_disk,
                    path.display()
                );
            }
        }
    }

    outln!("\nsecond run: nothing is downloaded twice");
    let again = execute(&config, &config.targets, "demo", shutdown, None).await?;
    let already: usize = again
        .iter()
        .flat_map(|r| r.snapshots.iter())
        .filter(|s| matches!(s, SnapshotOutcome::AlreadyArchived { .. }))
        .count();
    let downloads_before = simulator.observed().snapshot_downloads;
    outln!("  {already} snapshots already archived, {downloads_before} downloads in total");
    all_good &= again
        .iter()
        .all(atlas_archiver_engine::pipeline::TargetReport::succeeded);

    all_good &= restore_one(&config, &dir).await?;

    outln!(
        "\nnext: `atlas-archiver status --config {}`, `atlas-archiver list --config {0}`",
        config_path.display()
    );
    outln!(
        "      then write your own config (see config/atlas-archiver.example.toml) and run `atlas-archiver once`"
    );
    simulator.stop();
    store.stop();
    Ok(if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The way back: the newest snapshot of the first target, from the bucket alone, verified and
/// unpacked as `restore --latest --to` does it.
async fn restore_one(config: &Config, dir: &std::path::Path) -> Result<bool, Failure> {
    use atlas_archiver_engine::restore::{self, Catalog, Destination, FetchPlan, Selector};
    let Some(target) = config.targets.first() else {
        return Ok(true);
    };
    outln!("\nrestore: the newest snapshot of {target}, from the bucket's manifests alone");
    let store = atlas_archiver_engine::store::ObjectStore::connect(&config.storage).await;
    let catalog = Catalog::read(&store, &config.storage, std::slice::from_ref(target)).await?;
    let entry = restore::select(&catalog, target, &Selector::Latest)?;
    let into = dir.join("restored");
    let progress = std::sync::atomic::AtomicU64::new(0);
    let done = restore::restore(
        &store,
        entry,
        &Destination::Directory(into.clone()),
        FetchPlan::DEFAULT,
        &progress,
    )
    .await?;
    let entries = done.content.as_ref().map_or(0, |c| c.tar_entries);
    outln!(
        "  ok        {}  sha256 matches the manifest, {entries} tar entries unpacked into {}",
        done.snapshot.manifest.snapshot_id,
        into.display()
    );
    outln!("  then: mongod --dbpath {}", into.display());
    Ok(entries > 0)
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(super) async fn simulate(
    listen: SocketAddr,
    snapshot_size: Option<&str>,
    snapshots: usize,
    clusters: usize,
    range: bool,
    download_via: Option<String>,
) -> Result<ExitCode, Failure> {
    let clusters = match snapshot_size {
        None => demo_clusters(),
        Some(text) => {
            let size = atlas_archiver_engine::config::units::parse_byte_size(text)
                .map_err(|m| Failure::Usage(format!("--snapshot-size: {m}")))?;
            if size == 0 || snapshots == 0 || clusters == 0 {
                return Err(Failure::Usage(
                    "--snapshot-size, --snapshots and --clusters must be more than zero".into(),
                ));
            }
            let names: Vec<String> = if clusters == 1 {
                vec!["bench-flex".to_owned()]
            } else {
                (1..=clusters)
                    .map(|i| format!("bench-flex-{i:04}"))
                    .collect()
            };
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            atlas_archiver_simulator::scenario(
                atlas_archiver_simulator::DEMO_PROJECT_ID,
                &names,
                snapshots,
                &[size],
            )
        }
    };
    let simulator = Simulator::start(listen, clusters)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    simulator.set_faults(|f| {
        f.range_support = range;
        f.download_via = download_via;
    });
    outln!("Atlas simulator listening on {}", simulator.base_url());
    outln!("\nPut this in your config to archive its snapshots into your own bucket:\n");
    outln!(
        "[atlas]\nbase_url = \"{}\"\nclient_id = \"{SIM_CLIENT_ID}\"\nclient_secret = \"{SIM_CLIENT_SECRET}\"",
        simulator.base_url()
    );
    outln!(
        "# or a legacy API key: public_key = \"{SIM_PUBLIC_KEY}\", private_key = \"{SIM_PRIVATE_KEY}\""
    );
    for c in simulator.clusters() {
        outln!(
            "\n[[target]]\nproject_id = \"{}\"\ncluster = \"{}\"",
            c.project_id,
            c.name
        );
    }
    outln!(
        "\nWhat it has served so far, as JSON: {}/_simulator/observed\nStop with Ctrl-C.",
        simulator.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    simulator.stop();
    Ok(ExitCode::SUCCESS)
}
