//! The multipart upload of a snapshot: start one (intent recorded before the store is asked,
//! the id after), resume one where the store and the journal agree on the parts, abort the
//! recorded one, and record each part as the store accepts it.
//! Must not: complete the upload or write the manifest (that is `attempt.rs` and `finish.rs`).

use tracing::{info, warn};

use super::digest::ResumableSha256;
use super::transfer::{self, SnapshotUrl, TransferError};
use super::{ARCHIVE_CONTENT_TYPE, ArchiveError, Archiver};
use crate::journal::{Journal, PartRecord, SnapshotKey, SnapshotRecord, UploadPlan};
use crate::store::{CompletedPartInfo, StoreError, plan_part_size};
use crate::telemetry::Metrics;

impl Archiver {
    /// Aborts the upload the journal records for this snapshot (if any) and forgets it. When the
    /// store refuses the abort (after the SDK's retries), the journal keeps the upload, so that
    /// it stays owned and a later attempt aborts it again (audit L7); the error is returned for
    /// callers that must not go on without a clean slate.
    pub(super) async fn abort_recorded_upload(
        &self,
        key: &SnapshotKey,
        object_key: &str,
    ) -> Result<Option<StoreError>, ArchiveError> {
        let Some(record) = self.journal.get(key).await? else {
            return Ok(None);
        };
        let Some(upload_id) = record.upload_id else {
            return Ok(None);
        };
        let upload = self
            .store
            .existing_multipart(object_key, &upload_id, record.upload_crc32c);
        if let Err(e) = upload.abort().await {
            warn!(error = %e, "could not abort the multipart upload; the journal keeps it and a later attempt aborts it");
            return Ok(Some(e));
        }
        self.journal.forget_upload(key, &upload_id).await?;
        Ok(None)
    }

    /// The part size for a download (`storage.part_size`, from its length when `auto`), or the
    /// error a store's part limit makes of it.
    pub(super) fn part_size_for(&self, source: &transfer::Source) -> Result<u64, ArchiveError> {
        let part_size = plan_part_size(self.settings.part_size, source.total_length);
        if let Some(len) = source.total_length
            && len.div_ceil(part_size) > crate::store::MAX_PARTS
        {
            return Err(TransferError::Store(StoreError::TooManyParts { part_size }).into());
        }
        Ok(part_size)
    }

    /// How a transfer with `part_size` streams: the configured parts in flight and validation.
    pub(super) fn pump_options(&self, part_size: u64) -> transfer::PumpOptions {
        transfer::PumpOptions {
            part_size,
            parts_in_flight: self.settings.parts_in_flight,
            validate: self.settings.validate_archives,
        }
    }

    /// Opens the download from the start and creates a new multipart upload, recording intent
    /// and outcome around the creation.
    pub(super) async fn start_upload(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        url: &SnapshotUrl,
    ) -> Result<(crate::store::MultipartUpload, transfer::Source, u64), ArchiveError> {
        let source = transfer::open(&self.download, url).await?;
        let part_size = self.part_size_for(&source)?;
        let plan = UploadPlan {
            object_key: object_key.to_owned(),
            part_size,
            source_etag: source.etag.clone(),
            source_length: source.total_length,
        };
        self.journal.start_upload(key, plan).await?;
        crate::fault::point("before-create-upload");
        let upload = self
            .store
            .create_multipart(object_key, ARCHIVE_CONTENT_TYPE)
            .await?;
        crate::fault::point("after-create-upload");
        self.journal
            .record_upload(key, upload.upload_id(), upload.verifies_crc32c())
            .await?;
        crate::fault::point("after-upload-recorded");
        Ok((upload, source, part_size))
    }

