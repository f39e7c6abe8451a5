//! `check-config`'s output: the effective configuration as TOML, rendered by the `toml` crate from
//! the file's own keys ([`RawConfig`]), so that whatever is printed is what the loader reads back
//! (a round-trip test holds it to that). Secrets print as `***`.
//! Must not: print a secret.

use std::time::Duration;

use super::notify::{RawHeartbeat, RawNotify};
use super::protection::RawObjectLock;
use super::raw::{
    RawAtlas, RawConfig, RawJournal, RawRetention, RawSchedule, RawServer, RawStorage, RawTarget,
};
use super::{AtlasCredentials, ChecksumCalculation, Config, Encryption, ObjectChecksum, PartSize};

/// How secrets appear in the rendered configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretView {
    /// As `***` (everything users see).
    Redacted,
    /// As their values (only the round-trip test, which must load the output again).
    #[cfg(test)]
    Exposed,
}

impl SecretView {
    fn show(self, secret: &secrecy::SecretString) -> String {
        match self {
            Self::Redacted => {
                let _ = secret;
                "***".to_owned()
            }
            #[cfg(test)]
            Self::Exposed => secrecy::ExposeSecret::expose_secret(secret).to_owned(),
        }
    }
}

impl Config {
    /// The effective configuration as TOML with every secret shown as `***`.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&self.to_raw(SecretView::Redacted))
    }

    /// The configuration in the file's own keys and value formats.
    pub(crate) fn to_raw(&self, secrets: SecretView) -> RawConfig {
        let a = &self.atlas;
        let (client_id, client_secret, public_key, private_key) = match &a.credentials {
            AtlasCredentials::ServiceAccount {
                client_id,
                client_secret,
            } => (
                Some(client_id.clone()),
                Some(secrets.show(client_secret)),
                None,
                None,
            ),
            AtlasCredentials::ApiKey {
                public_key,
                private_key,
            } => (
                None,
                None,
                Some(public_key.clone()),
                Some(secrets.show(private_key)),
            ),
            AtlasCredentials::NotLoaded => (None, None, None, None),
        };
        let atlas = RawAtlas {
            base_url: Some(a.base_url.to_string()),
            client_id,
            client_secret,
            client_secret_file: None,
            client_secret_expires_at: a.secret_expires_at.map(|t| t.to_rfc3339()),
            public_key,
            private_key,
            private_key_file: None,
            poll_interval: Some(duration(a.poll_interval)),
            restore_timeout: Some(duration(a.restore_timeout)),
            max_attempts: Some(a.retry.max_attempts),
            retry_base_delay: Some(duration(a.retry.base_delay)),
            retry_max_delay: Some(duration(a.retry.max_delay)),
            request_timeout: Some(duration(a.request_timeout)),
            download_read_timeout: Some(duration(a.download_read_timeout)),
            download_connections: Some(u32::try_from(a.download_connections).unwrap_or(u32::MAX)),
        };
        let s = &self.storage;
        let storage = RawStorage {
            bucket: Some(s.bucket.clone()),
            endpoint: s.endpoint.as_ref().map(ToString::to_string),
            region: s.region.clone(),
            prefix: Some(s.prefix.clone()),
            force_path_style: Some(s.force_path_style),
            access_key_id: s.static_credentials.as_ref().map(|(id, _)| id.clone()),
            secret_access_key: s.static_credentials.as_ref().map(|(_, k)| secrets.show(k)),
            secret_access_key_file: None,
            part_size: Some(match s.part_size {
                PartSize::Auto => "auto".to_owned(),
                PartSize::Fixed(n) => size(n),
            }),
            parts_in_flight: u32::try_from(s.parts_in_flight).ok(),
            request_checksum_calculation: Some(
                match s.checksum_calculation {
                    None => "auto",
                    Some(ChecksumCalculation::WhenRequired) => "when_required",
                    Some(ChecksumCalculation::WhenSupported) => "when_supported",
                }
                .to_owned(),
            ),
            checksum: Some(
                match (s.probe_checksum, s.object_checksum) {
                    (true, _) => "auto",
                    (false, ObjectChecksum::Crc32c) => "crc32c",
                    (false, ObjectChecksum::None) => "none",
                }
                .to_owned(),
            ),
            key_template: Some(s.key_template.clone()),
            max_concurrent_transfers: u32::try_from(s.max_concurrent_transfers).ok(),
            request_timeout: Some(duration(s.request_timeout)),
            validate_archives: Some(s.validate_archives),
            storage_class: s.protection.storage_class.clone(),
            sse: match &s.protection.encryption {
                Encryption::S3Managed | Encryption::Kms { .. } => {
                    s.protection.encryption.name().map(str::to_owned)
                }
                Encryption::BucketDefault | Encryption::Customer(_) => None,
            },
            sse_kms_key_id: match &s.protection.encryption {
                Encryption::Kms { key_id } => key_id.clone(),
                _ => None,
            },
            sse_customer_key: s
                .protection
                .encryption
                .customer_key()
                .map(|k| secrets.show(k.secret())),
            sse_customer_key_file: None,
            object_lock: s.protection.object_lock.map(|l| RawObjectLock {
                mode: Some(l.mode.as_str().to_owned()),
                retain: Some(duration(l.retain)),
                legal_hold: Some(l.legal_hold),
            }),
        };
        let sc = &self.schedule;
        let schedule = RawSchedule {
            cron: Some(sc.default.expression().to_owned()),
            timezone: Some(sc.default.zone().name().to_owned()),
            jitter: Some(duration(sc.jitter)),
            run_on_first_start: Some(sc.run_on_first_start),
            shutdown_grace: Some(duration(sc.shutdown_grace)),
            stall_timeout: Some(duration(sc.stall_timeout)),
        };
        let server = RawServer {
            listen: Some(
                self.server
                    .listen
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ),
            token: self.server.token.as_ref().map(|t| secrets.show(t)),
            token_file: None,
        };
        let targets = self
            .targets
            .iter()
            .map(|t| {
                let own = sc.overrides.iter().find(|(o, _)| o == t).map(|(_, s)| s);
                let options = self.cluster_options(t);
                RawTarget {
                    project_id: Some(t.project_id.clone()),
                    cluster: Some(t.cluster.clone()),
                    kind: Some(
                        match options.kind {
                            crate::config::KindChoice::Auto => "auto",
                            crate::config::KindChoice::Known(k) => k.name(),
                        }
                        .to_owned(),
                    ),
                    snapshot_types: Some(options.snapshot_types),
                    since: options.since.map(duration),
                    max_per_run: options.max_per_run,
                    cron: own.map(|s| s.expression().to_owned()),
                    timezone: own.map(|s| s.zone().name().to_owned()),
                    retention: self
                        .retention
                        .overrides
                        .iter()
                        .find(|(o, _)| o == t)
                        .map(|(_, p)| policy(p)),
                }
            })
            .collect();
        RawConfig {
            atlas,
            storage: Some(storage),
            journal: RawJournal {
                path: Some(self.journal.path.display().to_string()),
            },
            schedule,
            server,
            targets,
            discover: self.discover.iter().map(discover_rule).collect(),
            retention: self.retention.default.as_ref().map(policy),
            heartbeat: self.notify.heartbeat.as_ref().map(|u| RawHeartbeat {
                url: Some(secrets.show(&u.0)),
                url_file: None,
            }),
            notify: self
                .notify
                .channels
                .iter()
                .map(|c| RawNotify {
                    kind: Some(c.kind.name().to_owned()),
                    url: Some(secrets.show(&c.url.0)),
                    url_file: None,
                    to: c.email.as_ref().map(|e| e.to.clone()),
                    from: c.email.as_ref().map(|e| e.from.clone()),
                    ca_file: c
                        .email
                        .as_ref()
                        .and_then(|e| e.ca_file.as_ref())
                        .map(|p| p.display().to_string()),
                    on: Some(c.events.iter().map(|e| e.name().to_owned()).collect()),
                    signing_key: c.signing_key.as_ref().map(|k| secrets.show(k)),
                    signing_key_file: None,
                    never_succeeded_after: Some(c.never_succeeded_after),
                })
                .collect(),
        }
    }
}

