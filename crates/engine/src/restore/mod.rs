//! The way back: the catalog of what the bucket holds ([`catalog`], for `list`), and `restore`:
//! one archive read from the bucket with parallel ranged GETs ([`fetch`]), its SHA-256, size and
//! structure checked against its manifest, then either unpacked into a directory
//! ([`extract`], for `mongod --dbpath`) or written as the verified `.tar.gz`. Nothing is visible
//! at the destination before every check has passed: a directory is unpacked beside it and
//! renamed at the end, a file written to a temporary name, synced and renamed.
//! Must not: talk to Atlas, write the journal or the bucket, or overwrite anything that exists.

pub mod catalog;
mod error;
mod extract;
mod fetch;
mod place;
mod thaw;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use crate::pipeline::manifest::{Manifest, ManifestComponent};
use crate::pipeline::validate::{ChannelReader, ContentFacts, Validator};
use crate::store::ObjectStore;
use crate::target::Target;
pub use catalog::{Catalog, CatalogEntry, CatalogError, Problem, ProblemKind};
pub use error::RestoreError;
pub use fetch::FetchPlan;
use place::{EarlySync, Hashing, Staged, io_error, parent_of, sync_dir};
pub use thaw::{ThawPlan, make_readable};

/// Ranges queued between the fetch and the consumer.
const QUEUE: usize = 2;
/// Chunks (of a range) queued for the decoder's thread.
const CHUNK_QUEUE: usize = 64;
/// Inflated bytes allowed beyond what the manifest recorded (none are expected: the bytes are
/// the ones validated at archive time, or the SHA-256 check fails).
const INFLATE_MARGIN: u64 = 1 << 20;
/// Without a recorded size (validation was off when it was archived), the cap on inflated
/// bytes is this many times the archive's size.
const UNRECORDED_RATIO: u64 = 64;

/// Which snapshot of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// This snapshot id.
    Snapshot(String),
    /// The newest archived.
    Latest,
    /// The newest taken strictly before this time.
    Before(DateTime<Utc>),
}

/// Where the archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Unpacked into this directory (created; it must not exist or must be empty).
    Directory(PathBuf),
    /// Written as the verified `.tar.gz` (it must not exist).
    Archive(PathBuf),
}

impl Destination {
    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Directory(p) | Self::Archive(p) => p,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The snapshot, as its manifest describes it.
    pub snapshot: CatalogEntry,
    /// Where it went.
    pub destination: PathBuf,
    /// `directory` or `archive`.
    pub kind: &'static str,
    /// Archive bytes read from the bucket.
    pub bytes: u64,
    /// Their SHA-256, equal to the manifest's.
    pub sha256: String,
    /// What the unpacking saw; for `--archive`, what the manifest recorded (the SHA-256 matched),
    /// or what the validation saw when the manifest recorded nothing.
    pub content: Option<ContentFacts>,
    /// Seconds from the first GET to the rename.
    pub seconds: f64,
}

/// Picks the snapshot of `target` that `selector` names from `catalog`, or says clearly why
/// there is none.
pub fn select<'a>(
    catalog: &'a Catalog,
    target: &Target,
    selector: &Selector,
) -> Result<&'a CatalogEntry, RestoreError> {
    let mut candidates = catalog.of(target);
    let found = match selector {
        Selector::Snapshot(id) => candidates.find(|e| &e.manifest.snapshot_id == id),
        Selector::Latest => candidates.next(),
        Selector::Before(t) => candidates.find(|e| e.taken_at() < *t),
    };
    if let Some(entry) = found {
        return Ok(entry);
    }
    let archived = catalog.of(target).count();
    let what = match selector {
        Selector::Snapshot(id) => format!("snapshot {id}"),
        Selector::Latest => "any snapshot".to_owned(),
        Selector::Before(t) => format!("a snapshot taken before {}", t.to_rfc3339()),
    };
    // A problem about the very snapshot asked for says more than "not found".
    if let Selector::Snapshot(id) = selector
        && let Some(p) = catalog
            .problems
            .iter()
            .find(|p| p.snapshot_id.as_deref() == Some(id) || p.key.contains(id.as_str()))
    {
        return Err(RestoreError::NotFound(format!(
            "snapshot {id} of {target} cannot be restored: {}: {}",
            p.key, p.detail
        )));
    }
    let hint = if archived == 0 {
        "the bucket holds no archive of this target under the configured prefix (check --target and storage.prefix; `atlas-archiver list` shows what there is)".to_owned()
    } else {
        format!(
            "{archived} archived snapshots of it are in the bucket; `atlas-archiver list --target {target}` shows them"
        )
    };
    Err(RestoreError::NotFound(format!(
        "no archive of {what} of {target}: {hint}"
    )))
}

