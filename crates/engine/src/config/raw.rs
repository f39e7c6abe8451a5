//! The configuration exactly as written: TOML file plus `ATLAS_ARCHIVER__…` environment overrides.
//! Every field here is documented; these comments are the configuration reference
//! (README "Configuration" and `config/atlas-archiver.example.toml` repeat them).

use serde::{Deserialize, Serialize};

/// Top level of `config.toml`.
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[atlas]`: how to reach the Atlas Administration API.
    #[serde(default)]
    pub atlas: RawAtlas,
    /// `[storage]`: the S3-compatible bucket that receives the archives.
    pub storage: Option<RawStorage>,
    /// `[journal]`: where the local state lives.
    #[serde(default)]
    pub journal: RawJournal,
    /// `[schedule]`: when `run` archives.
    #[serde(default)]
    pub schedule: RawSchedule,
    /// `[server]`: the HTTP endpoints of `run`.
    #[serde(default)]
    pub server: RawServer,
    /// `[[target]]`: one table per (project, Flex cluster) pair to archive.
    #[serde(default, rename = "target")]
    pub targets: Vec<RawTarget>,
    /// `[[discover]]`: clusters found by listing Atlas, archived like targets.
    #[serde(default, rename = "discover")]
    pub discover: Vec<super::discover::RawDiscover>,
    /// `[retention]`: which archives `prune` keeps (absent: keep everything).
    pub retention: Option<RawRetention>,
    /// `[heartbeat]`: a dead-man's switch pinged by `run` (absent: none).
    pub heartbeat: Option<super::notify::RawHeartbeat>,
    /// `[[notify]]`: channels told about failures, recoveries and LOST snapshots by `run`.
    #[serde(default, rename = "notify")]
    pub notify: Vec<super::notify::RawNotify>,
}

/// `[retention]`, and a target's `retention = { … }` (its keys override the table's).
/// restic's `forget` semantics; see README "Retention".
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// The newest N archives.
    pub keep_last: Option<u32>,
    /// The newest archive of each of the last N days that have one.
    pub keep_daily: Option<u32>,
    /// The newest archive of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// The newest archive of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
    /// The newest archive of each of the last N years that have one.
    pub keep_yearly: Option<u32>,
    /// Every archive taken within this long before the newest one (e.g. `"30d"`).
    pub keep_within: Option<String>,
    /// IANA zone for the day, week, month and year boundaries (default `"UTC"`).
    pub timezone: Option<String>,
    /// Never fewer archives per target than this (default 3).
    pub min_keep: Option<u32>,
}

impl RawRetention {
    /// `self` with the keys `over` sets replaced.
    pub fn overridden_by(&self, over: &RawRetention) -> RawRetention {
        RawRetention {
            keep_last: over.keep_last.or(self.keep_last),
            keep_daily: over.keep_daily.or(self.keep_daily),
            keep_weekly: over.keep_weekly.or(self.keep_weekly),
            keep_monthly: over.keep_monthly.or(self.keep_monthly),
            keep_yearly: over.keep_yearly.or(self.keep_yearly),
            keep_within: over
                .keep_within
                .clone()
                .or_else(|| self.keep_within.clone()),
            timezone: over.timezone.clone().or_else(|| self.timezone.clone()),
            min_keep: over.min_keep.or(self.min_keep),
        }
    }
}

/// `[atlas]`
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAtlas {
    /// API host, default `https://cloud.mongodb.com` (Atlas for Government: `https://cloud.mongodbgov.com`).
    pub base_url: Option<String>,
    /// Service account client id (`mdb_sa_id_…`); falls back to `MONGODB_ATLAS_CLIENT_ID`.
    pub client_id: Option<String>,
    /// Service account secret. Prefer `client_secret_file`; falls back to `MONGODB_ATLAS_CLIENT_SECRET`.
    pub client_secret: Option<String>,
    /// File holding the service account secret (relative paths resolve in `$CREDENTIALS_DIRECTORY`).
    pub client_secret_file: Option<String>,
    /// When the service account secret expires, as Atlas showed it at creation (`2027-03-01`, or RFC 3339): `credential_expiring` is sent 14 days before, and a metric carries it.
    pub client_secret_expires_at: Option<String>,
    /// Legacy programmatic API key, public part; falls back to `MONGODB_ATLAS_PUBLIC_API_KEY`.
    pub public_key: Option<String>,
    /// Legacy programmatic API key, private part; falls back to `MONGODB_ATLAS_PRIVATE_API_KEY`.
    pub private_key: Option<String>,
    /// File holding the private API key.
    pub private_key_file: Option<String>,
    /// How often to poll a restore job for its download URL (default `5s`).
    pub poll_interval: Option<String>,
    /// How long to wait for Atlas to prepare a download before giving up on this run (default `30m`).
    pub restore_timeout: Option<String>,
    /// Attempts per Atlas API call for 429, 5xx and connection errors (default 6).
    pub max_attempts: Option<u32>,
    /// First backoff delay between attempts (default `1s`), doubled each time with jitter.
    pub retry_base_delay: Option<String>,
    /// Longest single backoff delay, also the cap for `Retry-After` (default `2m`).
    pub retry_max_delay: Option<String>,
    /// Timeout of one Atlas API request (default `60s`).
    pub request_timeout: Option<String>,
    /// A snapshot download fails when no byte arrives for this long (default `120s`).
    pub download_read_timeout: Option<String>,
    /// GETs of one snapshot URL at once, each for an 8 MiB range (default 1: one plain GET).
    /// For links whose round trip caps a single stream; a URL that allows one GET is read over one.
    pub download_connections: Option<u32>,
}

