//! The layering of `docs/architecture.md`, checked on the source: a change that makes a leaf
//! import another leaf, lets `rusqlite` out of the journal or `clap` out of the CLI, makes the
//! engine reach into the simulator, or lets a source file grow past 500 lines without saying
//! why, fails here with the file and the line.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// Modules that import nothing of the crate: shared vocabulary every layer may use.
const FOUNDATION: &[&str] = &[
    "reason",
    "retry",
    "fault",
    "keys",
    "schedule",
    "target",
    "watchdog",
    "progress",
    "retention",
];
/// Leaves: each talks to one outside thing and imports no other leaf.
const LEAVES: &[&str] = &["atlas", "store", "journal"];
const MAX_LINES: usize = 500;
/// The engine crate's name as the other crates spell it in paths.
const ENGINE_CRATE: &str = "atlas_archiver_engine";
/// The simulator crate's name as the other crates spell it in paths.
const SIMULATOR_CRATE: &str = "atlas_archiver_simulator";

/// The workspace's three crates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Crate {
    /// `crates/engine`: Atlas client, store, journal, pipeline, schedule.
    Engine,
    /// `crates/simulator`: the Atlas simulator and the embedded S3 server.
    Simulator,
    /// The root package: CLI, daemon, HTTP server.
    Binary,
}

