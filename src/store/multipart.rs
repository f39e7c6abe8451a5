//! One multipart upload: create, upload parts (in-memory bodies, so the SDK may retry them),
//! complete (with our own retry, since CompleteMultipartUpload can fail after the store acted),
//! and abort.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tracing::warn;

use super::StoreError;

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
}

/// An upload in progress. Dropping it does not abort it: call [`MultipartUpload::abort`].
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
}

impl MultipartUpload {
    pub(super) async fn create(
        client: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<Self, StoreError> {
        let out = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
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
        })
    }

    /// The store's id for this upload (journalled, so that a crash can abort it later).
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Uploads one part.
    pub async fn upload_part(
        &self,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPartInfo, StoreError> {
        let size = body.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UploadPart", &self.key, e))?;
        let etag = out
            .e_tag()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Request {
                operation: "UploadPart",
                key: self.key.clone(),
                code: None,
                message: format!("the store returned no ETag for part {number}"),
            })?;
        Ok(CompletedPartInfo { number, etag, size })
    }

    /// Completes the upload from the parts, in order. Retries transient failures; if the store
    /// says `NoSuchUpload` after an earlier attempt, the object may already be complete, which
    /// the caller's HEAD confirms.
    pub async fn complete(&self, parts: &[CompletedPartInfo]) -> Result<(), StoreError> {
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.number);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                sorted
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .multipart_upload(completed.clone())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if attempt > 1 && e.code() == Some("NoSuchUpload") => {
                    warn!(key = %self.key, "CompleteMultipartUpload answered NoSuchUpload after a retry; checking whether the object exists");
                    return Ok(());
                }
                Err(e) if attempt < COMPLETE_ATTEMPTS && is_transient(e.code()) => {
                    warn!(key = %self.key, attempt, code = e.code().unwrap_or("none"), "CompleteMultipartUpload failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
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

/// Errors worth another CompleteMultipartUpload: the store's own trouble, or no answer at all.
fn is_transient(code: Option<&str>) -> bool {
    match code {
        None => true,
        Some(c) => matches!(
            c,
            "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout" | "503" | "500"
        ),
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
        Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
        Err(e) => Err(StoreError::from_sdk("AbortMultipartUpload", key, e)),
    }
}
