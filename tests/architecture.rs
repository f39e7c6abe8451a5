//! The layering of `docs/architecture.md`, checked on the source: a change that makes a leaf
//! import another leaf, lets `rusqlite` out of the journal or `clap` out of the CLI, makes the
//! engine reach into the simulator, or lets a source file grow past 500 lines without saying
//! why, fails here with the file and the line.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Modules that import nothing of the crate: shared vocabulary every layer may use.
const FOUNDATION: &[&str] = &["reason", "retry", "fault", "keys", "schedule", "target"];
/// Leaves: each talks to one outside thing and imports no other leaf.
const LEAVES: &[&str] = &["atlas", "store", "journal"];
/// The engine: what a library user of the archiver gets. It must not reach the binary's parts
/// or the test world (the simulator and the embedded S3 server).
const ENGINE: &[&str] = &[
    "reason",
    "retry",
    "fault",
    "keys",
    "schedule",
    "target",
    "config",
    "atlas",
    "store",
    "journal",
    "telemetry",
    "pipeline",
];
const BINARY: &[&str] = &["cli", "daemon", "server"];
const TEST_WORLD: &[&str] = &["simulator", "embedded_store"];
const MAX_LINES: usize = 500;

/// A source file of the crate: its module (first path component under `src/`), and its
/// non-test lines (a trailing `#[cfg(test)] mod tests { ... }` and `tests.rs` files excluded).
struct Source {
    path: PathBuf,
    module: String,
    lines: Vec<String>,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().unwrap() == "tests.rs"
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
                module,
                lines,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(
        out.len() > 20,
        "found only {} source files under {}",
        out.len(),
        root.display()
    );
    out
}

/// The crate modules a line refers to (`crate::x`, `use crate::{x, y}` is not used here).
fn crate_refs(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    out
}

/// Every `(file:line, module referred to)` of one module's sources.
fn refs_of(sources: &[Source], module: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in sources.iter().filter(|s| s.module == module) {
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
    code.contains(&format!("{krate}::")) || code.trim_start().starts_with(&format!("use {krate}"))
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
    let sources = sources();
    let mut broken = Vec::new();
    for m in ENGINE {
        for (at, r) in refs_of(&sources, m) {
            if BINARY.contains(&r.as_str()) || TEST_WORLD.contains(&r.as_str()) {
                broken.push(format!("{at}: engine module {m} imports crate::{r}"));
            }
        }
        for s in sources.iter().filter(|s| s.module == *m) {
            for (i, line) in s.lines.iter().enumerate() {
                for krate in ["clap", "axum", "s3s", "s3s_fs", "sd_notify", "hyper_util"] {
                    if mentions(line, krate) {
                        broken.push(format!(
                            "{}:{}: engine module {m} uses {krate}",
                            s.path.display(),
                            i + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_simulator_shares_no_code_with_the_client() {
    let sources = sources();
    let broken: Vec<String> = refs_of(&sources, "simulator")
        .into_iter()
        .filter(|(_, r)| ENGINE.contains(&r.as_str()))
        .map(|(at, r)| format!("{at}: the simulator imports crate::{r}"))
        .collect();
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn rusqlite_stays_in_the_journal_and_clap_in_the_cli() {
    let sources = sources();
    let mut broken = Vec::new();
    for s in &sources {
        for (i, line) in s.lines.iter().enumerate() {
            if mentions(line, "rusqlite") && s.module != "journal" {
                broken.push(format!(
                    "{}:{}: rusqlite outside the journal",
                    s.path.display(),
                    i + 1
                ));
            }
            if mentions(line, "clap") && s.module != "cli" {
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
    assert!(!mentions("// rusqlite is only in the journal", "rusqlite"));
    let sources = sources();
    assert!(
        refs_of(&sources, "pipeline")
            .iter()
            .any(|(_, r)| r == "journal")
    );
}
