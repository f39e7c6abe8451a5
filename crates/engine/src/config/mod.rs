//! Configuration: reads the TOML file and `ATLAS_ARCHIVER__…` environment overrides ([`raw`]),
//! then validates everything up front into a typed [`Config`]. Secrets are read here (values,
//! `*_file` keys, systemd credentials) and kept as [`SecretString`] so they never print.
//! Must not: talk to Atlas, S3 or the journal.
//! Files: `raw.rs` (the file's keys), `validator.rs` (validation, section by section),
//! `storage.rs` (the storage section), `protection.rs` (its Object Lock, storage class and
//! encryption), `render.rs` (`check-config`'s output), `units.rs`.

mod atlas;
mod clusters;
mod discover;
mod notify;
mod protection;
mod raw;
mod render;
mod retention;
mod storage;
pub mod units;
mod validator;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use crate::schedule::Schedule;
pub use crate::target::Target;
pub use discover::{DiscoverRule, DiscoverScope, RawDiscover};
pub use notify::{
    CREDENTIAL_WARNING, Channel, ChannelKind, EmailSettings, EventKind, NotifyConfig, SecretUrl,
};
pub use protection::{CustomerKey, Encryption, LockMode, ObjectLock, Protection};
use raw::RawConfig;
use validator::Validator;

/// Where the config lives when neither `--config` nor `$ATLAS_ARCHIVER_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/atlas-archiver/config.toml";
/// Environment variable naming the config file.
pub const CONFIG_PATH_ENV: &str = "ATLAS_ARCHIVER_CONFIG";
/// Prefix of environment overrides: `ATLAS_ARCHIVER__STORAGE__BUCKET` sets `storage.bucket`.
pub const ENV_PREFIX: &str = "ATLAS_ARCHIVER";
const DEFAULT_JOURNAL_PATH: &str = "/var/lib/atlas-archiver/journal.sqlite";
const DEFAULT_KEY_TEMPLATE: &str = "{prefix}{project_id}/{cluster}/{date}/{snapshot_id}.tar.gz";

/// S3 multipart limits (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// A configuration problem, always naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable, or is not valid TOML for our schema.
    #[error("config file {file}: {message}")]
    Load {
        /// Path of the config file.
        file: String,
        /// What went wrong, from the parser.
        message: String,
    },
    /// A key has a value we cannot use.
    #[error("config file {file}: `{key}`: {message}")]
    Invalid {
        /// Path of the config file.
        file: String,
        /// Dotted key, e.g. `storage.part_size`.
        key: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    /// Atlas API settings.
    pub atlas: AtlasConfig,
    /// Bucket settings.
    pub storage: StorageConfig,
    /// Journal settings.
    pub journal: JournalConfig,
    /// The (project, cluster) pairs to archive, in file order.
    pub targets: Vec<Target>,
    /// How each target's cluster is reached (same order as `targets`).
    pub clusters: Vec<(Target, ClusterOptions)>,
    /// `[[discover]]`: selectors of clusters found by listing Atlas (`crate::discover`).
    pub discover: Vec<DiscoverRule>,
    /// When `run` archives.
    pub schedule: ScheduleConfig,
    /// The HTTP endpoints of `run`.
    pub server: ServerConfig,
    /// `[retention]` and the targets' own: which archives `prune` keeps.
    pub retention: RetentionConfig,
    /// `[heartbeat]` and `[[notify]]` (empty unless secrets are loaded).
    pub notify: NotifyConfig,
}

/// Which kind a target's cluster is, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindChoice {
    /// Ask Atlas once (the Flex API refuses a dedicated cluster) and remember it.
    #[default]
    Auto,
    /// As configured.
    Known(crate::target::ClusterKind),
}

/// A target's cluster options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Flex, dedicated or ask.
    pub kind: KindChoice,
    /// Dedicated clusters: the `snapshotType`s archived (lower-case).
    pub snapshot_types: Vec<String>,
    /// Only snapshots taken within this long.
    pub since: Option<Duration>,
    /// At most this many downloads per run, newest first.
    pub max_per_run: Option<u32>,
}