/// `[storage]`
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Bucket name (required).
    pub bucket: Option<String>,
    /// Endpoint of a non-AWS store (`https://s3.example.net`); falls back to `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`. Omit for AWS S3.
    pub endpoint: Option<String>,
    /// Region; falls back to `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the region of the AWS
    /// profile (`AWS_PROFILE`, else `default`, in `AWS_CONFIG_FILE` or `~/.aws/config`), then
    /// `us-east-1`.
    pub region: Option<String>,
    /// Key prefix for every object, e.g. `atlas/` (default empty).
    pub prefix: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default true when `endpoint` is set.
    pub force_path_style: Option<bool>,
    /// Static access key; otherwise the standard AWS credential chain.
    pub access_key_id: Option<String>,
    /// Static secret key. Prefer `secret_access_key_file`.
    pub secret_access_key: Option<String>,
    /// File holding the secret key (relative paths resolve in `$CREDENTIALS_DIRECTORY`).
    pub secret_access_key_file: Option<String>,
    /// Multipart part size: `"auto"` (default) or a size between 5MiB and 5GiB such as `"16MiB"`.
    pub part_size: Option<String>,
    /// Parts uploaded concurrently per transfer (default 3). Memory ≈ part_size × (parts_in_flight + 1).
    pub parts_in_flight: Option<u32>,
    /// `"auto"` (default: `when_required` for custom endpoints, `when_supported` for AWS),
    /// `"when_supported"` or `"when_required"`: when the SDK adds request checksums.
    pub request_checksum_calculation: Option<String>,
    /// S3 checksum the store verifies: `"auto"` (default: `"crc32c"` on AWS, `"none"` for custom
    /// endpoints), `"crc32c"` (full-object CRC32C on every part and the whole object) or `"none"`.
    pub checksum: Option<String>,
    /// Object key template. Default `{prefix}{project_id}/{cluster}/{date}/{snapshot_id}.tar.gz`.
    pub key_template: Option<String>,
    /// Snapshot transfers at once across all targets (default 2).
    pub max_concurrent_transfers: Option<u32>,
    /// Longest wait for the store's answer to one S3 request, from sending it (default `"2m"`).
    /// A part upload gets more when its size needs it (at 1 MiB/s). A store that stops answering
    /// fails the request after this, and the SDK retries it.
    pub request_timeout: Option<String>,
    /// Check, while it streams, that each snapshot is a whole `.tar.gz` (gzip CRC-32 and
    /// length, every tar header, the end-of-archive blocks) and refuse to archive anything else
    /// (default true).
    pub validate_archives: Option<bool>,
    /// Storage class of the archives (`"STANDARD_IA"`, `"GLACIER_IR"`, `"DEEP_ARCHIVE"`, or a
    /// store's own name); manifests always use the store's default class. Default: the bucket's.
    /// `restore` and `verify` of an archive in `GLACIER` or `DEEP_ARCHIVE` need a thaw first.
    pub storage_class: Option<String>,
    /// Server-side encryption: `"AES256"` (keys managed by the store) or `"aws:kms"`. Default: the
    /// bucket's default encryption.
    pub sse: Option<String>,
    /// The KMS key for `sse = "aws:kms"` (id, ARN or alias); default the account's `aws/s3` key.
    pub sse_kms_key_id: Option<String>,
    /// SSE-C: your own 256-bit key, base64 (`openssl rand -base64 32`). Every archive and manifest
    /// is encrypted with it, and nothing can be read back without it. Prefer `sse_customer_key_file`.
    pub sse_customer_key: Option<String>,
    /// File holding the SSE-C key (relative paths resolve in `$CREDENTIALS_DIRECTORY`).
    pub sse_customer_key_file: Option<String>,
    /// `[storage.object_lock]`: lock every archive and manifest (WORM). See README "Immutability".
    pub object_lock: Option<super::protection::RawObjectLock>,
}