/// A source file of the workspace: its crate, its module (first path component under the
/// crate's `src/`), and its non-test lines (a trailing `#[cfg(test)] mod tests { ... }` and
/// `tests.rs` files excluded).
struct Source {
    path: PathBuf,
    krate: Crate,
    module: String,
    lines: Vec<String>,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    for (krate, dir) in [
        (Crate::Engine, "crates/engine/src"),
        (Crate::Simulator, "crates/simulator/src"),
        (Crate::Binary, "src"),
    ] {
        let root = workspace().join(dir);
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs")
                    || path.file_name().unwrap() == "tests.rs"
                {
                    continue;
                }
                let relative = path.strip_prefix(&root).unwrap();
                let first = relative
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy();
                let module = first.trim_end_matches(".rs").to_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if let Some(at) = lines.iter().position(|l| l.trim() == "#[cfg(test)]")
                    && lines
                        .get(at + 1)
                        .is_some_and(|l| l.starts_with("mod tests"))
                {
                    lines.truncate(at);
                }
                out.push(Source {
                    path,
                    krate,
                    module,
                    lines,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    for krate in [Crate::Engine, Crate::Simulator, Crate::Binary] {
        let n = out.iter().filter(|s| s.krate == krate).count();
        assert!(n >= 3, "found only {n} source files of {krate:?}");
    }
    out
}

/// The modules a line refers to through `prefix::` (`crate` for the file's own crate, or
/// another crate's name).
fn refs_through(line: &str, prefix: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let needle = format!("{prefix}::");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + needle.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// The crate modules a line refers to (`crate::x`).
fn crate_refs(line: &str) -> Vec<String> {
    refs_through(line, "crate")
}

/// Every `(file:line, module referred to)` of one engine module's sources.
fn refs_of(sources: &[Source], module: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in sources
        .iter()
        .filter(|s| s.krate == Crate::Engine && s.module == module)
    {
        for (i, line) in s.lines.iter().enumerate() {
            for r in crate_refs(line) {
                if r != module {
                    out.push((format!("{}:{}", s.path.display(), i + 1), r));
                }
            }
        }
    }
    out
}

fn mentions(line: &str, krate: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let used = code
        .trim_start()
        .strip_prefix("use ")
        .and_then(|rest| rest.strip_prefix(krate))
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'));
    used || !refs_through(code, krate).is_empty()
}

/// The names under `[dependencies]` of a crate's manifest (dev-dependencies excluded).
fn dependencies(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join(manifest)).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("");
            out.push(name.to_owned());
        }
    }
    assert!(!out.is_empty(), "{manifest} lists no dependencies");
    out
}

#[test]
fn foundation_modules_import_nothing_of_the_crate() {
    let sources = sources();
    let mut broken = Vec::new();
    for m in FOUNDATION {
        broken.extend(
            refs_of(&sources, m)
                .into_iter()
                .map(|(at, r)| format!("{at}: {m} imports crate::{r}")),
        );
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn leaves_import_no_other_leaf_and_nothing_above_them() {
    let sources = sources();
    let mut broken = Vec::new();
    for m in LEAVES {
        for (at, r) in refs_of(&sources, m) {
            let allowed = FOUNDATION.contains(&r.as_str()) || r == "config";
            if !allowed {
                broken.push(format!("{at}: leaf {m} imports crate::{r}"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_engine_does_not_reach_the_binary_or_the_test_world() {
    let forbidden = [
        "clap",
        "axum",
        "s3s",
        "s3s-fs",
        "sd-notify",
        "hyper-util",
        "atlas-archiver",
        "atlas-archiver-simulator",
    ];
    let mut broken: Vec<String> = dependencies("crates/engine/Cargo.toml")
        .into_iter()
        .filter(|d| forbidden.contains(&d.as_str()))
        .map(|d| format!("crates/engine/Cargo.toml: the engine depends on {d}"))
        .collect();
    for s in sources().iter().filter(|s| s.krate == Crate::Engine) {
        for (i, line) in s.lines.iter().enumerate() {
            for krate in [
                "clap",
                "axum",
                "s3s",
                "s3s_fs",
                "sd_notify",
                "hyper_util",
                "atlas_archiver",
                SIMULATOR_CRATE,
            ] {
                if mentions(line, krate) {
                    broken.push(format!(
                        "{}:{}: engine module {} uses {krate}",
                        s.path.display(),
                        i + 1,
                        s.module
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_simulator_shares_no_code_with_the_client() {
    let mut broken: Vec<String> = dependencies("crates/simulator/Cargo.toml")
        .into_iter()
        .filter(|d| d.starts_with("atlas-archiver"))
        .map(|d| format!("crates/simulator/Cargo.toml: the simulator depends on {d}"))
        .collect();
    for s in sources().iter().filter(|s| s.krate == Crate::Simulator) {
        for (i, line) in s.lines.iter().enumerate() {
            if mentions(line, ENGINE_CRATE) || mentions(line, "atlas_archiver") {
                broken.push(format!(
                    "{}:{}: the simulator imports the engine or the binary",
                    s.path.display(),
                    i + 1
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn only_the_cli_reaches_the_simulator() {
    let mut broken = Vec::new();
    for s in sources()
        .iter()
        .filter(|s| s.krate == Crate::Binary && s.module != "cli" && s.module != "lib")
    {
        for (i, line) in s.lines.iter().enumerate() {
            if mentions(line, SIMULATOR_CRATE) {
                broken.push(format!(
                    "{}:{}: {} reaches the simulator",
                    s.path.display(),
                    i + 1,
                    s.module
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn rusqlite_stays_in_the_journal_and_clap_in_the_cli() {
    let sources = sources();
    let mut broken = Vec::new();
    for s in &sources {
        for (i, line) in s.lines.iter().enumerate() {
            if mentions(line, "rusqlite") && !(s.krate == Crate::Engine && s.module == "journal") {
                broken.push(format!(
                    "{}:{}: rusqlite outside the journal",
                    s.path.display(),
                    i + 1
                ));
            }
            if mentions(line, "clap") && !(s.krate == Crate::Binary && s.module == "cli") {
                broken.push(format!(
                    "{}:{}: clap outside the CLI",
                    s.path.display(),
                    i + 1
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn long_files_say_why_at_their_top() {
    let mut broken = Vec::new();
    for s in sources() {
        let says_why = s
            .lines
            .iter()
            .take(20)
            .any(|l| l.starts_with("//! Over 500 lines:"));
        if s.lines.len() > MAX_LINES && !says_why {
            broken.push(format!(
                "{}: {} non-test lines and no `//! Over 500 lines: <reason>` at its top",
                s.path.display(),
                s.lines.len()
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // A check that cannot fail is a defect: make sure the scanner finds real references.
    assert_eq!(
        crate_refs("use crate::journal::{Journal, SnapshotKey};"),
        ["journal"]
    );
    assert_eq!(
        crate_refs("let x = crate::fault::point(\"x\"); // crate::cli"),
        ["fault"]
    );
    assert!(mentions("use rusqlite::params;", "rusqlite"));
    assert!(!mentions(
        "use atlas_archiver_engine::atlas;",
        "atlas_archiver"
    ));
    assert!(mentions("use atlas_archiver_engine::atlas;", ENGINE_CRATE));
    assert_eq!(
        refs_through("atlas_archiver_engine::journal::Journal", ENGINE_CRATE),
        ["journal"]
    );
    assert!(
        dependencies("Cargo.toml")
            .iter()
            .any(|d| d == "atlas-archiver-engine")
    );
    assert!(!mentions("// rusqlite is only in the journal", "rusqlite"));
    let sources = sources();
    assert!(
        refs_of(&sources, "pipeline")
            .iter()
            .any(|(_, r)| r == "journal")
    );
}
