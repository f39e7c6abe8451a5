//! `[heartbeat]` and `[[notify]]`: where the daemon tells a person how its runs go. The raw
//! tables (their doc comments are the reference, as in `raw.rs`) and their validation: each
//! URL is a secret (a webhook URL is a credential; an SMTP URL carries the login), HTTPS (or
//! SMTP with TLS) unless it points at this host, and the events are from the known list.
//! Must not: send anything (that is the binary's `alerts`).

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;
use super::validator::{Validator, is_loopback, parse_http_url};

/// `[heartbeat]`: a dead-man's switch, healthchecks.io-style.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// Ping URL (a secret): `{url}/start` when a run begins, `{url}` when every target's latest run succeeded, `{url}/fail` otherwise.
    pub url: Option<String>,
    /// File holding the ping URL.
    pub url_file: Option<String>,
}

/// `[[notify]]`: one channel that hears about failures and recoveries.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// `"webhook"` (a versioned JSON body, optionally signed), `"slack"` or `"teams"` (their incoming webhooks), or `"email"` (SMTP).
    pub kind: Option<String>,
    /// The webhook URL (a secret: whoever has it can post to the channel); for `email`, the SMTP server with its login: `smtp://user:password@host:587` (STARTTLS, required) or `smtps://user:password@host:465` (TLS from the first byte).
    pub url: Option<String>,
    /// File holding the URL.
    pub url_file: Option<String>,
    /// `email` only: the recipients, e.g. `["oncall@example.com"]`.
    pub to: Option<Vec<String>>,
    /// `email` only: the sender, e.g. `"atlas-archiver <backup@example.com>"`.
    pub from: Option<String>,
    /// `email` only: a PEM file of the private CA the SMTP server's certificate chains to (default: the system's roots).
    pub ca_file: Option<String>,
    /// Events to send (default: all): "failure", "recovered", "lost", "never_succeeded", "prune_failed", "credential_expiring".
    pub on: Option<Vec<String>>,
    /// `webhook` only: key for `X-Atlas-Archiver-Signature: sha256=<HMAC-SHA256 of the body>`.
    pub signing_key: Option<String>,
    /// File holding the signing key.
    pub signing_key_file: Option<String>,
    /// Runs without a success after which a target that never succeeded is reported (default 3).
    pub never_succeeded_after: Option<u32>,
}

/// How long before the Atlas secret's end (`atlas.client_secret_expires_at`)
/// `credential_expiring` is sent, the status page warns and the alert rule
/// `AtlasArchiverCredentialExpiring` fires.
pub const CREDENTIAL_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(14);

/// What a channel can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A target's run failed after succeeding (or at its first run).
    Failure,
    /// A failing target's run succeeded again.
    Recovered,
    /// Atlas deleted a snapshot before it was archived.
    Lost,
    /// A target has not succeeded in its first runs.
    NeverSucceeded,
    /// A prune could not remove what it meant to.
    PruneFailed,
    /// The Atlas service account secret expires within 14 days, or has expired
    /// (`atlas.client_secret_expires_at`).
    CredentialExpiring,
}

impl EventKind {
    /// Every event, in the order the docs list them.
    pub const ALL: [Self; 6] = [
        Self::Failure,
        Self::Recovered,
        Self::Lost,
        Self::NeverSucceeded,
        Self::PruneFailed,
        Self::CredentialExpiring,
    ];

    /// The name used in `on = [...]` and in the webhook body.
    pub fn name(self) -> &'static str {
        match self {
            Self::Failure => "failure",
            Self::Recovered => "recovered",
            Self::Lost => "lost",
            Self::NeverSucceeded => "never_succeeded",
            Self::PruneFailed => "prune_failed",
            Self::CredentialExpiring => "credential_expiring",
        }
    }
}

/// How a channel's messages are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Our documented JSON body (`docs/notifications.md`).
    Webhook,
    /// A Slack incoming webhook (`{"text": …}`).
    Slack,
    /// A Microsoft Teams workflow webhook (an Adaptive Card).
    Teams,
    /// Mail through an SMTP server.
    Email,
}

impl ChannelKind {
    /// The name used in `kind = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Email => "email",
        }
    }
}

/// Where and how an `email` channel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    /// Recipients.
    pub to: Vec<String>,
    /// Sender.
    pub from: String,
    /// A private CA's PEM file, when the server's certificate is not signed by a public one.
    pub ca_file: Option<PathBuf>,
}

