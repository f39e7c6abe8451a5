//! How what we write is protected once it is in the bucket: Object Lock (`[storage.object_lock]`),
//! the archives' storage class (`storage.storage_class`) and server-side encryption
//! (`storage.sse`, `storage.sse_kms_key_id`, SSE-C with `storage.sse_customer_key(_file)`).
//! The types, and their validation from the raw `[storage]` table.
//! Must not: talk to S3 (the store applies these to its requests).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::raw::RawStorage;
use super::validator::Validator;
use super::{ConfigError, ObjectChecksum};

/// What the store is asked to do to every object we write.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// `[storage.object_lock]`: every archive and manifest is locked (WORM).
    pub object_lock: Option<ObjectLock>,
    /// `storage.storage_class`, for archives only (manifests stay in the default class so
    /// that `list`, `prune` and `verify` never need a thaw).
    pub storage_class: Option<String>,
    /// Server-side encryption.
    pub encryption: Encryption,
}

/// `[storage.object_lock]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// Governance (users with `s3:BypassGovernanceRetention` may still delete) or compliance
    /// (nobody can, not even the root account, until the date passes).
    pub mode: LockMode,
    /// Each object is locked until its archive time plus this.
    pub retain: Duration,
    /// Also place a legal hold (no expiry; removed only by someone with `s3:PutObjectLegalHold`).
    pub legal_hold: bool,
}

/// The Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Deletable before the date only with `s3:BypassGovernanceRetention`.
    Governance,
    /// Deletable by nobody before the date.
    Compliance,
}

impl LockMode {
    /// As written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "governance",
            Self::Compliance => "compliance",
        }
    }

    /// As S3 spells it (`x-amz-object-lock-mode`).
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    /// From S3's spelling.
    pub fn from_s3(name: &str) -> Option<Self> {
        match name {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Server-side encryption of what we write.
#[derive(Debug, Clone, Default)]
pub enum Encryption {
    /// Nothing asked: the bucket's default encryption applies (on AWS, SSE-S3 at least).
    #[default]
    BucketDefault,
    /// `sse = "AES256"`: keys managed by the store.
    S3Managed,
    /// `sse = "aws:kms"`: a KMS key (the account's `aws/s3` key when none is named).
    Kms {
        /// `sse_kms_key_id`.
        key_id: Option<String>,
    },
    /// SSE-C: our own 256-bit key, sent with every write and every read.
    Customer(CustomerKey),
}

impl Encryption {
    /// What the manifest records: `AES256`, `aws:kms` or `SSE-C` (`None` for the bucket default).
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Self::BucketDefault => None,
            Self::S3Managed => Some("AES256"),
            Self::Kms { .. } => Some("aws:kms"),
            Self::Customer(_) => Some("SSE-C"),
        }
    }

    /// The SSE-C key, when that is the mode.
    pub fn customer_key(&self) -> Option<&CustomerKey> {
        match self {
            Self::Customer(k) => Some(k),
            _ => None,
        }
    }
}

/// An SSE-C key: 32 bytes, held as base64 (as S3 wants it) with its MD5 (which identifies the key
/// in manifests and errors without revealing it).
#[derive(Clone)]
pub struct CustomerKey {
    key: SecretString,
    md5: String,
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerKey(md5 {})", self.md5)
    }
}

impl CustomerKey {
    /// From the base64 text of a 256-bit key (`openssl rand -base64 32`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| {
                "is not base64: write a 256-bit key in base64, e.g. from `openssl rand -base64 32`"
                    .to_owned()
            })?;
        if raw.len() != 32 {
            return Err(format!(
                "decodes to {} bytes; SSE-C needs a 256-bit key (32 bytes), e.g. from `openssl rand -base64 32`",
                raw.len()
            ));
        }
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&raw));
        Ok(Self {
            key: SecretString::from(base64::engine::general_purpose::STANDARD.encode(&raw)),
            md5,
        })
    }

    /// The key, base64 (`x-amz-server-side-encryption-customer-key`).
    pub fn key_base64(&self) -> &str {
        self.key.expose_secret()
    }

    /// The key's MD5, base64 (`x-amz-server-side-encryption-customer-key-MD5`): safe to show.
    pub fn md5_base64(&self) -> &str {
        &self.md5
    }

    pub(super) fn secret(&self) -> &SecretString {
        &self.key
    }
}

/// `[storage.object_lock]` as written.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjectLock {
    /// `"governance"` or `"compliance"` (required: compliance cannot be undone).
    pub mode: Option<String>,
    /// How long each archive and manifest is locked, from its archive time (e.g. `"35d"`).
    pub retain: Option<String>,
    /// Also place a legal hold on each object (default false).
    pub legal_hold: Option<bool>,
}

