//! Atlas authentication: OAuth 2.0 client credentials for service accounts (token cached until
//! shortly before expiry, refreshed single-flight) and HTTP Digest (MD5, qop=auth) for legacy
//! API keys (CONTRACT §5).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use rand::RngExt as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tracing::warn;

use super::models::{OAuthErrorBody, TokenResponse};
use super::{AUTH_FAILURE_MEMO, AtlasClient, AtlasError, Auth, Reply, decode, retry_after};

/// Refresh a token this long before Atlas says it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A cached bearer token.
pub(crate) struct CachedToken {
    pub(crate) value: SecretString,
    pub(crate) refresh_at: Instant,
}

/// The OAuth side: holds the current token. The mutex is held across the token request on
/// purpose, so that concurrent callers wait for one refresh instead of each starting their own.
pub(crate) struct TokenCache {
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) slot: Mutex<Option<CachedToken>>,
}

impl TokenCache {
    pub(crate) fn new(client_id: String, client_secret: SecretString) -> Self {
        Self {
            client_id,
            client_secret,
            slot: Mutex::new(None),
        }
    }

    /// Makes the cached token unusable (after a 401), unless another caller already replaced it.
    pub(crate) async fn invalidate(&self, used: &str) {
        let mut slot = self.slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == used)
        {
            *slot = None;
        }
    }
}

/// When a token should be refreshed, given `expires_in` seconds.
pub(crate) fn refresh_deadline(expires_in: Option<u64>) -> Instant {
    // A token endpoint may answer an absurd lifetime (a buggy gateway): clamp it to a day, so the
    // deadline is always representable and a token is refreshed at least daily.
    let lifetime = Duration::from_secs(expires_in.unwrap_or(3600).min(MAX_TOKEN_LIFETIME_SECS));
    // Short-lived tokens (tests, odd servers) are refreshed at half their life instead.
    let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
    let now = Instant::now();
    now.checked_add(lifetime.saturating_sub(margin))
        .unwrap_or(now)
}

/// The longest token lifetime believed (seconds): one day.
const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// What a 401 allows.
pub(super) enum Reauth {
    /// A new token or a new challenge: one retry.
    Retry,
    /// The Digest nonce was stale (credentials fine): retry with the new one, not counted as a
    /// rejection.
    Stale,
    /// Nothing to retry with.
    GiveUp,
}

/// A Digest challenge from `WWW-Authenticate`.
#[derive(Debug, Clone)]
pub(crate) struct DigestChallenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    qop_auth: bool,
    /// `stale=true`: the credentials were right, the nonce (or its count) was not; asking again
    /// with the new nonce is not a second rejection (RFC 2617 §3.2.1, audit S2).
    pub(crate) stale: bool,
}

impl DigestChallenge {
    /// Parses `Digest realm="…", nonce="…", algorithm=MD5, qop="auth"`. Only MD5 is supported,
    /// which is what Atlas sends.
    pub(crate) fn parse(header: &str) -> Option<Self> {
        let rest = header.trim().strip_prefix("Digest")?.trim_start();
        let params = parse_params(rest);
        if let Some(alg) = params.get("algorithm")
            && !alg.eq_ignore_ascii_case("MD5")
        {
            return None;
        }
        Some(Self {
            realm: params.get("realm")?.clone(),
            nonce: params.get("nonce")?.clone(),
            opaque: params.get("opaque").cloned(),
            qop_auth: params
                .get("qop")
                .is_some_and(|q| q.split(',').any(|v| v.trim() == "auth")),
            stale: params
                .get("stale")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

/// Splits `k=v, k="v, with comma"` into a map.
pub(crate) fn parse_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => break,
                    _ => v.push(c),
                }
            }
            v
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect::<String>()
        };
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    out
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// The legacy API-key side: remembers the last challenge so that later requests authenticate
/// up front (with an increasing nonce count) instead of paying a 401 round trip each time.
pub(crate) struct DigestState {
    pub(crate) username: String,
    pub(crate) password: SecretString,
    pub(crate) challenge: std::sync::Mutex<Option<(DigestChallenge, u32)>>,
}

impl DigestState {
    pub(crate) fn new(username: String, password: SecretString) -> Self {
        Self {
            username,
            password,
            challenge: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn remember(&self, challenge: DigestChallenge) {
        if let Ok(mut slot) = self.challenge.lock() {
            *slot = Some((challenge, 0));
        }
    }

    /// The `Authorization` header for `method uri`, if a challenge is known.
    pub(crate) fn authorization(&self, method: &str, uri: &str) -> Option<String> {
        let mut slot = self.challenge.lock().ok()?;
        let (challenge, count) = slot.as_mut()?;
        *count += 1;
        let cnonce = format!("{:016x}", rand::rng().random::<u64>());
        Some(digest_authorization(
            &self.username,
            self.password.expose_secret(),
            challenge,
            method,
            uri,
            *count,
            &cnonce,
        ))
    }
}

/// RFC 2617 Digest response.
fn digest_authorization(
    username: &str,
    password: &str,
    c: &DigestChallenge,
    method: &str,
    uri: &str,
    count: u32,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&format!("{username}:{}:{password}", c.realm));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let nc = format!("{count:08x}");
    let mut header = if c.qop_auth {
        let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce));
        format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\"",
            c.realm, c.nonce
        )
    } else {
        let response = md5_hex(&format!("{ha1}:{}:{ha2}", c.nonce));
        format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm=MD5, response=\"{response}\"",
            c.realm, c.nonce
        )
    };
    if let Some(opaque) = &c.opaque {
        header.push_str(&format!(", opaque=\"{opaque}\""));
    }
    header
}

