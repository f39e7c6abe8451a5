//! `list` and `restore`: the way back, from the bucket alone. Both load only `[storage]` (no
//! Atlas credentials, no `[[target]]` needed) and read the journal only when it exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::Failure;
use super::progress::Display;
use atlas_archiver_engine::config::units::format_bytes;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::journal::Journal;
use atlas_archiver_engine::progress::Board;
use atlas_archiver_engine::restore::{
    self, Catalog, CatalogEntry, Destination, FetchPlan, Restored, Selector,
};
use atlas_archiver_engine::store::ObjectStore;
use atlas_archiver_engine::target::Target;

/// `--thaw`: how often to look whether the thaw is done (thaws take hours).
const THAW_POLL: Duration = Duration::from_secs(120);

fn parse_targets(args: &[String]) -> Result<Vec<Target>, Failure> {
    args.iter()
        .map(|t| Target::parse(t).map_err(|m| Failure::Usage(format!("--target: {m}"))))
        .collect()
}

/// `list`.
pub(super) async fn list(
    path: &Path,
    env: &HashMap<String, String>,
    target_args: &[String],
    json: bool,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::StorageOnly)?;
    let targets = parse_targets(target_args)?;
    let store = ObjectStore::connect(&config.storage).await;
    let mut catalog = Catalog::read(&store, &config.storage, &targets).await?;
    let mut judged: Vec<Target> = catalog.snapshots.iter().map(CatalogEntry::target).collect();
    judged.sort();
    judged.dedup();
    for target in &judged {
        if let Some(policy) = config.retention_for(target) {
            catalog.judge(target, policy);
        }
    }
    let journal = config.journal.path.exists().then_some(&config.journal.path);
    if let Some(journal_path) = journal {
        let journal = Journal::open_read_only(journal_path)?;
        catalog.compare_with_journal(&journal, &targets).await?;
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_catalog(&catalog, &config, journal.is_some());
    Ok(ExitCode::SUCCESS)
}

fn print_catalog(catalog: &Catalog, config: &Config, journal: bool) {
    let bucket = &config.storage.bucket;
    let prefix = &config.storage.prefix;
    if catalog.snapshots.is_empty() {
        outln!("no archived snapshots in s3://{bucket}/{prefix}");
    }
    let mut targets: Vec<Target> = catalog.snapshots.iter().map(CatalogEntry::target).collect();
    targets.sort();
    targets.dedup();
    for target in &targets {
        let entries: Vec<&CatalogEntry> = catalog.of(target).collect();
        outln!("{target}: {} archived snapshots", entries.len());
        outln!(
            "  {:<24}  {:<20}  {:>10}  {:>8}  {:<8}  {:<16}  {:<9}  KEY",
            "SNAPSHOT",
            "TAKEN (UTC)",
            "SIZE",
            "ENTRIES",
            "MONGODB",
            "SHA-256",
            "RETENTION"
        );
        for e in entries {
            let m = &e.manifest;
            let verdict = match &e.retention {
                None => "-",
                Some(v) if v.keep => "keep",
                Some(_) => "prune",
            };
            outln!(
                "  {:<24}  {:<20}  {:>10}  {:>8}  {:<8}  {:<16}  {verdict:<9}  {}",
                m.snapshot_id,
                e.taken_at().format("%Y-%m-%d %H:%M:%S"),
                format_bytes(m.size_bytes),
                m.content
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| c.tar_entries.to_string()),
                m.mongodb_version.as_deref().unwrap_or("-"),
                m.sha256.get(..16).unwrap_or(&m.sha256),
                where_held(m)
            );
        }
        outln!();
    }
    if !catalog.problems.is_empty() {
        outln!("{} problems:", catalog.problems.len());
        for p in &catalog.problems {
            let kind = serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            outln!("  {kind:<26} {}  {}", p.key, p.detail);
        }
    } else if !journal {
        outln!(
            "(no journal at {}: the bucket alone was read)",
            config.journal.path.display()
        );
    }
}