/// Reads `entry` from the bucket, checks it and puts it at `destination`.
pub async fn restore(
    store: &ObjectStore,
    entry: &CatalogEntry,
    destination: &Destination,
    plan: FetchPlan,
    progress: &AtomicU64,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let (content, sha256, bytes) = match destination {
        _ if entry.manifest.is_sharded() => {
            to_components(store, entry, destination, plan, progress).await?
        }
        Destination::Directory(dir) => to_directory(store, entry, dir, plan, progress).await?,
        Destination::Archive(file) => to_archive(store, entry, file, plan, progress).await?,
    };
    Ok(Restored {
        snapshot: entry.clone(),
        destination: destination.path().to_path_buf(),
        kind: match destination {
            Destination::Directory(_) => "directory",
            Destination::Archive(_) => "archive",
        },
        bytes,
        sha256,
        content,
        seconds: started.elapsed().as_secs_f64(),
    })
}

type Checked = (Option<ContentFacts>, String, u64);

/// A sharded cluster's snapshot: every component restored as its own archive, into
/// `DIR/{replicaSet}/` (unpacked) or, for `--archive DIR`, as `DIR/{replicaSet}.tar.gz`, each
/// checked like a single archive, inside one staging directory that is put in place only
/// when every component has passed. The reported digest is the manifest's listing digest.
async fn to_components(
    store: &ObjectStore,
    entry: &CatalogEntry,
    destination: &Destination,
    plan: FetchPlan,
    progress: &AtomicU64,
) -> Result<Checked, RestoreError> {
    let staged = Staged::new(destination.path())?;
    let mut bytes = 0;
    for (replica_set, part) in entry.parts() {
        // The names come from a manifest in the bucket: only a plain name becomes a path.
        let name = replica_set
            .filter(|rs| crate::keys::is_plain_name(rs))
            .ok_or_else(|| RestoreError::ContentMismatch {
                key: entry.manifest_key.clone(),
                detail: "a component's replica set name is not a plain name; nothing was restored"
                    .into(),
            })?;
        let (_, _, size) = match destination {
            Destination::Directory(_) => {
                to_directory(store, &part, &staged.path().join(&name), plan, progress).await?
            }
            Destination::Archive(_) => {
                let file = staged.path().join(format!("{name}.tar.gz"));
                to_archive(store, &part, &file, plan, progress).await?
            }
        };
        bytes += size;
    }
    staged.put_in_place()?;
    Ok((None, entry.manifest.sha256.clone(), bytes))
}

async fn to_directory(
    store: &ObjectStore,
    entry: &CatalogEntry,
    dir: &Path,
    plan: FetchPlan,
    progress: &AtomicU64,
) -> Result<Checked, RestoreError> {
    let staging = Staged::new(dir)?;
    let limit = inflate_limit(entry);
    let (tx, mut ranges) = mpsc::channel::<Vec<Bytes>>(QUEUE);
    // The decoder reads chunk by chunk; a range is handed on as its chunks.
    let (chunk_tx, rx) = mpsc::channel::<Bytes>(CHUNK_QUEUE);
    let flatten = tokio::spawn(async move {
        while let Some(chunks) = ranges.recv().await {
            for chunk in chunks {
                if chunk_tx.send(chunk).await.is_err() {
                    return;
                }
            }
        }
    });
    let into = staging.path().to_path_buf();
    let unpacker = tokio::task::spawn_blocking(move || {
        let mut reader = Hashing::new(ChannelReader::new(rx));
        let facts = extract::extract(&mut reader, &into, limit);
        // Whatever the unpacking concluded, hash to the end so the digest is of every byte.
        let rest = std::io::copy(&mut reader, &mut std::io::sink());
        let (sha, size) = reader.finish();
        (facts, rest, sha, size)
    });
    let fetched = fetch(store, entry, plan, tx, progress).await;
    let _ = flatten.await;
    let (facts, rest, sha, size) = unpacker.await.map_err(|e| RestoreError::Io {
        path: dir.to_path_buf(),
        message: format!("the unpacking thread failed: {e}"),
    })?;
    fetched?;
    rest.map_err(|e| io_error(dir, &e))?;
    check_digest(entry, &sha, size)?;
    let facts = facts?;
    check_facts(entry, &facts)?;
    staging.put_in_place()?;
    Ok((Some(facts), sha, size))
}

