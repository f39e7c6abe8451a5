//! Validation of the raw configuration into [`Config`], section by section, with an error that
//! names the file, the key and what would be valid. Secrets are read here. The `[atlas]`
//! and `[storage]` sections are in `atlas.rs` and `storage.rs`.
//! Must not: talk to Atlas, S3 or the journal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::raw::{RawConfig, RawSchedule, RawServer};
use super::units::parse_duration;
use super::{
    Config, ConfigError, DEFAULT_JOURNAL_PATH, JournalConfig, ScheduleConfig, Secrets,
    ServerConfig, raw,
};
use crate::schedule::Schedule;
use crate::target::{Target, validate_cluster_name, validate_project_id};

/// The shortest trigger token accepted on a listener that is not loopback.
const MIN_TOKEN_CHARS: usize = 16;

pub(super) struct Validator<'a> {
    pub(super) file: String,
    pub(super) dir: PathBuf,
    pub(super) env: &'a HashMap<String, String>,
    pub(super) secrets: Secrets,
}

impl Validator<'_> {
    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn duration(
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

    /// `duration`, refusing zero.
    pub(super) fn positive_duration(
        &self,
        key: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration(key, value, default)?;
        if d.is_zero() {
            return Err(self.invalid(key, "must be longer than zero"));
        }
        Ok(d)
    }

    /// `value` (or `default` when unset) if it lies in `range`.
    pub(super) fn in_range(
        &self,
        key: &str,
        value: Option<u32>,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<u32, ConfigError> {
        let v = value.unwrap_or(default);
        if !range.contains(&v) {
            return Err(self.invalid(
                key,
                format!(
                    "{v} is out of range: use {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(v)
    }

    pub(super) fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }

    /// Reads a secret from `value`, else `file_value` (a path), else the named fallback variable.
    pub(super) fn secret(
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
            if v.trim().is_empty() {
                return Err(self.invalid(
                    key,
                    format!("is empty; set the secret, or remove `{key}` (and use `{key}_file` or the environment)"),
                ));
            }
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
            if trimmed.trim().is_empty() {
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
    pub(super) fn resolve_credential_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.env_var("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(p),
            None => self.dir.join(p),
        }
    }

    pub(super) fn validate(self, raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
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
        let mut clusters = Vec::new();
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
            clusters.push((target.clone(), self.cluster_options(&key, t)?));
            targets.push(target);
        }
        let discover = self.discover(&raw.discover)?;
        if targets.is_empty() && discover.is_empty() && self.secrets != Secrets::StorageOnly {
            return Err(self.invalid(
                "target",
                "no [[target]] or [[discover]] tables: add a target with project_id and cluster, or a selector",
            ));
        }
        let mut schedule = self.schedule(&raw.schedule, &raw.targets, &targets)?;
        // The watchdog must outlast every wait below it that makes no progress by design: a
        // backoff sleep, a poll of Atlas, and a request the S3 SDK retries five times. Left
        // unset, it is 1h or twice the longest of those; set too short, it is refused.
        let quiet = [
            ("atlas.retry_max_delay", atlas.retry.max_delay),
            ("atlas.poll_interval", atlas.poll_interval),
            (
                "5 × storage.request_timeout (the S3 SDK's attempts)",
                storage.request_timeout.saturating_mul(5),
            ),
        ];
        if raw.schedule.stall_timeout.is_none() {
            let longest = quiet.iter().map(|(_, w)| *w).max().unwrap_or_default();
            schedule.stall_timeout = schedule.stall_timeout.max(longest.saturating_mul(2));
        }
        if schedule.stall_timeout < Duration::from_secs(10) {
            return Err(self.invalid(
                "schedule.stall_timeout",
                "must be at least 10s (and should be minutes: a slow but healthy store or a 429's Retry-After can leave a minute without progress)",
            ));
        }
        if let Some((what, wait)) = quiet.iter().find(|(_, w)| *w >= schedule.stall_timeout) {
            return Err(self.invalid(
                "schedule.stall_timeout",
                format!(
                    "{}s is not longer than {what} ({}s): healthy work would be cancelled; raise it (default 1h)",
                    schedule.stall_timeout.as_secs(),
                    wait.as_secs()
                ),
            ));
        }
        let server = self.server(&raw.server)?;
        let retention = self.retention(raw.retention.as_ref(), &raw.targets, &targets)?;
        let notify = if self.secrets.atlas() {
            self.notify(raw.heartbeat.as_ref(), &raw.notify)?
        } else {
            crate::config::NotifyConfig::default()
        };
        Ok(Config {
            retention,
            notify,
            source: path.to_path_buf(),
            atlas,
            storage,
            journal,
            targets,
            clusters,
            discover,
            schedule,
            server,
        })
    }

    pub(super) fn schedule(
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
            // Checked against the other sections' waits in `load`, where they are known.
            stall_timeout: self.duration(
                "schedule.stall_timeout",
                s.stall_timeout.as_ref(),
                Duration::from_secs(3600),
            )?,
        })
    }

    pub(super) fn server(&self, s: &RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = match s.listen.as_deref().map(str::trim) {
            None => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9187))),
            Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                self.invalid("server.listen", format!("`{text}` is not an address: write e.g. \"127.0.0.1:9187\" or \"0.0.0.0:9187\", or \"\" to turn the listener off"))
            })?),
        };
        let token = if self.secrets.atlas() {
            self.secret(
                "server.token",
                s.token.as_ref(),
                s.token_file.as_ref(),
                None,
            )?
        } else {
            None
        };
        if self.secrets.atlas() && token.is_none() && listen.is_some_and(|a| !a.ip().is_loopback())
        {
            return Err(self.invalid(
                "server.token",
                "required when server.listen is not a loopback address: anyone who can reach it could trigger runs (set token_file)",
            ));
        }
        let exposed = listen.is_some_and(|a| !a.ip().is_loopback());
        if let Some(t) = &token
            && exposed
            && secrecy::ExposeSecret::expose_secret(t).chars().count() < MIN_TOKEN_CHARS
        {
            return Err(self.invalid(
                "server.token",
                format!("is shorter than {MIN_TOKEN_CHARS} characters, on a listener others can reach: use a random one, e.g. `openssl rand -hex 16`"),
            ));
        }
        Ok(ServerConfig { listen, token })
    }
}

/// Whether `url` points at this host (127.0.0.0/8, ::1, `localhost`): the only place plain
/// HTTP may carry a secret.
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

pub(super) fn parse_http_url(text: &str) -> Result<Url, String> {
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
