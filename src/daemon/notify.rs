//! systemd notifications (`Type=notify`): READY, STATUS, WATCHDOG, STOPPING. Without
//! `NOTIFY_SOCKET` (plain runs, containers) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

/// Talks to systemd when it is listening.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(states)
        {
            debug!(error = %e, "sd_notify failed");
        }
    }

    /// READY=1.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// STATUS=…
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    /// WATCHDOG=1, when a watchdog is configured.
    pub fn watchdog_ping(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// STOPPING=1.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}
