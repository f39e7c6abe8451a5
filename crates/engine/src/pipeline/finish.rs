//! The end of a snapshot: an object complete in the bucket is confirmed by HEAD, validated (by
//! reading it back when the stream's validator did not see all of it), described by its
//! manifest and recorded archived. Also the two ways to finish without a download: an upload
//! completed before a crash, and an archive the bucket already holds (adopted).
//! Must not: download anything.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tracing::{info, warn};

use super::manifest::{
    MANIFEST_FORMAT, Manifest, ManifestComponent, ManifestEncryption, ManifestLock,
};
use super::transfer::TransferError;
use super::{ArchiveError, Archiver, SnapshotOutcome, validate};
use crate::journal::{SnapshotKey, SnapshotRecord, SnapshotState};
use crate::keys;
use crate::retry::Backoff;
use crate::store::StoreError;

/// What differs between the manifest of a single archive and that of a sharded cluster's
/// snapshot (the rest comes from the journal's row and the store's settings).
pub(super) struct Described {
    pub(super) object_key: String,
    pub(super) size_bytes: u64,
    pub(super) sha256: String,
    pub(super) crc32c: String,
    pub(super) restore_job_id: Option<String>,
    pub(super) content: Option<validate::ContentFacts>,
    pub(super) storage_class: Option<String>,
    pub(super) components: Vec<ManifestComponent>,
}