/// The flags of `restore`, as parsed.
pub(super) struct RestoreArgs {
    pub config: PathBuf,
    pub target: String,
    pub snapshot: Option<String>,
    pub latest: bool,
    pub before: Option<String>,
    pub to: Option<PathBuf>,
    pub archive: Option<PathBuf>,
    pub parallel: u16,
    /// `--thaw`, with its `--thaw-days`.
    pub thaw: Option<u32>,
    pub json: bool,
}

/// `restore`.
pub(super) async fn restore(
    args: RestoreArgs,
    env: &HashMap<String, String>,
    display: Option<&Display>,
) -> Result<ExitCode, Failure> {
    let target =
        Target::parse(&args.target).map_err(|m| Failure::Usage(format!("--target: {m}")))?;
    let selector = match (&args.snapshot, args.latest, &args.before) {
        (Some(id), _, _) => Selector::Snapshot(id.clone()),
        (_, true, _) => Selector::Latest,
        (_, _, Some(time)) => Selector::Before(parse_before(time)?),
        _ => {
            return Err(Failure::Usage(
                "say which snapshot: --snapshot ID, --latest or --before TIME".into(),
            ));
        }
    };
    let destination = match (&args.to, &args.archive) {
        (Some(dir), None) => Destination::Directory(dir.clone()),
        (None, Some(file)) => Destination::Archive(file.clone()),
        _ => {
            return Err(Failure::Usage(
                "say where: --to DIR or --archive FILE".into(),
            ));
        }
    };
    let config = Config::load(&args.config, env, Secrets::StorageOnly)?;
    let store = ObjectStore::connect(&config.storage).await;
    let catalog = Catalog::read(&store, &config.storage, std::slice::from_ref(&target)).await?;
    let entry = restore::select(&catalog, &target, &selector)?;
    let thaw = args.thaw.map(|days| restore::ThawPlan {
        days,
        poll: THAW_POLL,
    });
    restore::make_readable(&store, entry, thaw, |line| eprintln!("{line}")).await?;
    let plan = FetchPlan {
        parallel: usize::from(args.parallel),
        ..FetchPlan::DEFAULT
    };
    eprintln!(
        "restoring snapshot {} of {target} ({}, {}) to {} ({} ranged GETs at once, buffers up to {})",
        entry.manifest.snapshot_id,
        where_held(&entry.manifest),
        format_bytes(entry.manifest.size_bytes),
        destination.path().display(),
        plan.parallel,
        format_bytes(plan.memory_bound())
    );
    let board = Board::default();
    let ticket = board.start(
        format!("{target} {}", entry.manifest.snapshot_id),
        Some(entry.manifest.size_bytes),
        0,
    );
    let watch = display.map(|d| d.watch(board.clone()));
    let result = restore::restore(&store, entry, &destination, plan, ticket.counter()).await;
    drop(watch);
    let restored = result?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&restored)?);
    } else {
        print_next_steps(&restored);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--before`: an RFC 3339 time, or a date (the start of that day, UTC).
fn parse_before(text: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(Failure::Usage(format!(
        "--before: `{text}` is neither an RFC 3339 time (2026-11-20T06:00:00Z) nor a date (2026-11-20)"
    )))
}

/// The key of an archive, or, for a sharded cluster's snapshot, the folder of its components.
fn where_held(m: &atlas_archiver_engine::restore::Manifest) -> String {
    match m.components.first() {
        None => m.object_key.clone(),
        Some(c) => format!(
            "{}/ ({} components: {})",
            c.object_key.rsplit_once('/').map_or("", |(dir, _)| dir),
            m.components.len(),
            m.components
                .iter()
                .map(|c| c.replica_set.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn print_next_steps(r: &Restored) {
    let m = &r.snapshot.manifest;
    if !m.components.is_empty() {
        print_sharded_next_steps(r);
        return;
    }
    let rate = restore::mib_per_second(r.bytes, Duration::from_secs_f64(r.seconds));
    let entries = r
        .content
        .as_ref()
        .map(|c| format!(", {} tar entries", c.tar_entries))
        .unwrap_or_default();
    outln!(
        "restored snapshot {} of {}/{} to {} ({}, sha256 {} matches the manifest{entries}; {:.1}s, {rate:.1} MiB/s)",
        m.snapshot_id,
        m.project_id,
        m.cluster,
        r.destination.display(),
        format_bytes(r.bytes),
        m.sha256,
        r.seconds,
    );
    let version = m.mongodb_version.as_deref().unwrap_or("(not recorded)");
    let rule = version_rule(m.mongodb_version.as_deref());
    let dbpath = match r.kind {
        "directory" => r.destination.display().to_string(),
        _ => format!(
            "DIR  (first: mkdir DIR && tar -xzf {} -C DIR)",
            r.destination.display()
        ),
    };
    outln!(
        "\nNext steps:\n\
         1. Start a local mongod on it (MongoDB {version}; {rule}):\n\
         \x20    mongod --dbpath {dbpath} --port 27017 --bind_ip 127.0.0.1\n\
         2. Check it: mongosh --port 27017 --eval 'db.adminCommand({{listDatabases: 1}})'\n\
         3. Move it into a new Atlas cluster:\n\
         \x20    mongodump --port 27017 --archive=dump.archive --gzip\n\
         \x20    mongorestore --uri 'mongodb+srv://USER@CLUSTER.mongodb.net' --archive=dump.archive --gzip\n\
         (docs/restore.md is the whole runbook.)"
    );
}

/// A sharded cluster's snapshot: one directory (or `.tar.gz`) per replica set.
fn print_sharded_next_steps(r: &Restored) {
    let m = &r.snapshot.manifest;
    let rate = restore::mib_per_second(r.bytes, Duration::from_secs_f64(r.seconds));
    outln!(
        "restored sharded snapshot {} of {}/{} to {} ({}, {} components, each checked against the manifest's SHA-256; {:.1}s, {rate:.1} MiB/s)",
        m.snapshot_id,
        m.project_id,
        m.cluster,
        r.destination.display(),
        format_bytes(r.bytes),
        m.components.len(),
        r.seconds,
    );
    let suffix = if r.kind == "directory" {
        "/"
    } else {
        ".tar.gz"
    };
    for c in &m.components {
        outln!(
            "  {}/{}{suffix}  {}  sha256 {}",
            r.destination.display(),
            c.replica_set,
            format_bytes(c.size_bytes),
            c.sha256
        );
    }
    let version = m.mongodb_version.as_deref().unwrap_or("(not recorded)");
    let rule = version_rule(m.mongodb_version.as_deref());
    outln!(
        "\nNext steps (MongoDB {version}; {rule}):\n\
         1. Each directory holds one replica set's data files (a shard's, or the config server's).\n\
         \x20  Look into one alone: mongod --dbpath {}/<replica set> --port 27017 --bind_ip 127.0.0.1\n\
         2. To bring the whole cluster back, follow MongoDB's procedure for restoring a sharded\n\
         \x20  cluster from snapshots (one mongod or replica set per shard directory, the config\n\
         \x20  server from its own; docs/restore.md, \"Sharded clusters\").",
        r.destination.display()
    );
}

/// The binaries that can open the data files: the same major version, an equal or higher minor.
fn version_rule(version: Option<&str>) -> String {
    let mut parts = version.unwrap_or("").split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor))
            if major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok() =>
        {
            format!(
                "use a mongod {major}.x with x ≥ {minor}, the same major version and an equal or higher minor"
            )
        }
        _ => {
            "use a mongod of the cluster's major version, with an equal or higher minor".to_owned()
        }
    }
}
