//! The catalog: what the bucket holds, read from its manifests alone (no journal, no Atlas), and
//! where the bucket and a journal (when there is one) disagree.
//! Must not: write anything, anywhere.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::config::StorageConfig;
use crate::journal::{Journal, JournalError, SnapshotState};
use crate::keys::{MANIFEST_SUFFIX, manifest_key, target_prefix};
use crate::pipeline::manifest::Manifest;
use crate::store::{ObjectStore, StoreError};
use crate::target::{Target, selects};

/// Manifests read at once.
const MANIFEST_READS: usize = 16;

/// One archived snapshot, as its manifest describes it and the bucket holds it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// Key of the manifest.
    pub manifest_key: String,
    /// The manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// The archive's ETag, as the listing gives it (pins the object a restore reads).
    #[serde(skip)]
    pub etag: Option<String>,
    /// A sharded cluster's snapshot: each component's ETag, in the manifest's order.
    #[serde(skip)]
    pub component_etags: Vec<Option<String>>,
    /// What the target's retention policy says of it (`list`, when the config has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::retention::Verdict>,
}

impl CatalogEntry {
    /// The target it belongs to.
    pub fn target(&self) -> Target {
        Target {
            project_id: self.manifest.project_id.clone(),
            cluster: self.manifest.cluster.clone(),
        }
    }

    /// The archives that hold it, each as an entry of its own: itself, or, for a sharded
    /// cluster's snapshot, one per component (its key, size, SHA-256, CRC32C and validation
    /// facts) with the replica set's name.
    pub fn parts(&self) -> Vec<(Option<String>, CatalogEntry)> {
        if !self.manifest.is_sharded() {
            return vec![(None, self.clone())];
        }
        self.manifest
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut manifest = self.manifest.clone();
                manifest.object_key = c.object_key.clone();
                manifest.size_bytes = c.size_bytes;
                manifest.sha256 = c.sha256.clone();
                manifest.crc32c = c.crc32c.clone();
                manifest.content = c.content.clone();
                manifest.components = Vec::new();
                let entry = CatalogEntry {
                    manifest_key: self.manifest_key.clone(),
                    manifest,
                    etag: self.component_etags.get(i).cloned().flatten(),
                    component_etags: Vec::new(),
                    retention: self.retention.clone(),
                };
                (Some(c.replica_set.clone()), entry)
            })
            .collect()
    }

    /// The time it is ordered by: the snapshot's finish time, else its scheduled time, else
    /// when it was archived.
    pub fn taken_at(&self) -> DateTime<Utc> {
        self.manifest
            .snapshot_finished_at
            .or(self.manifest.snapshot_scheduled_at)
            .unwrap_or(self.manifest.archived_at)
    }
}

/// What kind of disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A manifest whose archive is not in the bucket.
    ManifestWithoutArchive,
    /// An object with no manifest beside it: it cannot be verified.
    ArchiveWithoutManifest,
    /// A manifest that is not one of ours or cannot be parsed.
    UnreadableManifest,
    /// The archive's size differs from its manifest's.
    SizeMismatch,
    /// The journal says archived; the bucket has no such object.
    JournalWithoutObject,
    /// The bucket has it; the journal does not know it as archived.
    NotInJournal,
}

/// One disagreement, with the key it is about.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The object (or manifest) key.
    pub key: String,
    /// Snapshot id, when known.
    pub snapshot_id: Option<String>,
    /// In words.
    pub detail: String,
}

