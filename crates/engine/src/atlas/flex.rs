//! The Flex backup endpoints (CONTRACT §2-§4): list snapshots, request a download, read and
//! list restore jobs, wait for a job's URL; and the one paging helper every listing uses.
//! Must not: authenticate or retry (that is `call` in `mod.rs`).

use reqwest::Method;
use tracing::debug;

use super::models::{self, Page, RestoreJob, Snapshot};
use super::{AtlasClient, AtlasError, MAX_PAGES, PAGE_SIZE, decode};

impl AtlasClient {
    pub(super) fn flex_path(project_id: &str, cluster: &str, rest: &str) -> String {
        format!("/api/atlas/v2/groups/{project_id}/flexClusters/{cluster}/backup/{rest}")
    }

    /// F1, every page. Snapshots that appear twice (the list changed while paging) are kept once.
    pub async fn list_snapshots(
        &self,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<Snapshot>, AtlasError> {
        let path = Self::flex_path(project_id, cluster, "snapshots");
        let mut all: Vec<Snapshot> = Vec::new();
        for s in self.list_all::<Snapshot>("list snapshots", &path).await? {
            if s.id.is_some() && !all.iter().any(|seen| seen.id == s.id) {
                all.push(s);
            }
        }
        Ok(all)
    }

    /// Every page of a listing. Atlas may serve fewer items than `itemsPerPage` on a page that is
    /// not the last, so a short page alone never ends the listing: it ends when a page is empty,
    /// or when the page has no `next` link and the items seen reach `totalCount` (or no count
    /// was given).
    pub(super) async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<Vec<T>, AtlasError> {
        let mut all: Vec<T> = Vec::new();
        for page_num in 1..=MAX_PAGES {
            let path =
                format!("{path}?pageNum={page_num}&itemsPerPage={PAGE_SIZE}&includeCount=true");
            let answer = self.call(operation, Method::GET, &path, None).await?;
            let page: Page<T> = decode(operation, &answer.body)?;
            let more = page.more_after(all.len());
            all.extend(page.results);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    /// F3: asks Atlas to prepare a download of one snapshot. Not idempotent: it is retried only
    /// when Atlas certainly did not act on it (429, 503, or a connection that never opened).
    pub async fn request_download(
        &self,
        project_id: &str,
        cluster: &str,
        snapshot_id: &str,
    ) -> Result<RestoreJob, AtlasError> {
        let body = serde_json::json!({ "snapshotId": snapshot_id });
        let answer = self
            .call(
                "request download",
                Method::POST,
                &Self::flex_path(project_id, cluster, "download"),
                Some(body),
            )
            .await?;
        decode("request download", &answer.body)
    }

    /// F5: one restore job.
    pub async fn get_restore_job(
        &self,
        project_id: &str,
        cluster: &str,
        job_id: &str,
    ) -> Result<RestoreJob, AtlasError> {
        let path = Self::flex_path(project_id, cluster, &format!("restoreJobs/{job_id}"));
        let answer = self
            .call("get restore job", Method::GET, &path, None)
            .await?;
        decode("get restore job", &answer.body)
    }

    /// F4, every page.
    pub async fn list_restore_jobs(
        &self,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<RestoreJob>, AtlasError> {
        let path = Self::flex_path(project_id, cluster, "restoreJobs");
        self.list_all("list restore jobs", &path).await
    }

    /// Polls a restore job until it has a download URL (returned at once when `job` already
    /// has one), FAILED, or `atlas.restore_timeout` passes.
    pub async fn wait_for_url(
        &self,
        project_id: &str,
        cluster: &str,
        mut job: RestoreJob,
    ) -> Result<RestoreJob, AtlasError> {
        let job_id = job.id.clone().unwrap_or_default();
        let snapshot_id = job.snapshot_id.clone().unwrap_or_default();
        let started = tokio::time::Instant::now();
        loop {
            match job.phase() {
                models::Phase::Failed => {
                    return Err(AtlasError::RestoreFailed {
                        job_id,
                        snapshot_id,
                    });
                }
                _ if job.snapshot_url.as_deref().is_some_and(|u| !u.is_empty()) => return Ok(job),
                phase => {
                    debug!(job = %job_id, status = phase.as_str(), "restore job not ready yet")
                }
            }
            if started.elapsed() >= self.inner.restore_timeout {
                return Err(AtlasError::RestoreTimeout {
                    job_id,
                    waited: started.elapsed(),
                    status: job.phase().as_str().to_owned(),
                });
            }
            tokio::time::sleep(self.inner.poll_interval).await;
            job = self.get_restore_job(project_id, cluster, &job_id).await?;
        }
    }
}
