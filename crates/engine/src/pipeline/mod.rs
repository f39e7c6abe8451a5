//! The archiving engine: one snapshot end to end, and one target's run: list snapshots →
//! journal → adopt an existing archive, or request a download → wait for the URL → stream into
//! the store → HEAD → manifest → archived. Every side effect is preceded by a journal record of
//! the intent and followed by one of the outcome. Retries within a run live here; one failing
//! snapshot or target never stops the others.
//!
//! One file per step: `run.rs` (a run, a target's run, LOST detection), `attempt.rs` (the
//! attempts of one snapshot), `kinds.rs` (which kind of cluster, Flex or dedicated, each
//! target is: the one place that asks), `job.rs` (the download job), `upload.rs` (start, resume, abort
//! the multipart upload), `finish.rs` (HEAD, validation, manifest, adoption), `orphans.rs`
//! (start-up cleanup), `facts.rs` (what the journal says of each target at start, for the
//! metrics); `transfer.rs` pumps bytes, `validate.rs` checks them, `verify.rs` and
//! `rebuild.rs` serve the maintenance commands.
//!
//! Cancel-safe points (in the manner of garage's `Worker`): a drain stops the run between
//! snapshots and ends the waits (for Atlas's URL, for a transfer slot) at once, because nothing
//! is in flight there and the journalled job is reused by the next run; an abort also stops a
//! transfer between parts, keeping its journalled parts for a resume.
//! Must not: parse CLI flags or schedule anything.

mod attempt;
pub(crate) mod digest;
pub mod facts;
mod finish;
mod job;
pub mod kinds;
pub(crate) mod manifest;
mod orphans;
mod outcome;
pub mod plan;
mod ranged;
pub mod rebuild;
mod run;
mod sharded;
pub(crate) mod transfer;
mod upload;
pub mod validate;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::atlas::{AtlasClient, AtlasError};
use crate::config::{Config, PartSize};
use crate::journal::{Journal, JournalError, SnapshotKey, SnapshotRecord};
use crate::reason::Reason;
use crate::store::{ObjectStore, StoreError};
use crate::telemetry::Metrics;
use crate::watchdog::Watchdog;
pub use outcome::{SnapshotOutcome, TargetReport};
use transfer::{DownloadSettings, TransferError};

/// Content type of archives (Atlas serves `.tar.gz`).
const ARCHIVE_CONTENT_TYPE: &str = "application/gzip";
/// Attempts per snapshot within one run for failures that a retry may cure (a dropped
/// connection, an expired URL, a store hiccup). Later runs try again too.
const ATTEMPTS_PER_RUN: u32 = 3;

/// Anything that can fail one snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Atlas.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    /// The transfer.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The store outside the transfer (HEAD, manifest).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal. Fatal for the run: without it we cannot promise exactly-once.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Atlas answered the download request with 404: the snapshot is gone. Only this answer
    /// means LOST; a 404 elsewhere (a restore job garbage-collected while polled) does not.
    #[error("Atlas no longer holds this snapshot and it was never archived: {0}")]
    SnapshotGone(#[source] AtlasError),
    /// Atlas answered something its contract rules out (a job for another snapshot, a job
    /// without a valid id, a 409 with no job listed).
    #[error("Atlas broke its API contract: {0}")]
    AtlasContract(String),
    /// Atlas refused the download job because another download holds the cluster's slot
    /// (CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY and kin): not a failure of this snapshot; it
    /// waits for a later run, and the run asks for no more downloads of this cluster.
    #[error(
        "another download holds this cluster's download slot at Atlas; a later run asks again: {0}"
    )]
    DownloadSlotTaken(#[source] AtlasError),
    /// The store answered something no S3 store should (an object missing right after its
    /// upload completed).
    #[error("the store broke the S3 contract: {0}")]
    StoreContract(String),
    /// Two snapshots map to one object key.
    #[error(
        "{manifest_key} describes snapshot {other}, not this one; two snapshots map to one key (check storage.key_template)"
    )]
    KeyCollision {
        /// The manifest found at this snapshot's key.
        manifest_key: String,
        /// The snapshot it describes (`project/cluster/snapshot`).
        other: String,
    },
    /// The snapshot's work made no progress for `schedule.stall_timeout` and was cancelled by
    /// the run watchdog; its upload stays journalled for the next run.
    #[error(
        "no progress for {}s (schedule.stall_timeout): cancelled; the next run resumes or starts over",
        idle.as_secs()
    )]
    Stalled {
        /// How long it had been idle.
        idle: Duration,
    },
    /// A bug of ours: an invariant did not hold.
    #[error("internal error (please report it): {0}")]
    Internal(String),
}

impl ArchiveError {
    /// Short reason for the journal and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Atlas(e) => e.reason(),
            Self::Transfer(e) => e.reason(),
            Self::Store(e) => e.reason(),
            Self::Journal(_) => Reason::Journal,
            Self::SnapshotGone(_) => Reason::SnapshotLost,
            Self::DownloadSlotTaken(e) => e.reason(),
            Self::AtlasContract(_) => Reason::AtlasContract,
            Self::StoreContract(_) => Reason::StoreContract,
            Self::KeyCollision { .. } => Reason::KeyCollision,
            Self::Stalled { .. } => Reason::Stalled,
            Self::Internal(_) => Reason::Internal,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Transfer(e) => e.is_retryable(),
            Self::Atlas(e) => e.is_transient(),
            // A `SlowDown` on the HEAD or the manifest PUT is retried like one on a part.
            Self::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Settings the pipeline needs, taken from the config.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// `storage.prefix`.
    pub prefix: String,
    /// `storage.key_template`.
    pub key_template: String,
    /// `storage.part_size`.
    pub part_size: PartSize,
    /// `storage.parts_in_flight`.
    pub parts_in_flight: usize,
    /// Transfers at once across targets.
    pub max_concurrent_transfers: usize,
    /// Download stall timeout.
    pub download: DownloadSettings,
    /// `storage.validate_archives`: check that each snapshot is a whole `.tar.gz`.
    pub validate_archives: bool,
    /// `schedule.stall_timeout`: the run watchdog's limit.
    pub stall_timeout: Duration,
    /// Each target's cluster options (`kind`, `snapshot_types`).
    pub clusters: Vec<(crate::target::Target, crate::config::ClusterOptions)>,
}

