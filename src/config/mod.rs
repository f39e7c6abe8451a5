//! Configuration: reads the TOML file and `ATLAS_ARCHIVER__…` environment overrides ([`raw`]),
//! then validates everything up front into a typed [`Config`]. Secrets are read here (values,
//! `*_file` keys, systemd credentials) and kept as [`SecretString`] so they never print.
//! Must not: talk to Atlas, S3 or the journal.
//! Over 500 lines: validation of every key with its own error message; to be split by section when the retention and notification sections arrive.

mod raw;
mod render;
pub mod units;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use crate::schedule::Schedule;
pub use crate::target::Target;
use crate::target::{validate_cluster_name, validate_project_id};
use raw::{RawAtlas, RawConfig, RawSchedule, RawServer, RawStorage};
use units::{parse_byte_size, parse_duration};

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
    /// When `run` archives.
    pub schedule: ScheduleConfig,
    /// The HTTP endpoints of `run`.
    pub server: ServerConfig,
}

impl Config {
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
    /// Region.
    pub region: String,
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
    /// Object key template.
    pub key_template: String,
    /// Transfers at once across targets.
    pub max_concurrent_transfers: usize,
    /// `storage.request_timeout`: the longest wait for one S3 request's answer.
    pub request_timeout: Duration,
    /// `storage.validate_archives`.
    pub validate_archives: bool,
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

struct Validator<'a> {
    file: String,
    dir: PathBuf,
    env: &'a HashMap<String, String>,
    secrets: Secrets,
}