impl AtlasClient {
    pub(super) fn remembered_auth_failure(&self) -> Option<AtlasError> {
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

    pub(super) fn remember_auth_failure(&self, detail: &str) -> AtlasError {
        if let Ok(mut guard) = self.inner.auth_failure.lock() {
            *guard = Some((detail.to_owned(), std::time::Instant::now()));
        }
        AtlasError::Unauthorized {
            detail: detail.to_owned(),
        }
    }

    /// The `Authorization` value for the next attempt, and the bearer token it carries.
    pub(super) async fn authorization(
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

    /// After a 401: drop the token, or take the Digest challenge. Says whether a retry makes
    /// sense, and whether the 401 was only a stale nonce.
    pub(super) async fn prepare_reauthentication(
        &self,
        headers: &HeaderMap,
        token_used: Option<&SecretString>,
    ) -> Reauth {
        match &self.inner.auth {
            Auth::Anonymous => Reauth::GiveUp,
            Auth::ServiceAccount(cache) => {
                if let Some(t) = token_used {
                    cache.invalidate(t.expose_secret()).await;
                }
                Reauth::Retry
            }
            Auth::ApiKey(state) => {
                let challenge = headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(DigestChallenge::parse);
                match challenge {
                    Some(c) => {
                        let stale = c.stale;
                        state.remember(c);
                        if stale { Reauth::Stale } else { Reauth::Retry }
                    }
                    None => Reauth::GiveUp,
                }
            }
        }
    }

    /// The cached token, or a new one. Holding the lock during the request makes refresh single-flight.
    pub(super) async fn token(&self, cache: &TokenCache) -> Result<SecretString, AtlasError> {
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

    pub(super) async fn fetch_token(
        &self,
        cache: &TokenCache,
    ) -> Result<TokenResponse, AtlasError> {
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
            let request = self
                .inner
                .http
                .post(url.clone())
                .header(AUTHORIZATION, format!("Basic {basic}"))
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials");
            // Asking for a token again is always safe: a lost answer only leaves a token unused.
            let Reply {
                status,
                headers,
                body,
            } = match self.round_trip(OPERATION, request, true, attempt).await? {
                Some(reply) => reply,
                None => continue,
            };
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
                && let Some(delay) = self.next_delay(attempt, retry_after(&headers))
            {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 2617 §3.5.
    #[test]
    fn rfc2617_example() {
        let challenge = DigestChallenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let Some(challenge) = challenge else {
            panic!("challenge should parse")
        };
        let header = digest_authorization(
            "Mufasa",
            "Circle Of Life",
            &challenge,
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            header.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{header}"
        );
    }

    #[test]
    fn atlas_challenge_parses_and_other_algorithms_are_refused() {
        let atlas = r#"Digest realm="MMS Public API", domain="", nonce="abc/def+1==", algorithm=MD5, qop="auth", stale=false"#;
        let Some(c) = DigestChallenge::parse(atlas) else {
            panic!("Atlas challenge should parse")
        };
        assert_eq!(c.realm, "MMS Public API");
        assert_eq!(c.nonce, "abc/def+1==");
        assert!(c.qop_auth);
        assert!(
            DigestChallenge::parse(r#"Digest realm="x", nonce="y", algorithm=SHA-256"#).is_none()
        );
        assert!(DigestChallenge::parse("Bearer realm=\"x\"").is_none());
    }
}
