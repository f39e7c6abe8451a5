//! Validation of the `[storage]` section: the bucket, the endpoint and its credentials, part
//! sizes, checksum modes, timeouts and the key template (Object Lock, storage class and encryption
//! are in `protection.rs`).
//! Must not: talk to S3.

use std::time::Duration;

use super::raw::RawStorage;
use super::units::parse_byte_size;
use super::validator::{Validator, parse_http_url};
use super::{
    ChecksumCalculation, ConfigError, DEFAULT_KEY_TEMPLATE, MAX_PART_SIZE, MIN_PART_SIZE,
    ObjectChecksum, PartSize, StorageConfig,
};

impl Validator<'_> {
    pub(super) fn storage(&self, s: Option<&RawStorage>) -> Result<StorageConfig, ConfigError> {
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
            .or_else(|| self.env_var("AWS_ENDPOINT_URL_S3"))
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
            .or_else(|| self.env_var("AWS_DEFAULT_REGION"));
        let prefix = s.prefix.clone().unwrap_or_default();
        if prefix.starts_with('/') {
            return Err(self.invalid(
                "storage.prefix",
                format!("`{prefix}` starts with '/': S3 keys are relative, write e.g. \"atlas/\""),
            ));
        }
        let static_credentials = if self.secrets.storage() {
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
        } else {
            None
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
        let parts_in_flight =
            self.in_range("storage.parts_in_flight", s.parts_in_flight, 3, 1..=64)?;
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
        let probe_checksum =
            endpoint.is_some() && matches!(s.checksum.as_deref(), None | Some("auto"));
        let mut object_checksum = match s.checksum.as_deref() {
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
        let max_concurrent_transfers = self.in_range(
            "storage.max_concurrent_transfers",
            s.max_concurrent_transfers,
            2,
            1..=64,
        )?;
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
        let protection = self.protection(s, endpoint.as_ref(), &mut object_checksum)?;
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
            // A lock forces CRC32C on: nothing to probe then.
            probe_checksum: probe_checksum && protection.object_lock.is_none(),
            object_checksum,
            key_template,
            max_concurrent_transfers: max_concurrent_transfers as usize,
            request_timeout,
            validate_archives: s.validate_archives.unwrap_or(true),
            protection,
        })
    }
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
