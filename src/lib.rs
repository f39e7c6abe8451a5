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
//! - [`keys`]: object key naming.
//! - [`retry`]: the backoff policy.
//! - [`simulator`]: a built-in Atlas simulator (for `demo`, `simulate` and tests).
//! - [`embedded_store`]: an S3 server on loopback over a local directory (for `demo`).
//! - [`telemetry`]: logging setup.
//! - [`cli`]: the command line; the only user of clap.
//!
//! Dependencies point one way: `cli → pipeline → {atlas, store, journal} → config`; the leaves
//! never import each other.

pub mod atlas;
pub mod cli;
pub mod config;
pub mod embedded_store;
pub mod journal;
pub mod keys;
pub mod pipeline;
pub mod retry;
pub mod simulator;
pub mod store;
pub mod telemetry;
