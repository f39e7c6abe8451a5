//! The Flex backup endpoints (CONTRACT §2): list snapshots (F1), request a download (F3), read
//! and list restore jobs (F5, F4). Their bodies are the shared models as they are.
//! Must not: authenticate or retry (that is `call` in `mod.rs`).

use async_trait::async_trait;
use reqwest::Method;

use super::backups::BackupApi;
use super::models::{RestoreJob, Snapshot};
use super::{AtlasClient, AtlasError, FLEX_MEDIA_TYPE, decode};

/// The Flex implementation of [`BackupApi`].
pub(super) struct Flex;

/// `…/flexClusters/{cluster}/backup/{rest}`.
pub(super) fn path(project_id: &str, cluster: &str, rest: &str) -> String {
    format!("/api/atlas/v2/groups/{project_id}/flexClusters/{cluster}/backup/{rest}")
}

#[async_trait]
impl BackupApi for Flex {
    async fn list_snapshots(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<Snapshot>, AtlasError> {
        client
            .list_all(
                "list snapshots",
                FLEX_MEDIA_TYPE,
                &path(project_id, cluster, "snapshots"),
            )
            .await
    }

    async fn request_download(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
        snapshot_id: &str,
    ) -> Result<RestoreJob, AtlasError> {
        let body = serde_json::json!({ "snapshotId": snapshot_id });
        let answer = client
            .call(
                "request download",
                FLEX_MEDIA_TYPE,
                Method::POST,
                &path(project_id, cluster, "download"),
                Some(body),
            )
            .await?;
        decode("request download", &answer.body)
    }

    async fn get_restore_job(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
        job_id: &str,
    ) -> Result<RestoreJob, AtlasError> {
        let answer = client
            .call(
                "get restore job",
                FLEX_MEDIA_TYPE,
                Method::GET,
                &path(project_id, cluster, &format!("restoreJobs/{job_id}")),
                None,
            )
            .await?;
        decode("get restore job", &answer.body)
    }

    async fn list_restore_jobs(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<RestoreJob>, AtlasError> {
        client
            .list_all(
                "list restore jobs",
                FLEX_MEDIA_TYPE,
                &path(project_id, cluster, "restoreJobs"),
            )
            .await
    }
}