impl Archiver {
    /// A previous attempt streamed everything and recorded the result, and the object is in the
    /// bucket with that size: the upload was completed before a crash. Finish the job (verify,
    /// manifest) without downloading again.
    pub(super) async fn finish_recorded_upload(
        &self,
        record: &SnapshotRecord,
        object_key: &str,
    ) -> Result<Option<SnapshotOutcome>, ArchiveError> {
        let (Some(size), Some(_), Some(_)) = (record.size_bytes, &record.sha256, &record.crc32c)
        else {
            return Ok(None);
        };
        if !matches!(
            record.state,
            SnapshotState::Uploading | SnapshotState::Uploaded | SnapshotState::Failed
        ) {
            return Ok(None);
        }
        match self.store.head(object_key).await? {
            Some(head) if head.size == size => {
                info!(key = %object_key, "the upload of an earlier attempt was completed; finishing it without a new download");
                self.finish(&record.key(), object_key, None).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The bucket already has this snapshot (say, the journal was lost): adopt it if the manifest
    /// names this snapshot and the archive's size matches.
    pub(super) async fn adopt_existing(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<Option<SnapshotOutcome>, ArchiveError> {
        let manifest_key = keys::manifest_key(object_key);
        let Some(body) = self.store.get_small(&manifest_key).await? else {
            return Ok(None);
        };
        let manifest: Manifest = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                warn!(key = %manifest_key, error = %e, "existing manifest is unreadable; archiving again");
                return Ok(None);
            }
        };
        if !manifest.describes(&key.project_id, &key.cluster, &key.snapshot_id) {
            return Err(ArchiveError::KeyCollision {
                other: format!(
                    "{}/{}/{}",
                    manifest.project_id, manifest.cluster, manifest.snapshot_id
                ),
                manifest_key,
            });
        }
        // Every object the manifest names (the archive, or each component of a sharded
        // cluster's snapshot) must be there with its size.
        for object in manifest.objects() {
            let Some(head) = self.store.head(object.key).await? else {
                warn!(key = %object.key, "manifest without archive; archiving again");
                return Ok(None);
            };
            if head.size != object.size_bytes {
                warn!(key = %object.key, size = head.size, manifest_size = object.size_bytes, "archive size differs from its manifest; archiving again");
                return Ok(None);
            }
        }
        // An upload this journal still holds for the snapshot is not needed any more: abort it
        // rather than forget it (audit L6). If the store refuses, adopting waits for a later run.
        if let Some(e) = self.abort_recorded_upload(key, object_key).await? {
            return Err(e.into());
        }
        let record = self
            .journal
            .adopt(
                key,
                manifest.archived_object(),
                "adopted: the bucket already holds this snapshot with a matching manifest",
            )
            .await?;
        // A sharded snapshot's manifest names its components from now on.
        self.journal.forget_components(key).await?;
        info!(key = %object_key, "already in the bucket with a matching manifest; recorded without a new download");
        self.metrics.record_archived(
            &key.target(),
            record.taken_unix(),
            record.size_bytes.unwrap_or_default(),
        );
        Ok(Some(SnapshotOutcome::Adopted {
            snapshot_id: key.snapshot_id.clone(),
            object_key: object_key.to_owned(),
        }))
    }

    /// HEAD of an object whose upload completed. Some stores (Ceph RGW multisite) publish an
    /// object's metadata a moment after Complete: a 404 is asked again a few times, over about
    /// seven seconds, before it counts as the store losing the object (audit S6).
    pub(super) async fn head_after_complete(
        &self,
        object_key: &str,
    ) -> Result<crate::store::ObjectInfo, ArchiveError> {
        const TRIES: u32 = 4;
        const WAIT: Backoff = Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(4),
        };
        for attempt in 1..=TRIES {
            if let Some(head) = self.store.head(object_key).await? {
                return Ok(head);
            }
            if attempt < TRIES {
                let delay = WAIT.delay(attempt);
                warn!(key = %object_key, attempt, ?delay, "the completed object is not visible yet; asking again");
                self.until_shutdown(tokio::time::sleep(delay)).await?;
            }
        }
        Err(ArchiveError::StoreContract(format!(
            "{object_key} is missing right after its upload completed (HEAD answered 404 {TRIES} times)"
        )))
    }

    /// The object is complete: confirm its size by HEAD, validate its content when the stream's
    /// validator did not see all of it (a resume, a crash after Complete), write the manifest,
    /// mark it archived.
    pub(super) async fn finish(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        content: Option<validate::ContentFacts>,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let record = self.row(key).await?;
        let (Some(size), Some(sha256), Some(crc32c)) = (
            record.size_bytes,
            record.sha256.clone(),
            record.crc32c.clone(),
        ) else {
            return Err(ArchiveError::Internal(
                "no recorded size and checksums to finish with".into(),
            ));
        };
        let head = self.head_after_complete(object_key).await?;
        if head.size != size {
            return Err(StoreError::SizeMismatch {
                key: object_key.to_owned(),
                expected: size,
                found: head.size,
            }
            .into());
        }
        self.journal.object_confirmed(key, size).await?;
        crate::fault::point("after-uploaded");
        let content = match content {
            Some(facts) => Some(facts),
            None if self.settings.validate_archives => {
                Some(self.validate_stored(key, object_key).await?)
            }
            None => None,
        };
        // Locked once it is known to be a valid archive (an invalid one was deleted above),
        // before its manifest says it is there: never an unlocked archive reported archived.
        let storage_class = head
            .storage_class
            .clone()
            .or_else(|| self.store.protection().storage_class.clone());
        self.lock_and_describe(
            key,
            &record,
            &[object_key],
            Described {
                object_key: object_key.to_owned(),
                size_bytes: size,
                sha256: sha256.clone(),
                crc32c,
                restore_job_id: record.restore_job_id.clone(),
                content: content.clone(),
                storage_class,
                components: Vec::new(),
            },
        )
        .await?;
        let record = self.journal.archive(key).await?;
        self.metrics
            .record_archived(&key.target(), record.taken_unix(), size);
        Ok(SnapshotOutcome::Archived {
            snapshot_id: key.snapshot_id.clone(),
            object_key: object_key.to_owned(),
            size_bytes: size,
            sha256,
            tar_entries: content.map(|c| c.tar_entries),
        })
    }

    /// Locks `objects` (each known to be a valid archive by now) and then writes the manifest
    /// that says they are there, locked too: never an unlocked archive reported archived.
    pub(super) async fn lock_and_describe(
        &self,
        key: &SnapshotKey,
        record: &SnapshotRecord,
        objects: &[&str],
        described: Described,
    ) -> Result<Manifest, ArchiveError> {
        let archived_at = Utc::now();
        let lock_until = self.store.lock_until(archived_at);
        let protection = self.store.protection();
        let object_lock = match (lock_until, protection.object_lock) {
            (Some(until), Some(lock)) => {
                for object in objects {
                    self.store.ensure_locked(object, until).await?;
                }
                Some(ManifestLock {
                    mode: lock.mode,
                    retain_until: until,
                    legal_hold: lock.legal_hold,
                })
            }
            _ => None,
        };
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            project_id: key.project_id.clone(),
            cluster: key.cluster.clone(),
            snapshot_id: key.snapshot_id.clone(),
            snapshot_scheduled_at: record.scheduled_at,
            snapshot_finished_at: record.finished_at,
            mongodb_version: record.mongodb_version.clone(),
            object_key: described.object_key,
            size_bytes: described.size_bytes,
            sha256: described.sha256,
            crc32c: described.crc32c,
            restore_job_id: described.restore_job_id,
            content: described.content,
            archived_at,
            tool: "atlas-archiver".to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            storage_class: described.storage_class,
            encryption: ManifestEncryption::of(&protection.encryption),
            object_lock,
            components: described.components,
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ArchiveError::Internal(format!("cannot encode the manifest: {e}")))?;
        let manifest_key = keys::manifest_key(&manifest.object_key);
        self.store
            .put_manifest(&manifest_key, Bytes::from(body), lock_until)
            .await?;
        if let Some(until) = lock_until {
            self.store.ensure_locked(&manifest_key, until).await?;
        }
        crate::fault::point("after-manifest");
        Ok(manifest)
    }

    /// Reads a completed object back from the store through the content validator. An object
    /// that is not a valid archive is deleted (it is ours: this snapshot's key, completed by this
    /// journal's upload) so that nothing invalid stays under an archive's name.
    pub(super) async fn validate_stored(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<validate::ContentFacts, ArchiveError> {
        info!(key = %object_key, "validating the completed archive by reading it back (its stream was resumed)");
        let mut reader = self.store.open_read(object_key).await?;
        let mut validator = validate::Validator::start();
        let mut verdict = Ok(());
        while let Some(chunk) = reader.next_chunk().await? {
            if let Err(e) = validator.feed(chunk).await {
                verdict = Err(e);
                break;
            }
        }
        let verdict = match verdict {
            Ok(()) => validator.finish().await,
            Err(e) => Err(e),
        };
        match verdict {
            Ok(facts) => Ok(facts),
            Err(e) => {
                warn!(key = %object_key, error = %e, "the completed object is not a valid archive; deleting it");
                self.store.delete(object_key).await?;
                self.journal.discard_object(key).await?;
                Err(TransferError::Content(e).into())
            }
        }
    }
}