/// A `[[discover]]` as the loader reads it.
fn discover_rule(d: &crate::config::DiscoverRule) -> crate::config::RawDiscover {
    use crate::config::DiscoverScope;
    let (projects, org_id) = match &d.scope {
        DiscoverScope::Projects(p) => (Some(p.clone()), None),
        DiscoverScope::Org(o) => (None, Some(o.clone())),
    };
    crate::config::RawDiscover {
        projects,
        org_id,
        kinds: Some(d.kinds.iter().map(|k| k.name().to_owned()).collect()),
        name: d.name.clone(),
        tags: Some(d.tags.clone()),
        exclude: Some(d.exclude.clone()),
        snapshot_types: Some(d.options.snapshot_types.clone()),
        since: d.options.since.map(duration),
        max_per_run: d.options.max_per_run,
    }
}

/// A retention policy as the loader reads it.
fn policy(p: &crate::retention::Policy) -> RawRetention {
    let count = |n: u32| (n > 0).then_some(n);
    RawRetention {
        keep_last: count(p.keep_last),
        keep_daily: count(p.keep_daily),
        keep_weekly: count(p.keep_weekly),
        keep_monthly: count(p.keep_monthly),
        keep_yearly: count(p.keep_yearly),
        keep_within: p.keep_within.map(duration),
        timezone: Some(p.timezone.name().to_owned()),
        min_keep: Some(p.min_keep),
    }
}

/// A duration as the loader reads it (`"1h 30m"`, `"500ms"`).
fn duration(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A size as the loader reads it: the largest binary unit that divides it, else bytes.
fn size(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}
