//! Logging: human-readable by default, JSON on request; under systemd's journal (JOURNAL_STREAM
//! set) no timestamps and no colours, since journald adds its own. Spans carry `project`,
//! `cluster` and `snapshot`. Logs go to stderr; stdout is for command output.
//! Must not: log secrets (callers never pass them; snapshot URLs print redacted).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. `level` is used when `RUST_LOG` is unset.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,atlas_archiver={level}")));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human if under_journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Human => builder
            // https://no-color.org: any non-empty NO_COLOR turns colour off.
            .with_ansi(
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

mod metrics;
pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics, RunStatus};
