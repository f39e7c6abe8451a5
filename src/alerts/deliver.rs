//! Messages on the wire: the webhook's versioned JSON body (`docs/notifications.md`), signed
//! with HMAC-SHA256 when a key is configured; Slack's `{"text": …}`; a Teams Adaptive Card; a
//! plain-text mail ([`email`](super::email) sends it); and the sending itself, retried with
//! backoff (the same body and delivery id each time, so a receiver can drop a duplicate).
//! Several notices of one run go out as one message.
//! Must not: log or return a URL's path, query or login (a webhook URL is a credential).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tracker::Notice;
use atlas_archiver_engine::config::{Channel, ChannelKind, SecretUrl};
use atlas_archiver_engine::telemetry::error_chain;

/// Version of the webhook body; a change that is not an addition bumps it.
pub const BODY_VERSION: u32 = 1;
/// The signature header of a signed webhook.
pub const SIGNATURE_HEADER: &str = "X-Atlas-Archiver-Signature";
/// The delivery id header, the same on every retry of one message.
pub const DELIVERY_HEADER: &str = "X-Atlas-Archiver-Delivery";
/// One attempt's bound: a slow receiver delays no more than this per try.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often and how patiently a message is sent.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all.
    pub attempts: u32,
    /// Wait before the second try; each later wait is four times the one before.
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_secs(2),
        }
    }
}

/// One message for one channel, ready to send.
#[derive(Debug, Clone)]
pub struct Message {
    /// Where.
    pub url: SecretUrl,
    /// What.
    pub payload: Payload,
}

/// What a message carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A heartbeat ping: a GET with no body.
    Ping,
    /// A POST of a JSON body.
    Json {
        /// The body.
        body: Vec<u8>,
        /// Headers besides `Content-Type`.
        headers: Vec<(&'static str, String)>,
    },
    /// A mail.
    Email(super::email::Mail),
}

/// A message could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("notification to {url} failed after {attempts} attempts: {last}")]
pub struct DeliveryError {
    /// Scheme and host only.
    pub url: String,
    /// Tries made.
    pub attempts: u32,
    /// What the last one met.
    pub last: String,
}

/// One line saying what the notices are about, for a summary's title.
fn summary(notices: &[Notice]) -> String {
    match notices {
        [one] => one.message.clone(),
        many => {
            let targets: std::collections::BTreeSet<String> = many
                .iter()
                .filter_map(|n| n.target.as_ref().map(ToString::to_string))
                .collect();
            let targets: Vec<String> = targets.into_iter().collect();
            format!(
                "atlas-archiver: {} events for {}",
                many.len(),
                targets.join(", ")
            )
        }
    }
}

/// A unique id for one message.
fn delivery_id(body: &[u8]) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(body);
    hex::encode(&h.finalize()[..16])
}

/// The message of `notices` for `channel`: `None` when it hears about none of them.
pub fn message(channel: &Channel, notices: &[Notice]) -> Option<Message> {
    let wanted: Vec<Notice> = notices
        .iter()
        .filter(|n| match n.event {
            None => true,
            Some(e) if e == atlas_archiver_engine::config::EventKind::NeverSucceeded => {
                channel.events.contains(&e) && n.runs == Some(channel.never_succeeded_after)
            }
            Some(e) => channel.events.contains(&e),
        })
        .cloned()
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let title = summary(&wanted);
    let lines: Vec<String> = wanted.iter().map(|n| format!("• {}", n.message)).collect();
    let value: Value = match channel.kind {
        ChannelKind::Email => {
            // A validated `email` channel always has its settings.
            let settings = channel.email.as_ref()?;
            return Some(Message {
                url: channel.url.clone(),
                payload: Payload::Email(super::email::Mail::of(settings, &title, &wanted)),
            });
        }
        ChannelKind::Webhook => json!({
            "version": BODY_VERSION,
            "tool": "atlas-archiver",
            "tool_version": env!("CARGO_PKG_VERSION"),
            "sent_at": chrono::Utc::now().to_rfc3339(),
            "summary": title,
            "events": wanted.iter().map(|n| json!({
                "event": n.name(),
                "project": n.target.as_ref().map(|t| t.project_id.clone()),
                "cluster": n.target.as_ref().map(|t| t.cluster.clone()),
                "snapshot": n.snapshot,
                "reason": n.reason,
                "message": n.message,
                "runs": n.runs,
                "at": n.at.to_rfc3339(),
            })).collect::<Vec<_>>(),
        }),
        ChannelKind::Slack => {
            let text = if wanted.len() == 1 {
                format!(":rotating_light: {title}")
            } else {
                format!(":rotating_light: {title}\n{}", lines.join("\n"))
            };
            json!({ "text": text })
        }
        ChannelKind::Teams => {
            let mut body = vec![json!({
                "type": "TextBlock", "text": title, "weight": "Bolder", "wrap": true
            })];
            if wanted.len() > 1 {
                body.extend(
                    lines
                        .iter()
                        .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
                );
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                    }
                }]
            })
        }
    };
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let mut headers = vec![(DELIVERY_HEADER, delivery_id(&body))];
    if let Some(key) = &channel.signing_key {
        headers.push((
            SIGNATURE_HEADER,
            format!("sha256={}", sign(key.expose_secret(), &body)),
        ));
    }
    Some(Message {
        url: channel.url.clone(),
        payload: Payload::Json { body, headers },
    })
}

/// Hex HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The HTTP client of every notification and ping: no cookies, no redirects to elsewhere.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("atlas-archiver/", env!("CARGO_PKG_VERSION")))
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Sends `message` until it is accepted (a 2xx; a mail the server took), at most
/// `policy.attempts` times.
pub async fn send(
    client: &reqwest::Client,
    message: &Message,
    policy: RetryPolicy,
) -> Result<(), DeliveryError> {
    let mut delay = policy.first_delay;
    let mut last = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        match send_once(client, message).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tracing::debug!(url = %message.url.redacted(), attempt, error = %last, "notification not delivered; retrying");
        if attempt < policy.attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(4);
        }
    }
    Err(DeliveryError {
        url: message.url.redacted(),
        attempts: policy.attempts.max(1),
        last,
    })
}

/// One try; the error in words, without the URL.
async fn send_once(client: &reqwest::Client, message: &Message) -> Result<(), String> {
    let request = match &message.payload {
        Payload::Email(mail) => return mail.send(&message.url, ATTEMPT_TIMEOUT).await,
        Payload::Ping => client.get(message.url.expose()),
        Payload::Json { body, headers } => {
            let mut r = client
                .post(message.url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            for (name, value) in headers {
                r = r.header(*name, value);
            }
            r
        }
    };
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(error_chain(&e.without_url())),
    }
}