async fn to_archive(
    store: &ObjectStore,
    entry: &CatalogEntry,
    file: &Path,
    plan: FetchPlan,
    progress: &AtomicU64,
) -> Result<Checked, RestoreError> {
    if std::fs::symlink_metadata(file).is_ok() {
        return Err(RestoreError::Destination {
            path: file.to_path_buf(),
            message: "already exists; restore writes a new file and never overwrites one".into(),
        });
    }
    let parent = parent_of(file);
    std::fs::create_dir_all(&parent).map_err(|e| io_error(&parent, &e))?;
    let temp = tempfile::Builder::new()
        .prefix(".restoring-")
        .suffix(".tar.gz")
        .tempfile_in(&parent)
        .map_err(|e| io_error(&parent, &e))?;
    let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(QUEUE);
    let path = file.to_path_buf();
    // The SHA-256 check proves these are the bytes that were validated when they were archived
    // (the manifest records what that saw); only an archive recorded without validation is
    // inflated and walked again here.
    let validate = entry.manifest.content.is_none();
    let mut early = EarlySync::new(temp.as_file(), file)?;
    let writer = tokio::spawn(async move {
        let mut validator = validate.then(Validator::start);
        let mut out = temp;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut verdict: Result<(), RestoreError> = Ok(());
        while let Some(chunks) = rx.recv().await {
            let ((h, o, e, chunks), written) = tokio::task::spawn_blocking(move || {
                let mut written = Ok(());
                for chunk in &chunks {
                    hasher.update(chunk);
                    written = written.and_then(|()| out.write_all(chunk));
                    early.wrote(chunk.len() as u64);
                }
                ((hasher, out, early, chunks), written)
            })
            .await
            .map_err(|e| RestoreError::Io {
                path: path.clone(),
                message: format!("the writing thread failed: {e}"),
            })?;
            (hasher, out, early) = (h, o, e);
            written.map_err(|e| io_error(&path, &e))?;
            for chunk in chunks {
                size += chunk.len() as u64;
                if let Some(v) = validator.as_mut()
                    && let Err(e) = v.feed(chunk).await
                {
                    verdict = Err(e.into());
                    validator = None;
                }
            }
        }
        let mut facts = None;
        if let Some(v) = validator {
            match v.finish().await {
                Ok(f) => facts = Some(f),
                Err(e) => verdict = Err(e.into()),
            }
        }
        Ok::<_, RestoreError>((
            out,
            early,
            hex::encode(hasher.finalize()),
            size,
            facts,
            verdict,
        ))
    });
    let fetched = fetch(store, entry, plan, tx, progress).await;
    let written = writer.await.map_err(|e| RestoreError::Io {
        path: file.to_path_buf(),
        message: format!("the writing task failed: {e}"),
    })?;
    fetched?;
    let (out, early, sha, size, facts, verdict) = written?;
    check_digest(entry, &sha, size)?;
    verdict?;
    let facts = facts.or_else(|| entry.manifest.content.clone());
    early.finish()?;
    // Never replaces a file that appeared meanwhile.
    out.persist_noclobber(file)
        .map_err(|e| io_error(file, &e.error))?;
    sync_dir(&parent)?;
    Ok((facts, sha, size))
}

/// The fetch of `entry`'s archive into `tx`.
async fn fetch(
    store: &ObjectStore,
    entry: &CatalogEntry,
    plan: FetchPlan,
    tx: mpsc::Sender<Vec<Bytes>>,
    progress: &AtomicU64,
) -> Result<(), RestoreError> {
    let m = &entry.manifest;
    fetch::fetch_in_order(
        store,
        &m.object_key,
        m.size_bytes,
        entry.etag.as_deref(),
        plan,
        tx,
        progress,
    )
    .await
    .map_err(|e| {
        if e.is_object_changed() {
            RestoreError::Changed {
                key: m.object_key.clone(),
            }
        } else {
            RestoreError::Store(e)
        }
    })
}

fn check_digest(entry: &CatalogEntry, sha: &str, size: u64) -> Result<(), RestoreError> {
    let m = &entry.manifest;
    if size != m.size_bytes {
        return Err(RestoreError::SizeMismatch {
            key: m.object_key.clone(),
            expected: m.size_bytes,
            found: size,
        });
    }
    if sha != m.sha256 {
        return Err(RestoreError::DigestMismatch {
            key: m.object_key.clone(),
            size,
            expected: m.sha256.clone(),
            found: sha.to_owned(),
        });
    }
    Ok(())
}

fn check_facts(entry: &CatalogEntry, facts: &ContentFacts) -> Result<(), RestoreError> {
    let Some(recorded) = &entry.manifest.content else {
        return Ok(());
    };
    let detail = if facts.tar_entries != recorded.tar_entries {
        format!(
            "{} tar entries, {} recorded",
            facts.tar_entries, recorded.tar_entries
        )
    } else if facts.uncompressed_bytes != recorded.uncompressed_bytes {
        format!(
            "{} bytes inflated, {} recorded",
            facts.uncompressed_bytes, recorded.uncompressed_bytes
        )
    } else if facts.top_level != recorded.top_level {
        format!(
            "top-level entries {:?}, {:?} recorded",
            facts.top_level, recorded.top_level
        )
    } else {
        return Ok(());
    };
    Err(RestoreError::ContentMismatch {
        key: entry.manifest.object_key.clone(),
        detail,
    })
}

fn inflate_limit(entry: &CatalogEntry) -> u64 {
    match &entry.manifest.content {
        Some(c) => c.uncompressed_bytes.saturating_add(INFLATE_MARGIN),
        None => entry
            .manifest
            .size_bytes
            .saturating_mul(UNRECORDED_RATIO)
            .max(INFLATE_MARGIN),
    }
}

/// Throughput in MiB/s, for reports.
pub fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / (1024.0 * 1024.0) / secs
}
