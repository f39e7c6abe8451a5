//! A sharded cluster's snapshot: one download job whose `components` give one file per replica
//! set (every shard and the config server). Each file is streamed into its own object
//! ([`keys::component_key`]: `…/{snapshot_id}/{replicaSetName}.tar.gz`), validated, completed
//! and confirmed by HEAD on its own, and recorded in the journal's components table. Only when
//! every component is archived are they locked and the one manifest written that lists them
//! (size, SHA-256, CRC32C, what validation saw); the snapshot is archived then, and not before.
//!
//! A component's URL serves one GET, so a component is never resumed: one that fails aborts
//! its upload and forgets the job, and the next attempt asks Atlas for a new job and fetches
//! only the components still missing (a snapshot's bytes do not change with the job). A
//! snapshot that gives up for this run deletes what it had archived ([`Archiver::discard_components`]):
//! the bucket never holds a component that no manifest describes.
//! Must not: resume a component mid-file, or write a manifest with a component missing.

use tracing::{Instrument, info, info_span, warn};

use super::finish::Described;
use super::manifest::{ManifestComponent, components_digest};
use super::transfer::{self, PartLog, SnapshotUrl, TransferError};
use super::{ARCHIVE_CONTENT_TYPE, ArchiveError, Archiver, SnapshotOutcome};
use crate::atlas::models::{JobComponent, RestoreJob};
use crate::journal::{ComponentDone, ComponentRecord, PartRecord, SnapshotKey};
use crate::keys;
use crate::store::StoreError;
use crate::telemetry::Metrics;

/// A component's parts are not journalled (it never resumes); only the bytes are counted.
struct CountedParts<'a>(&'a Metrics);

#[async_trait::async_trait]
impl PartLog for CountedParts<'_> {
    async fn part_done(&self, _part: PartRecord) -> Result<(), String> {
        Ok(())
    }

    fn uploaded(&self, bytes: u64) {
        self.0.record_uploaded(bytes);
    }
}

