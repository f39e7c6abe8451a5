//! The progress display in a real terminal: the binary runs under tmux (scripts/test.sh installs
//! it) and the screen is read with `capture-pane`. While a snapshot streams, its line shows the
//! target and snapshot, a bar, bytes, rate and ETA; log lines print whole above it; when the run
//! ends the bars are gone and the summary is on the screen. `verify` and `restore` end with a
//! clean screen too, and `NO_COLOR` takes the colours off the log lines. Off a terminal (every
//! other suite's runs, stderr piped) nothing of the display appears.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use atlas_archiver::simulator::scenario;
use common::World;

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a6";
/// Far more than any run here takes; a run that hangs fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(300);

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Self {
        Self {
            socket: format!("atlas-archiver-{name}-{}", std::process::id()),
        }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux (scripts/test.sh installs it): {e}"))
    }

    /// Runs `script` in a new 160×40 window; the pane stays after the script ends.
    fn start(&self, session: &str, script: &Path) {
        let out = self.tmux(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "40",
            &format!("sh {}", script.display()),
        ]);
        assert!(out.status.success(), "tmux: {out:?}");
    }

    /// The screen as text; with `escapes`, with its colour codes.
    fn screen(&self, session: &str, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", session];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&self.tmux(&args).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// A script that runs the binary in `dir` with a clean environment, a terminal's `TERM` and
/// `extra` variables, writes its exit code to `rc-<name>` and keeps the pane open.
fn script(dir: &Path, name: &str, args: &[&str], extra: &[(&str, &str)]) -> std::path::PathBuf {
    let vars: String = extra.iter().map(|(k, v)| format!(" {k}='{v}'")).collect();
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let text = format!(
        "cd '{}'\nenv -i PATH=\"$PATH\" TERM=xterm-256color{vars} '{}' {}\necho $? > rc-{name}\nsleep 3600\n",
        dir.display(),
        env!("CARGO_BIN_EXE_atlas-archiver"),
        quoted.join(" ")
    );
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits for the run's exit code, reading the screen meanwhile; returns the code and every
/// screen seen.
async fn finish(tmux: &Tmux, dir: &Path, name: &str) -> (i32, Vec<String>) {
    let started = Instant::now();
    let mut screens = Vec::new();
    loop {
        screens.push(tmux.screen(name, false));
        if let Ok(rc) = std::fs::read_to_string(dir.join(format!("rc-{name}"))) {
            screens.push(tmux.screen(name, false));
            return (rc.trim().parse().unwrap(), screens);
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{name} did not end; screen:\n{}",
            screens.last().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn is_bar(line: &str) -> bool {
    line.contains("/s") && (line.contains("ETA") || line.contains('['))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_display_shows_each_transfer_and_leaves_a_clean_screen() {
    let size: u64 = 12 << 20;
    let w = World::new("terminal", scenario(PROJECT, &["orders-flex"], 1, &[size])).await;
    let snapshot = w.sim.clusters()[0].snapshots[0].id.clone();
    // 2 MiB/s: six seconds of transfer, long enough to be seen on the screen many times.
    w.sim
        .set_faults(|f| f.throttle_bytes_per_sec = Some(2 << 20));
    let config = w.write_config("", "");
    let cfg = config.to_string_lossy().into_owned();
    let dir = w.dir.path();
    let tmux = Tmux::new("progress");

    tmux.start(
        "once",
        &script(dir, "once", &["once", "--config", &cfg], &[]),
    );
    let (code, screens) = finish(&tmux, dir, "once").await;
    let last = screens.last().unwrap();
    assert_eq!(code, 0, "{last}");
    let label = format!("{PROJECT}/orders-flex {snapshot}");
    let bar = screens
        .iter()
        .flat_map(|s| s.lines())
        .find(|l| l.starts_with(&label) && is_bar(l))
        .unwrap_or_else(|| panic!("no progress line for {label} on any screen; last:\n{last}"));
    assert!(
        bar.contains("/12.00 MiB") && bar.contains("ETA") && bar.contains('['),
        "{bar}"
    );
    // Log lines are whole lines: none carries a piece of a bar.
    for screen in &screens {
        for line in screen.lines().filter(|l| l.contains(" INFO ")) {
            assert!(
                !is_bar(line),
                "a log line torn by a bar: {line:?}\n{screen}"
            );
        }
    }
    assert!(
        last.lines().any(|l| l.contains("download ready")),
        "the log lines stay on the screen:\n{last}"
    );
    assert!(
        !last.lines().any(is_bar),
        "the bar is gone at the end:\n{last}"
    );
    assert!(
        last.lines()
            .any(|l| l.trim_start().starts_with("archived") && l.contains(&snapshot)),
        "the summary is shown:\n{last}"
    );
    // On a terminal the log lines are coloured.
    assert!(
        tmux.screen("once", true)
            .lines()
            .any(|l| l.contains("download ready") && l.contains('\u{1b}')),
        "colours on a terminal"
    );

    // NO_COLOR takes the colours away (a second run: nothing new, its log lines only).
    w.sim.set_faults(|f| f.throttle_bytes_per_sec = None);
    tmux.start(
        "again",
        &script(
            dir,
            "again",
            &["once", "--config", &cfg],
            &[("NO_COLOR", "1")],
        ),
    );
    let (code, screens) = finish(&tmux, dir, "again").await;
    assert_eq!(code, 0, "{}", screens.last().unwrap());
    let colours = tmux.screen("again", true);
    assert!(
        colours.lines().any(|l| l.contains(" INFO ")) && !colours.contains('\u{1b}'),
        "NO_COLOR: no escape codes on the screen:\n{colours:?}"
    );

    // verify: ends with its verdict on a clean screen.
    tmux.start(
        "verify",
        &script(dir, "verify", &["verify", "--config", &cfg], &[]),
    );
    let (code, screens) = finish(&tmux, dir, "verify").await;
    let last = screens.last().unwrap();
    assert_eq!(code, 0, "{last}");
    assert!(last.contains("1 checked, 1 ok"), "{last}");
    assert!(!last.lines().any(is_bar), "{last}");

    // restore: the archive is written and the screen ends with what to do next.
    let target = format!("{PROJECT}/orders-flex");
    tmux.start(
        "restore",
        &script(
            dir,
            "restore",
            &[
                "restore",
                "--config",
                &cfg,
                "--target",
                &target,
                "--latest",
                "--archive",
                "restored.tar.gz",
            ],
            &[],
        ),
    );
    let (code, screens) = finish(&tmux, dir, "restore").await;
    let last = screens.last().unwrap();
    assert_eq!(code, 0, "{last}");
    assert_eq!(
        std::fs::metadata(dir.join("restored.tar.gz"))
            .unwrap()
            .len(),
        size
    );
    assert!(!last.lines().any(is_bar), "{last}");

    // Off a terminal: no bar, no carriage return, plain log lines.
    let piped = w.run(&["verify", "--config", &cfg], &[]).await;
    piped.assert_code(0);
    assert!(
        !piped.stderr.contains('\r') && !piped.stderr.lines().any(is_bar),
        "{}",
        piped.stderr
    );
}
