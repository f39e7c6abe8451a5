//! Logging: human-readable by default, JSON on request; under systemd's journal (JOURNAL_STREAM
//! set) no timestamps and no colours, since journald adds its own, and each line opens with its
//! syslog priority (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug) so that
//! `journalctl -p err` shows the failures. Spans carry `project`,
//! `cluster` and `snapshot`. Logs go to stderr; stdout is for command output.
//! Must not: log secrets (callers never pass them; snapshot URLs print redacted).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The level of our own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level<'a> {
    /// Given on the command line (`--log-level`): wins over `RUST_LOG`.
    Given(&'a str),
    /// The command's default: `RUST_LOG`, when set, wins over it.
    Default(&'a str),
}

/// Installs the global subscriber. Lines go to `writer` when given (a terminal's progress
/// display, which lifts its bars for each line), else to stderr.
pub fn init(format: LogFormat, level: Level<'_>, writer: Option<BoxMakeWriter>) {
    let ours = |level: &str| EnvFilter::new(format!("warn,atlas_archiver={level}"));
    let filter = match level {
        Level::Given(level) => ours(level),
        Level::Default(level) => EnvFilter::try_from_default_env().unwrap_or_else(|_| ours(level)),
    };
    let under_journald = under_journald();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr)));
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human if under_journald => builder
            .with_ansi(false)
            .event_format(Priority(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .try_init(),
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

/// Whether stderr goes to systemd's journal (it sets `JOURNAL_STREAM` for the unit's streams).
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// A line the program prints on stderr itself (the final `error: …`), with the journal's
/// priority prefix when it goes there.
pub fn error_line(text: &str) -> String {
    if under_journald() {
        format!("<3>{text}")
    } else {
        text.to_owned()
    }
}

/// Prefixes each event with its syslog priority for journald (sd-daemon(3) `<N>` prefixes).
struct Priority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Priority<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

mod metrics;
/// An error and its sources in one line, joined with `: ` (how warn and error lines show one).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics, RunStatus, TargetFacts};