impl Archiver {
    /// Archives every component of a sharded snapshot whose download `job` is ready (one for
    /// each of the `members` the listing named), then writes its manifest and records it
    /// archived.
    pub(super) async fn attempt_sharded(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        job: &RestoreJob,
        members: &[String],
    ) -> Result<SnapshotOutcome, ArchiveError> {
        // The listing named the snapshot's replica sets: a job that leaves one out would be
        // archived without it.
        if let Some(missing) = members
            .iter()
            .find(|m| !job.components.iter().any(|c| &c.replica_set == *m))
        {
            return Err(ArchiveError::AtlasContract(format!(
                "the download job has no component for replica set {missing}, which the snapshot lists among its members"
            )));
        }
        let mut planned = Vec::with_capacity(job.components.len());
        for c in &job.components {
            let component_key =
                keys::component_key(object_key, &c.replica_set).ok_or_else(|| {
                    ArchiveError::AtlasContract(format!(
                        "the download job names a component {:?}, which is not a replica set name",
                        c.replica_set
                    ))
                })?;
            planned.push((c, component_key));
        }
        let recorded = self.journal.components(key).await?;
        self.abort_component_uploads(key, &recorded).await?;
        let _slot = self.transfer_slot().await?;
        let _in_flight = super::upload::InFlight::new(&self.metrics);
        let mut archived = Vec::with_capacity(planned.len());
        for (component, component_key) in planned {
            let span = info_span!("component", replica_set = %component.replica_set);
            let done = recorded
                .iter()
                .find(|r| r.replica_set == component.replica_set && r.object_key == component_key)
                .and_then(|r| r.done.clone());
            let done = match done {
                Some(done) if self.still_there(&component_key, done.size_bytes).await? => {
                    info!(parent: &span, key = %component_key, "component archived by an earlier job of this snapshot; kept");
                    done
                }
                _ => match self
                    .archive_component(key, component, &component_key)
                    .instrument(span)
                    .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        // Whatever failed, this job's URL for the component may be spent (a
                        // one-time URL counts a GET whose answer never arrived): the next
                        // attempt asks for a new job.
                        self.journal.forget_job(key).await?;
                        return Err(e);
                    }
                },
            };
            archived.push(ManifestComponent {
                replica_set: component.replica_set.clone(),
                object_key: component_key,
                size_bytes: done.size_bytes,
                sha256: done.sha256,
                crc32c: done.crc32c,
                content: done
                    .content
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok()),
            });
        }
        self.finish_sharded(key, object_key, job, archived).await
    }

    /// Whether a component recorded archived is still in the bucket with its size.
    async fn still_there(&self, component_key: &str, size: u64) -> Result<bool, ArchiveError> {
        Ok(self
            .store
            .head(component_key)
            .await?
            .is_some_and(|h| h.size == size))
    }

    /// One component: stream its file into its object, complete, confirm by HEAD, record.
    async fn archive_component(
        &self,
        key: &SnapshotKey,
        component: &JobComponent,
        component_key: &str,
    ) -> Result<ComponentDone, ArchiveError> {
        let rs = component.replica_set.as_str();
        let url = SnapshotUrl::parse(&component.url)?;
        info!(url = %url, "component download ready");
        let source = transfer::open(&self.download, &url).await?;
        let part_size = self.part_size_for(&source)?;
        // Intent before the store is asked, the id after: a crash in between leaves a key the
        // start-up cleanup may abort uploads on.
        self.journal
            .component_upload(key, rs, component_key, None)
            .await?;
        let upload = self
            .store
            .create_multipart(component_key, ARCHIVE_CONTENT_TYPE)
            .await?;
        self.journal
            .component_upload(key, rs, component_key, Some(upload.upload_id()))
            .await?;
        let ticket = self.progress.start(
            format!(
                "{}/{} {} {rs}",
                key.project_id, key.cluster, key.snapshot_id
            ),
            source.total_length,
            0,
        );
        let pumped = transfer::pump(
            source,
            &upload,
            self.pump_options(part_size),
            &self.shutdown.abort,
            &CountedParts(&self.metrics),
            None,
            &ticket,
        )
        .await;
        drop(ticket);
        let outcome = match pumped {
            Ok(o) => o,
            Err(e) => {
                if let TransferError::Store(s) = &e {
                    self.note_checksum_refusal(&upload, s);
                }
                self.give_up_component(key, rs, component_key, upload.upload_id())
                    .await?;
                return Err(e.into());
            }
        };
        let whole_crc = u32::from_str_radix(&outcome.crc32c, 16).unwrap_or_default();
        crate::fault::point("before-component-complete");
        if let Err(e) = upload.complete(&outcome.parts, whole_crc).await {
            self.note_checksum_refusal(&upload, &e);
            self.give_up_component(key, rs, component_key, upload.upload_id())
                .await?;
            return Err(e.into());
        }
        let head = self.head_after_complete(component_key).await?;
        if head.size != outcome.bytes {
            self.store.delete(component_key).await?;
            return Err(StoreError::SizeMismatch {
                key: component_key.to_owned(),
                expected: outcome.bytes,
                found: head.size,
            }
            .into());
        }
        let done = ComponentDone {
            size_bytes: outcome.bytes,
            sha256: outcome.sha256,
            crc32c: outcome.crc32c,
            content: outcome
                .content
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
        };
        self.journal.component_done(key, rs, done.clone()).await?;
        crate::fault::point("after-component");
        info!(key = %component_key, bytes = done.size_bytes, sha256 = %done.sha256, "component archived");
        Ok(done)
    }

    /// A component's transfer failed: its upload is aborted (nothing resumes a one-time URL).
    async fn give_up_component(
        &self,
        key: &SnapshotKey,
        replica_set: &str,
        component_key: &str,
        upload_id: &str,
    ) -> Result<(), ArchiveError> {
        match self.store.abort_multipart(component_key, upload_id).await {
            Ok(()) => {
                self.journal
                    .component_upload(key, replica_set, component_key, None)
                    .await?;
            }
            Err(e) => {
                warn!(key = %component_key, error = %e, "could not abort the component's upload; the journal keeps it and the next attempt aborts it");
            }
        }
        Ok(())
    }

    /// Aborts the component uploads an earlier attempt left (a crash, a shutdown, a refused
    /// abort): a component never resumes.
    async fn abort_component_uploads(
        &self,
        key: &SnapshotKey,
        recorded: &[ComponentRecord],
    ) -> Result<(), ArchiveError> {
        for r in recorded {
            if let Some(upload_id) = &r.upload_id {
                match self.store.abort_multipart(&r.object_key, upload_id).await {
                    // The start-up cleanup may have aborted it already.
                    Err(e) if !e.is_missing_upload() => return Err(e.into()),
                    _ => {}
                }
                self.journal
                    .component_upload(key, &r.replica_set, &r.object_key, None)
                    .await?;
            }
        }
        Ok(())
    }

    /// The snapshot gives up for this run: every component it had archived is deleted and
    /// every upload aborted, so that nothing is left that no manifest describes. A no-op for a
    /// snapshot without components.
    pub(super) async fn discard_components(&self, key: &SnapshotKey) -> Result<(), ArchiveError> {
        let recorded = self.journal.components(key).await?;
        if recorded.is_empty() {
            return Ok(());
        }
        self.abort_component_uploads(key, &recorded).await?;
        for r in recorded.iter().filter(|r| r.done.is_some()) {
            self.store.delete(&r.object_key).await?;
        }
        self.journal.forget_components(key).await?;
        warn!(
            components = recorded.len(),
            "the snapshot is not archived: the components it had archived were deleted, and the next run fetches them all again"
        );
        Ok(())
    }

    /// Every component is archived: lock them, write the one manifest, record the snapshot.
    async fn finish_sharded(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        job: &RestoreJob,
        components: Vec<ManifestComponent>,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let record = self.row(key).await?;
        let size: u64 = components.iter().map(|c| c.size_bytes).sum();
        let sha256 = components_digest(&components);
        let tar_entries = components
            .iter()
            .map(|c| c.content.as_ref().map(|f| f.tar_entries))
            .sum::<Option<u64>>();
        let count = components.len();
        let objects: Vec<String> = components.iter().map(|c| c.object_key.clone()).collect();
        let objects: Vec<&str> = objects.iter().map(String::as_str).collect();
        let manifest = self
            .lock_and_describe(
                key,
                &record,
                &objects,
                Described {
                    object_key: object_key.to_owned(),
                    size_bytes: size,
                    sha256: sha256.clone(),
                    crc32c: String::new(),
                    restore_job_id: job.id.clone(),
                    content: None,
                    storage_class: self.store.protection().storage_class.clone(),
                    components,
                },
            )
            .await?;
        let record = self
            .journal
            .adopt(
                key,
                manifest.archived_object(),
                &format!("archived: {count} components, manifest written"),
            )
            .await?;
        self.journal.forget_components(key).await?;
        self.metrics
            .record_archived(&key.target(), record.taken_unix(), size);
        info!(key = %keys::manifest_key(object_key), components = count, bytes = size, "sharded snapshot archived");
        Ok(SnapshotOutcome::Archived {
            snapshot_id: key.snapshot_id.clone(),
            object_key: object_key.to_owned(),
            size_bytes: size,
            sha256,
            tar_entries,
        })
    }
}
