//! What the store does to protect what we write ([`Protection`]): the bucket's Object Lock check
//! at start, the lock on each object and its confirmation (a store may accept the lock headers
//! and ignore them), what HEAD says about locks and cold storage classes, thawing, and deleting
//! every version of a key where versions hold the bytes.
//! Must not: decide what to keep (that is `prune`) or when to thaw (that is `restore`).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    GlacierJobParameters, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockRetention, ObjectLockRetentionMode, RestoreRequest, Tier,
};
use chrono::{DateTime, Utc};

use super::codes::{CodeKind, classify};
use super::{ObjectStore, StoreError};
use crate::config::LockMode;

/// Storage classes whose objects must be thawed (RestoreObject) before a GET.
const COLD_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// An object's lock, as HEAD reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockState {
    /// Retention mode, if the object has a retention.
    pub mode: Option<LockMode>,
    /// Until when nobody (compliance) or nobody without bypass (governance) may delete it.
    pub retain_until: Option<DateTime<Utc>>,
    /// A legal hold: no date, removed only explicitly.
    pub legal_hold: bool,
}

impl LockState {
    /// Whether the lock still forbids deleting the object at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.legal_hold || self.retain_until.is_some_and(|t| t > now)
    }

    /// "locked until 2027-01-05 04:00:00 UTC (governance)", "under a legal hold".
    pub fn describe(&self) -> String {
        let mut words = Vec::new();
        if let Some(until) = self.retain_until {
            let mode = self.mode.map_or(String::new(), |m| format!(" ({m})"));
            words.push(format!(
                "locked until {}{mode}",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if self.legal_hold {
            words.push("under a legal hold".to_owned());
        }
        if words.is_empty() {
            "not locked".to_owned()
        } else {
            words.join(", ")
        }
    }
}

/// Whether an object can be read now, as far as its storage class goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thaw {
    /// Readable: not in a cold class.
    NotNeeded,
    /// In a cold class and no thaw asked for.
    Needed,
    /// A thaw is under way.
    InProgress,
    /// In a cold class, with a readable copy restored.
    Thawed,
}

impl Thaw {
    /// From HEAD's storage class, archive status (Intelligent-Tiering's archive tiers) and
    /// `x-amz-restore`.
    pub(super) fn from_head(
        storage_class: Option<&str>,
        archived_tier: bool,
        restore: Option<&str>,
    ) -> Self {
        let cold = archived_tier || storage_class.is_some_and(|c| COLD_CLASSES.contains(&c));
        match restore {
            _ if !cold => Self::NotNeeded,
            None => Self::Needed,
            Some(r) if r.contains("ongoing-request=\"true\"") => Self::InProgress,
            Some(_) => Self::Thawed,
        }
    }

    /// Whether a GET would be refused now.
    pub fn blocks_reading(self) -> bool {
        matches!(self, Self::Needed | Self::InProgress)
    }
}

pub(super) fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

pub(super) fn to_smithy(t: DateTime<Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(t.timestamp())
}

pub(super) fn s3_mode(mode: LockMode) -> ObjectLockRetentionMode {
    ObjectLockRetentionMode::from(mode.s3_name())
}

impl ObjectStore {
    /// Until when an object written at `at` is locked, when a lock is configured: whole seconds
    /// (S3's precision), so that a HEAD compares equal.
    pub fn lock_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let lock = self.protection.object_lock?;
        let retain = chrono::Duration::from_std(lock.retain).ok()?;
        DateTime::from_timestamp(at.timestamp(), 0).map(|t| t + retain)
    }

    /// At start, when a lock is configured: the bucket must have Object Lock enabled. A store
    /// without it (Garage), or a bucket created without it, is refused with what to do, so that
    /// no archive is ever written unlocked. Not configured: nothing to check.
    pub async fn check_object_lock(&self) -> Result<(), StoreError> {
        if self.protection.object_lock.is_none() {
            return Ok(());
        }
        let refuse = |reason: String| StoreError::ObjectLockUnavailable {
            bucket: self.bucket.clone(),
            reason,
        };
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled);
                if enabled {
                    Ok(())
                } else {
                    Err(refuse(
                        "the bucket does not have Object Lock enabled (see README \"Immutability\" for how to enable it on your store)".into(),
                    ))
                }
            }
            Err(e) => {
                let kind = e.code().map(classify);
                let reason = match kind {
                    Some(CodeKind::LockNotConfigured) => {
                        "the bucket has no Object Lock configuration: enable Object Lock on the bucket (AWS: at creation, or on an existing versioned bucket with PutObjectLockConfiguration; see README \"Immutability\")".to_owned()
                    }
                    Some(CodeKind::Unsupported | CodeKind::ChecksumRefused) => {
                        "the store does not implement Object Lock (Garage, for one, does not): use a store that does (AWS S3, MinIO, Ceph RGW, Backblaze B2) or remove [storage.object_lock]".to_owned()
                    }
                    Some(CodeKind::Denied) => {
                        "the credentials may not read the bucket's Object Lock configuration: grant s3:GetBucketObjectLockConfiguration".to_owned()
                    }
                    Some(CodeKind::MissingBucket) => "the bucket does not exist".to_owned(),
                    _ => return Err(StoreError::from_sdk("GetObjectLockConfiguration", &self.bucket, e)),
                };
                Err(refuse(reason))
            }
        }
    }

    /// Makes sure `key` is locked as configured until at least `until`: a store may ignore the
    /// lock headers of a multipart upload (moto does), so the lock is read back, set with
    /// PutObjectRetention (and PutObjectLegalHold) where it falls short, and read back again.
    /// An object the store will not lock is an error: never report an unlocked archive as
    /// archived when a lock is configured.
    pub async fn ensure_locked(
        &self,
        key: &str,
        until: DateTime<Utc>,
    ) -> Result<LockState, StoreError> {
        let Some(lock) = self.protection.object_lock else {
            return Ok(LockState::default());
        };
        // A compliance lock is at least as strong as a governance one.
        let retention_ok = |s: &LockState| {
            (s.mode == Some(lock.mode) || s.mode == Some(LockMode::Compliance))
                && s.retain_until.is_some_and(|t| t >= until)
        };
        let satisfied = |s: &LockState| retention_ok(s) && (s.legal_hold || !lock.legal_hold);
        let found = self.head_lock(key).await?;
        if satisfied(&found) {
            return Ok(found);
        }
        if !retention_ok(&found) {
            // Never weaken an existing compliance lock: a governance request on it is refused.
            let mode = match found.mode {
                Some(LockMode::Compliance) => LockMode::Compliance,
                _ => lock.mode,
            };
            self.client
                .put_object_retention()
                .bucket(&self.bucket)
                .key(key)
                .retention(
                    ObjectLockRetention::builder()
                        .mode(s3_mode(mode))
                        .retain_until_date(to_smithy(until))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("PutObjectRetention", key, e))?;
        }
        if lock.legal_hold && !found.legal_hold {
            self.client
                .put_object_legal_hold()
                .bucket(&self.bucket)
                .key(key)
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::On)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("PutObjectLegalHold", key, e))?;
        }
        let now = self.head_lock(key).await?;
        if satisfied(&now) {
            Ok(now)
        } else {
            Err(StoreError::NotLocked {
                key: key.to_owned(),
                found: now.describe(),
            })
        }
    }

    async fn head_lock(&self, key: &str) -> Result<LockState, StoreError> {
        match self.head(key).await? {
            Some(info) => Ok(info.lock),
            None => Err(StoreError::Request {
                operation: "HeadObject",
                key: key.to_owned(),
                code: None,
                message: "the object is not there to lock".into(),
            }),
        }
    }

    /// Asks the store to restore a readable copy of a cold object for `days` (Standard tier).
    /// A thaw already under way is not an error.
    pub async fn request_thaw(&self, key: &str, days: u32) -> Result<(), StoreError> {
        let request = RestoreRequest::builder()
            .days(i32::try_from(days).unwrap_or(i32::MAX))
            .glacier_job_parameters(
                GlacierJobParameters::builder()
                    .tier(Tier::Standard)
                    .build()
                    .map_err(|e| StoreError::Request {
                        operation: "RestoreObject",
                        key: key.to_owned(),
                        code: None,
                        message: e.to_string(),
                    })?,
            )
            .build();
        match self
            .client
            .restore_object()
            .bucket(&self.bucket)
            .key(key)
            .restore_request(request)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code().map(classify) == Some(CodeKind::ThawUnderWay) => Ok(()),
            Err(e) => Err(StoreError::from_sdk("RestoreObject", key, e)),
        }
    }

    /// Deletes `key` for good: every version and delete marker of exactly this key (on a
    /// versioned bucket a plain DELETE only hides the bytes behind a delete marker). On a store
    /// without versions it is a plain DELETE. A version still locked is refused by the store.
    pub async fn delete_every_version(&self, key: &str) -> Result<(), StoreError> {
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
            {
                Ok(page) => page,
                Err(SdkError::ServiceError(e))
                    if e.err().code().map(classify) == Some(CodeKind::Unsupported) =>
                {
                    return self.delete(key).await;
                }
                Err(e) => return Err(StoreError::from_sdk("ListObjectVersions", key, e)),
            };
            let ours = |k: Option<&str>| k == Some(key);
            versions.extend(
                page.versions()
                    .iter()
                    .filter(|v| ours(v.key()))
                    .filter_map(|v| v.version_id().map(str::to_owned)),
            );
            versions.extend(
                page.delete_markers()
                    .iter()
                    .filter(|v| ours(v.key()))
                    .filter_map(|v| v.version_id().map(str::to_owned)),
            );
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        if versions.is_empty() {
            return self.delete(key).await;
        }
        for version in versions {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .version_id(&version)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("DeleteObject", key, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_classes_need_a_thaw_until_restored() {
        assert_eq!(
            Thaw::from_head(Some("STANDARD"), false, None),
            Thaw::NotNeeded
        );
        assert_eq!(
            Thaw::from_head(Some("GLACIER_IR"), false, None),
            Thaw::NotNeeded
        );
        assert_eq!(Thaw::from_head(None, false, None), Thaw::NotNeeded);
        assert_eq!(
            Thaw::from_head(Some("DEEP_ARCHIVE"), false, None),
            Thaw::Needed
        );
        assert_eq!(
            Thaw::from_head(Some("GLACIER"), false, Some("ongoing-request=\"true\"")),
            Thaw::InProgress
        );
        assert_eq!(
            Thaw::from_head(
                Some("GLACIER"),
                false,
                Some("ongoing-request=\"false\", expiry-date=\"Fri, 23 Dec 2026 00:00:00 GMT\"")
            ),
            Thaw::Thawed
        );
        assert_eq!(
            Thaw::from_head(Some("INTELLIGENT_TIERING"), true, None),
            Thaw::Needed
        );
        assert!(Thaw::Needed.blocks_reading() && !Thaw::Thawed.blocks_reading());
    }

    #[test]
    fn a_lock_holds_until_its_date_or_while_on_hold() {
        let until = DateTime::from_timestamp(2_000_000_000, 0).unwrap_or_default();
        let lock = LockState {
            mode: Some(LockMode::Governance),
            retain_until: Some(until),
            legal_hold: false,
        };
        assert!(lock.holds_at(until - chrono::Duration::seconds(1)));
        assert!(!lock.holds_at(until));
        assert!(lock.describe().contains("(governance)"));
        let hold = LockState {
            legal_hold: true,
            ..LockState::default()
        };
        assert!(hold.holds_at(until) && hold.describe() == "under a legal hold");
        assert_eq!(LockState::default().describe(), "not locked");
    }
}