impl ClusterOptions {
    /// The options of `target` in `clusters` (the defaults for a target not listed).
    pub fn of(clusters: &[(Target, Self)], target: &Target) -> Self {
        clusters
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            kind: KindChoice::Auto,
            snapshot_types: vec!["scheduled".into(), "ondemand".into()],
            since: None,
            max_per_run: None,
        }
    }
}

/// Retention, validated: the default policy (none: keep everything) and the targets' own.
#[derive(Debug, Clone, Default)]
pub struct RetentionConfig {
    /// `[retention]`.
    pub default: Option<crate::retention::Policy>,
    /// Targets with a `retention = { … }` of their own (merged over the default).
    pub overrides: Vec<(Target, crate::retention::Policy)>,
}

impl Config {
    /// The retention policy of one target; `None` keeps everything.
    pub fn retention_for(&self, target: &Target) -> Option<&crate::retention::Policy> {
        self.retention
            .overrides
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, p)| p)
            .or(self.retention.default.as_ref())
    }

    /// The cluster options of one target.
    pub fn cluster_options(&self, target: &Target) -> ClusterOptions {
        ClusterOptions::of(&self.clusters, target)
    }

    /// The schedule of one target (its own, or the default).
    pub fn schedule_for(&self, target: &Target) -> &Schedule {
        self.schedule
            .overrides
            .iter()
            .find(|(t, _)| t == target)
            .map_or(&self.schedule.default, |(_, s)| s)
    }
}

/// `[schedule]`, validated.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// The default schedule.
    pub default: Schedule,
    /// Targets with their own.
    pub overrides: Vec<(Target, Schedule)>,
    /// Jitter window.
    pub jitter: Duration,
    /// Run at the very first start.
    pub run_on_first_start: bool,
    /// Grace period for transfers on shutdown.
    pub shutdown_grace: Duration,
    /// No progress for this long cancels a snapshot's work (the run watchdog).
    pub stall_timeout: Duration,
}

/// `[server]`, validated.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where to listen; `None` turns the listener off.
    pub listen: Option<std::net::SocketAddr>,
    /// Token for the run trigger.
    pub token: Option<SecretString>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How to authenticate to Atlas.
#[derive(Clone)]
pub enum AtlasCredentials {
    /// OAuth 2.0 client credentials of a service account (recommended by Atlas).
    ServiceAccount {
        /// `mdb_sa_id_…`
        client_id: String,
        /// The secret.
        client_secret: SecretString,
    },
    /// Legacy programmatic API key, HTTP Digest.
    ApiKey {
        /// Public key (the Digest user name).
        public_key: String,
        /// Private key (the Digest password).
        private_key: SecretString,
    },
    /// Secrets were not loaded (commands that never call Atlas, such as `status`).
    NotLoaded,
}

impl fmt::Debug for AtlasCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceAccount { client_id, .. } => f
                .debug_struct("ServiceAccount")
                .field("client_id", client_id)
                .field("client_secret", &"***")
                .finish(),
            Self::ApiKey { public_key, .. } => f
                .debug_struct("ApiKey")
                .field("public_key", public_key)
                .field("private_key", &"***")
                .finish(),
            Self::NotLoaded => f.write_str("NotLoaded"),
        }
    }
}

/// Retry policy for Atlas API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Cap on one delay (and on `Retry-After`).
    pub max_delay: Duration,
}

/// `[atlas]`, validated.
#[derive(Debug, Clone)]
pub struct AtlasConfig {
    /// API host, without a trailing path.
    pub base_url: Url,
    /// Credentials.
    pub credentials: AtlasCredentials,
    /// When the service account secret expires, when the operator said.
    pub secret_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Poll interval for restore jobs.
    pub poll_interval: Duration,
    /// Give up waiting for a download URL after this long.
    pub restore_timeout: Duration,
    /// Retries.
    pub retry: RetryConfig,
    /// Timeout of one API request.
    pub request_timeout: Duration,
    /// Stall timeout of the snapshot download.
    pub download_read_timeout: Duration,
    /// GETs of one snapshot URL at once (ranged, when the URL allows it).
    pub download_connections: usize,
}

