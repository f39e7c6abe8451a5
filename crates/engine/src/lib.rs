//! The engine of atlas-archiver: it lists each configured cluster's Atlas backup snapshots,
//! asks Atlas for a download, and streams each snapshot straight into S3-compatible storage,
//! recording every step in a local journal so that each snapshot is archived exactly once and
//! verified.
//!
//! # Layout
//!
//! `docs/architecture.md` draws the layers; `tests/architecture.rs` enforces them. This crate
//! knows nothing of the command line, the daemon's HTTP server, systemd or the simulator: the
//! binary crate (`atlas-archiver`, at the workspace root) drives it.
//!
//! - [`config`]: the TOML file and environment overrides, validated into typed settings; secrets.
//! - [`atlas`]: the Atlas Administration API client (auth, Flex backup endpoints, retries).
//! - [`store`]: the S3-compatible object store (multipart uploads, HEAD, small objects).
//! - [`journal`]: the SQLite journal of runs and snapshot states; the state machine.
//! - [`pipeline`]: one snapshot end to end, and one target's run; the only module that combines
//!   `atlas`, `store` and `journal`.
//! - [`restore`]: the way back: the catalog of the bucket's manifests (`list`) and a verified,
//!   safe restore of one archive (`restore`); it reads the bucket and never writes it.
//! - [`schedule`], [`target`]: cron in time zones; a target and its names' rules.
//! - [`telemetry`]: logging setup and the metrics registry.
//! - [`watchdog`]: the run watchdog (no progress for `schedule.stall_timeout` cancels the work).
//! - [`progress`]: the board of transfers in flight (bytes, total, rate) that a display reads.
//! - [`retention`]: the retention rules (restic's `forget` semantics), pure; [`prune`] applies
//!   them to a target's archives in the bucket (journal first, then archive, then manifest).
//! - `reason`, `retry`, `keys`, `fault`: the private foundation (failure reasons, the backoff
//!   policy, object keys, crash points for the reliability suite); they import nothing of the
//!   crate.
//!
//! Dependencies point one way: `restore → pipeline → {atlas, store, journal, telemetry} → config →
//! foundation`; the leaves never import each other.

pub mod atlas;
pub mod config;
pub mod discover;
pub(crate) mod fault;
pub mod journal;
pub mod keys;
pub mod pipeline;
pub mod progress;
pub mod prune;
pub(crate) mod reason;
pub mod restore;
pub mod retention;
pub(crate) mod retry;
pub mod schedule;
pub mod store;
pub mod target;
pub mod telemetry;
pub mod watchdog;
