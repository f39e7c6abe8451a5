//! The backups of one cluster, whatever its kind: [`ClusterBackups`] is the one interface the
//! pipeline and the preflight use (list snapshots, request a download, read and list download
//! jobs, wait for a job's URL). Each kind implements [`BackupApi`] (`flex.rs`, `dedicated.rs`)
//! and maps its own bodies to the shared [`Snapshot`] and [`RestoreJob`]; nothing above this
//! module asks which kind it talks to. Also the paging helper every listing uses.
//! Must not: authenticate or retry (that is `call` in `mod.rs`).

use async_trait::async_trait;
use reqwest::Method;
use tracing::debug;

use super::models::{Page, Phase, RestoreJob, Snapshot};
use super::{AtlasClient, AtlasError, MAX_PAGES, PAGE_SIZE, decode};
use crate::target::ClusterKind;

/// The backup endpoints of one kind of cluster.
#[async_trait]
pub(super) trait BackupApi: Send + Sync {
    /// Every snapshot of the cluster, each once.
    async fn list_snapshots(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<Snapshot>, AtlasError>;

    /// Asks Atlas to prepare a download of one snapshot (not idempotent).
    async fn request_download(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
        snapshot_id: &str,
    ) -> Result<RestoreJob, AtlasError>;

    /// One download job.
    async fn get_restore_job(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
        job_id: &str,
    ) -> Result<RestoreJob, AtlasError>;

    /// Every download job of the cluster.
    async fn list_restore_jobs(
        &self,
        client: &AtlasClient,
        project_id: &str,
        cluster: &str,
    ) -> Result<Vec<RestoreJob>, AtlasError>;
}

/// The backups of one cluster. Cheap: borrows the client.
pub struct ClusterBackups<'a> {
    client: &'a AtlasClient,
    api: &'static dyn BackupApi,
    project_id: &'a str,
    cluster: &'a str,
}

impl AtlasClient {
    /// The backups of `project_id/cluster`, a cluster of `kind`.
    pub fn cluster<'a>(
        &'a self,
        kind: ClusterKind,
        project_id: &'a str,
        cluster: &'a str,
    ) -> ClusterBackups<'a> {
        let api: &'static dyn BackupApi = match kind {
            ClusterKind::Flex => &super::flex::Flex,
            ClusterKind::Dedicated => &super::dedicated::Dedicated,
        };
        ClusterBackups {
            client: self,
            api,
            project_id,
            cluster,
        }
    }

    /// Every page of a listing. Atlas may serve fewer items than `itemsPerPage` on a page that is
    /// not the last, so a short page alone never ends the listing: it ends when a page is empty,
    /// or when the page has no `next` link and the items seen reach `totalCount` (or no count
    /// was given).
    pub(super) async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        media_type: &'static str,
        path: &str,
    ) -> Result<Vec<T>, AtlasError> {
        let mut all: Vec<T> = Vec::new();
        for page_num in 1..=MAX_PAGES {
            let path =
                format!("{path}?pageNum={page_num}&itemsPerPage={PAGE_SIZE}&includeCount=true");
            let answer = self
                .call(operation, media_type, Method::GET, &path, None)
                .await?;
            let page: Page<T> = decode(operation, &answer.body)?;
            let more = page.more_after(all.len());
            all.extend(page.results);
            if !more {
                break;
            }
        }
        Ok(all)
    }
}

impl ClusterBackups<'_> {
    /// Every snapshot, every page; one that appears twice (the list changed while paging) is
    /// kept once.
    pub async fn list_snapshots(&self) -> Result<Vec<Snapshot>, AtlasError> {
        let mut all: Vec<Snapshot> = Vec::new();
        for s in self
            .api
            .list_snapshots(self.client, self.project_id, self.cluster)
            .await?
        {
            if s.id.is_some() && !all.iter().any(|seen| seen.id == s.id) {
                all.push(s);
            }
        }
        Ok(all)
    }

    /// Asks Atlas to prepare a download of one snapshot. Not idempotent: it is retried only
    /// when Atlas certainly did not act on it (429, 503, or a connection that never opened).
    pub async fn request_download(&self, snapshot_id: &str) -> Result<RestoreJob, AtlasError> {
        self.api
            .request_download(self.client, self.project_id, self.cluster, snapshot_id)
            .await
    }

    /// One download job.
    pub async fn get_restore_job(&self, job_id: &str) -> Result<RestoreJob, AtlasError> {
        self.api
            .get_restore_job(self.client, self.project_id, self.cluster, job_id)
            .await
    }

    /// Every download job, every page.
    pub async fn list_restore_jobs(&self) -> Result<Vec<RestoreJob>, AtlasError> {
        self.api
            .list_restore_jobs(self.client, self.project_id, self.cluster)
            .await
    }

    /// Polls a download job until it has a URL (returned at once when `job` already has one),
    /// failed, or `atlas.restore_timeout` passes.
    pub async fn wait_for_url(&self, mut job: RestoreJob) -> Result<RestoreJob, AtlasError> {
        let job_id = job.id.clone().unwrap_or_default();
        let snapshot_id = job.snapshot_id.clone().unwrap_or_default();
        let started = tokio::time::Instant::now();
        loop {
            match job.phase() {
                Phase::Failed => {
                    return Err(AtlasError::RestoreFailed {
                        job_id,
                        snapshot_id,
                    });
                }
                _ if job.has_urls() => return Ok(job),
                phase => {
                    debug!(job = %job_id, status = phase.as_str(), "restore job not ready yet")
                }
            }
            if started.elapsed() >= self.client.inner.restore_timeout {
                return Err(AtlasError::RestoreTimeout {
                    job_id,
                    waited: started.elapsed(),
                    status: job.phase().as_str().to_owned(),
                });
            }
            tokio::time::sleep(self.client.inner.poll_interval).await;
            job = self.get_restore_job(&job_id).await?;
        }
    }
}