    /// Reconciles the store's parts with the journal's and reopens the download at the end of
    /// the contiguous parts both agree on. `None` when there is nothing to resume or the source
    /// will not serve a range: the caller then starts over.
    pub(super) async fn prepare_resume(
        &self,
        key: &SnapshotKey,
        object_key: &str,
        record: &SnapshotRecord,
        upload_id: &str,
        part_size: u64,
        url: &SnapshotUrl,
    ) -> Result<
        Option<(
            crate::store::MultipartUpload,
            transfer::Source,
            u64,
            transfer::ResumePoint,
        )>,
        ArchiveError,
    > {
        let upload = self
            .store
            .existing_multipart(object_key, upload_id, record.upload_crc32c);
        let in_store = match upload.list_parts().await {
            Ok(parts) => Some(parts),
            Err(e) if e.is_missing_upload() => {
                info!("the interrupted upload no longer exists; starting over");
                return Ok(None);
            }
            Err(e) => {
                // Some stores answer ListParts in a form the SDK rejects (moto's root element);
                // the journal recorded each part only after the store accepted it, and
                // CompleteMultipartUpload checks every ETag, so the journal alone is safe here.
                warn!(error = %e, "cannot list the parts of the interrupted upload; trusting the journal's record of them");
                None
            }
        };
        let journalled = self.journal.parts(key, upload_id).await?;
        let agreed = agreed_parts(&journalled, in_store.as_deref(), part_size);
        let Some(last) = agreed.last() else {
            info!("no complete part to resume from; starting over");
            return Ok(None);
        };
        let offset = last.bytes_after;
        // The hash state must cover exactly the bytes the parts hold (the journal is checked,
        // not trusted: audit L12).
        let Some(sha) =
            ResumableSha256::restore(&last.sha256_state).filter(|s| s.hashed_bytes() == offset)
        else {
            warn!(
                offset,
                "the journalled hash state does not match the uploaded parts; starting over"
            );
            return Ok(None);
        };
        let source = if record.source_length == Some(offset) {
            info!(
                offset,
                "every byte is already uploaded; completing without a download"
            );
            Ok(transfer::Source::exhausted(
                offset,
                record.source_etag.clone(),
            ))
        } else {
            transfer::open_from(
                &self.download,
                url,
                offset,
                record.source_etag.as_deref(),
                record.source_length,
            )
            .await
        };
        let source = match source {
            Ok(source) => source,
            Err(e @ TransferError::UrlRejected { .. }) => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, "cannot resume the download; starting over");
                return Ok(None);
            }
        };
        info!(
            offset,
            parts = agreed.len(),
            "resuming the interrupted upload"
        );
        self.journal
            .resume_upload(key, offset, agreed.len())
            .await?;
        let point = transfer::ResumePoint {
            parts: agreed
                .iter()
                .map(|p| crate::store::CompletedPartInfo {
                    number: p.number,
                    etag: p.etag.clone(),
                    size: p.size,
                    crc32c: record.upload_crc32c.then_some(p.part_crc32c),
                })
                .collect(),
            sha,
            crc: last.crc32c_after,
            offset,
        };
        Ok(Some((upload, source, part_size, point)))
    }
}

/// Records each part the store accepted in the journal, with the hash state after it.
pub(super) struct JournalParts<'a> {
    pub(super) journal: &'a Journal,
    pub(super) key: &'a SnapshotKey,
    pub(super) upload_id: &'a str,
    pub(super) metrics: &'a Metrics,
}

#[async_trait::async_trait]
impl transfer::PartLog for JournalParts<'_> {
    async fn part_done(&self, part: crate::journal::PartRecord) -> Result<(), String> {
        self.journal
            .record_part(self.key, self.upload_id, part)
            .await
            .map_err(|e| e.to_string())
    }

    fn uploaded(&self, bytes: u64) {
        self.metrics.record_uploaded(bytes);
    }
}

/// Counts a transfer in `atlas_archiver_transfers_in_flight` for as long as it lives.
pub(super) struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    pub(super) fn new(metrics: &'a Metrics) -> Self {
        metrics.transfer_in_flight(1);
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.transfer_in_flight(-1);
    }
}

