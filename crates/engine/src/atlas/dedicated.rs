//! The backup endpoints of dedicated (M10+) clusters (CONTRACT §3): list snapshots (D1),
//! request a download (D5, `deliveryType: "download"`), read and list restore jobs (D6, D7);
//! their bodies (`DiskBackupReplicaSet`, `DiskBackupSnapshotRestoreJob`) mapped to the shared
//! models: lower-case statuses, a job with no `status` (ready when `deliveryUrl` is non-empty,
//! failed when `failed`, `expired` or `cancelled`), repeated `deliveryUrl` entries kept once.
//! Must not: authenticate or retry (that is `call` in `mod.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

use super::backups::BackupApi;
use super::models::{RestoreJob, Snapshot};
use super::{AtlasClient, AtlasError, DEDICATED_MEDIA_TYPE, decode};

/// The dedicated implementation of [`BackupApi`].
pub(super) struct Dedicated;

/// `…/clusters/{cluster}/backup/{rest}`.
pub(super) fn path(project_id: &str, cluster: &str, rest: &str) -> String {
    format!("/api/atlas/v2/groups/{project_id}/clusters/{cluster}/backup/{rest}")
}

/// `DiskBackupReplicaSet` (CONTRACT §3.1), the fields the archiver uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiskSnapshot {
    id: Option<String>,
    status: Option<String>,
    /// `replicaSet` or `shardedCluster`.
    #[serde(rename = "type")]
    layout: Option<String>,
    /// `scheduled`, `onDemand`, `fallback`.
    snapshot_type: Option<String>,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    mongod_version: Option<String>,
}

impl From<DiskSnapshot> for Snapshot {
    fn from(s: DiskSnapshot) -> Self {
        Snapshot {
            id: s.id,
            status: s.status,
            mongodb_version: s.mongod_version,
            // A dedicated snapshot has one time: when it was taken.
            scheduled_time: s.created_at,
            start_time: None,
            finish_time: s.created_at,
            expiration: s.expires_at,
            snapshot_type: s.snapshot_type,
            sharded: s
                .layout
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case("shardedCluster")),
        }
    }
}

/// `DiskBackupSnapshotRestoreJob` (CONTRACT §3.2), the fields the archiver uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiskJob {
    id: Option<String>,
    delivery_type: Option<String>,
    snapshot_id: Option<String>,
    /// A list (a single string is taken as one entry); `null` is none.
    #[serde(default, deserialize_with = "urls")]
    delivery_url: Vec<String>,
    failed: Option<bool>,
    expired: Option<bool>,
    cancelled: Option<bool>,
    expires_at: Option<DateTime<Utc>>,
}

/// `deliveryUrl` as a list, a lone string or `null`, leniently (CONTRACT §9).
fn urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        Many(Vec<Option<String>>),
        One(String),
    }
    Ok(match Option::<Urls>::deserialize(d)? {
        None => Vec::new(),
        Some(Urls::One(u)) => vec![u],
        Some(Urls::Many(v)) => v.into_iter().flatten().collect(),
    })
}

impl DiskJob {
    /// The shared model: `FAILED` when Atlas says failed, expired or cancelled, `COMPLETED` with
    /// the URL once one is listed, else `RUNNING`. A replica set's snapshot is one file: the
    /// same URL listed twice is one URL; two different ones are a sharded cluster's components.
    fn into_job(self, operation: &'static str) -> Result<RestoreJob, AtlasError> {
        let mut urls: Vec<String> = Vec::new();
        for url in self.delivery_url.into_iter().filter(|u| !u.is_empty()) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        if urls.len() > 1 {
            return Err(AtlasError::Decode {
                operation,
                message: format!(
                    "the download job lists {} different files; a replica set's snapshot is one",
                    urls.len()
                ),
            });
        }
        let ended = [self.failed, self.expired, self.cancelled];
        let status = if ended.into_iter().any(|f| f == Some(true)) {
            "FAILED"
        } else if urls.is_empty() {
            "RUNNING"
        } else {
            "COMPLETED"
        };
        Ok(RestoreJob {
            id: self.id,
            delivery_type: self.delivery_type,
            status: Some(status.to_owned()),
            snapshot_url: urls.pop(),
            expiration_date: self.expires_at,
            snapshot_id: self.snapshot_id,
        })
    }
}

