//! Command output on stdout that never panics: `println!` panics when stdout cannot be written
//! (a full disk under `> report.json`, a closed pipe), which would lose the exit code and leave
//! a backtrace where a report was expected. [`outln!`] and [`out!`] write instead, keep the
//! first failure, and `main` reports it on stderr with exit code 1.
//! Must not: write to stderr itself, or buffer output beyond the line.

use std::io::Write as _;
use std::sync::OnceLock;

static FAILED: OnceLock<String> = OnceLock::new();

/// Writes `args` to stdout; a failure is kept for [`failure`].
pub(crate) fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written.and_then(|()| out.flush()) {
        let _ = FAILED.set(e.to_string());
    }
}

/// The first failure to write stdout, if any.
pub(crate) fn failure() -> Option<&'static str> {
    FAILED.get().map(String::as_str)
}

/// `println!` for command output, without the panic.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*), true)
    };
}

/// `print!` for command output, without the panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*), false)
    };
}
