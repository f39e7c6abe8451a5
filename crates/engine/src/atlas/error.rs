//! What can go wrong talking to Atlas ([`AtlasError`]), and what each error means for the
//! caller: transient or not, the snapshot gone, the cluster of the other kind, the download
//! slot taken. Decided by status and `errorCode`, never by a message's text.
//! Must not: make requests.

use std::time::Duration;

use crate::reason::Reason;

/// What can go wrong talking to Atlas. Messages say what to do where the user can act.
#[derive(Debug, thiserror::Error)]
pub enum AtlasError {
    /// Credentials rejected. Never retried beyond one token refresh.
    #[error(
        "Atlas rejected the credentials ({detail}): check atlas.client_id/client_secret or public_key/private_key, and that the key's IP access list allows this host"
    )]
    Unauthorized {
        /// What Atlas said.
        detail: String,
    },
    /// Atlas answered with an error envelope.
    #[error("Atlas {operation} failed: HTTP {status} {error_code}: {detail}{hint}")]
    Api {
        /// Which call.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// `errorCode` from the envelope.
        error_code: String,
        /// `detail` from the envelope.
        detail: String,
        /// What to do about it, if we know.
        hint: &'static str,
    },
    /// Network trouble that outlasted the retries.
    #[error("Atlas {operation} failed after {attempts} attempts: {message}")]
    Transport {
        /// Which call.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// A 2xx body we could not read.
    #[error("Atlas {operation} returned a body that is not the expected JSON: {message}")]
    Decode {
        /// Which call.
        operation: &'static str,
        /// Parser message.
        message: String,
    },
    /// The restore job ended in FAILED.
    #[error(
        "Atlas restore job {job_id} for snapshot {snapshot_id} FAILED; a later run requests a new download"
    )]
    RestoreFailed {
        /// Job id.
        job_id: String,
        /// Snapshot id.
        snapshot_id: String,
    },
    /// The restore job did not produce a URL in time.
    #[error(
        "Atlas restore job {job_id} produced no download URL within {waited:?} (last status {status}); raise atlas.restore_timeout if Atlas is slow"
    )]
    RestoreTimeout {
        /// Job id.
        job_id: String,
        /// How long we waited.
        waited: Duration,
        /// Last status seen.
        status: String,
    },
}

impl AtlasError {
    /// The errorCode, or a short reason, for journal rows and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unauthorized { .. } => Reason::Unauthorized,
            Self::Api { error_code, .. } => Reason::AtlasCode(error_code.clone()),
            Self::Transport { .. } => Reason::AtlasUnreachable,
            Self::Decode { .. } => Reason::AtlasBadResponse,
            Self::RestoreFailed { .. } => Reason::RestoreJobFailed,
            Self::RestoreTimeout { .. } => Reason::RestoreJobTimeout,
        }
    }

    /// Whether a later attempt may succeed: network trouble, Atlas's own errors, rate limits.
    /// (A 5xx on the download POST lands here too; the next attempt's POST is answered 409 if
    /// the first one did create a job, and the pipeline then reuses that job.)
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether Atlas refuses a download job because another one holds the cluster's (or the
    /// project's) download slot: a person's download in the Atlas UI, or one of ours from an
    /// earlier run (the error codes of CONTRACT §6, not their text). Not a failure of the
    /// snapshot: a later run asks again.
    pub fn is_download_slot_taken(&self) -> bool {
        matches!(self, Self::Api { error_code, .. } if matches!(
            error_code.as_str(),
            "CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY"
                | "TOO_MANY_SNAPSHOT_DOWNLOADS"
                | "ATLAS_CLUSTER_RESTORE_IN_PROGRESS"
                | "CANNOT_DOWNLOAD_JOB_IN_PROGRESS"
        ))
    }

    /// Whether this says the snapshot (or cluster) no longer exists.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }

    /// The kind of cluster Atlas says this one is, when the error is Atlas refusing it on the
    /// other kind's API (CONTRACT §6.2: the error codes, not their text).
    pub fn actual_kind(&self) -> Option<crate::target::ClusterKind> {
        use crate::target::ClusterKind;
        match self {
            Self::Api { error_code, .. } => match error_code.as_str() {
                "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API" => Some(ClusterKind::Dedicated),
                "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API" => Some(ClusterKind::Flex),
                _ => None,
            },
            _ => None,
        }
    }
}
