//! One multipart upload: create (optionally with a full-object CRC32C the store verifies), upload
//! parts (in-memory bodies, so the SDK may retry them), list parts (to resume after a crash),
//! complete (with our own retry, since CompleteMultipartUpload can fail after the store acted),
//! and abort.

use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::Bytes;
use tracing::warn;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::config::{CustomerKey, Protection};
use crate::retry::Backoff;

/// The wait between CompleteMultipartUpload attempts (the SDK does not retry it on every
/// transient answer a store gives).
const COMPLETE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(500),
    max: Duration::from_secs(8),
};
use super::codes::{CodeKind, classify_answer};

const COMPLETE_ATTEMPTS: u32 = 4;

/// A part the store accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPartInfo {
    /// 1-based part number.
    pub number: i32,
    /// ETag the store returned.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of the part (sent to the store when it verifies checksums).
    pub crc32c: Option<u32>,
}

/// An upload in progress. Dropping it does not abort it: call [`MultipartUpload::abort`].
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    /// Whether the upload was created with a full-object CRC32C, which the store verifies.
    crc32c: bool,
    /// Whether the connection to the store is TLS (see [`MultipartUpload::on_tls`]).
    tls: bool,
    /// The SSE-C key every part and the completion carry, when objects are encrypted with it.
    customer_key: Option<CustomerKey>,
}

/// The slowest upload rate a part is given time for (bytes per second).
const MIN_PART_THROUGHPUT: u64 = 1 << 20;

pub(super) fn b64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