#[async_trait]
impl BackupApi for Dedicated {
    async fn list_snapshots(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<Snapshot>, AtlasError> {
        let listed: Vec<DiskSnapshot> = client
            .list_all(
                "list snapshots",
                DEDICATED_MEDIA_TYPE,
                &path(project_id, cluster, "snapshots"),
            )
            .await?;
        Ok(listed.into_iter().map(Snapshot::from).collect())
    }

    async fn request_download(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
        snapshot_id: &str,
    ) -> Result<RestoreJob, AtlasError> {
        const OPERATION: &str = "request download";
        let body = serde_json::json!({ "deliveryType": "download", "snapshotId": snapshot_id });
        let answer = client
            .call(
                OPERATION,
                DEDICATED_MEDIA_TYPE,
                Method::POST,
                &path(project_id, cluster, "restoreJobs"),
                Some(body),
            )
            .await?;
        decode::<DiskJob>(OPERATION, &answer.body)?.into_job(OPERATION)
    }

    async fn get_restore_job(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
        job_id: &str,
    ) -> Result<RestoreJob, AtlasError> {
        const OPERATION: &str = "get restore job";
        let answer = client
            .call(
                OPERATION,
                DEDICATED_MEDIA_TYPE,
                Method::GET,
                &path(project_id, cluster, &format!("restoreJobs/{job_id}")),
                None,
            )
            .await?;
        decode::<DiskJob>(OPERATION, &answer.body)?.into_job(OPERATION)
    }

    async fn list_restore_jobs(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<RestoreJob>, AtlasError> {
        const OPERATION: &str = "list restore jobs";
        let jobs: Vec<DiskJob> = client
            .list_all(
                OPERATION,
                DEDICATED_MEDIA_TYPE,
                &path(project_id, cluster, "restoreJobs"),
            )
            .await?;
        // A job this version cannot read (a sharded cluster's) is not one it would reuse.
        Ok(jobs
            .into_iter()
            .filter_map(|j| j.into_job(OPERATION).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atlas::models::Phase;

    fn job(json: &str) -> Result<RestoreJob, AtlasError> {
        serde_json::from_str::<DiskJob>(json)
            .map_err(|e| AtlasError::Decode {
                operation: "test",
                message: e.to_string(),
            })?
            .into_job("test")
    }

    #[test]
    fn a_job_without_status_is_ready_when_it_lists_a_url_and_failed_when_atlas_says_so() {
        let waiting = job(r#"{"id":"6a7948342c88faeba59eb866","deliveryType":"download","deliveryUrl":[],"expired":false,"failed":false,"cancelled":false}"#).unwrap();
        assert_eq!(waiting.phase(), Phase::Running);
        assert!(waiting.snapshot_url.is_none());
        let twice =
            "https://restore-6a79.example.net:27017/tok/restore-6a79468a2c88faeba59de489.tar.gz";
        let ready = job(&format!(r#"{{"id":"6a7948342c88faeba59eb866","deliveryType":"download","deliveryUrl":["{twice}","{twice}"],"expiresAt":"2026-08-10T04:44:52Z"}}"#)).unwrap();
        assert_eq!(ready.phase(), Phase::Completed);
        assert_eq!(
            ready.snapshot_url.as_deref(),
            Some(twice),
            "one URL, listed twice"
        );
        assert!(ready.is_download());
        for flag in ["failed", "expired", "cancelled"] {
            let gone = job(&format!(
                r#"{{"id":"6a7948342c88faeba59eb866","deliveryUrl":["{twice}"],"{flag}":true}}"#
            ))
            .unwrap();
            assert_eq!(gone.phase(), Phase::Failed, "{flag}");
        }
        assert!(
            job(r#"{"id":"6a7948342c88faeba59eb866","deliveryUrl":["https://a/x.tar.gz","https://b/y.tar.gz"]}"#).is_err(),
            "two files are a sharded cluster's"
        );
        let lenient = job(&format!(r#"{{"id":"6a7948342c88faeba59eb866","deliveryUrl":"{twice}","failed":null,"expired":null,"cancelled":null}}"#)).unwrap();
        assert_eq!(
            lenient.phase(),
            Phase::Completed,
            "a lone string, and nulls"
        );
        let none = job(r#"{"id":"6a7948342c88faeba59eb866","deliveryUrl":null}"#).unwrap();
        assert_eq!(none.phase(), Phase::Running);
    }

    #[test]
    fn a_body_that_cannot_be_read_is_reported_without_its_text() {
        let body = br#"{"id":"6a7948342c88faeba59eb866","failed":"https://restore-x.example/SECRETTOKEN/restore.tar.gz"}"#;
        let e = decode::<DiskJob>("get restore job", body).err().unwrap();
        let shown = e.to_string();
        assert!(!shown.contains("SECRETTOKEN"), "{shown}");
        assert!(shown.contains("line 1 column"), "{shown}");
    }

    #[test]
    fn a_replica_set_snapshot_maps_its_lower_case_status_and_type() {
        let s: Snapshot = serde_json::from_str::<DiskSnapshot>(
            r#"{"id":"6a79468a2c88faeba59de489","status":"completed","type":"replicaSet","snapshotType":"onDemand","createdAt":"2026-08-10T03:30:00Z","expiresAt":"2026-08-11T03:30:00Z","mongodVersion":"8.0.4","storageSizeBytes":123,"frequencyType":"ondemand"}"#,
        )
        .unwrap()
        .into();
        assert_eq!(s.phase(), Phase::Completed);
        assert_eq!(s.snapshot_type.as_deref(), Some("onDemand"));
        assert!(!s.sharded);
        assert_eq!(s.mongodb_version.as_deref(), Some("8.0.4"));
        assert!(s.finish_time.is_some());
        let running: Snapshot = serde_json::from_str::<DiskSnapshot>(
            r#"{"id":"6a79468a2c88faeba59de489","status":"inProgress","type":"shardedCluster"}"#,
        )
        .unwrap()
        .into();
        assert_eq!(running.phase(), Phase::Running);
        assert!(running.sharded);
    }
}
