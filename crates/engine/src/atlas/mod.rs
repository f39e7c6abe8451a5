//! Atlas Administration API v2 client for cluster backups (`../shared/atlas-api/CONTRACT.md`):
//! list snapshots (all pages), request a download, wait for the restore job's URL, for Flex and
//! for dedicated clusters. Owns authentication, the versioned media types, error envelopes and
//! the retry policy for API calls.
//! Must not: touch S3 or the journal, or ever send credentials to a snapshot URL.
//! Files: `backups.rs` (the one interface the pipeline uses, [`ClusterBackups`], over the
//! [`backups::BackupApi`] trait, the paging helper and the wait for a URL), `flex.rs` and
//! `dedicated.rs` (its two implementations: endpoints and models of each kind), `auth.rs`
//! (tokens, Digest, the memo of a rejected login), `models.rs` (the bodies both kinds map to);
//! `listing.rs` (the project and cluster listings discovery reads), `error.rs` (the error
//! type and what each error means); here the client and its one
//! call-and-retry loop.

mod auth;
pub mod backups;
mod dedicated;
mod error;
mod flex;
pub mod listing;
pub mod models;

pub use backups::ClusterBackups;
pub use error::AtlasError;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use tracing::warn;
use url::Url;

use crate::config::{AtlasConfig, AtlasCredentials};
use crate::retry::Backoff;
use auth::{DigestState, TokenCache};
use models::ApiErrorBody;