/// The parts to resume after: the longest run of parts from number 1 that the journal recorded
/// whole (each `part_size` long, contiguous) and that the store lists with the same ETag and
/// size. `in_store` is `None` when the store's listing failed: the journal alone is trusted then
/// (it recorded each part only after the store accepted it, and CompleteMultipartUpload checks
/// every ETag). An upload that lists no parts while the journal recorded some is a listing we
/// cannot believe (moto answers so at times) and is treated the same way.
fn agreed_parts(
    journalled: &[PartRecord],
    in_store: Option<&[CompletedPartInfo]>,
    part_size: u64,
) -> Vec<PartRecord> {
    let in_store = in_store.filter(|parts| !parts.is_empty() || journalled.is_empty());
    let mut agreed = Vec::new();
    for (i, part) in journalled.iter().enumerate() {
        let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let in_store_too = in_store.is_none_or(|parts| {
            parts.iter().any(|s| {
                s.number == number && same_etag(&s.etag, &part.etag) && s.size == part.size
            })
        });
        let consistent = part.number == number
            && part.size == part_size
            && part.bytes_after == part_size * (i as u64 + 1)
            && in_store_too;
        if !consistent {
            break;
        }
        agreed.push(part.clone());
    }
    agreed
}

/// Whether two ETags of one part are the same: stores differ in quoting them and in the case
/// of their hex digits between UploadPart and ListParts (audit S5), which must not make every
/// resume start over. (CompleteMultipartUpload still checks each part's ETag itself.)
fn same_etag(a: &str, b: &str) -> bool {
    let bare = |e: &str| {
        e.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    bare(a).eq_ignore_ascii_case(&bare(b))
}

#[cfg(test)]
mod tests {
    use super::{agreed_parts, same_etag};
    use crate::journal::PartRecord;
    use crate::store::CompletedPartInfo;

    const SIZE: u64 = 8;

    fn journalled(n: i32) -> PartRecord {
        PartRecord {
            number: n,
            size: SIZE,
            etag: format!("e{n}"),
            sha256_state: String::new(),
            part_crc32c: 0,
            crc32c_after: 0,
            bytes_after: SIZE * u64::try_from(n).unwrap(),
        }
    }

    fn stored(n: i32, etag: &str) -> CompletedPartInfo {
        CompletedPartInfo {
            number: n,
            etag: etag.into(),
            size: SIZE,
            crc32c: None,
        }
    }

    fn numbers(parts: &[PartRecord]) -> Vec<i32> {
        parts.iter().map(|p| p.number).collect()
    }

    /// Audit S5: one ETag, quoted by UploadPart and bare (or upper-case) in ListParts.
    #[test]
    fn s5_etags_that_differ_only_in_quotes_or_case_agree() {
        let quoted = "\"9b2cf535f27731c974343645a3985328\"";
        assert!(same_etag(quoted, "9b2cf535f27731c974343645a3985328"));
        assert!(same_etag(quoted, "\"9B2CF535F27731C974343645A3985328\""));
        assert!(!same_etag(quoted, "\"9b2cf535f27731c974343645a3985329\""));
        let j: Vec<_> = (1..=2)
            .map(|n| PartRecord {
                etag: format!("\"e{n}\""),
                ..journalled(n)
            })
            .collect();
        let s = [stored(1, "E1"), stored(2, "e2")];
        assert_eq!(numbers(&agreed_parts(&j, Some(&s), SIZE)), [1, 2]);
    }

    #[test]
    fn resumes_after_the_parts_both_sides_agree_on() {
        let j: Vec<_> = (1..=4).map(journalled).collect();
        let s = [
            stored(1, "e1"),
            stored(2, "e2"),
            stored(3, "other"),
            stored(4, "e4"),
        ];
        assert_eq!(
            numbers(&agreed_parts(&j, Some(&s), SIZE)),
            [1, 2],
            "stops at an ETag that differs"
        );
        let s = [stored(1, "e1"), stored(3, "e3")];
        assert_eq!(
            numbers(&agreed_parts(&j, Some(&s), SIZE)),
            [1],
            "stops at a part the store lacks"
        );
        assert_eq!(
            numbers(&agreed_parts(&j, None, SIZE)),
            [1, 2, 3, 4],
            "a failed listing trusts the journal"
        );
        assert_eq!(
            numbers(&agreed_parts(&j, Some(&[]), SIZE)),
            [1, 2, 3, 4],
            "an empty listing is not believed over the journal"
        );
        assert!(
            agreed_parts(&j, Some(&s), SIZE * 2).is_empty(),
            "another part size resumes nothing"
        );
        let gap = [journalled(1), journalled(3)];
        assert_eq!(
            numbers(&agreed_parts(&gap, None, SIZE)),
            [1],
            "a gap in the journal ends the run"
        );
    }
}
