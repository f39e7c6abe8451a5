//! Why a snapshot was not archived, as a kind: the short code stored in the journal's
//! `last_reason`, shown by `status`, and used as the metrics' `reason` label. Each leaf's error
//! says which reason it is (`AtlasError::reason`, `StoreError::reason`, ...); nothing decides
//! behaviour by comparing the text of an error.
//! Must not: import anything of this crate (every leaf may use it).

use std::borrow::Cow;
use std::fmt;

/// A failure's reason. The codes (`Display`) are stable: dashboards and alert rules use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Atlas refused the credentials.
    Unauthorized,
    /// Atlas answered with an error envelope: its `errorCode`.
    AtlasCode(String),
    /// Atlas could not be reached.
    AtlasUnreachable,
    /// Atlas answered 2xx with a body we could not read.
    AtlasBadResponse,
    /// The restore (download) job ended FAILED.
    RestoreJobFailed,
    /// The restore job produced no URL in time.
    RestoreJobTimeout,
    /// Atlas answered something its contract rules out (a job for another snapshot, a job
    /// without an id).
    AtlasContract,
    /// The snapshot URL is not an http(s) URL.
    BadSnapshotUrl,
    /// The snapshot URL answered an unexpected HTTP status.
    DownloadHttpStatus,
    /// The snapshot URL could not be reached.
    DownloadConnect,
    /// The download broke off.
    DownloadInterrupted,
    /// The download stalled past `atlas.download_stall_timeout`.
    DownloadStalled,
    /// The snapshot URL served no bytes.
    EmptyDownload,
    /// The HTTP client could not be built.
    ClientSetup,
    /// An upload task ended unexpectedly.
    UploadTask,
    /// The snapshot URL was refused as expired or used up.
    UrlExpired,
    /// Fewer or more bytes than `Content-Length` announced.
    TruncatedDownload,
    /// Shutdown interrupted the transfer.
    Cancelled,
    /// The snapshot URL did not honour a ranged request for a resume.
    RangeRefused,
    /// What was served is not a whole `.tar.gz`.
    NotAnArchive,
    /// The store answered with an error code.
    S3Code(String),
    /// A store request failed without a code (transport, timeout): which request.
    S3Request(&'static str),
    /// The archive would need more than 10,000 parts at the configured part size.
    TooManyParts,
    /// The stored object's size differs from what was streamed.
    SizeMismatch,
    /// The store answered something no S3 store should (an object missing right after its
    /// upload completed).
    StoreContract,
    /// Two snapshots map to one key (`storage.key_template`).
    KeyCollision,
    /// A lock is configured but the bucket or the store cannot lock (or did not lock an object).
    NotLocked,
    /// The journal failed.
    Journal,
    /// Atlas no longer holds the snapshot and it was never archived.
    SnapshotLost,
    /// The snapshot's work made no progress for `schedule.stall_timeout` and was cancelled.
    Stalled,
    /// A bug of ours: an invariant did not hold.
    Internal,
}

impl Reason {
    /// The stable code.
    pub fn code(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::AtlasCode(code) => return Cow::Owned(code.clone()),
            Self::S3Code(code) => return Cow::Owned(format!("S3_{code}")),
            Self::S3Request(operation) => {
                return Cow::Owned(format!("S3_{}", operation.replace(' ', "_").to_uppercase()));
            }
            Self::Unauthorized => "UNAUTHORIZED",
            Self::AtlasUnreachable => "ATLAS_UNREACHABLE",
            Self::AtlasBadResponse => "ATLAS_BAD_RESPONSE",
            Self::RestoreJobFailed => "RESTORE_JOB_FAILED",
            Self::RestoreJobTimeout => "RESTORE_JOB_TIMEOUT",
            Self::AtlasContract => "ATLAS_CONTRACT",
            Self::BadSnapshotUrl => "BAD_SNAPSHOT_URL",
            Self::DownloadHttpStatus => "DOWNLOAD_HTTP_STATUS",
            Self::DownloadConnect => "DOWNLOAD_CONNECT",
            Self::DownloadInterrupted => "DOWNLOAD_INTERRUPTED",
            Self::DownloadStalled => "DOWNLOAD_STALLED",
            Self::EmptyDownload => "EMPTY_DOWNLOAD",
            Self::ClientSetup => "CLIENT_SETUP",
            Self::UploadTask => "UPLOAD_TASK",
            Self::UrlExpired => "URL_EXPIRED",
            Self::TruncatedDownload => "TRUNCATED_DOWNLOAD",
            Self::Cancelled => "CANCELLED",
            Self::RangeRefused => "RANGE_REFUSED",
            Self::NotAnArchive => "NOT_AN_ARCHIVE",
            Self::TooManyParts => "TOO_MANY_PARTS",
            Self::SizeMismatch => "SIZE_MISMATCH",
            Self::StoreContract => "STORE_CONTRACT",
            Self::KeyCollision => "KEY_COLLISION",
            Self::NotLocked => "NOT_LOCKED",
            Self::Journal => "JOURNAL",
            Self::SnapshotLost => "SNAPSHOT_LOST",
            Self::Stalled => "STALLED",
            Self::Internal => "INTERNAL",
        })
    }

    /// Whether a stored code is this reason (the journal keeps codes as text).
    pub fn is(&self, stored: Option<&str>) -> bool {
        stored == Some(self.code().as_ref())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn codes_are_stable() {
        assert_eq!(Reason::SnapshotLost.to_string(), "SNAPSHOT_LOST");
        assert_eq!(Reason::S3Code("SlowDown".into()).to_string(), "S3_SlowDown");
        assert_eq!(
            Reason::S3Request("complete multipart upload").to_string(),
            "S3_COMPLETE_MULTIPART_UPLOAD"
        );
        assert_eq!(
            Reason::AtlasCode("RATE_LIMITED".into()).to_string(),
            "RATE_LIMITED"
        );
        assert!(Reason::SnapshotLost.is(Some("SNAPSHOT_LOST")));
        assert!(!Reason::SnapshotLost.is(Some("URL_EXPIRED")));
        assert!(!Reason::SnapshotLost.is(None));
    }
}