/// `[schedule]`
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Cron expression: 5 fields, or 6 with seconds first (default `"0 */6 * * *"`).
    pub cron: Option<String>,
    /// IANA time zone of the expression (default `"UTC"`).
    pub timezone: Option<String>,
    /// Spread targets over this window after each slot, stably per target (default `"0s"`).
    pub jitter: Option<String>,
    /// Run every target once right after the very first start (default false).
    pub run_on_first_start: Option<bool>,
    /// On SIGTERM, let transfers finish for this long before aborting them (default `"5m"`).
    pub shutdown_grace: Option<String>,
    /// A snapshot whose work makes no progress for this long (no byte received or stored, no
    /// answer from Atlas) is cancelled and reported as failed; `once` and `run` (default `"1h"`).
    pub stall_timeout: Option<String>,
}

/// `[server]`
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the status page, /healthz, /readyz, /metrics and the run trigger (default `"127.0.0.1:9187"`; `""` turns it off).
    pub listen: Option<String>,
    /// Bearer token for `POST /v1/targets/…/run`; required when `listen` is not a loopback address.
    pub token: Option<String>,
    /// File holding the token.
    pub token_file: Option<String>,
}

/// `[journal]`
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    /// SQLite file (default `/var/lib/atlas-archiver/journal.sqlite`).
    pub path: Option<String>,
}

/// `[[target]]`
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Atlas project (group) id: 24 lowercase hex digits.
    pub project_id: Option<String>,
    /// Cluster name.
    pub cluster: Option<String>,
    /// `"flex"`, `"dedicated"` (M10+, replica set) or `"auto"` (default: ask Atlas once and remember the answer in the journal).
    pub kind: Option<String>,
    /// Dedicated clusters: which snapshot types to archive (default `["scheduled", "onDemand"]`; add `"fallback"` for fallback snapshots).
    pub snapshot_types: Option<Vec<String>>,
    /// Only snapshots Atlas took within this long (`"30d"`): a first run on a cluster that keeps years of snapshots does not fetch them all (default: every one Atlas holds).
    pub since: Option<String>,
    /// At most this many downloads per run, newest first; the rest wait for later runs and are counted by `atlas_archiver_snapshots_waiting` (default: no limit).
    pub max_per_run: Option<u32>,
    /// This target's own cron expression (default: `schedule.cron`).
    pub cron: Option<String>,
    /// This target's own time zone (default: `schedule.timezone`).
    pub timezone: Option<String>,
    /// This target's retention: its keys override `[retention]`'s.
    pub retention: Option<RawRetention>,
}
