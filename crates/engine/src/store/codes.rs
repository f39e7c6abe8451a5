//! What the S3 error codes mean to us: the one place in the program that reads them. Everything
//! that depends on a store's answer (retry, checksum fallback, "already gone") asks
//! [`classify`] and matches the kind, never the text.
//! Must not: do I/O.

/// The kinds of store answer that change what we do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeKind {
    /// The bucket does not exist.
    MissingBucket,
    /// The multipart upload does not exist (aborted, completed, or expired by a lifecycle rule).
    MissingUpload,
    /// The object does not exist.
    MissingObject,
    /// The object is no longer the one a conditional request named (`If-Match` failed).
    Changed,
    /// Credentials or policy refused the request.
    Denied,
    /// The store does not implement the checksum we sent (it is switched off for the process).
    ChecksumRefused,
    /// The store does not implement the operation at all (`NotImplemented`).
    Unsupported,
    /// The bucket has no Object Lock configuration.
    LockNotConfigured,
    /// The object is in a cold storage class and must be thawed before it can be read.
    Cold,
    /// A thaw of the object is already under way.
    ThawUnderWay,
    /// The bytes the store received do not match their checksum (transient: retried).
    DigestMismatch,
    /// The store asks us to slow down.
    Throttled,
    /// The store's own trouble.
    ServerTrouble,
    /// Anything else.
    Other,
}

impl CodeKind {
    /// Whether the same request may succeed later.
    pub(crate) fn is_transient(self) -> bool {
        matches!(self, Self::Throttled | Self::ServerTrouble)
    }
}

/// The kind of an S3 error code.
pub(crate) fn classify(code: &str) -> CodeKind {
    match code {
        "NoSuchBucket" => CodeKind::MissingBucket,
        "NoSuchUpload" => CodeKind::MissingUpload,
        "NoSuchKey" => CodeKind::MissingObject,
        "PreconditionFailed" => CodeKind::Changed,
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => CodeKind::Denied,
        "NotImplemented" => CodeKind::Unsupported,
        "InvalidRequest" | "InvalidArgument" => CodeKind::ChecksumRefused,
        "ObjectLockConfigurationNotFoundError" => CodeKind::LockNotConfigured,
        "InvalidObjectState" => CodeKind::Cold,
        "RestoreAlreadyInProgress" => CodeKind::ThawUnderWay,
        "BadDigest" | "XAmzContentChecksumMismatch" | "InvalidDigest" => CodeKind::DigestMismatch,
        "SlowDown" | "Throttling" | "TooManyRequests" => CodeKind::Throttled,
        "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "503" | "500" => {
            CodeKind::ServerTrouble
        }
        _ => CodeKind::Other,
    }
}

/// The kind of an optional code: `None` (no answer at all) is treated as transient trouble.
pub(crate) fn classify_answer(code: Option<&str>) -> CodeKind {
    code.map_or(CodeKind::ServerTrouble, classify)
}

#[cfg(test)]
mod tests {
    use super::{CodeKind, classify, classify_answer};

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(classify("NoSuchUpload"), CodeKind::MissingUpload);
        assert_eq!(classify("SlowDown"), CodeKind::Throttled);
        assert_eq!(classify("BadDigest"), CodeKind::DigestMismatch);
        assert_eq!(classify("InvalidRequest"), CodeKind::ChecksumRefused);
        assert_eq!(classify("NoSuchKey"), CodeKind::MissingObject);
        assert_eq!(classify("PreconditionFailed"), CodeKind::Changed);
        assert_eq!(classify("SomethingNew"), CodeKind::Other);
        assert_eq!(classify("NotImplemented"), CodeKind::Unsupported);
        assert_eq!(classify("InvalidObjectState"), CodeKind::Cold);
        assert!(classify_answer(None).is_transient());
        assert!(!classify("AccessDenied").is_transient());
    }
}
