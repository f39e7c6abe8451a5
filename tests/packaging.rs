//! The systemd unit, the Dockerfile and the Kubernetes manifest stay consistent with the binary's
//! commands, flags, default paths and ports. (They are not built here: there is no Docker engine.)
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use atlas_archiver::config::{Config, Secrets};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `atlas-archiver <args> --help` succeeds, and each `--flag` in `args` appears in its help.
fn assert_cli_accepts(args: &[&str]) {
    let subcommand: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .copied()
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"))
        .args(&subcommand)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{subcommand:?} --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(flag),
            "{flag} is not a flag of {subcommand:?}:\n{help}"
        );
    }
}

#[test]
fn the_systemd_unit_matches_the_binary() {
    let unit = read("systemd/atlas-archiver.service");
    let line = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let exec = line("ExecStart");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/atlas-archiver");
    assert_cli_accepts(&args[1..]);
    assert!(exec[0].contains(atlas_archiver::config::DEFAULT_CONFIG_PATH));
    assert_eq!(line("Type"), ["notify"]);
    assert_eq!(
        line("StateDirectory"),
        ["atlas-archiver"],
        "the default journal lives in /var/lib/atlas-archiver"
    );
    assert_eq!(line("ConfigurationDirectory"), ["atlas-archiver"]);
    // TimeoutStopSec covers the default shutdown grace (5 minutes), the minute the daemon
    // gives the remaining transfers to stop after it, and a margin (audit L16).
    let stop = line("TimeoutStopSec").join("");
    let minutes: u64 = stop.trim_end_matches("min").parse().unwrap_or(0);
    assert!(
        minutes > 6,
        "TimeoutStopSec={stop} must exceed the 5m default shutdown_grace plus the 1m abort bound"
    );
    // A config error (exit 2) is not restarted forever; the clock is set before the first
    // time-bound signature; every thread the runtime may start fits under TasksMax.
    assert_eq!(line("RestartPreventExitStatus"), ["2"]);
    for key in ["After", "Wants"] {
        let units = line(key).join(" ");
        assert!(
            units.contains("network-online.target") && units.contains("time-sync.target"),
            "{key}={units}"
        );
    }
    let tasks: usize = line("TasksMax").join("").parse().unwrap_or(0);
    assert!(
        tasks
            >= atlas_archiver::cli::MAX_WORKER_THREADS
                + atlas_archiver::cli::MAX_BLOCKING_THREADS
                + 8,
        "TasksMax={tasks} must hold the runtime's threads"
    );
    // The credentials the example config names are the ones the unit loads.
    for cred in line("LoadCredential") {
        let name = cred.split(':').next().unwrap_or_default().to_owned();
        assert!(
            read("config/atlas-archiver.example.toml").contains(&format!("\"{name}\"")),
            "credential {name} is not used by the example config"
        );
    }
}

/// The project's licence file is the one `Cargo.toml` names, and there is a changelog.
#[test]
fn the_license_and_changelog_are_there() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = read("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    let changelog = read("CHANGELOG.md");
    assert!(
        changelog.contains(&format!("## {}", env!("CARGO_PKG_VERSION"))),
        "{changelog}"
    );
}

#[test]
fn the_dockerfile_matches_the_binary() {
    let docker = read("Dockerfile");
    let directive = |name: &str| -> String {
        docker
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} in the Dockerfile"))
    };
    let parse_list = |text: String| -> Vec<String> {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    assert_eq!(
        parse_list(directive("ENTRYPOINT")),
        ["/usr/local/bin/atlas-archiver"]
    );
    let cmd = parse_list(directive("CMD"));
    assert_cli_accepts(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(parse_list(directive("VOLUME")), ["/var/lib/atlas-archiver"]);
    assert_eq!(directive("EXPOSE"), "9187");
    assert_eq!(
        directive("ENV"),
        format!(
            "ATLAS_ARCHIVER_CONFIG={}",
            atlas_archiver::config::DEFAULT_CONFIG_PATH
        )
    );
    assert!(directive("USER").starts_with("65532"), "non-root");
    // A HEALTHCHECK in exec form (distroless has no shell) that the binary accepts, OCI labels,
    // and a .dockerignore that keeps build output and state out of the context.
    let health = docker
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("CMD [\"/usr/local/bin/atlas-archiver\", \"healthcheck\"")
        })
        .unwrap_or_else(|| panic!("no exec-form HEALTHCHECK calling the binary"));
    assert!(docker.contains("HEALTHCHECK"), "{health}");
    assert_cli_accepts(&["healthcheck", "--url", "http://127.0.0.1:9187/healthz"]);
    for label in ["title", "licenses", "source"] {
        assert!(
            docker.contains(&format!("org.opencontainers.image.{label}=")),
            "missing OCI label {label}"
        );
    }
    assert!(docker.contains("org.opencontainers.image.licenses=\"Apache-2.0\""));
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
    assert!(ignore.lines().any(|l| l.trim() == ".git/"), "{ignore}");
}

