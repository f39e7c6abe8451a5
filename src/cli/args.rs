//! Raw command-line flags (clap). Validation happens in the handlers, against the config.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Archives MongoDB Atlas Flex backup snapshots into S3-compatible storage, exactly once and verified.
#[derive(Debug, Parser)]
#[command(name = "atlas-archiver", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Human, global = true)]
    pub log_format: LogFormatArg,
    /// Log level for atlas-archiver's own messages: error, warn, info, debug [default: info; warn for demo]. It wins over RUST_LOG, which wins over the default.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable.
    Human,
    /// JSON lines.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive every completed snapshot not yet archived, then exit (0: all archived, 1: some failed, 2: bad config).
    Once {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Only this target (PROJECT_ID/CLUSTER, as in the config); repeatable.
        #[arg(long = "target", value_name = "PROJECT_ID/CLUSTER")]
        targets: Vec<String>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Then apply the retention policy to each target whose snapshots all archived and verified (as `prune` does).
        #[arg(long)]
        prune: bool,
        /// Print what a run would do with each listed snapshot (archive, resume, already archived, pruned, not completed), and with --prune what the policy would remove now; download and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run as a service: archive on the configured schedule until SIGTERM (systemd Type=notify, /healthz, /readyz, /metrics).
    Run {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Load and validate the config, check the journal path, and print the effective config (secrets as ***).
    CheckConfig {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Also try it: authenticate to Atlas and list each target's snapshots; probe each bucket action the config needs (an object and a multipart upload under the prefix, removed again); print a table of checks (exit 0 only when every needed check passes, 1 otherwise).
        #[arg(long)]
        online: bool,
    },
    /// Show what the journal knows: per target, each snapshot's state, size, SHA-256, key and last error.
    Status {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Re-read archived objects, recompute SHA-256 and compare with manifests and the journal (exit 1 on any problem).
    Verify {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Only this target (PROJECT_ID/CLUSTER); repeatable.
        #[arg(long = "target", value_name = "PROJECT_ID/CLUSTER")]
        targets: Vec<String>,
        /// Also report objects under the prefix that the journal does not know, and manifests without archives.
        #[arg(long)]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print what the config resolves to now: configured targets and the clusters each [[discover]] takes (with why) or skips (with why not); exit 1 if a listing failed.
    Targets {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the archived snapshots, newest first, from the bucket's manifests alone (no journal or Atlas account needed).
    List {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml]; only [storage] is needed.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Only this target (PROJECT_ID/CLUSTER); repeatable.
        #[arg(long = "target", value_name = "PROJECT_ID/CLUSTER")]
        targets: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Restore one archived snapshot from the bucket, verified against its manifest: unpacked into a new directory (for `mongod --dbpath`) or as the .tar.gz.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["snapshot", "latest", "before"])))]
    #[command(group(clap::ArgGroup::new("destination").required(true).args(["to", "archive"])))]
    Restore {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml]; only [storage] is needed.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The target whose snapshot to restore (PROJECT_ID/CLUSTER; it need not be in the config).
        #[arg(long, value_name = "PROJECT_ID/CLUSTER")]
        target: String,
        /// This snapshot id (as `list` shows it).
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
        /// The newest archived snapshot.
        #[arg(long)]
        latest: bool,
        /// The newest snapshot taken before this time (RFC 3339, e.g. 2026-11-20T06:00:00Z, or a date: before that day begins, UTC).
        #[arg(long, value_name = "TIME")]
        before: Option<String>,
        /// Unpack into this directory (created; it must not exist or must be empty); a sharded cluster's snapshot into DIR/<replica set>/.
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Write the verified .tar.gz to this file (it must not exist); a sharded cluster's snapshot as FILE/<replica set>.tar.gz, FILE then being a new or empty directory.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// Ranged GETs in flight (8 MiB each: memory is about 8 MiB × (N + 4)).
        #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
        /// An archive in a cold storage class (GLACIER, DEEP_ARCHIVE): ask the store to thaw it (RestoreObject, Standard tier) and wait until it is readable.
        #[arg(long)]
        thaw: bool,
        /// With --thaw: days the thawed copy stays readable.
        #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
        thaw_days: u32,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention policy ([retention]) to the archives in the bucket: print every archive with keep/remove and the rules that keep it, and delete what it removes.
    Prune {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Only this target (PROJECT_ID/CLUSTER, as in the config); repeatable.
        #[arg(long = "target", value_name = "PROJECT_ID/CLUSTER")]
        targets: Vec<String>,
        /// Show what would be removed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Journal maintenance.
    Journal {
        /// What to do.
        #[command(subcommand)]
        action: JournalAction,
    },
    /// Try it with no Atlas account and no cloud: archive simulated snapshots into a local S3 server.
    Demo {
        /// Where to put the demo's bucket, journal and config [default: a new temporary directory].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Ask the running daemon whether it is healthy (its /healthz), for a container HEALTHCHECK: exit 0 when it is, 1 when not or unreachable.
    Healthcheck {
        /// Config file whose [server] listen address to ask [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Ask this URL instead (e.g. http://127.0.0.1:9187/healthz).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Send one test message to each [[notify]] channel now, and say what each answered: exit 0 when all took it.
    NotifyTest {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script on stdout (e.g. `atlas-archiver completions bash > /etc/bash_completion.d/atlas-archiver`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout (e.g. `atlas-archiver man | man -l -`), or write one page per subcommand with --dir.
    Man {
        /// Write atlas-archiver.1 and atlas-archiver-SUBCOMMAND.1 for every subcommand into this directory (e.g. /usr/local/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Serve the built-in Atlas simulator until stopped (to try storage settings without Atlas).
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: SocketAddr,
        /// Serve one cluster whose snapshots have this size (e.g. "8GiB"), generated on the fly, instead of the demo's.
        #[arg(long, value_name = "SIZE")]
        snapshot_size: Option<String>,
        /// With --snapshot-size: how many snapshots per cluster.
        #[arg(long, default_value_t = 1)]
        snapshots: usize,
        /// With --snapshot-size: how many Flex clusters (bench-flex-0001, ...), to try a whole organisation's worth of targets.
        #[arg(long, default_value_t = 1)]
        clusters: usize,
        /// Honour Range requests on snapshot URLs (unknown for real Atlas; off by default).
        #[arg(long)]
        range: bool,
        /// Snapshot URLs point at this HOST:PORT instead (a proxy in front of the downloads, e.g. bench/latency_proxy.py).
        #[arg(long, value_name = "HOST:PORT")]
        download_via: Option<String>,
    },
}

/// `journal` subcommands.
#[derive(Debug, Subcommand)]
pub enum JournalAction {
    /// Start a new journal from the manifests in the bucket (after a lost or damaged journal); the old file is moved aside.
    Rebuild {
        /// Config file [default: $ATLAS_ARCHIVER_CONFIG, then /etc/atlas-archiver/config.toml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}