impl Validator<'_> {
    /// The protection settings of `[storage]`. Object Lock needs an integrity checksum on every
    /// write (AWS refuses lock writes without one), so it turns `checksum = "auto"` into
    /// CRC32C and refuses `checksum = "none"`.
    pub(super) fn protection(
        &self,
        s: &RawStorage,
        endpoint: Option<&Url>,
        object_checksum: &mut ObjectChecksum,
    ) -> Result<Protection, ConfigError> {
        let object_lock = match &s.object_lock {
            None => None,
            Some(lock) => {
                let mode = match lock.mode.as_deref() {
                    Some("governance") => LockMode::Governance,
                    Some("compliance") => LockMode::Compliance,
                    Some(other) => {
                        return Err(self.invalid(
                            "storage.object_lock.mode",
                            format!("`{other}` is not valid: use \"governance\" or \"compliance\""),
                        ));
                    }
                    None => {
                        return Err(self.invalid(
                            "storage.object_lock.mode",
                            "missing: write \"governance\" (deletable with s3:BypassGovernanceRetention) or \"compliance\" (deletable by nobody until the date)",
                        ));
                    }
                };
                let Some(retain_text) = &lock.retain else {
                    return Err(self.invalid(
                        "storage.object_lock.retain",
                        "missing: how long each archive stays locked, e.g. \"35d\"",
                    ));
                };
                let retain = super::units::parse_duration(retain_text)
                    .map_err(|m| self.invalid("storage.object_lock.retain", m))?;
                if retain < Duration::from_secs(86_400) {
                    return Err(self.invalid(
                        "storage.object_lock.retain",
                        format!("`{retain_text}` is shorter than a day: a lock that short protects nothing; use e.g. \"35d\""),
                    ));
                }
                match (s.checksum.as_deref(), *object_checksum) {
                    (Some("none"), _) => {
                        return Err(self.invalid(
                            "storage.checksum",
                            "is \"none\", but Object Lock writes need an integrity checksum (AWS refuses them without one): use \"crc32c\" or \"auto\"",
                        ));
                    }
                    (_, ObjectChecksum::None) => *object_checksum = ObjectChecksum::Crc32c,
                    _ => {}
                }
                Some(ObjectLock {
                    mode,
                    retain,
                    legal_hold: lock.legal_hold.unwrap_or(false),
                })
            }
        };
        let storage_class = match s.storage_class.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                let valid = name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(self.invalid(
                        "storage.storage_class",
                        format!("`{name}` is not a storage class: upper-case letters, digits and '_', e.g. \"STANDARD_IA\", \"GLACIER_IR\", \"DEEP_ARCHIVE\""),
                    ));
                }
                Some(name.to_owned())
            }
        };
        let customer_key = if self.secrets.storage() {
            self.secret(
                "storage.sse_customer_key",
                s.sse_customer_key.as_ref(),
                s.sse_customer_key_file.as_ref(),
                None,
            )?
        } else {
            None
        };
        let encryption = match (s.sse.as_deref(), customer_key) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "storage.sse",
                    "is set together with sse_customer_key: choose one (SSE-C is its own mode)",
                ));
            }
            (None, Some(key)) => {
                let key = CustomerKey::parse(key.expose_secret())
                    .map_err(|m| self.invalid("storage.sse_customer_key", m))?;
                if let Some(url) = endpoint
                    && url.scheme() != "https"
                    && !is_loopback(url)
                {
                    return Err(self.invalid(
                        "storage.sse_customer_key",
                        format!("the endpoint {url} is plain http: an SSE-C key would cross the network in clear text; use https"),
                    ));
                }
                Encryption::Customer(key)
            }
            (None, None) => Encryption::BucketDefault,
            (Some("AES256"), None) => Encryption::S3Managed,
            (Some("aws:kms"), None) => Encryption::Kms {
                key_id: s.sse_kms_key_id.clone().filter(|k| !k.trim().is_empty()),
            },
            (Some(other), None) => {
                return Err(self.invalid(
                    "storage.sse",
                    format!("`{other}` is not valid: use \"AES256\" or \"aws:kms\" (for SSE-C, set sse_customer_key_file)"),
                ));
            }
        };
        if s.sse_kms_key_id.is_some() && !matches!(encryption, Encryption::Kms { .. }) {
            return Err(self.invalid(
                "storage.sse_kms_key_id",
                "is set, but storage.sse is not \"aws:kms\"",
            ));
        }
        Ok(Protection {
            object_lock,
            storage_class,
            encryption,
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_keys_are_32_bytes_of_base64() {
        let key = CustomerKey::parse("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        let Ok(key) = key else {
            panic!("a valid key was refused: {key:?}")
        };
        assert_eq!(key.md5_base64().len(), 24);
        assert!(!format!("{key:?}").contains(key.key_base64()));
        let short = CustomerKey::parse("c2hvcnQ=").map(|_| ());
        assert!(short.is_err_and(|m| m.contains("decodes to 5 bytes")));
        assert!(CustomerKey::parse("not base64!").is_err());
    }

    #[test]
    fn lock_modes_round_trip_their_s3_names() {
        for mode in [LockMode::Governance, LockMode::Compliance] {
            assert_eq!(LockMode::from_s3(mode.s3_name()), Some(mode));
        }
        assert_eq!(LockMode::from_s3("governance"), None);
    }
}