/// A URL that is a secret: only its scheme and host ever print.
#[derive(Clone)]
pub struct SecretUrl(pub(super) SecretString);

impl SecretUrl {
    /// Wraps a URL that is a secret.
    pub fn new(url: String) -> Self {
        Self(SecretString::from(url))
    }

    /// The whole URL, for the request only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `https://host` — what logs and errors may show.
    pub fn redacted(&self) -> String {
        Url::parse(self.expose()).map_or_else(
            |_| "<url>".to_owned(),
            |u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        )
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// One validated `[[notify]]`.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Message shape.
    pub kind: ChannelKind,
    /// Where to POST.
    pub url: SecretUrl,
    /// What it hears about.
    pub events: Vec<EventKind>,
    /// For `email`: recipients, sender, CA.
    pub email: Option<EmailSettings>,
    /// Webhook signing key.
    pub signing_key: Option<SecretString>,
    /// See [`RawNotify::never_succeeded_after`].
    pub never_succeeded_after: u32,
}

/// `[heartbeat]` and `[[notify]]`, validated.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// The dead-man's switch.
    pub heartbeat: Option<SecretUrl>,
    /// The channels.
    pub channels: Vec<Channel>,
}

/// `name@domain`, or `Name <name@domain>`: what an SMTP server can route. (The mail library
/// checks it fully when it sends; this catches the typo at load time.)
fn is_address(text: &str) -> bool {
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => text.trim(),
        _ => return false,
    };
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '@');
    !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.chars().any(bad)
        && !domain.chars().any(bad)
}

