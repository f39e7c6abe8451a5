//! Atlas Administration API v2 client for Flex cluster backups (`../shared/atlas-api/CONTRACT.md`):
//! list snapshots (all pages), request a download, wait for the restore job's URL. Owns
//! authentication, the versioned media type, error envelopes and the retry policy for API calls.
//! Must not: touch S3 or the journal, or ever send credentials to a snapshot URL.
//! Over 500 lines: the error type, the client and its paging and call loop; the Flex endpoints move to their own file with the dedicated ones (issue 12).

mod auth;
pub mod models;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, warn};
use url::Url;

use crate::config::{AtlasConfig, AtlasCredentials};
use crate::reason::Reason;
use crate::retry::Backoff;
use auth::{CachedToken, DigestChallenge, DigestState, TokenCache, refresh_deadline};
use models::{ApiErrorBody, OAuthErrorBody, Page, RestoreJob, Snapshot, TokenResponse};

/// The only resource version the Flex endpoints accept (CONTRACT §1).
pub const FLEX_MEDIA_TYPE: &str = "application/vnd.atlas.2024-11-13+json";
const PAGE_SIZE: usize = 100;
/// A safety stop for paging: 500 pages of 100 is far beyond any Flex cluster's 8 snapshots.
const MAX_PAGES: u32 = 500;
/// How long a rejected login makes later calls fail without asking Atlas again.
const AUTH_FAILURE_MEMO: Duration = Duration::from_secs(20);

/// What can go wrong talking to Atlas. Messages say what to do where the user can act.
#[derive(Debug, thiserror::Error)]
pub enum AtlasError {
    /// Credentials rejected. Never retried beyond one token refresh.
    #[error(
        "Atlas rejected the credentials ({detail}): check atlas.client_id/client_secret or public_key/private_key, and that the key's IP access list allows this host"
    )]
    Unauthorized {
        /// What Atlas said.
        detail: String,
    },
    /// Atlas answered with an error envelope.
    #[error("Atlas {operation} failed: HTTP {status} {error_code}: {detail}{hint}")]
    Api {
        /// Which call.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// `errorCode` from the envelope.
        error_code: String,
        /// `detail` from the envelope.
        detail: String,
        /// What to do about it, if we know.
        hint: &'static str,
    },
    /// Network trouble that outlasted the retries.
    #[error("Atlas {operation} failed after {attempts} attempts: {message}")]
    Transport {
        /// Which call.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// A 2xx body we could not read.
    #[error("Atlas {operation} returned a body that is not the expected JSON: {message}")]
    Decode {
        /// Which call.
        operation: &'static str,
        /// Parser message.
        message: String,
    },
    /// The restore job ended in FAILED.
    #[error(
        "Atlas restore job {job_id} for snapshot {snapshot_id} FAILED; a later run requests a new download"
    )]
    RestoreFailed {
        /// Job id.
        job_id: String,
        /// Snapshot id.
        snapshot_id: String,
    },
    /// The restore job did not produce a URL in time.
    #[error(
        "Atlas restore job {job_id} produced no download URL within {waited:?} (last status {status}); raise atlas.restore_timeout if Atlas is slow"
    )]
    RestoreTimeout {
        /// Job id.
        job_id: String,
        /// How long we waited.
        waited: Duration,
        /// Last status seen.
        status: String,
    },
}

impl AtlasError {
    /// The errorCode, or a short reason, for journal rows and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unauthorized { .. } => Reason::Unauthorized,
            Self::Api { error_code, .. } => Reason::AtlasCode(error_code.clone()),
            Self::Transport { .. } => Reason::AtlasUnreachable,
            Self::Decode { .. } => Reason::AtlasBadResponse,
            Self::RestoreFailed { .. } => Reason::RestoreJobFailed,
            Self::RestoreTimeout { .. } => Reason::RestoreJobTimeout,
        }
    }

    /// Whether a later attempt may succeed: network trouble, Atlas's own errors, rate limits.
    /// (A 5xx on the download POST lands here too; the next attempt's POST is answered 409 if
    /// the first one did create a job, and the pipeline then reuses that job.)
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether this says the snapshot (or cluster) no longer exists.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }
}

enum Auth {
    ServiceAccount(TokenCache),
    ApiKey(DigestState),
    Anonymous,
}

/// A cheap-to-clone handle on the Atlas API.
#[derive(Clone)]
pub struct AtlasClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    backoff: Backoff,
    max_attempts: u32,
    poll_interval: Duration,
    restore_timeout: Duration,
    /// Once credentials are rejected, later calls fail fast with the same message for
    /// [`AUTH_FAILURE_MEMO`], so that ten targets do not make ten rounds of failing logins; after
    /// that the next call tries again (an identity-provider hiccup or a fixed IP access list must
    /// not stop a long-lived daemon until it is restarted).
    auth_failure: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

