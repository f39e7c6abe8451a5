//! Why a restore failed: one variant per cause, each naming the key, entry or path.
//! Must not: do I/O.

use std::path::PathBuf;

use super::catalog::CatalogError;
use crate::pipeline::validate::ContentError;
use crate::store::StoreError;

/// Why a restore failed. Every variant names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The archive is in a cold storage class and no thaw was asked for (or it is not done).
    #[error("{key} is in storage class {class} and {state}: {hint}")]
    Cold {
        /// Object key.
        key: String,
        /// Its storage class.
        class: String,
        /// "must be thawed before it can be read", "is being thawed".
        state: &'static str,
        /// What to do.
        hint: String,
    },
    /// The archive is encrypted with an SSE-C key the configuration does not hold.
    #[error(
        "{key} is encrypted with the SSE-C key whose MD5 is {wanted}; {found}: set storage.sse_customer_key_file to that key"
    )]
    CustomerKey {
        /// Object key.
        key: String,
        /// The manifest's key MD5.
        wanted: String,
        /// What the configuration holds.
        found: String,
    },
    /// The bucket.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No archived snapshot matches.
    #[error("{0}")]
    NotFound(String),
    /// The object was overwritten while it was being read.
    #[error(
        "{key}: the object changed in the bucket while it was being read (its ETag no longer matches); nothing was restored, run the restore again"
    )]
    Changed {
        /// Object key.
        key: String,
    },
    /// The bytes read are not the ones the manifest describes.
    #[error(
        "{key}: the SHA-256 of the {size} bytes read is {found}; the manifest says {expected}: the object was changed or damaged in the bucket, nothing was restored"
    )]
    DigestMismatch {
        /// Object key.
        key: String,
        /// Bytes read.
        size: u64,
        /// The manifest's.
        expected: String,
        /// What was read.
        found: String,
    },
    /// The object's size differs from its manifest's.
    #[error("{key}: read {found} bytes; the manifest says {expected}: nothing was restored")]
    SizeMismatch {
        /// Object key.
        key: String,
        /// The manifest's.
        expected: u64,
        /// Bytes read.
        found: u64,
    },
    /// The archive's structure differs from what was validated when it was archived.
    #[error("{key}: {detail} (the manifest recorded otherwise): nothing was restored")]
    ContentMismatch {
        /// Object key.
        key: String,
        /// What differed.
        detail: String,
    },
    /// The stream is not a valid `.tar.gz`.
    #[error("the archive is not a valid .tar.gz: {0}")]
    Content(#[from] ContentError),
    /// The gzip or tar stream broke while unpacking.
    #[error("the archive is damaged: {detail}")]
    Damaged {
        /// What the decoder said.
        detail: String,
    },
    /// An entry that could write outside the directory, or that a data directory never holds.
    #[error("refused entry `{entry}`: {why}; nothing was restored")]
    Refused {
        /// The entry's name in the archive.
        entry: String,
        /// Why.
        why: String,
    },
    /// More inflated bytes than the manifest recorded (a decompression bomb?).
    #[error(
        "the archive inflates to more than {limit} bytes, more than its manifest recorded; stopped (nothing was restored)"
    )]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// Writing an entry failed (a full disk, permissions).
    #[error("cannot write `{entry}`: {message}")]
    Unpack {
        /// The entry's name.
        entry: String,
        /// The error.
        message: String,
    },
    /// The destination is not usable.
    #[error("{path}: {message}")]
    Destination {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file-system error at the destination.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        message: String,
    },
}

impl RestoreError {
    /// Whether the command line was at fault (exit 2), rather than the bucket or the archive.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Destination { .. } | Self::CustomerKey { .. })
    }
}