impl Validator<'_> {
    pub(super) fn notify(
        &self,
        heartbeat: Option<&RawHeartbeat>,
        channels: &[RawNotify],
    ) -> Result<NotifyConfig, ConfigError> {
        let heartbeat = match heartbeat {
            Some(h) => {
                Some(self.secret_url("heartbeat.url", h.url.as_ref(), h.url_file.as_ref())?)
            }
            None => None,
        };
        let mut out = Vec::new();
        for (i, raw) in channels.iter().enumerate() {
            let key = |k: &str| format!("notify[{i}].{k}");
            const KINDS: &str = "\"webhook\", \"slack\", \"teams\" or \"email\"";
            let kind = match raw.kind.as_deref() {
                Some("webhook") => ChannelKind::Webhook,
                Some("slack") => ChannelKind::Slack,
                Some("teams") => ChannelKind::Teams,
                Some("email") => ChannelKind::Email,
                Some(other) => {
                    return Err(self.invalid(
                        &key("kind"),
                        format!("`{other}` is not a channel: use {KINDS}"),
                    ));
                }
                None => {
                    return Err(self.invalid(&key("kind"), format!("missing: {KINDS}")));
                }
            };
            let (url, email) = if kind == ChannelKind::Email {
                let url = self.smtp_url(&key("url"), raw.url.as_ref(), raw.url_file.as_ref())?;
                (url, Some(self.email(&key, raw)?))
            } else {
                for (name, set) in [
                    ("to", raw.to.is_some()),
                    ("from", raw.from.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                ] {
                    if set {
                        return Err(self.invalid(&key(name), "only an \"email\" channel has it"));
                    }
                }
                let url = self.secret_url(&key("url"), raw.url.as_ref(), raw.url_file.as_ref())?;
                (url, None)
            };
            let events = match &raw.on {
                None => EventKind::ALL.to_vec(),
                Some(names) => {
                    let mut events = Vec::new();
                    for name in names {
                        let event = EventKind::ALL
                            .into_iter()
                            .find(|e| e.name() == name)
                            .ok_or_else(|| {
                                let known: Vec<&str> =
                                    EventKind::ALL.iter().map(|e| e.name()).collect();
                                self.invalid(
                                    &key("on"),
                                    format!(
                                        "`{name}` is not an event: use any of {}",
                                        known.join(", ")
                                    ),
                                )
                            })?;
                        events.push(event);
                    }
                    events
                }
            };
            let signing_key = self.secret(
                &key("signing_key"),
                raw.signing_key.as_ref(),
                raw.signing_key_file.as_ref(),
                None,
            )?;
            if signing_key.is_some() && kind != ChannelKind::Webhook {
                return Err(self.invalid(
                    &key("signing_key"),
                    "only a \"webhook\" channel is signed (Slack and Teams do not check signatures)",
                ));
            }
            let never_succeeded_after = raw.never_succeeded_after.unwrap_or(3);
            if never_succeeded_after == 0 {
                return Err(self.invalid(&key("never_succeeded_after"), "must be at least 1"));
            }
            out.push(Channel {
                kind,
                url,
                events,
                email,
                signing_key,
                never_succeeded_after,
            });
        }
        Ok(NotifyConfig {
            heartbeat,
            channels: out,
        })
    }

    /// An `email` channel's recipients, sender and CA.
    fn email(
        &self,
        key: &dyn Fn(&str) -> String,
        raw: &RawNotify,
    ) -> Result<EmailSettings, ConfigError> {
        let to = raw.to.clone().unwrap_or_default();
        if to.is_empty() {
            return Err(self.invalid(
                &key("to"),
                "missing: the recipients, e.g. to = [\"oncall@example.com\"]",
            ));
        }
        for address in &to {
            if !is_address(address) {
                return Err(self.invalid(
                    &key("to"),
                    format!("`{address}` is not an email address (name@domain, or \"Name <name@domain>\")"),
                ));
            }
        }
        let from = match raw.from.as_deref() {
            Some(f) if is_address(f) => f.to_owned(),
            Some(f) => {
                return Err(self.invalid(
                    &key("from"),
                    format!(
                        "`{f}` is not an email address (name@domain, or \"Name <name@domain>\")"
                    ),
                ));
            }
            None => {
                return Err(self.invalid(
                    &key("from"),
                    "missing: the sender your SMTP server accepts, e.g. from = \"atlas-archiver <backup@example.com>\"",
                ));
            }
        };
        let ca_file = match &raw.ca_file {
            None => None,
            Some(path) => {
                let resolved = self.resolve_credential_path(path);
                let text = std::fs::read_to_string(&resolved).map_err(|e| {
                    self.invalid(
                        &key("ca_file"),
                        format!("cannot read {}: {e}", resolved.display()),
                    )
                })?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(self.invalid(
                        &key("ca_file"),
                        format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                            resolved.display()
                        ),
                    ));
                }
                Some(resolved)
            }
        };
        Ok(EmailSettings { to, from, ca_file })
    }

    /// A secret that must be set, as `key` or `key_file`.
    fn required_secret(
        &self,
        key: &str,
        value: Option<&String>,
        file: Option<&String>,
    ) -> Result<SecretString, ConfigError> {
        self.secret(key, value, file, None)?
            .ok_or_else(|| self.invalid(key, format!("missing: set `{key}_file` (or `{key}`)")))
    }

    /// An SMTP URL secret: `smtps://` (TLS), or `smtp://` (STARTTLS, required unless the server
    /// is this host); the login it may carry is never shown.
    fn smtp_url(
        &self,
        key: &str,
        value: Option<&String>,
        file: Option<&String>,
    ) -> Result<SecretUrl, ConfigError> {
        let secret = self.required_secret(key, value, file)?;
        let url = Url::parse(secret.expose_secret().trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some())
            .ok_or_else(|| {
                self.invalid(
                    key,
                    "is not an SMTP URL: use smtp://user:password@host:587 (STARTTLS) or smtps://user:password@host:465 (the value is not shown: it is a secret)",
                )
            })?;
        Ok(SecretUrl(SecretString::from(url.to_string())))
    }

    /// A URL secret: `https://`, or `http://` to this host only (it is a credential).
    fn secret_url(
        &self,
        key: &str,
        value: Option<&String>,
        file: Option<&String>,
    ) -> Result<SecretUrl, ConfigError> {
        let secret = self.required_secret(key, value, file)?;
        let url = parse_http_url(secret.expose_secret().trim()).map_err(|_| {
            self.invalid(
                key,
                "is not an http(s) URL (the value is not shown: it is a secret)",
            )
        })?;
        if url.scheme() == "http" && !is_loopback(&url) {
            return Err(self.invalid(
                key,
                format!("plain HTTP to {}: the URL is a credential; use https:// (http:// is accepted for this host only)", url.host_str().unwrap_or("?")),
            ));
        }
        Ok(SecretUrl(SecretString::from(url.to_string())))
    }
}
