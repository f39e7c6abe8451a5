//! The `email` channel: a run's notices as one plain-text mail, sent through the SMTP server of
//! the channel's URL (lettre) with the login the URL carries. `smtps://` speaks TLS from the
//! first byte; `smtp://` must upgrade with STARTTLS before anything else is said (the login
//! included), except to a server on this host, where STARTTLS is used when offered.
//! Must not: show the URL's login, or send it in the clear to another host.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use percent_encoding::percent_decode_str;
use url::Url;

use super::tracker::Notice;
use atlas_archiver_engine::config::{EmailSettings, SecretUrl};
use atlas_archiver_engine::telemetry::error_chain;

/// A subject longer than this is cut (mail clients show less anyway).
const SUBJECT_MAX: usize = 180;

/// One mail, ready to send.
#[derive(Debug, Clone)]
pub struct Mail {
    to: Vec<String>,
    from: String,
    ca_file: Option<PathBuf>,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

impl Mail {
    /// The mail of `notices`, titled `title`, for a channel's `settings`.
    pub fn of(settings: &EmailSettings, title: &str, notices: &[Notice]) -> Self {
        let mut subject = format!("[atlas-archiver] {title}");
        if subject.chars().count() > SUBJECT_MAX {
            subject = subject.chars().take(SUBJECT_MAX - 1).collect::<String>() + "…";
        }
        let mut text = format!("{title}\n\n");
        for n in notices {
            text.push_str(&format!("• {}\n", n.message));
            let mut facts = vec![format!("event: {}", n.name())];
            if let Some(t) = &n.target {
                facts.push(format!("project: {}", t.project_id));
                facts.push(format!("cluster: {}", t.cluster));
            }
            if let Some(s) = &n.snapshot {
                facts.push(format!("snapshot: {s}"));
            }
            if let Some(r) = &n.reason {
                facts.push(format!("reason: {r}"));
            }
            facts.push(format!("at: {}", n.at.to_rfc3339()));
            text.push_str(&format!("  {}\n\n", facts.join(" · ")));
        }
        text.push_str(&format!(
            "-- \natlas-archiver {}: you hear from it when a target's state changes, not at every retry.\n",
            env!("CARGO_PKG_VERSION")
        ));
        Self {
            to: settings.to.clone(),
            from: settings.from.clone(),
            ca_file: settings.ca_file.clone(),
            subject,
            text,
        }
    }

    /// Sends the mail through the server at `url` within `timeout` per SMTP command; the error
    /// in words, without the login.
    pub async fn send(&self, url: &SecretUrl, timeout: Duration) -> Result<(), String> {
        let message = self.message()?;
        let transport = self.transport(url, timeout).await?;
        transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP: {}", error_chain(&e)))
    }

    fn message(&self) -> Result<lettre::Message, String> {
        let mailbox = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("`{a}` is not an address the mail library accepts: {e}"))
        };
        let mut builder = lettre::Message::builder()
            .from(mailbox(&self.from)?)
            .subject(&self.subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(mailbox(to)?);
        }
        builder
            .body(self.text.clone())
            .map_err(|e| format!("cannot build the mail: {e}"))
    }

    async fn transport(
        &self,
        url: &SecretUrl,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        // The config loader checked the URL; a failure here is still an error, not a panic.
        let parsed = Url::parse(url.expose()).map_err(|_| "the SMTP URL does not parse")?;
        let host = parsed
            .host_str()
            .ok_or("the SMTP URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &self.ca_file {
            let pem = tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            let ca = Certificate::from_pem(&pem).map_err(|e| {
                format!(
                    "the CA file {} is not a PEM certificate: {e}",
                    path.display()
                )
            })?;
            tls = tls.add_root_certificate(ca);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("TLS setup: {}", error_chain(&e)))?;
        let local = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let (mode, default_port) = match parsed.scheme() {
            "smtps" => (Tls::Wrapper(tls), 465),
            _ if local => (Tls::Opportunistic(tls), 587),
            _ => (Tls::Required(tls), 587),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(parsed.port().unwrap_or(default_port))
            .tls(mode)
            .timeout(Some(timeout));
        if !parsed.username().is_empty() {
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            builder = builder.credentials(Credentials::new(
                decode(parsed.username()),
                decode(parsed.password().unwrap_or_default()),
            ));
        }
        Ok(builder.build())
    }
}