/// The lines of a `key: |` block scalar in a YAML file.
fn block_scalar(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no {key} block"));
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_manifests_match_the_binary() {
    let common = read("deploy/kubernetes/base/common.yaml");
    let config_text = block_scalar(&common, "config.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config_text).unwrap();
    let config = Config::load(&path, &HashMap::new(), Secrets::Skip)
        .unwrap_or_else(|e| panic!("the ConfigMap's config is invalid: {e}"));
    let port = config
        .server
        .listen
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("the archiver needs its listener"));
    assert_eq!(
        config.journal.path,
        Path::new("/var/lib/atlas-archiver/journal.sqlite")
    );
    // Every secret file the config names is a key of the mounted Secret.
    for line in config_text.lines().filter(|l| l.contains("_file = ")) {
        let file = line.split('"').nth(1).unwrap_or_default();
        let key = file
            .strip_prefix("/run/secrets/atlas-archiver/")
            .unwrap_or_else(|| panic!("{file} is not in the secret mount"));
        assert!(
            common.contains(&format!("  {key}: ")),
            "the Secret has no key {key}"
        );
    }
    for kind in ["sidecar", "standalone"] {
        let yaml = read(&format!("deploy/kubernetes/{kind}/deployment.yaml"));
        let kustomization = read(&format!("deploy/kubernetes/{kind}/kustomization.yaml"));
        assert!(
            kustomization.contains("- ../base") && kustomization.contains("- deployment.yaml"),
            "{kind}: {kustomization}"
        );
        for probe in ["livenessProbe", "startupProbe"] {
            let at = yaml
                .find(&format!("{probe}:"))
                .unwrap_or_else(|| panic!("{kind}: no {probe}"));
            assert!(
                yaml[at..].contains(&format!("path: /healthz\n              port: {port}")),
                "{kind}: {probe} on /healthz:{port}"
            );
        }
        let args_line = yaml
            .lines()
            .find(|l| l.trim_start().starts_with("args:"))
            .unwrap_or_default();
        let args: Vec<String> =
            serde_json::from_str(args_line.trim_start().trim_start_matches("args:").trim())
                .unwrap();
        assert_cli_accepts(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let config_arg = args
            .iter()
            .skip_while(|a| *a != "--config")
            .nth(1)
            .cloned()
            .unwrap_or_default();
        assert_eq!(config_arg, "/etc/atlas-archiver/config.toml", "{kind}");
        for needed in [
            "mountPath: /etc/atlas-archiver",
            "mountPath: /run/secrets/atlas-archiver",
            "mountPath: /var/lib/atlas-archiver",
            "runAsNonRoot: true",
            "type: RuntimeDefault",
            "readOnlyRootFilesystem: true",
            "type: Recreate",
            "replicas: 1",
        ] {
            assert!(yaml.contains(needed), "{kind}: no {needed}");
        }
    }
    // The sidecar is a native one, and its readiness must not gate the application's pod.
    let sidecar = read("deploy/kubernetes/sidecar/deployment.yaml");
    let init = sidecar
        .split("initContainers:")
        .nth(1)
        .and_then(|rest| rest.split("\n      containers:").next())
        .unwrap_or_else(|| panic!("the archiver is not an init container"));
    assert!(init.contains("name: atlas-archiver") && init.contains("restartPolicy: Always"));
    assert!(
        !sidecar.contains("readinessProbe"),
        "no readiness probe in the application's pod"
    );
}

/// `docs/iam-policy.json` is valid JSON and grants exactly the S3 actions of the README's
/// Permissions table, scoped to a bucket and a prefix, and never the governance bypass.
#[test]
fn the_iam_policy_matches_the_readme() {
    let policy: serde_json::Value = serde_json::from_str(&read("docs/iam-policy.json")).unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        let resource = statement["Resource"].as_str().unwrap();
        assert!(resource.starts_with("arn:aws:s3:::BUCKET"), "{resource}");
        for action in statement["Action"].as_array().unwrap() {
            granted.insert(action.as_str().unwrap().to_owned());
        }
    }
    let readme = read("README.md");
    let table = readme
        .split("## Permissions (IAM actions)")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut listed = std::collections::BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `s3:")) {
        let first = line.split('|').nth(1).unwrap();
        for action in first.split('`').filter(|w| w.starts_with("s3:")) {
            listed.insert(action.to_owned());
        }
    }
    assert_eq!(granted, listed, "docs/iam-policy.json vs the README table");
    assert!(!granted.contains("s3:BypassGovernanceRetention"));
}
