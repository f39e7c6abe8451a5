//! Shared test harness: the S3 server under test (moto or Garage from `scripts/test.sh`, else an
//! embedded s3s-fs), the Atlas simulator, config files, and running the real binary.

#![allow(dead_code)]

pub mod s3_proxy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use atlas_archiver::config::{ChecksumCalculation, PartSize, StorageConfig};
use atlas_archiver::embedded_store::{self, EmbeddedStore};
use atlas_archiver::simulator::{
    SIM_CLIENT_ID, SIM_CLIENT_SECRET, SimCluster, SimSnapshot, Simulator,
};
use atlas_archiver::store::ObjectStore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// The S3-compatible server the tests write to.
pub struct S3Server {
    pub name: String,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    _embedded: Option<EmbeddedStore>,
}

impl S3Server {
    /// From `ATLAS_ARCHIVER_TEST_S3_*` (set by scripts/test.sh), else an embedded s3s-fs.
    pub async fn from_env(scratch: &Path) -> Self {
        let var = |k: &str| std::env::var(format!("ATLAS_ARCHIVER_TEST_S3_{k}")).ok();
        if let (Some(endpoint), Some(access_key), Some(secret_key), Some(bucket)) = (
            var("ENDPOINT"),
            var("ACCESS_KEY"),
            var("SECRET_KEY"),
            var("BUCKET"),
        ) {
            return Self {
                name: var("NAME").unwrap_or_else(|| "external".into()),
                endpoint,
                access_key,
                secret_key,
                bucket,
                _embedded: None,
            };
        }
        eprintln!(
            "note: ATLAS_ARCHIVER_TEST_S3_* unset; using an embedded s3s-fs (scripts/test.sh runs moto and Garage)"
        );
        let store = match EmbeddedStore::start(&scratch.join("s3"), "test-bucket").await {
            Ok(s) => s,
            Err(e) => panic!("embedded store: {e}"),
        };
        Self {
            name: "s3s-fs".into(),
            endpoint: store.endpoint(),
            access_key: embedded_store::ACCESS_KEY.into(),
            secret_key: embedded_store::SECRET_KEY.into(),
            bucket: "test-bucket".into(),
            _embedded: Some(store),
        }
    }

    /// A client for assertions.
    pub async fn client(&self) -> ObjectStore {
        ObjectStore::connect(&StorageConfig {
            bucket: self.bucket.clone(),
            endpoint: Some(
                self.endpoint
                    .parse()
                    .unwrap_or_else(|e| panic!("endpoint: {e}")),
            ),
            region: Some("us-east-1".into()),
            prefix: String::new(),
            force_path_style: true,
            static_credentials: Some((
                self.access_key.clone(),
                SecretString::from(self.secret_key.clone()),
            )),
            part_size: PartSize::Auto,
            parts_in_flight: 2,
            checksum_calculation: Some(ChecksumCalculation::WhenRequired),
            object_checksum: atlas_archiver::config::ObjectChecksum::None,
            probe_checksum: false,
            key_template: "{prefix}{snapshot_id}".into(),
            max_concurrent_transfers: 2,
            request_timeout: std::time::Duration::from_secs(60),
            validate_archives: true,
            protection: Default::default(),
        })
        .await
    }

    /// Whether the server implements ListMultipartUploads (s3s-fs does not).
    pub fn lists_uploads(&self) -> bool {
        self.name != "s3s-fs"
    }
}

/// A test's world: scratch dir, simulator, S3 server, a unique key prefix.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub s3: S3Server,
    pub prefix: String,
    /// A fault-injecting proxy the binary talks to instead of the server, when attached.
    pub proxy: Option<s3_proxy::S3Proxy>,
}