/// The archived snapshots under a prefix, newest first, and the problems found on the way.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    /// Every verifiable archive, newest first.
    pub snapshots: Vec<CatalogEntry>,
    /// Disagreements between manifests, objects and the journal.
    pub problems: Vec<Problem>,
    /// Every key the listing held (to compare the journal with).
    #[serde(skip)]
    listed: HashSet<String>,
    /// The keys that name sharded clusters' snapshots (no object of their own; their
    /// manifests name their components).
    #[serde(skip)]
    sharded: HashSet<String>,
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Listing or reading the bucket.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl Catalog {
    /// Reads every manifest under `storage.prefix` (of `targets` only, when not empty) and
    /// checks each against the listing. For one target, only the part of the prefix that
    /// `storage.key_template` gives its archives is listed.
    pub async fn read(
        store: &ObjectStore,
        storage: &StorageConfig,
        targets: &[Target],
    ) -> Result<Self, CatalogError> {
        let prefix = match targets {
            [one] => target_prefix(
                &storage.key_template,
                &storage.prefix,
                &one.project_id,
                &one.cluster,
            ),
            _ => storage.prefix.clone(),
        };
        let listed = store.list_objects(&prefix).await?;
        let objects: HashMap<&str, (u64, Option<&str>)> = listed
            .iter()
            .map(|o| (o.key.as_str(), (o.size, o.etag.as_deref())))
            .collect();
        // Owned keys: a future that borrows from the listing inside a stream is not `Send`
        // for every lifetime (the daemon runs this in a spawned task).
        let manifest_keys: Vec<String> = listed
            .iter()
            .map(|o| o.key.clone())
            .filter(|k| k.ends_with(MANIFEST_SUFFIX))
            .collect();
        let read = futures_util::stream::iter(manifest_keys.into_iter().map(|key| async move {
            let body = store.get_small(&key).await?;
            Ok::<_, StoreError>((key, body))
        }))
        .buffered(MANIFEST_READS)
        .collect::<Vec<_>>()
        .await;
        let mut catalog = Catalog {
            listed: listed.iter().map(|o| o.key.clone()).collect(),
            ..Catalog::default()
        };
        let mut described: HashSet<String> = HashSet::new();
        for result in read {
            let (key, body) = result?;
            let key = key.as_str();
            let Some(manifest) = body.and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            else {
                if targets.is_empty() {
                    catalog.problem(
                        ProblemKind::UnreadableManifest,
                        key,
                        None,
                        "not an atlas-archiver manifest, or damaged".into(),
                    );
                }
                continue;
            };
            described.insert(manifest.object_key.clone());
            described.extend(manifest.objects().iter().map(|o| o.key.to_owned()));
            if manifest.is_sharded() && manifest_key(&manifest.object_key) == key {
                catalog.sharded.insert(manifest.object_key.clone());
            }
            if !selects(targets, &manifest.project_id, &manifest.cluster) {
                continue;
            }
            let snapshot = Some(manifest.snapshot_id.clone());
            if manifest_key(&manifest.object_key) != key {
                catalog.problem(
                    ProblemKind::UnreadableManifest,
                    key,
                    snapshot,
                    format!(
                        "the manifest names archive {} which does not sit beside it",
                        manifest.object_key
                    ),
                );
                continue;
            }
            // Every object the manifest names (the archive, or each component of a sharded
            // cluster's snapshot) must be there with its size.
            let mut etags = Vec::new();
            let mut trouble = None;
            for object in manifest.objects() {
                match objects.get(object.key) {
                    None => {
                        trouble = Some((
                            ProblemKind::ManifestWithoutArchive,
                            object.key.to_owned(),
                            format!("{key} describes this archive; the bucket has no such object"),
                        ));
                        break;
                    }
                    Some((size, _)) if *size != object.size_bytes => {
                        trouble = Some((
                            ProblemKind::SizeMismatch,
                            object.key.to_owned(),
                            format!(
                                "the object is {size} bytes; its manifest says {}",
                                object.size_bytes
                            ),
                        ));
                        break;
                    }
                    Some((_, etag)) => etags.push(etag.map(str::to_owned)),
                }
            }
            match trouble {
                Some((kind, object, detail)) => catalog.problem(kind, &object, snapshot, detail),
                None if manifest.is_sharded() => catalog.snapshots.push(CatalogEntry {
                    manifest_key: key.to_owned(),
                    etag: None,
                    component_etags: etags,
                    manifest,
                    retention: None,
                }),
                None => catalog.snapshots.push(CatalogEntry {
                    manifest_key: key.to_owned(),
                    etag: etags.pop().flatten(),
                    component_etags: Vec::new(),
                    manifest,
                    retention: None,
                }),
            }
        }
        for object in &listed {
            let key = object.key.as_str();
            if key.ends_with(MANIFEST_SUFFIX) || described.contains(key) {
                continue;
            }
            // Whose it is cannot be told without a manifest; with a target filter, only keys
            // that name the target are reported.
            let named = targets.is_empty()
                || targets
                    .iter()
                    .any(|t| key.contains(&t.project_id) && key.contains(&t.cluster));
            if named {
                catalog.problem(
                    ProblemKind::ArchiveWithoutManifest,
                    key,
                    None,
                    format!(
                        "{} bytes with no {} beside it: it cannot be verified or restored by atlas-archiver",
                        object.size,
                        manifest_key(key)
                    ),
                );
            }
        }
        catalog.snapshots.sort_by(|a, b| {
            b.taken_at()
                .cmp(&a.taken_at())
                .then_with(|| b.manifest.snapshot_id.cmp(&a.manifest.snapshot_id))
        });
        Ok(catalog)
    }

    /// Adds what the journal says and the bucket does not (and the reverse).
    pub async fn compare_with_journal(
        &mut self,
        journal: &Journal,
        targets: &[Target],
    ) -> Result<(), CatalogError> {
        let rows = journal.snapshots(None).await?;
        let archived: Vec<_> = rows
            .iter()
            .filter(|r| r.state == SnapshotState::Archived)
            .filter(|r| selects(targets, &r.project_id, &r.cluster))
            .collect();
        let mut missing = Vec::new();
        for row in &archived {
            // A sharded cluster's snapshot is named by its manifest: no object has its key.
            if let Some(key) = &row.object_key
                && !self.listed.contains(key.as_str())
                && !self.sharded.contains(key.as_str())
            {
                missing.push(Problem {
                    kind: ProblemKind::JournalWithoutObject,
                    key: key.clone(),
                    snapshot_id: Some(row.snapshot_id.clone()),
                    detail: "the journal says archived; the bucket has no such object".into(),
                });
            }
        }
        let journalled: HashSet<&str> = archived
            .iter()
            .filter_map(|r| r.object_key.as_deref())
            .collect();
        for entry in &self.snapshots {
            if !journalled.contains(entry.manifest.object_key.as_str()) {
                missing.push(Problem {
                    kind: ProblemKind::NotInJournal,
                    key: entry.manifest.object_key.clone(),
                    snapshot_id: Some(entry.manifest.snapshot_id.clone()),
                    detail: "archived in the bucket; the journal does not know it (`journal rebuild` recovers it)".into(),
                });
            }
        }
        self.problems.extend(missing);
        Ok(())
    }

    /// Records what `policy` says of each archive of `target`.
    pub fn judge(&mut self, target: &Target, policy: &crate::retention::Policy) {
        let mine: Vec<usize> = (0..self.snapshots.len())
            .filter(|i| self.snapshots[*i].target() == *target)
            .collect();
        let times: Vec<_> = mine.iter().map(|i| self.snapshots[*i].taken_at()).collect();
        for (i, verdict) in mine
            .into_iter()
            .zip(crate::retention::apply(policy, &times))
        {
            self.snapshots[i].retention = Some(verdict);
        }
    }

    /// The archived snapshots of one target, newest first.
    pub fn of<'s>(&'s self, target: &Target) -> impl Iterator<Item = &'s CatalogEntry> {
        self.snapshots.iter().filter(move |e| {
            e.manifest.project_id == target.project_id && e.manifest.cluster == target.cluster
        })
    }

    fn problem(
        &mut self,
        kind: ProblemKind,
        key: &str,
        snapshot_id: Option<String>,
        detail: String,
    ) {
        self.problems.push(Problem {
            kind,
            key: key.to_owned(),
            snapshot_id,
            detail,
        });
    }
}