/// One response that passed status checks.
struct Answer {
    body: bytes::Bytes,
}

impl AtlasClient {
    /// Builds a client from validated settings.
    pub fn new(config: &AtlasConfig) -> Result<Self, AtlasError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("atlas-archiver/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AtlasError::Transport {
                operation: "client setup",
                attempts: 0,
                message: e.to_string(),
            })?;
        let auth = match &config.credentials {
            AtlasCredentials::ServiceAccount {
                client_id,
                client_secret,
            } => Auth::ServiceAccount(TokenCache::new(client_id.clone(), client_secret.clone())),
            AtlasCredentials::ApiKey {
                public_key,
                private_key,
            } => Auth::ApiKey(DigestState::new(public_key.clone(), private_key.clone())),
            AtlasCredentials::NotLoaded => Auth::Anonymous,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config.base_url.clone(),
                auth,
                backoff: Backoff {
                    base: config.retry.base_delay,
                    max: config.retry.max_delay,
                },
                max_attempts: config.retry.max_attempts,
                poll_interval: config.poll_interval,
                restore_timeout: config.restore_timeout,
                auth_failure: std::sync::Mutex::new(None),
            }),
        })
    }

    fn flex_path(project_id: &str, cluster: &str, rest: &str) -> String {
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
    async fn list_all<T: serde::de::DeserializeOwned>(
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

    fn remembered_auth_failure(&self) -> Option<AtlasError> {
        let mut guard = self.inner.auth_failure.lock().ok()?;
        match guard.as_ref() {
            Some((detail, at)) if at.elapsed() < AUTH_FAILURE_MEMO => {
                Some(AtlasError::Unauthorized {
                    detail: detail.clone(),
                })
            }
            Some(_) => {
                *guard = None;
                None
            }
            None => None,
        }
    }

    fn remember_auth_failure(&self, detail: &str) -> AtlasError {
        if let Ok(mut guard) = self.inner.auth_failure.lock() {
            *guard = Some((detail.to_owned(), std::time::Instant::now()));
        }
        AtlasError::Unauthorized {
            detail: detail.to_owned(),
        }
    }

    /// One API call with authentication and the retry policy:
    /// 429 waits for `Retry-After` (else backoff); 5xx and connection errors back off; 401
    /// refreshes the token (or answers the Digest challenge) once; other 4xx fail at once.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, AtlasError> {
        if let Some(e) = self.remembered_auth_failure() {
            return Err(e);
        }
        let url = self
            .inner
            .base
            .join(path_and_query)
            .map_err(|e| AtlasError::Transport {
                operation,
                attempts: 0,
                message: format!("bad URL: {e}"),
            })?;
        let idempotent = method == Method::GET;
        let body_bytes = body.map(|b| b.to_string());
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let (auth_header, token_used) = self.authorization(&method, path_and_query).await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, FLEX_MEDIA_TYPE);
            if let Some(h) = &auth_header {
                request = request.header(AUTHORIZATION, h.expose_secret());
            }
            if let Some(b) = &body_bytes {
                request = request
                    .header(CONTENT_TYPE, FLEX_MEDIA_TYPE)
                    .body(b.clone());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    // A POST whose connection failed before any response may or may not have
                    // reached Atlas only if the request was sent; connect errors are safe.
                    let safe = idempotent || e.is_connect();
                    if safe && attempt < self.inner.max_attempts {
                        let delay = self.inner.backoff.delay(attempt);
                        warn!(operation, attempt, error = %e.without_url(), ?delay, "Atlas unreachable; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(AtlasError::Transport {
                        operation,
                        attempts: attempt,
                        message: e.without_url().to_string(),
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            if status.is_success() {
                return Ok(Answer { body });
            }
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                reauthenticated = true;
                if self
                    .prepare_reauthentication(&headers, token_used.as_ref())
                    .await
                {
                    attempt -= 1; // the challenge round trip is not a failed attempt
                    continue;
                }
            }
            let envelope: ApiErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let error_code = envelope
                .error_code
                .clone()
                .unwrap_or_else(|| status.as_u16().to_string());
            let detail = envelope
                .detail
                .clone()
                .or(envelope.reason.clone())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            if status == StatusCode::UNAUTHORIZED {
                return Err(self.remember_auth_failure(&format!("HTTP 401 {error_code}: {detail}")));
            }
            let retry_after = retry_after(&headers);
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
                || (idempotent && status.is_server_error());
            if retryable && attempt < self.inner.max_attempts {
                let delay = self.inner.backoff.delay_with_hint(attempt, retry_after);
                warn!(operation, attempt, status = status.as_u16(), error_code = %error_code, ?delay, "Atlas asked us to retry");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(AtlasError::Api {
                operation,
                status: status.as_u16(),
                error_code,
                detail,
                hint: hint_for(status),
            });
        }
    }

    /// The `Authorization` value for the next attempt, and the bearer token it carries.
    async fn authorization(
        &self,
        method: &Method,
        path_and_query: &str,
    ) -> Result<(Option<SecretString>, Option<SecretString>), AtlasError> {
        match &self.inner.auth {
            Auth::Anonymous => Ok((None, None)),
            Auth::ApiKey(state) => Ok((
                state
                    .authorization(method.as_str(), path_and_query)
                    .map(SecretString::from),
                None,
            )),
            Auth::ServiceAccount(cache) => {
                let token = self.token(cache).await?;
                Ok((
                    Some(SecretString::from(format!(
                        "Bearer {}",
                        token.expose_secret()
                    ))),
                    Some(token),
                ))
            }
        }
    }

    /// After a 401: drop the token, or take the Digest challenge. Returns whether a retry makes sense.
    async fn prepare_reauthentication(
        &self,
        headers: &HeaderMap,
        token_used: Option<&SecretString>,
    ) -> bool {
        match &self.inner.auth {
            Auth::Anonymous => false,
            Auth::ServiceAccount(cache) => {
                if let Some(t) = token_used {
                    cache.invalidate(t.expose_secret()).await;
                }
                true
            }
            Auth::ApiKey(state) => {
                let challenge = headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(DigestChallenge::parse);
                match challenge {
                    Some(c) => {
                        state.remember(c);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// The cached token, or a new one. Holding the lock during the request makes refresh single-flight.
    async fn token(&self, cache: &TokenCache) -> Result<SecretString, AtlasError> {
        let mut slot = cache.slot.lock().await;
        if let Some(t) = slot.as_ref()
            && std::time::Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let fetched = self.fetch_token(cache).await?;
        let value = SecretString::from(fetched.access_token);
        *slot = Some(CachedToken {
            value: value.clone(),
            refresh_at: refresh_deadline(fetched.expires_in),
        });
        Ok(value)
    }

    async fn fetch_token(&self, cache: &TokenCache) -> Result<TokenResponse, AtlasError> {
        const OPERATION: &str = "token request";
        if let Some(e) = self.remembered_auth_failure() {
            return Err(e);
        }
        let url = self
            .inner
            .base
            .join("/api/oauth/token")
            .map_err(|e| AtlasError::Transport {
                operation: OPERATION,
                attempts: 0,
                message: e.to_string(),
            })?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            cache.client_id,
            cache.client_secret.expose_secret()
        ));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .inner
                .http
                .post(url.clone())
                .header(AUTHORIZATION, format!("Basic {basic}"))
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await;
            let response = match result {
                Ok(r) => r,
                Err(e) if attempt < self.inner.max_attempts => {
                    let delay = self.inner.backoff.delay(attempt);
                    warn!(operation = OPERATION, attempt, error = %e.without_url(), ?delay, "Atlas unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => {
                    return Err(AtlasError::Transport {
                        operation: OPERATION,
                        attempts: attempt,
                        message: e.without_url().to_string(),
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            if status.is_success() {
                return decode(OPERATION, &body);
            }
            if matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                let e: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                let detail = format!(
                    "token endpoint HTTP {}: {} {}",
                    status.as_u16(),
                    e.error.unwrap_or_default(),
                    e.error_description.unwrap_or_default()
                );
                return Err(self.remember_auth_failure(detail.trim()));
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < self.inner.max_attempts
            {
                let delay = self
                    .inner
                    .backoff
                    .delay_with_hint(attempt, retry_after(&headers));
                warn!(
                    operation = OPERATION,
                    attempt,
                    status = status.as_u16(),
                    ?delay,
                    "token endpoint asked us to retry"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(AtlasError::Api {
                operation: OPERATION,
                status: status.as_u16(),
                error_code: status.as_u16().to_string(),
                detail: String::from_utf8_lossy(&body).chars().take(200).collect(),
                hint: "",
            });
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<T, AtlasError> {
    serde_json::from_slice(body).map_err(|e| AtlasError::Decode {
        operation,
        message: e.to_string(),
    })
}

/// `Retry-After` in seconds (Atlas does not send HTTP dates).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn hint_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        403 => {
            " (the service account or API key needs the Project Backup Export Operator role on this project)"
        }
        404 => " (check target.project_id and target.cluster; the cluster must be a Flex cluster)",
        400 => {
            " (if the errorCode is CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API, this cluster is not a Flex cluster)"
        }
        429 => " (Atlas rate limit; the next run retries)",
        _ => "",
    }
}