impl PipelineSettings {
    /// From a validated config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            prefix: config.storage.prefix.clone(),
            key_template: config.storage.key_template.clone(),
            part_size: config.storage.part_size,
            parts_in_flight: config.storage.parts_in_flight,
            max_concurrent_transfers: config.storage.max_concurrent_transfers,
            download: DownloadSettings {
                read_timeout: config.atlas.download_read_timeout,
                connections: config.atlas.download_connections,
            },
            validate_archives: config.storage.validate_archives,
            stall_timeout: config.schedule.stall_timeout,
            clusters: config.clusters.clone(),
        }
    }
}

/// How the process is told to stop: one tree of tokens, so that a stronger stop implies the
/// weaker ones. Cancelling `abort` cancels `drain` and `stopping`; cancelling `drain` cancels
/// `stopping`. The caller owns the signals and cancels the right level.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// The root: abort transfers in flight between parts (their journalled parts stay for a
    /// resume).
    pub abort: CancellationToken,
    /// Start no new snapshot and end every wait (for Atlas's URL, a transfer slot, a retry);
    /// transfers in flight finish.
    pub drain: CancellationToken,
    /// Start no new run (the daemon's scheduler and its background loops).
    pub stopping: CancellationToken,
}

impl Default for Shutdown {
    fn default() -> Self {
        let abort = CancellationToken::new();
        let drain = abort.child_token();
        let stopping = drain.child_token();
        Self {
            abort,
            drain,
            stopping,
        }
    }
}

impl Shutdown {
    /// Everything at once (for `once`: a signal stops everything cleanly).
    pub fn now(&self) {
        self.abort.cancel();
    }
}

/// The archiving engine: Atlas client, store and journal, wired together.
#[derive(Clone)]
pub struct Archiver {
    atlas: AtlasClient,
    store: ObjectStore,
    journal: Journal,
    settings: Arc<PipelineSettings>,
    download: transfer::Downloader,
    shutdown: Shutdown,
    metrics: Metrics,
    /// Bounds snapshot transfers across all targets, so one long archive cannot starve the
    /// others and memory stays bounded.
    transfers: Arc<Semaphore>,
    /// Cancels a snapshot's work that makes no progress (`schedule.stall_timeout`).
    watchdog: Watchdog,
    /// The transfers in flight, for a progress display.
    progress: crate::progress::Board,
    /// Targets a discovery found after the start, with their options (`kinds.rs`).
    discovered: Arc<
        std::sync::RwLock<
            std::collections::HashMap<crate::target::Target, crate::config::ClusterOptions>,
        >,
    >,
    /// The kind of each target's cluster, resolved at the start of its run (`kinds.rs`).
    kinds: Arc<
        std::sync::Mutex<
            std::collections::HashMap<crate::target::Target, crate::target::ClusterKind>,
        >,
    >,
}

impl Archiver {
    /// Wires the parts.
    pub fn new(
        atlas: AtlasClient,
        store: ObjectStore,
        journal: Journal,
        settings: PipelineSettings,
        shutdown: Shutdown,
        metrics: Metrics,
    ) -> Result<Self, ArchiveError> {
        let download = transfer::download_client(settings.download)?;
        let transfers = Arc::new(Semaphore::new(settings.max_concurrent_transfers.max(1)));
        Ok(Self {
            atlas,
            store,
            journal,
            settings: Arc::new(settings),
            download,
            shutdown,
            metrics,
            transfers,
            watchdog: Watchdog::default(),
            progress: crate::progress::Board::default(),
            discovered: Arc::default(),
            kinds: Arc::default(),
        })
    }

    /// The store it writes to (for `prune` after a run).
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// Its journal (for `prune` after a run).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The run watchdog, for `/healthz`: which snapshot's work has been idle longest.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// The transfers in flight and their bytes, for a progress display.
    pub fn progress(&self) -> &crate::progress::Board {
        &self.progress
    }

    /// Runs a wait until it ends or shutdown begins (drain or abort), whichever comes first.
    async fn until_shutdown<T>(
        &self,
        wait: impl std::future::Future<Output = T>,
    ) -> Result<T, ArchiveError> {
        // `drain` is cancelled by an abort too (one tree).
        tokio::select! {
            out = wait => Ok(out),
            () = self.shutdown.drain.cancelled() => Err(TransferError::Cancelled.into()),
        }
    }

    /// The journal's row of a snapshot this run already discovered.
    async fn row(&self, key: &SnapshotKey) -> Result<SnapshotRecord, ArchiveError> {
        self.journal.get(key).await?.ok_or_else(|| {
            ArchiveError::Internal(format!(
                "the journal lost the row of snapshot {}",
                key.snapshot_id
            ))
        })
    }
}

/// `^[a-f0-9]{24}$`: an Atlas object id (the project id's rule, which config already checks).
fn is_object_id(id: &str) -> bool {
    crate::target::validate_project_id(id).is_ok()
}
