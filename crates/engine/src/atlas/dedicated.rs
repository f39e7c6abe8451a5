//! The backup endpoints of dedicated (M10+) clusters (CONTRACT §3): list snapshots (D1 for a
//! replica set's, D3 for a sharded cluster's), request a download (D5, `deliveryType:
//! "download"`), read and list restore jobs (D6, D7); their bodies (`DiskBackupReplicaSet`,
//! `DiskBackupShardedClusterSnapshot`, `DiskBackupSnapshotRestoreJob`) mapped to the shared
//! models: lower-case statuses, a job with no `status` (ready when `deliveryUrl` is non-empty,
//! or, for a sharded cluster, when every `components` entry has its URL; failed when `failed`,
//! `expired` or `cancelled`), repeated `deliveryUrl` entries kept once.
//! Must not: authenticate or retry (that is `call` in `mod.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use tracing::debug;

use super::backups::BackupApi;
use super::models::{JobComponent, Page, RestoreJob, Snapshot};
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
            replica_sets: Vec::new(),
        }
    }
}

/// `DiskBackupShardedClusterSnapshot` (CONTRACT §3.1, D3), the fields the archiver uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShardedSnapshot {
    #[serde(flatten)]
    snapshot: DiskSnapshot,
    #[serde(default)]
    members: Vec<Member>,
}

/// `members[]`: the shards and the config server.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    replica_set_name: Option<String>,
}

impl From<ShardedSnapshot> for Snapshot {
    fn from(s: ShardedSnapshot) -> Self {
        Snapshot {
            sharded: true,
            replica_sets: s
                .members
                .into_iter()
                .filter_map(|m| m.replica_set_name)
                .collect(),
            ..Snapshot::from(s.snapshot)
        }
    }
}

/// `DiskBackupRestoreMember`: one file of a sharded cluster's download.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiskComponent {
    download_url: Option<String>,
    replica_set_name: Option<String>,
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
    /// A sharded cluster's files, one per replica set; `null` is none.
    #[serde(default)]
    components: Option<Vec<DiskComponent>>,
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
        let ended = [self.failed, self.expired, self.cancelled]
            .into_iter()
            .any(|f| f == Some(true));
        let components = self.components.unwrap_or_default();
        if !components.is_empty() {
            return sharded_job(
                self.id,
                self.delivery_type,
                self.snapshot_id,
                self.expires_at,
                ended,
                components,
                operation,
            );
        }
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
        let status = if ended {
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
            components: Vec::new(),
        })
    }
}

