//! atlas-archiver keeps MongoDB Atlas Flex backup snapshots safe for the long term: it lists
//! each configured cluster's snapshots, asks Atlas for a download, and streams each snapshot
//! straight into S3-compatible storage, recording every step in a local journal so that each
//! snapshot is archived exactly once and verified.
//!
//! # Layout
//!
//! `docs/architecture.md` draws the layers; `tests/architecture.rs` enforces them. Public here
//! are only the modules the binary's integration tests and benchmarks drive directly; the rest
//! is `pub(crate)`.
//!
//! - [`config`]: the TOML file and environment overrides, validated into typed settings; secrets.
//! - [`atlas`]: the Atlas Administration API client (auth, Flex backup endpoints, retries).
//! - [`store`]: the S3-compatible object store (multipart uploads, HEAD, small objects).
//! - `journal`: the SQLite journal of runs and snapshot states; the state machine.
//! - [`pipeline`]: one snapshot end to end, and one target's run; the only module that combines
//!   `atlas`, `store` and `journal`.
//! - `daemon`: `run`, the long-lived service: the scheduling loop, systemd notifications and
//!   the shutdown sequence; the only module that knows the scheduler triggers the pipeline.
//! - `server`: the daemon's HTTP endpoints (health, readiness, metrics, run trigger).
//! - `target`, `reason`, `retry`, `keys`, `schedule`, `fault`: the foundation (a target and its
//!   names' rules, failure reasons, the backoff policy, object keys, cron in time zones, crash
//!   points for the reliability suite); they import nothing of the crate.
//! - [`simulator`]: a built-in Atlas simulator (for `demo`, `simulate` and tests).
//! - [`embedded_store`]: an S3 server on loopback over a local directory (for `demo`).
//! - `telemetry`: logging setup and the metrics registry.
//! - [`cli`]: the command line; the only user of clap.
//!
//! Dependencies point one way: `cli → daemon → {server, pipeline, schedule}`,
//! `pipeline → {atlas, store, journal, telemetry} → config → foundation`; the leaves never import
//! each other.

pub mod atlas;
pub mod cli;
pub mod config;
pub(crate) mod daemon;
pub mod embedded_store;
pub(crate) mod fault;
pub(crate) mod journal;
pub(crate) mod keys;
pub mod pipeline;
pub(crate) mod reason;
pub(crate) mod retry;
pub(crate) mod schedule;
pub(crate) mod server;
pub mod simulator;
pub mod store;
pub(crate) mod target;
pub(crate) mod telemetry;
