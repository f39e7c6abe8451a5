//! atlas-archiver keeps MongoDB Atlas backup snapshots safe for the long term. This crate is
//! the binary's side of the workspace: the command line, the daemon and its HTTP server. The
//! work itself is the engine's (`atlas-archiver-engine`); the Atlas simulator and the embedded
//! S3 server of `demo` and the tests are `atlas-archiver-simulator`.
//!
//! # Layout
//!
//! `docs/architecture.md` draws the crates and modules; `tests/architecture.rs` enforces them.
//!
//! - [`cli`]: the command line; the only user of clap.
//! - `daemon`: `run`, the long-lived service: the scheduling loop, systemd notifications and
//!   the shutdown sequence; the only module that knows the scheduler triggers the pipeline.
//! - `server`: the daemon's HTTP endpoints (health, readiness, metrics, run trigger).
//! - `alerts`: telling a person: the `[[notify]]` channels and the `[heartbeat]` of `run`.
//!
//! Dependencies point one way: `cli → daemon → {server, alerts}`, and all → the engine; only `cli`
//! (for `demo` and `simulate`) reaches the simulator. The engine's and the simulator's modules
//! are re-exported here for the integration tests and the examples.

pub(crate) mod alerts;
pub mod cli;
pub(crate) mod daemon;
pub(crate) mod server;

pub use atlas_archiver_engine::{atlas, config, pipeline, store, target};
pub use atlas_archiver_simulator as simulator;
pub use atlas_archiver_simulator::embedded_store;