/// A sharded cluster's job: ready when every component has a URL; a component without a
/// replica set name, or two with the same one, cannot be archived under its own name.
fn sharded_job(
    id: Option<String>,
    delivery_type: Option<String>,
    snapshot_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    ended: bool,
    listed: Vec<DiskComponent>,
    operation: &'static str,
) -> Result<RestoreJob, AtlasError> {
    let mut components: Vec<JobComponent> = Vec::new();
    for c in listed {
        let Some(replica_set) = c.replica_set_name.filter(|n| !n.is_empty()) else {
            return Err(AtlasError::Decode {
                operation,
                message: "a component of the download job names no replica set".into(),
            });
        };
        let url = c.download_url.unwrap_or_default();
        match components.iter().find(|k| k.replica_set == replica_set) {
            Some(k) if k.url == url => continue,
            Some(_) => {
                return Err(AtlasError::Decode {
                    operation,
                    message: format!(
                        "the download job lists replica set {replica_set} twice, with different files"
                    ),
                });
            }
            None => components.push(JobComponent { replica_set, url }),
        }
    }
    let ready = components.iter().all(|c| !c.url.is_empty());
    let status = if ended {
        "FAILED"
    } else if ready {
        "COMPLETED"
    } else {
        "RUNNING"
    };
    Ok(RestoreJob {
        id,
        delivery_type,
        status: Some(status.to_owned()),
        snapshot_url: None,
        expiration_date: expires_at,
        snapshot_id,
        components,
    })
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
        let mut snapshots: Vec<Snapshot> = listed.into_iter().map(Snapshot::from).collect();
        // A sharded cluster's snapshots are on their own endpoint (D3, no paging declared). A
        // cluster that answered D1 but refuses D3 with a client error has none there.
        const SHARDED: &str = "list sharded snapshots";
        match client
            .call(
                SHARDED,
                DEDICATED_MEDIA_TYPE,
                Method::GET,
                &path(project_id, cluster, "snapshots/shardedClusters"),
                None,
            )
            .await
        {
            Ok(answer) => {
                let page = decode::<Page<ShardedSnapshot>>(SHARDED, &answer.body)?;
                for s in page.results.into_iter().map(Snapshot::from) {
                    match snapshots
                        .iter_mut()
                        .find(|x| x.id.is_some() && x.id == s.id)
                    {
                        Some(known) => *known = s,
                        None => snapshots.push(s),
                    }
                }
            }
            Err(AtlasError::Api {
                status: 400 | 404 | 405,
                error_code,
                ..
            }) => {
                debug!(error_code = %error_code, "no sharded-cluster snapshot listing for this cluster");
            }
            Err(e) => return Err(e),
        }
        Ok(snapshots)
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
    fn a_sharded_job_is_ready_when_every_component_has_its_url() {
        let waiting = job(r#"{"id":"6a7948342c88faeba59eb866","deliveryUrl":[],"components":[{"replicaSetName":"atlas-x-shard-0"},{"replicaSetName":"atlas-x-config-0","downloadUrl":"https://a/c.tar.gz"}]}"#).unwrap();
        assert_eq!(waiting.phase(), Phase::Running);
        assert!(!waiting.has_urls());
        let ready = job(r#"{"id":"6a7948342c88faeba59eb866","deliveryUrl":["https://a/s0.tar.gz","https://a/c.tar.gz"],"components":[{"replicaSetName":"atlas-x-shard-0","downloadUrl":"https://a/s0.tar.gz"},{"replicaSetName":"atlas-x-config-0","downloadUrl":"https://a/c.tar.gz"},{"replicaSetName":"atlas-x-shard-0","downloadUrl":"https://a/s0.tar.gz"}]}"#).unwrap();
        assert_eq!(ready.phase(), Phase::Completed);
        assert!(ready.has_urls());
        assert!(ready.snapshot_url.is_none());
        let sets: Vec<&str> = ready
            .components
            .iter()
            .map(|c| c.replica_set.as_str())
            .collect();
        assert_eq!(
            sets,
            ["atlas-x-shard-0", "atlas-x-config-0"],
            "one entry listed twice is one"
        );
        assert!(
            !format!("{ready:?}").contains("https://"),
            "Debug hides the URLs"
        );
        let failed = job(r#"{"id":"6a7948342c88faeba59eb866","failed":true,"components":[{"replicaSetName":"atlas-x-shard-0","downloadUrl":"https://a/s0.tar.gz"}]}"#).unwrap();
        assert_eq!(failed.phase(), Phase::Failed);
        assert!(job(r#"{"id":"6a7948342c88faeba59eb866","components":[{"downloadUrl":"https://a/s0.tar.gz"}]}"#).is_err(), "a component without a name");
        assert!(job(r#"{"id":"6a7948342c88faeba59eb866","components":[{"replicaSetName":"r","downloadUrl":"https://a/1"},{"replicaSetName":"r","downloadUrl":"https://a/2"}]}"#).is_err(), "one name, two files");
        let sharded: ShardedSnapshot = serde_json::from_str(r#"{"id":"6a79468a2c88faeba59de489","status":"completed","type":"shardedCluster","snapshotType":"scheduled","createdAt":"2026-08-10T03:40:36Z","members":[{"cloudProvider":"AWS","id":"6a79468a2c88faeba59de400","replicaSetName":"atlas-x-shard-0"},{"cloudProvider":"AWS","id":"6a79468a2c88faeba59de401","replicaSetName":"atlas-x-config-0"}]}"#).unwrap();
        let s = Snapshot::from(sharded);
        assert!(s.sharded);
        assert_eq!(s.replica_sets, ["atlas-x-shard-0", "atlas-x-config-0"]);
        assert_eq!(s.snapshot_type.as_deref(), Some("scheduled"));
        assert_eq!(s.phase(), Phase::Completed);
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