/// When the AWS SDK computes request checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumCalculation {
    /// Leave the SDK (and `AWS_REQUEST_CHECKSUM_CALCULATION`) to decide: AWS S3's default.
    WhenSupported,
    /// Only when an operation requires one: the safe choice for S3-compatible stores.
    WhenRequired,
}

/// Which S3 checksum the store itself verifies on upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectChecksum {
    /// Full-object CRC32C: each part and the whole object are checked by the store.
    Crc32c,
    /// None beyond SigV4's payload hash; atlas-archiver still checks SHA-256 and size itself.
    None,
}

/// How to choose the multipart part size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSize {
    /// From the download's `Content-Length` (see `store::plan_part_size`).
    Auto,
    /// Always this many bytes.
    Fixed(u64),
}

/// `[storage]`, validated.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Bucket.
    pub bucket: String,
    /// Custom endpoint (non-AWS), if any.
    pub endpoint: Option<Url>,
    /// Region, when the config or `AWS_REGION`/`AWS_DEFAULT_REGION` names one; otherwise the
    /// store takes the AWS profile's region, then `us-east-1` ([`crate::store::ObjectStore::connect`]).
    pub region: Option<String>,
    /// Key prefix.
    pub prefix: String,
    /// Path-style addressing.
    pub force_path_style: bool,
    /// Static credentials, if configured.
    pub static_credentials: Option<(String, SecretString)>,
    /// Part size policy.
    pub part_size: PartSize,
    /// Parts in flight per transfer.
    pub parts_in_flight: usize,
    /// Checksum calculation; `None` leaves the SDK default (which honours the AWS env variable).
    pub checksum_calculation: Option<ChecksumCalculation>,
    /// Store-verified checksum.
    pub object_checksum: ObjectChecksum,
    /// `checksum = "auto"` with a custom endpoint: archiving commands ask the store at start
    /// whether it verifies a full-object CRC32C, and use it when it does
    /// (`ObjectStore::probe_crc32c`).
    pub probe_checksum: bool,
    /// Object key template.
    pub key_template: String,
    /// Transfers at once across targets.
    pub max_concurrent_transfers: usize,
    /// `storage.request_timeout`: the longest wait for one S3 request's answer.
    pub request_timeout: Duration,
    /// `storage.validate_archives`.
    pub validate_archives: bool,
    /// Object Lock, storage class and encryption of what is written.
    pub protection: Protection,
}

/// `[journal]`, validated.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// SQLite file.
    pub path: PathBuf,
}

/// Whether `load` reads secret values (from the file, the environment, or `*_file` paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Read and require them (commands that talk to Atlas or S3).
    Load,
    /// Skip them (commands that only read the journal).
    Skip,
    /// Read the `[storage]` secrets only, and need no `[[target]]` (`list` and `restore` on a
    /// fresh machine: bucket credentials, no Atlas account).
    StorageOnly,
}

impl Secrets {
    fn atlas(self) -> bool {
        self == Self::Load
    }

    fn storage(self) -> bool {
        self != Self::Skip
    }
}

/// Resolves the config path: `--config`, then `$ATLAS_ARCHIVER_CONFIG`, then the default.
pub fn config_path(flag: Option<&Path>, env: &HashMap<String, String>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| env.get(CONFIG_PATH_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

impl Config {
    /// Loads and validates `path` with the given environment (normally `std::env::vars()`).
    pub fn load(
        path: &Path,
        env: &HashMap<String, String>,
        secrets: Secrets,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Load {
                file,
                message: "no such file (pass --config PATH or set ATLAS_ARCHIVER_CONFIG)".into(),
            });
        }
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(overrides)),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load {
                file: file.clone(),
                message: describe_parse_error(&e),
            })?;
        Validator {
            file,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            env,
            secrets,
        }
        .validate(raw, path)
    }
}

/// The `config` crate reports serde errors as "unknown field `x`, expected one of …"; make sure
/// the message also says where such keys may go.
fn describe_parse_error(error: &config::ConfigError) -> String {
    let text = error.to_string();
    if text.contains("unknown field") {
        format!("{text} (see config/atlas-archiver.example.toml for every valid key)")
    } else {
        text
    }
}

/// Exposes a secret for the few places that must send it (auth headers, SDK credentials).
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests;