/// The only resource version the Flex endpoints accept (CONTRACT §1).
pub const FLEX_MEDIA_TYPE: &str = "application/vnd.atlas.2024-11-13+json";
/// The resource version of the dedicated clusters' backup endpoints (CONTRACT §3).
pub const DEDICATED_MEDIA_TYPE: &str = "application/vnd.atlas.2023-01-01+json";
const PAGE_SIZE: usize = 100;
/// A safety stop for paging: 500 pages of 100 is far beyond any Flex cluster's 8 snapshots.
const MAX_PAGES: u32 = 500;
/// The largest answer read from Atlas: a page of 100 snapshots or restore jobs is tens of KiB;
/// anything this large is not an Atlas answer, and reading it whole would cost memory (L16).
const MAX_BODY: usize = 16 << 20;
/// Digest challenges marked `stale=true` one call follows before it gives up (concurrent calls
/// share a nonce, and a server that enforces increasing `nc` may see them out of order).
const MAX_STALE_ROUNDS: u32 = 5;
/// How long a rejected login makes later calls fail without asking Atlas again.
const AUTH_FAILURE_MEMO: Duration = Duration::from_secs(20);

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
            .tcp_keepalive(Duration::from_secs(30))
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

    /// One API call with authentication and the retry policy:
    /// 429 waits for `Retry-After` (else backoff); 5xx and connection errors back off; 401
    /// refreshes the token (or answers the Digest challenge) once; other 4xx fail at once.
    async fn call(
        &self,
        operation: &'static str,
        media_type: &'static str,
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
        let mut stale_rounds = 0;
        loop {
            attempt += 1;
            let (auth_header, token_used) = self.authorization(&method, path_and_query).await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, media_type);
            if let Some(h) = &auth_header {
                request = request.header(AUTHORIZATION, h.expose_secret());
            }
            if let Some(b) = &body_bytes {
                request = request.header(CONTENT_TYPE, media_type).body(b.clone());
            }
            let Reply {
                status,
                headers,
                body,
            } = match self
                .round_trip(operation, request, idempotent, attempt)
                .await?
            {
                Some(reply) => reply,
                None => continue,
            };
            if status.is_success() {
                return Ok(Answer { body });
            }
            if status == StatusCode::UNAUTHORIZED {
                // A challenge round trip is not a failed attempt.
                match self
                    .prepare_reauthentication(&headers, token_used.as_ref())
                    .await
                {
                    auth::Reauth::Stale if stale_rounds < MAX_STALE_ROUNDS => {
                        stale_rounds += 1;
                        attempt -= 1;
                        continue;
                    }
                    // Credentials right, nonces never fresh enough: network-like trouble for
                    // a later run, not a rejected login to remember.
                    auth::Reauth::Stale => {
                        return Err(AtlasError::Transport {
                            operation,
                            attempts: attempt,
                            message: format!(
                                "Atlas answered {MAX_STALE_ROUNDS} Digest challenges in a row with stale=true"
                            ),
                        });
                    }
                    auth::Reauth::Retry if !reauthenticated => {
                        reauthenticated = true;
                        attempt -= 1;
                        continue;
                    }
                    _ => {}
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
            if retryable && let Some(delay) = self.next_delay(attempt, retry_after) {
                warn!(operation, attempt, status = status.as_u16(), error_code = %error_code, ?delay, "Atlas asked us to retry");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(AtlasError::Api {
                operation,
                status: status.as_u16(),
                hint: hint_for(status, &error_code),
                error_code,
                detail,
            });
        }
    }
}

/// A response read whole (at most [`MAX_BODY`] bytes).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl AtlasClient {
    /// Sends one request and reads its whole answer, bounded by [`MAX_BODY`]: `Some` when Atlas
    /// answered, whatever the status; `None` when the request or its answer was lost on the way
    /// and the backoff before the next attempt has been waited (the caller sends again). A
    /// failure to connect is always safe to resend; a failure after the request was sent
    /// (including a body cut while read, L8) only when `resend_safe`. The one transport-retry
    /// rule of both the API calls and the token request.
    async fn round_trip(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
        resend_safe: bool,
        attempt: u32,
    ) -> Result<Option<Reply>, AtlasError> {
        let error = match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                let headers = std::mem::take(response.headers_mut());
                match read_bounded(&mut response).await {
                    Ok(Some(body)) => {
                        // Any answer is a sign of life, even a 429: the run watchdog counts
                        // it as progress.
                        crate::watchdog::touch();
                        return Ok(Some(Reply {
                            status,
                            headers,
                            body,
                        }));
                    }
                    Ok(None) => {
                        return Err(AtlasError::Decode {
                            operation,
                            message: format!(
                                "the answer (HTTP {}) is larger than {} MiB; no Atlas response is",
                                status.as_u16(),
                                MAX_BODY >> 20
                            ),
                        });
                    }
                    Err(e) if resend_safe => e,
                    Err(e) => return Err(transport(operation, attempt, e)),
                }
            }
            Err(e) if resend_safe || e.is_connect() => e,
            Err(e) => return Err(transport(operation, attempt, e)),
        };
        let Some(delay) = self.next_delay(attempt, None) else {
            return Err(transport(operation, attempt, error));
        };
        warn!(operation, attempt, error = %error.without_url(), ?delay, "Atlas unreachable; retrying");
        tokio::time::sleep(delay).await;
        Ok(None)
    }

    /// The wait before attempt `attempt + 1`, honouring `Retry-After`; `None` when the attempts
    /// are spent.
    fn next_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        (attempt < self.inner.max_attempts)
            .then(|| self.inner.backoff.delay_with_hint(attempt, retry_after))
    }
}

/// The body, or `None` once it passes [`MAX_BODY`] (the rest is not read).
async fn read_bounded(
    response: &mut reqwest::Response,
) -> Result<Option<bytes::Bytes>, reqwest::Error> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

fn transport(operation: &'static str, attempts: u32, error: reqwest::Error) -> AtlasError {
    AtlasError::Transport {
        operation,
        attempts,
        message: error.without_url().to_string(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<T, AtlasError> {
    // The parser's own message can quote the input (`invalid type: string "https://…"`), and
    // an answer may hold a download URL: say where and what kind of error, never what was there.
    serde_json::from_slice(body).map_err(|e| AtlasError::Decode {
        operation,
        message: format!(
            "{} error at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "unexpected field type",
                serde_json::error::Category::Eof => "cut short",
            },
            e.line(),
            e.column()
        ),
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

fn hint_for(status: StatusCode, error_code: &str) -> &'static str {
    if matches!(
        error_code,
        "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API" | "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API"
    ) {
        return " (the target's kind is wrong: set kind = \"auto\", or the right one)";
    }
    match status.as_u16() {
        403 => {
            " (the service account or API key needs the Project Backup Export Operator role on this project)"
        }
        404 => " (check target.project_id and target.cluster)",
        429 => " (Atlas rate limit; the next run retries)",
        _ => "",
    }
}
