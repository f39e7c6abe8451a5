//! The store's error type: which operation on which key failed, the S3 code when the store gave
//! one, one readable line of text (never the SDK's `Debug` dump), and what the code means for a
//! retry, a checksum fallback, a lock or a thaw (through `codes::classify`, never the text).
//! Must not: do I/O.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::MAX_PARTS;
use super::codes::{CodeKind, classify};
use crate::reason::Reason;

/// An object store failure, naming the operation and key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store answered with an error (or could not be reached).
    #[error("S3 {operation} of {key} failed: {message}")]
    Request {
        /// Which S3 operation.
        operation: &'static str,
        /// Object key (or bucket).
        key: String,
        /// S3 error code, if the store gave one (`NoSuchBucket`, `SlowDown`, …).
        code: Option<String>,
        /// Full error text.
        message: String,
    },
    /// The snapshot is too large for the chosen part size.
    #[error(
        "the snapshot needs more than {MAX_PARTS} parts of {part_size} bytes; set storage.part_size to a larger value (up to 5GiB)"
    )]
    TooManyParts {
        /// The part size in use.
        part_size: u64,
    },
    /// `[storage.object_lock]` is configured, and the bucket or the store cannot lock.
    #[error("bucket {bucket}: storage.object_lock is configured, but {reason}")]
    ObjectLockUnavailable {
        /// The bucket.
        bucket: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The store accepted an object but did not lock it as configured.
    #[error(
        "S3 object {key} is {found} after it was written and locked: the store does not honour Object Lock as configured"
    )]
    NotLocked {
        /// Key.
        key: String,
        /// The lock HEAD reports.
        found: String,
    },
    /// What the store holds differs from what we sent.
    #[error("S3 object {key} has {found} bytes after upload, expected {expected}")]
    SizeMismatch {
        /// Key.
        key: String,
        /// Bytes we streamed.
        expected: u64,
        /// Bytes HEAD reports.
        found: u64,
    },
}

impl StoreError {
    /// Whether the store refused S3 checksum headers (some S3-compatible stores do): it says it
    /// does not implement them, or that the request is invalid. A digest *mismatch*
    /// (`BadDigest`, `XAmzContentChecksumMismatch`, `InvalidDigest`) is not a refusal: it is the
    /// check doing its job on corrupted bytes, and turning checksums off then would let the next
    /// corruption through (audit M4).
    pub fn is_checksum_refusal(&self) -> bool {
        matches!(
            self.code_kind(),
            Some(CodeKind::ChecksumRefused | CodeKind::Unsupported)
        )
    }

    /// Whether the error is the configuration's to fix (exit 2 at start): a lock the bucket
    /// cannot give.
    pub fn is_config_problem(&self) -> bool {
        matches!(self, Self::ObjectLockUnavailable { .. })
    }

    /// Whether the store said the bytes it received do not match their checksum: a transient
    /// integrity failure, retried with checksums still on.
    pub fn is_digest_mismatch(&self) -> bool {
        self.code_kind() == Some(CodeKind::DigestMismatch)
    }

    /// Whether the store said the multipart upload does not exist.
    pub fn is_missing_upload(&self) -> bool {
        self.code_kind() == Some(CodeKind::MissingUpload)
    }

    /// Whether the object changed under a conditional read (`If-Match` failed): someone
    /// overwrote it while it was being read.
    pub fn is_object_changed(&self) -> bool {
        self.code_kind() == Some(CodeKind::Changed)
    }

    pub(super) fn code_kind(&self) -> Option<CodeKind> {
        match self {
            Self::Request {
                code: Some(code), ..
            } => Some(classify(code)),
            _ => None,
        }
    }

    /// Whether trying again may help: everything but missing buckets, refused credentials, and
    /// problems of our own making (part count, size).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Request { .. } => !matches!(
                self.code_kind(),
                Some(
                    CodeKind::MissingBucket
                        | CodeKind::Denied
                        | CodeKind::MissingObject
                        | CodeKind::Changed
                        | CodeKind::Cold
                        | CodeKind::LockNotConfigured
                )
            ),
            Self::TooManyParts { .. }
            | Self::SizeMismatch { .. }
            | Self::ObjectLockUnavailable { .. }
            | Self::NotLocked { .. } => false,
        }
    }

    pub(crate) fn from_sdk<E, R>(operation: &'static str, key: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().map(str::to_owned);
        let mut message = readable(&error);
        match code.as_deref().map(classify) {
            Some(CodeKind::MissingBucket) => {
                message.push_str(" (create the bucket, or fix storage.bucket)");
            }
            Some(CodeKind::Denied) => {
                message.push_str(" (check the storage credentials and the bucket policy)");
            }
            _ => {}
        }
        Self::Request {
            operation,
            key: key.to_owned(),
            code,
            message,
        }
    }

    /// A short reason for journal rows and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Request { code: Some(c), .. } => Reason::S3Code(c.clone()),
            Self::Request { operation, .. } => Reason::S3Request(operation),
            Self::TooManyParts { .. } => Reason::TooManyParts,
            Self::SizeMismatch { .. } => Reason::SizeMismatch,
            Self::ObjectLockUnavailable { .. } | Self::NotLocked { .. } => Reason::NotLocked,
        }
    }
}

/// One readable line for an SDK error: the store's code and message for a service error, the
/// error chain joined with `: ` otherwise; never the SDK's `Debug` dump of the raw response.
fn readable<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let SdkError::ServiceError(service) = error {
        let e = service.err();
        return match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            (None, Some(message)) => message.to_owned(),
            (None, None) => e.to_string(),
        };
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
