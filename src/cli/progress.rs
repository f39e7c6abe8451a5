//! The progress display of `once`, `verify` and `restore` when stderr is a terminal: one line
//! per transfer in flight (what, a bar when the size is known, bytes, rate, ETA), redrawn from
//! the engine's [`Board`]; log lines print above the bars, never through them. Off a terminal,
//! with `TERM` unset or `dumb`, or with `--log-format json`, there is no display: the log lines
//! say it all.
//! Must not: draw anything when stderr is not a terminal, or write to stdout (command output).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use atlas_archiver_engine::config::units::format_bytes;
use atlas_archiver_engine::progress::{Board, TransferView};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

/// How often the bars are brought up to date with the board.
const REFRESH: Duration = Duration::from_millis(200);

/// The bars on stderr. Cheap to clone.
#[derive(Clone)]
pub(super) struct Display {
    multi: MultiProgress,
}

impl Display {
    /// A display, when stderr is a terminal that can show one.
    pub(super) fn for_terminal() -> Option<Self> {
        // As indicatif and the console crate judge it: no TERM, or `dumb`, draws nothing.
        let dumb = std::env::var_os("TERM").is_none_or(|t| t.is_empty() || t == "dumb");
        (std::io::stderr().is_terminal() && !dumb).then(|| Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)),
        })
    }

    /// Where log lines go while the bars are up: each line is written whole, with the bars
    /// lifted for it, so neither tears the other.
    pub(super) fn log_writer(&self) -> LogWriter {
        LogWriter {
            multi: self.multi.clone(),
        }
    }

    /// Shows the board's transfers until the returned handle is finished or dropped.
    pub(super) fn watch(&self, board: Board) -> Watch {
        let multi = self.multi.clone();
        // The transfers already on the board are drawn before this returns, however short
        // they turn out to be.
        let mut bars: HashMap<u64, ProgressBar> = HashMap::new();
        sync(&multi, &mut bars, &board.transfers());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                sync(&multi, &mut bars, &board.transfers());
            }
        });
        Watch {
            task,
            multi: self.multi.clone(),
        }
    }
}

/// A running display; finishing it takes the bars away.
pub(super) struct Watch {
    task: tokio::task::JoinHandle<()>,
    multi: MultiProgress,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
        // Nothing to do if the terminal is gone: the bars went with it.
        let _ = self.multi.clear();
    }
}

/// Brings the bars in line with the board: a bar for each new transfer, positions and rates
/// for the others, and a finished transfer's bar taken away.
fn sync(multi: &MultiProgress, bars: &mut HashMap<u64, ProgressBar>, views: &[TransferView]) {
    bars.retain(|id, bar| {
        let live = views.iter().any(|v| v.id == *id);
        if !live {
            bar.finish_and_clear();
            multi.remove(bar);
        }
        live
    });
    for view in views {
        let bar = bars.entry(view.id).or_insert_with(|| {
            let bar = match view.total {
                Some(total) => ProgressBar::new(total).with_style(sized_style()),
                None => ProgressBar::no_length().with_style(unsized_style()),
            };
            multi.add(bar.with_prefix(view.label.clone()))
        });
        if let Some(total) = view.total
            && bar.length() != Some(total)
        {
            bar.set_length(total);
            bar.set_style(sized_style());
        }
        bar.set_position(view.done);
        bar.set_message(rate_and_eta(view));
    }
}

fn sized_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:24}] {bytes}/{total_bytes} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn unsized_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {bytes} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// `12.3 MiB/s, ETA 1m 05s`: from the board's own figures (which leave a resume's earlier bytes
/// out of the rate), not from the bar's estimate.
fn rate_and_eta(view: &TransferView) -> String {
    let rate = format!("{}/s", format_bytes(view.bytes_per_second as u64));
    match view.total {
        Some(total) if view.bytes_per_second >= 1.0 && total > view.done => {
            let secs = ((total - view.done) as f64 / view.bytes_per_second).ceil() as u64;
            format!("{rate}, ETA {}", clock(secs))
        }
        _ => rate,
    }
}

fn clock(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Log lines while bars are drawn (a `tracing` writer).
#[derive(Clone)]
pub(super) struct LogWriter {
    multi: MultiProgress,
}

/// One log line, gathered and written whole when dropped.
pub(super) struct LogLine {
    multi: MultiProgress,
    text: Vec<u8>,
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            multi: self.multi.clone(),
            text: Vec::new(),
        }
    }
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        // A log line that cannot be written has nowhere else to go.
        self.multi.suspend(|| {
            let _ = std::io::stderr().write_all(&self.text);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_eta_read_as_a_person_would_say_them() {
        let view = |done, total, rate| TransferView {
            id: 0,
            label: "p/c s".into(),
            done,
            total,
            bytes_per_second: rate,
        };
        let mib = 1024.0 * 1024.0;
        assert_eq!(
            rate_and_eta(&view(0, Some(650 * 1024 * 1024), 10.0 * mib)),
            "10.0 MiB/s, ETA 1m 05s"
        );
        assert_eq!(rate_and_eta(&view(5, None, 2.0 * mib)), "2.0 MiB/s");
        assert_eq!(rate_and_eta(&view(0, Some(100), 0.0)), "0 B/s");
        assert_eq!(clock(7322), "2h 02m");
    }
}