impl Validator<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        key: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|m| self.invalid(key, m)),
        }
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// Reads a secret from `value`, else `file_value` (a path), else the named fallback variable.
    fn secret(
        &self,
        key: &str,
        value: Option<&String>,
        file_value: Option<&String>,
        fallback_env: Option<&str>,
    ) -> Result<Option<SecretString>, ConfigError> {
        if value.is_some() && file_value.is_some() {
            return Err(self.invalid(key, format!("set either `{key}` or `{key}_file`, not both")));
        }
        if let Some(v) = value {
            return Ok(Some(SecretString::from(v.clone())));
        }
        if let Some(path) = file_value {
            let resolved = self.resolve_credential_path(path);
            let text = std::fs::read_to_string(&resolved).map_err(|e| {
                self.invalid(
                    &format!("{key}_file"),
                    format!("cannot read secret file {}: {e}", resolved.display()),
                )
            })?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(self.invalid(
                    &format!("{key}_file"),
                    format!("secret file {} is empty", resolved.display()),
                ));
            }
            return Ok(Some(SecretString::from(trimmed.to_owned())));
        }
        Ok(fallback_env
            .and_then(|name| self.env_var(name))
            .map(SecretString::from))
    }

    /// `*_file` paths: absolute as given; relative ones live in systemd's `$CREDENTIALS_DIRECTORY`
    /// when it is set (LoadCredential=), else beside the config file.
    fn resolve_credential_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.env_var("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(p),
            None => self.dir.join(p),
        }
    }

    fn validate(self, raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
        let atlas = self.atlas(&raw.atlas)?;
        let storage = self.storage(raw.storage.as_ref())?;
        let journal_path = raw.journal.path.as_deref().unwrap_or(DEFAULT_JOURNAL_PATH);
        if journal_path.trim().is_empty() {
            return Err(self.invalid("journal.path", "must not be empty"));
        }
        let journal = JournalConfig {
            path: self.dir.join(journal_path),
        };
        let mut targets: Vec<Target> = Vec::new();
        for (i, t) in raw.targets.iter().enumerate() {
            let key = format!("target[{i}]");
            let project_id = t.project_id.clone().ok_or_else(|| {
                self.invalid(
                    &format!("{key}.project_id"),
                    "missing; every [[target]] needs project_id and cluster",
                )
            })?;
            validate_project_id(&project_id)
                .map_err(|m| self.invalid(&format!("{key}.project_id"), m))?;
            let cluster = t.cluster.clone().ok_or_else(|| {
                self.invalid(
                    &format!("{key}.cluster"),
                    "missing; every [[target]] needs project_id and cluster",
                )
            })?;
            validate_cluster_name(&cluster)
                .map_err(|m| self.invalid(&format!("{key}.cluster"), m))?;
            let target = Target {
                project_id,
                cluster,
            };
            if targets.contains(&target) {
                return Err(self.invalid(
                    &key,
                    format!(
                        "duplicate target {target}: each (project_id, cluster) pair may appear once"
                    ),
                ));
            }
            targets.push(target);
        }
        if targets.is_empty() {
            return Err(self.invalid(
                "target",
                "no [[target]] tables: add at least one with project_id and cluster",
            ));
        }
        let schedule = self.schedule(&raw.schedule, &raw.targets, &targets)?;
        let server = self.server(&raw.server)?;
        Ok(Config {
            source: path.to_path_buf(),
            atlas,
            storage,
            journal,
            targets,
            schedule,
            server,
        })
    }

    fn schedule(
        &self,
        s: &RawSchedule,
        raw_targets: &[raw::RawTarget],
        targets: &[Target],
    ) -> Result<ScheduleConfig, ConfigError> {
        let zone = s.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
        let expression = s.cron.clone().unwrap_or_else(|| "0 */6 * * *".to_owned());
        let default = Schedule::parse(&expression, &zone).map_err(|e| {
            let key = if matches!(e, crate::schedule::ScheduleError::Zone(_)) {
                "schedule.timezone"
            } else {
                "schedule.cron"
            };
            self.invalid(key, e.to_string())
        })?;
        let mut overrides = Vec::new();
        for (i, (raw, target)) in raw_targets.iter().zip(targets).enumerate() {
            if raw.cron.is_none() && raw.timezone.is_none() {
                continue;
            }
            let expression = raw.cron.clone().unwrap_or_else(|| expression.clone());
            let zone = raw.timezone.clone().unwrap_or_else(|| zone.clone());
            let own = Schedule::parse(&expression, &zone).map_err(|e| {
                let key = if matches!(e, crate::schedule::ScheduleError::Zone(_)) {
                    "timezone"
                } else {
                    "cron"
                };
                self.invalid(&format!("target[{i}].{key}"), e.to_string())
            })?;
            overrides.push((target.clone(), own));
        }
        Ok(ScheduleConfig {
            default,
            overrides,
            jitter: self.duration("schedule.jitter", s.jitter.as_ref(), Duration::ZERO)?,
            run_on_first_start: s.run_on_first_start.unwrap_or(false),
            shutdown_grace: self.duration(
                "schedule.shutdown_grace",
                s.shutdown_grace.as_ref(),
                Duration::from_secs(300),
            )?,
        })
    }

    fn server(&self, s: &RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = match s.listen.as_deref().map(str::trim) {
            None => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9187))),
            Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                self.invalid("server.listen", format!("`{text}` is not an address: write e.g. \"127.0.0.1:9187\" or \"0.0.0.0:9187\", or \"\" to turn the listener off"))
            })?),
        };
        let token = match self.secrets {
            Secrets::Skip => None,
            Secrets::Load => self.secret(
                "server.token",
                s.token.as_ref(),
                s.token_file.as_ref(),
                None,
            )?,
        };
        if self.secrets == Secrets::Load
            && token.is_none()
            && listen.is_some_and(|a| !a.ip().is_loopback())
        {
            return Err(self.invalid(
                "server.token",
                "required when server.listen is not a loopback address: anyone who can reach it could trigger runs (set token_file)",
            ));
        }
        Ok(ServerConfig { listen, token })
    }

    fn atlas(&self, a: &RawAtlas) -> Result<AtlasConfig, ConfigError> {
        let base_text = a
            .base_url
            .clone()
            .unwrap_or_else(|| "https://cloud.mongodb.com".to_owned());
        let base_url = parse_http_url(&base_text).map_err(|m| self.invalid("atlas.base_url", m))?;
        let credentials = match self.secrets {
            Secrets::Skip => AtlasCredentials::NotLoaded,
            Secrets::Load => self.atlas_credentials(a)?,
        };
        let retry_base = self.duration(
            "atlas.retry_base_delay",
            a.retry_base_delay.as_ref(),
            Duration::from_secs(1),
        )?;
        let retry_max = self.duration(
            "atlas.retry_max_delay",
            a.retry_max_delay.as_ref(),
            Duration::from_secs(120),
        )?;
        if retry_max < retry_base {
            return Err(self.invalid(
                "atlas.retry_max_delay",
                "must not be shorter than atlas.retry_base_delay",
            ));
        }
        let max_attempts = a.max_attempts.unwrap_or(6);
        if !(1..=100).contains(&max_attempts) {
            return Err(self.invalid(
                "atlas.max_attempts",
                format!("{max_attempts} is out of range: use 1 to 100"),
            ));
        }
        let positive = |key: &str, d: Duration| {
            if d.is_zero() {
                Err(self.invalid(key, "must be longer than zero"))
            } else {
                Ok(d)
            }
        };
        Ok(AtlasConfig {
            base_url,
            credentials,
            poll_interval: positive(
                "atlas.poll_interval",
                self.duration(
                    "atlas.poll_interval",
                    a.poll_interval.as_ref(),
                    Duration::from_secs(5),
                )?,
            )?,
            restore_timeout: positive(
                "atlas.restore_timeout",
                self.duration(
                    "atlas.restore_timeout",
                    a.restore_timeout.as_ref(),
                    Duration::from_secs(1800),
                )?,
            )?,
            retry: RetryConfig {
                max_attempts,
                base_delay: retry_base,
                max_delay: retry_max,
            },
            request_timeout: positive(
                "atlas.request_timeout",
                self.duration(
                    "atlas.request_timeout",
                    a.request_timeout.as_ref(),
                    Duration::from_secs(60),
                )?,
            )?,
            download_read_timeout: positive(
                "atlas.download_read_timeout",
                self.duration(
                    "atlas.download_read_timeout",
                    a.download_read_timeout.as_ref(),
                    Duration::from_secs(120),
                )?,
            )?,
        })
    }

    fn atlas_credentials(&self, a: &RawAtlas) -> Result<AtlasCredentials, ConfigError> {
        let in_file_sa =
            a.client_id.is_some() || a.client_secret.is_some() || a.client_secret_file.is_some();
        let in_file_key =
            a.public_key.is_some() || a.private_key.is_some() || a.private_key_file.is_some();
        if in_file_sa && in_file_key {
            return Err(self.invalid(
                "atlas",
                "both a service account (client_id) and an API key (public_key) are set: keep one",
            ));
        }
        // The config file decides the kind; the MONGODB_ATLAS_* variables fill in what it leaves out.
        let use_api_key = in_file_key
            || (!in_file_sa
                && self.env_var("MONGODB_ATLAS_CLIENT_ID").is_none()
                && self.env_var("MONGODB_ATLAS_PUBLIC_API_KEY").is_some());
        if use_api_key {
            let public_key = a
                .public_key
                .clone()
                .or_else(|| self.env_var("MONGODB_ATLAS_PUBLIC_API_KEY"))
                .ok_or_else(|| {
                    self.invalid(
                        "atlas.public_key",
                        "missing (or set MONGODB_ATLAS_PUBLIC_API_KEY)",
                    )
                })?;
            let private_key = self
                .secret("atlas.private_key", a.private_key.as_ref(), a.private_key_file.as_ref(), Some("MONGODB_ATLAS_PRIVATE_API_KEY"))?
                .ok_or_else(|| {
                    self.invalid("atlas.private_key", "missing: set private_key_file (or private_key, or MONGODB_ATLAS_PRIVATE_API_KEY)")
                })?;
            return Ok(AtlasCredentials::ApiKey {
                public_key,
                private_key,
            });
        }
        let client_id = a
            .client_id
            .clone()
            .or_else(|| self.env_var("MONGODB_ATLAS_CLIENT_ID"))
            .ok_or_else(|| {
                self.invalid(
                    "atlas.client_id",
                    "no Atlas credentials: set client_id and client_secret_file (a service account), or public_key and private_key_file (an API key), or MONGODB_ATLAS_CLIENT_ID/MONGODB_ATLAS_CLIENT_SECRET",
                )
            })?;
        let client_secret = self
            .secret("atlas.client_secret", a.client_secret.as_ref(), a.client_secret_file.as_ref(), Some("MONGODB_ATLAS_CLIENT_SECRET"))?
            .ok_or_else(|| {
                self.invalid("atlas.client_secret", "missing: set client_secret_file (or client_secret, or MONGODB_ATLAS_CLIENT_SECRET)")
            })?;
        Ok(AtlasCredentials::ServiceAccount {
            client_id,
            client_secret,
        })
    }

    fn storage(&self, s: Option<&RawStorage>) -> Result<StorageConfig, ConfigError> {
        let default = RawStorage::default();
        let s = s.unwrap_or(&default);
        let bucket = s.bucket.clone().ok_or_else(|| {
            self.invalid(
                "storage.bucket",
                "missing: name the bucket that receives the archives",
            )
        })?;
        validate_bucket(&bucket).map_err(|m| self.invalid("storage.bucket", m))?;
        let endpoint_text = s
            .endpoint
            .clone()
            .or_else(|| self.env_var("AWS_ENDPOINT_URL"));
        let endpoint = match endpoint_text {
            Some(text) => {
                Some(parse_http_url(&text).map_err(|m| self.invalid("storage.endpoint", m))?)
            }
            None => None,
        };
        let region = s
            .region
            .clone()
            .or_else(|| self.env_var("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let prefix = s.prefix.clone().unwrap_or_default();
        if prefix.starts_with('/') {
            return Err(self.invalid(
                "storage.prefix",
                format!("`{prefix}` starts with '/': S3 keys are relative, write e.g. \"atlas/\""),
            ));
        }
        let static_credentials = match self.secrets {
            Secrets::Skip => None,
            Secrets::Load => {
                let secret = self.secret(
                    "storage.secret_access_key",
                    s.secret_access_key.as_ref(),
                    s.secret_access_key_file.as_ref(),
                    None,
                )?;
                match (s.access_key_id.clone(), secret) {
                    (Some(id), Some(secret)) => Some((id, secret)),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(self.invalid(
                            "storage.secret_access_key",
                            "access_key_id is set but no secret_access_key(_file)",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(self.invalid(
                            "storage.access_key_id",
                            "secret_access_key is set but no access_key_id",
                        ));
                    }
                }
            }
        };
        let part_size = match s.part_size.as_deref().map(str::trim) {
            None | Some("auto") => PartSize::Auto,
            Some(text) => {
                let bytes = parse_byte_size(text)
                    .map_err(|m| self.invalid("storage.part_size", format!("{m}, or \"auto\"")))?;
                if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes) {
                    return Err(self.invalid(
                        "storage.part_size",
                        format!("`{text}` is outside S3's limits: use \"auto\" or a size from 5MiB to 5GiB"),
                    ));
                }
                if !bytes.is_multiple_of(1 << 20) {
                    return Err(self.invalid(
                        "storage.part_size",
                        format!("`{text}` is not a whole number of MiB (resumable hashing needs MiB boundaries): use e.g. \"16MiB\""),
                    ));
                }
                PartSize::Fixed(bytes)
            }
        };
        let parts_in_flight = s.parts_in_flight.unwrap_or(3);
        if !(1..=64).contains(&parts_in_flight) {
            return Err(self.invalid(
                "storage.parts_in_flight",
                format!("{parts_in_flight} is out of range: use 1 to 64"),
            ));
        }
        let checksum_calculation = match s.request_checksum_calculation.as_deref() {
            None | Some("auto") => {
                if endpoint.is_some() {
                    // The SDK's 2025 default (checksums on every upload, aws-chunked streaming) breaks
                    // several S3-compatible stores; an explicit AWS env variable still wins.
                    if self.env_var("AWS_REQUEST_CHECKSUM_CALCULATION").is_some() {
                        None
                    } else {
                        Some(ChecksumCalculation::WhenRequired)
                    }
                } else {
                    None
                }
            }
            Some("when_required") => Some(ChecksumCalculation::WhenRequired),
            Some("when_supported") => Some(ChecksumCalculation::WhenSupported),
            Some(other) => {
                return Err(self.invalid(
                    "storage.request_checksum_calculation",
                    format!("`{other}` is not valid: use \"auto\", \"when_supported\" or \"when_required\""),
                ));
            }
        };
        let object_checksum = match s.checksum.as_deref() {
            None | Some("auto") => {
                if endpoint.is_some() {
                    ObjectChecksum::None
                } else {
                    ObjectChecksum::Crc32c
                }
            }
            Some("crc32c") => ObjectChecksum::Crc32c,
            Some("none") => ObjectChecksum::None,
            Some(other) => {
                return Err(self.invalid(
                    "storage.checksum",
                    format!("`{other}` is not valid: use \"auto\", \"crc32c\" or \"none\""),
                ));
            }
        };
        let max_concurrent_transfers = s.max_concurrent_transfers.unwrap_or(2);
        if !(1..=64).contains(&max_concurrent_transfers) {
            return Err(self.invalid(
                "storage.max_concurrent_transfers",
                format!("{max_concurrent_transfers} is out of range: use 1 to 64"),
            ));
        }
        let request_timeout = self.duration(
            "storage.request_timeout",
            s.request_timeout.as_ref(),
            Duration::from_secs(120),
        )?;
        if request_timeout < Duration::from_secs(1) {
            return Err(self.invalid(
                "storage.request_timeout",
                "must be at least 1s: S3 requests need time to answer",
            ));
        }
        let key_template = s
            .key_template
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_TEMPLATE.to_owned());
        crate::keys::validate_template(&key_template)
            .map_err(|m| self.invalid("storage.key_template", m))?;
        Ok(StorageConfig {
            bucket,
            force_path_style: s.force_path_style.unwrap_or(endpoint.is_some()),
            endpoint,
            region,
            prefix,
            static_credentials,
            part_size,
            parts_in_flight: parts_in_flight as usize,
            checksum_calculation,
            object_checksum,
            key_template,
            max_concurrent_transfers: max_concurrent_transfers as usize,
            request_timeout,
            validate_archives: s.validate_archives.unwrap_or(true),
        })
    }
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("`{text}` is not a URL ({e}); write e.g. \"https://host:port\""))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` must start with http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    Ok(url)
}

/// S3 bucket naming rules (3-63 characters, lowercase letters, digits, '.', '-').
fn validate_bucket(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid bucket name: 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit"
        ))
    }
}

/// Exposes a secret for the few places that must send it (auth headers, SDK credentials).
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests;
