//! Validation of the `[atlas]` section: the API base URL, the credentials (a service account or
//! an API key, from the file, `*_file` or the `MONGODB_ATLAS_*` variables), retries, timeouts
//! and download connections.
//! Must not: talk to Atlas.

use std::time::Duration;

use super::raw::RawAtlas;
use super::validator::{Validator, is_loopback, parse_http_url};
use super::{AtlasConfig, AtlasCredentials, ConfigError, RetryConfig};

impl Validator<'_> {
    pub(super) fn atlas(&self, a: &RawAtlas) -> Result<AtlasConfig, ConfigError> {
        let base_text = a
            .base_url
            .clone()
            .unwrap_or_else(|| "https://cloud.mongodb.com".to_owned());
        let base_url = parse_http_url(&base_text).map_err(|m| self.invalid("atlas.base_url", m))?;
        // Plain HTTP would carry the client secret and bearer tokens in clear; it is for a
        // simulator on this host only (audit L10).
        if base_url.scheme() == "http" && !is_loopback(&base_url) {
            return Err(self.invalid(
                "atlas.base_url",
                format!("`{base_text}` is plain HTTP to another host, which would send the Atlas credentials in clear; use https:// (http:// is accepted for 127.0.0.1, ::1 and localhost only)"),
            ));
        }
        let credentials = if self.secrets.atlas() {
            self.atlas_credentials(a)?
        } else {
            AtlasCredentials::NotLoaded
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
        let max_attempts = self.in_range("atlas.max_attempts", a.max_attempts, 6, 1..=100)?;
        let download_connections = self.in_range(
            "atlas.download_connections",
            a.download_connections,
            1,
            1..=16,
        )?;
        let secret_expires_at = match a.client_secret_expires_at.as_deref() {
            None => None,
            Some(_) if matches!(credentials, AtlasCredentials::ApiKey { .. }) => {
                return Err(self.invalid(
                    "atlas.client_secret_expires_at",
                    "is for a service account's secret; API keys do not expire",
                ));
            }
            Some(text) => Some(super::clusters::parse_instant(text).ok_or_else(|| {
                self.invalid(
                    "atlas.client_secret_expires_at",
                    format!("`{text}` is not a date: use 2027-03-01 or 2027-03-01T12:00:00Z"),
                )
            })?),
        };
        Ok(AtlasConfig {
            base_url,
            credentials,
            secret_expires_at,
            poll_interval: self.positive_duration(
                "atlas.poll_interval",
                a.poll_interval.as_ref(),
                Duration::from_secs(5),
            )?,
            restore_timeout: self.positive_duration(
                "atlas.restore_timeout",
                a.restore_timeout.as_ref(),
                Duration::from_secs(1800),
            )?,
            retry: RetryConfig {
                max_attempts,
                base_delay: retry_base,
                max_delay: retry_max,
            },
            request_timeout: self.positive_duration(
                "atlas.request_timeout",
                a.request_timeout.as_ref(),
                Duration::from_secs(60),
            )?,
            download_read_timeout: self.positive_duration(
                "atlas.download_read_timeout",
                a.download_read_timeout.as_ref(),
                Duration::from_secs(120),
            )?,
            download_connections: usize::try_from(download_connections).unwrap_or(1),
        })
    }

    pub(super) fn atlas_credentials(&self, a: &RawAtlas) -> Result<AtlasCredentials, ConfigError> {
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
}