impl MultipartUpload {
    pub(super) async fn create(
        client: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        content_type: &str,
        crc32c: bool,
        protection: &Protection,
        lock_until: Option<DateTime<Utc>>,
    ) -> Result<Self, StoreError> {
        let mut request = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type);
        if crc32c {
            request = request
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_type(ChecksumType::FullObject);
        }
        let out = protected_write!(request, protection, lock_until, true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("CreateMultipartUpload", key, e))?;
        let upload_id = out
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Request {
                operation: "CreateMultipartUpload",
                key: key.to_owned(),
                code: None,
                message: "the store returned no UploadId".into(),
            })?;
        Ok(Self {
            client,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            crc32c,
            tls: false,
            customer_key: protection.encryption.customer_key().cloned(),
        })
    }

    /// An upload created earlier (by this or a previous process).
    pub(super) fn existing(
        client: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        upload_id: &str,
        crc32c: bool,
        customer_key: Option<CustomerKey>,
    ) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            crc32c,
            tls: false,
            customer_key,
        }
    }

    /// Marks the connection as TLS. Part bodies are then sent without SigV4 payload signing:
    /// signing hashes every byte with SHA-256 a second time (after our own SHA-256), and TLS
    /// already protects the bytes in transit. Over plain http they stay signed, unless the store
    /// verifies a CRC32C of each part.
    pub(super) fn on_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The store's id for this upload (journalled, so that a crash can resume or abort it).
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the store verifies a CRC32C on each part and on the whole object.
    pub fn verifies_crc32c(&self) -> bool {
        self.crc32c
    }

    /// Uploads one part. `crc32c` is the part's checksum, sent when the upload verifies them.
    pub async fn upload_part(
        &self,
        number: i32,
        body: Bytes,
        crc32c: u32,
    ) -> Result<CompletedPartInfo, StoreError> {
        let size = body.len() as u64;
        let mut request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .body(ByteStream::from(body));
        request = with_customer_key!(request, self.customer_key.as_ref());
        if self.crc32c {
            request = request.checksum_crc32_c(b64(crc32c));
        }
        // A big part on a slow link may need longer than `storage.request_timeout` to send:
        // give it the time 1 MiB/s needs, so the bound catches a silent store, not a slow one.
        let base = self
            .client
            .config()
            .timeout_config()
            .and_then(|t| t.operation_attempt_timeout());
        let needed = Duration::from_secs(size / MIN_PART_THROUGHPUT + 1);
        let mut request = request.customize();
        if let Some(base) = base
            && needed > base
        {
            request = request.config_override(
                aws_sdk_s3::config::Builder::new().timeout_config(
                    TimeoutConfig::builder()
                        .read_timeout(needed)
                        .operation_attempt_timeout(needed)
                        .build(),
                ),
            );
        }
        let sent = if self.tls || self.crc32c {
            request.disable_payload_signing().send().await
        } else {
            request.send().await
        };
        let out = sent.map_err(|e| StoreError::from_sdk("UploadPart", &self.key, e))?;
        let etag = out
            .e_tag()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Request {
                operation: "UploadPart",
                key: self.key.clone(),
                code: None,
                message: format!("the store returned no ETag for part {number}"),
            })?;
        Ok(CompletedPartInfo {
            number,
            etag,
            size,
            crc32c: self.crc32c.then_some(crc32c),
        })
    }

    /// The parts the store holds for this upload, by number (pages through ListParts).
    pub async fn list_parts(&self) -> Result<Vec<CompletedPartInfo>, StoreError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .set_part_number_marker(marker.clone());
            let page = with_customer_key!(request, self.customer_key.as_ref())
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("ListParts", &self.key, e))?;
            for p in page.parts() {
                if let (Some(number), Some(etag)) = (p.part_number(), p.e_tag()) {
                    out.push(CompletedPartInfo {
                        number,
                        etag: etag.to_owned(),
                        size: p.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                        crc32c: None,
                    });
                }
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || marker.is_none() {
                break;
            }
        }
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    /// Completes the upload from the parts, in order. Retries transient failures; if the store
    /// says `NoSuchUpload` after an earlier attempt, the object may already be complete, which
    /// the caller's HEAD confirms.
    pub async fn complete(
        &self,
        parts: &[CompletedPartInfo],
        whole_crc32c: u32,
    ) -> Result<(), StoreError> {
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.number);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                sorted
                    .iter()
                    .map(|p| {
                        let mut part = CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(&p.etag);
                        if self.crc32c
                            && let Some(crc) = p.crc32c
                        {
                            part = part.checksum_crc32_c(b64(crc));
                        }
                        part.build()
                    })
                    .collect(),
            ))
            .build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .multipart_upload(completed.clone());
            request = with_customer_key!(request, self.customer_key.as_ref());
            if self.crc32c {
                request = request
                    .checksum_crc32_c(b64(whole_crc32c))
                    .checksum_type(ChecksumType::FullObject);
            }
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(e) if attempt > 1 && classify_answer(e.code()) == CodeKind::MissingUpload => {
                    warn!(key = %self.key, "CompleteMultipartUpload answered NoSuchUpload after a retry; checking whether the object exists");
                    return Ok(());
                }
                Err(e)
                    if attempt < COMPLETE_ATTEMPTS && classify_answer(e.code()).is_transient() =>
                {
                    warn!(key = %self.key, attempt, code = e.code().unwrap_or("none"), "CompleteMultipartUpload failed; retrying");
                    tokio::time::sleep(COMPLETE_BACKOFF.delay(attempt)).await;
                }
                Err(e) => {
                    return Err(StoreError::from_sdk(
                        "CompleteMultipartUpload",
                        &self.key,
                        e,
                    ));
                }
            }
        }
    }

    /// Aborts the upload so that no orphan parts remain (and cost money).
    pub async fn abort(&self) -> Result<(), StoreError> {
        abort(&self.client, &self.bucket, &self.key, &self.upload_id).await
    }
}

pub(super) async fn abort(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), StoreError> {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: what we wanted.
        Err(e) if classify_answer(e.code()) == CodeKind::MissingUpload => Ok(()),
        Err(e) => Err(StoreError::from_sdk("AbortMultipartUpload", key, e)),
    }
}
