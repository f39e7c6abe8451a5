//! atlas-archiver keeps MongoDB Atlas Flex backup snapshots safe for the long term: it lists
//! each configured cluster's snapshots, asks Atlas for a download, and streams each snapshot
//! straight into S3-compatible storage, recording every step in a local journal so that each
//! snapshot is archived exactly once and verified.
//!
//! # Layout
//!
//! - [`config`]: the TOML file and environment overrides, validated into typed settings; secrets.
//! - [`atlas`]: the Atlas Administration API client (auth, Flex backup endpoints, retries).
//! - [`store`]: the S3-compatible object store (multipart uploads, HEAD, small objects).
//! - [`journal`]: the SQLite journal of runs and snapshot states; the state machine.
//! - [`pipeline`]: one snapshot end to end, and one target's run; the only module that combines
//!   `atlas`, `store` and `journal`.
//! - [`daemon`]: `run`, the long-lived service: the scheduling loop, systemd notifications and
//!   the shutdown sequence; the only module that knows the scheduler triggers the pipeline.
//! - [`server`]: the daemon's HTTP endpoints (health, readiness, metrics, run trigger).
//! - [`keys`]: object key naming.
//! - [`retry`]: the backoff policy.
//! - [`schedule`]: cron expressions in time zones, jitter and the catch-up rule (pure).
//! - [`simulator`]: a built-in Atlas simulator (for `demo`, `simulate` and tests).
//! - [`embedded_store`]: an S3 server on loopback over a local directory (for `demo`).
//! - [`fault`]: crash points for the reliability suite (only with the `fault-injection` feature).
//! - [`telemetry`]: logging setup and the metrics registry.
//! - [`cli`]: the command line; the only user of clap.
//!
//! Dependencies point one way: `cli → daemon → {server, pipeline, schedule}`,
//! `pipeline → {atlas, store, journal, telemetry} → config`; the leaves never import each other.

pub mod atlas;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod embedded_store;
pub mod fault;
pub mod journal;
pub mod keys;
pub mod pipeline;
pub mod reason;
pub mod retry;
pub mod schedule;
pub mod server;
pub mod simulator;
pub mod store;
pub mod target;
pub mod telemetry;