impl World {
    pub async fn new(test: &str, clusters: Vec<SimCluster>) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), clusters)
            .await
            .unwrap_or_else(|e| panic!("simulator: {e}"));
        let s3 = S3Server::from_env(dir.path()).await;
        let prefix = format!("{test}-{:x}/", rand_suffix());
        Self {
            dir,
            sim,
            s3,
            prefix,
            proxy: None,
        }
    }

    /// Puts the fault-injecting proxy between the binary and the S3 server.
    pub async fn attach_proxy(&mut self) {
        self.proxy = Some(s3_proxy::S3Proxy::start(&self.s3.endpoint).await);
    }

    /// The endpoint the binary uses.
    pub fn endpoint(&self) -> String {
        self.proxy
            .as_ref()
            .map_or_else(|| self.s3.endpoint.clone(), |p| p.endpoint.clone())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[[target]]` tables of every simulated cluster.
    pub fn targets_toml(&self) -> String {
        self.sim
            .clusters()
            .iter()
            .map(|c| {
                format!(
                    "\n[[target]]\nproject_id = \"{}\"\ncluster = \"{}\"\n",
                    c.project_id, c.name
                )
            })
            .collect()
    }

    /// A complete config (service account, secret in a file) with `extra_storage` lines added to [storage].
    pub fn write_config(&self, extra_atlas: &str, extra_storage: &str) -> PathBuf {
        std::fs::write(self.path("atlas_secret"), format!("{SIM_CLIENT_SECRET}\n")).unwrap();
        std::fs::write(self.path("s3_secret"), &self.s3.secret_key).unwrap();
        let text = format!(
            r#"[atlas]
base_url = "{base}"
client_id = "{SIM_CLIENT_ID}"
client_secret_file = "atlas_secret"
poll_interval = "50ms"
retry_base_delay = "50ms"
retry_max_delay = "2s"
{extra_atlas}

[storage]
bucket = "{bucket}"
endpoint = "{endpoint}"
region = "us-east-1"
prefix = "{prefix}"
access_key_id = "{ak}"
secret_access_key_file = "s3_secret"
{extra_storage}

[journal]
path = "state/journal.sqlite"
{targets}"#,
            base = self.sim.base_url(),
            bucket = self.s3.bucket,
            endpoint = self.endpoint(),
            prefix = self.prefix,
            ak = self.s3.access_key,
            targets = self.targets_toml(),
        );
        let path = self.path("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The same config with another `storage.prefix` (written as `config-prefix.toml`).
    #[allow(dead_code)]
    pub fn write_config_with_prefix(&self, prefix: &str) -> PathBuf {
        let base = self.write_config("", "");
        let text = std::fs::read_to_string(&base).unwrap();
        let text = text.replace(
            &format!("prefix = \"{}\"", self.prefix),
            &format!("prefix = \"{prefix}\""),
        );
        let path = self.path("config-prefix.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the real binary with a clean environment (plus `env`).
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        run_binary(args, env, self.dir.path()).await
    }

    /// Writes the config (`write_config`'s extra lines) and runs `once` with it; asserts the
    /// exit code and that no secret appears in the output.
    #[allow(dead_code)]
    pub async fn once(&self, extra_atlas: &str, extra_storage: &str, code: i32) -> Run {
        let cfg = self.write_config(extra_atlas, extra_storage);
        let cfg = cfg.to_string_lossy();
        let run = self.run(&["once", "--config", &cfg], &[]).await;
        run.assert_code(code);
        run.assert_no_secrets(&self.secrets());
        run
    }

    /// Runs another program (a terminal emulator around ours, say) the same way.
    pub async fn run_program(&self, program: &str, args: &[&str]) -> Run {
        run_program(program, args, &[], self.dir.path()).await
    }

    /// Every key under this test's prefix, with sizes.
    pub async fn keys(&self) -> HashMap<String, u64> {
        let client = self.s3.client().await;
        client
            .list_keys(&self.prefix)
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .into_iter()
            .collect()
    }

    /// SHA-256 of an object in the bucket.
    pub async fn sha256_of_object(&self, key: &str) -> String {
        let client = self.s3.client().await;
        let mut hasher = Sha256::new();
        client
            .read_chunks(key, |c| hasher.update(c))
            .await
            .unwrap_or_else(|e| panic!("read {key}: {e}"));
        hex::encode(hasher.finalize())
    }

    /// Multipart uploads still open under this test's prefix (empty when the server cannot list them).
    /// Asserts that the one archive under the prefix is `snapshot`, byte for byte, and that
    /// no upload is left open; `context` (the run's stderr) goes into the failure message.
    #[allow(dead_code)]
    pub async fn assert_sole_archive_is(&self, snapshot: &SimSnapshot, context: &str) {
        let archives: Vec<String> = self
            .keys()
            .await
            .into_keys()
            .filter(|k| k.ends_with(".tar.gz"))
            .collect();
        assert_eq!(archives.len(), 1, "{archives:?}\n{context}");
        assert_eq!(
            self.sha256_of_object(&archives[0]).await,
            snapshot.sha256(),
            "the object is the snapshot, byte for byte\n{context}"
        );
        assert!(self.open_uploads().await.is_empty(), "{context}");
    }

    pub async fn open_uploads(&self) -> Vec<(String, String)> {
        if !self.s3.lists_uploads() {
            return Vec::new();
        }
        let client = self.s3.client().await;
        client
            .list_multipart_uploads(&self.prefix)
            .await
            .unwrap_or_else(|e| panic!("list uploads: {e}"))
    }

    /// Secrets that must never appear in output.
    pub fn secrets(&self) -> Vec<String> {
        vec![
            SIM_CLIENT_SECRET.to_owned(),
            self.s3.secret_key.clone(),
            "sim-token-".to_owned(),
            "sig=".to_owned(),
            "/backup/download/".to_owned(),
        ]
    }
}

/// The outcome of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
    }

    /// No secret (nor a snapshot URL's token) in stdout or stderr.
    pub fn assert_no_secrets(&self, secrets: &[String]) {
        let all = self.all();
        for s in secrets {
            assert!(
                !all.contains(s.as_str()),
                "output contains secret-like text {s:?}:\n{all}"
            );
        }
    }
}

pub async fn run_binary(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Run {
    run_program(env!("CARGO_BIN_EXE_atlas-archiver"), args, env, cwd).await
}

/// Runs any program as [`run_binary`] runs ours (clean environment, `cwd`).
pub async fn run_program(program: &str, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Run {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "atlas_archiver=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output: Output = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run the binary: {e}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) ^ u64::from(std::process::id()) << 32
}

/// `status --json` parsed.
pub fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// A free TCP port on loopback (for a daemon's listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts `atlas-archiver run --config CONFIG` in the world's directory with a clean
/// environment plus `env`; killed when dropped.
pub fn spawn_daemon(w: &World, config: &str, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"));
    cmd.args(["run", "--config", config])
        .current_dir(w.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "atlas_archiver=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"))
}

/// Polls `check` every 100 ms until it holds; panics after `timeout` naming `what`.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Sends `sig` (`-TERM`, `-INT`) to the child.
pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap_or_else(|| panic!("child has exited"));
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// Waits up to `limit` for the child: its exit code, stderr and how long it took.
pub async fn finish(child: tokio::process::Child, limit: Duration) -> (i32, String, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("did not exit within {limit:?}"))
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// The world's config for `run`: every two seconds, `shutdown_grace = grace`, listening on
/// loopback at `port`, with `extra_storage` lines in `[storage]`.
pub fn daemon_config(w: &World, port: u16, grace: &str, extra_storage: &str) -> String {
    let path = w.write_config("", extra_storage);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace(
        "[journal]",
        &format!("[schedule]\ncron = \"*/2 * * * * *\"\nshutdown_grace = \"{grace}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n[journal]"),
    );
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}
