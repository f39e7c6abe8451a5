//! A built-in Atlas simulator on loopback: the Flex backup endpoints, OAuth token endpoint and
//! Digest challenges, paging, restore jobs that move PENDING → RUNNING → COMPLETED over polls,
//! the error envelope, and a snapshot URL that serves deterministic bytes. It follows
//! `../shared/atlas-api/CONTRACT.md` and the OpenAPI fragments, including their odd cases, and
//! can inject faults (429 bursts, 5xx, FAILED jobs, cut connections, expired URLs) for tests.
//! Used by `demo`, `simulate` and the test suites; never by `once` or `run` against real Atlas.
//! Also here: [`embedded_store`], an S3 server on loopback over a local directory (for `demo`).
//! Must not: depend on the engine crate (`atlas-archiver-engine`); `tests/architecture.rs`
//! checks that neither crate reaches the other.

pub mod content;
mod digest;
pub mod embedded_store;
mod faults;
mod routes;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use faults::{Faults, Observed, RangeFault};

/// Service-account id the simulator accepts.
pub const SIM_CLIENT_ID: &str = "mdb_sa_id_simulator";
/// Service-account secret the simulator accepts (not a real secret).
pub const SIM_CLIENT_SECRET: &str = "mdb_sa_sk_simulator-secret";
/// Legacy API public key the simulator accepts.
pub const SIM_PUBLIC_KEY: &str = "simpubkey";
/// Legacy API private key the simulator accepts (not a real secret).
pub const SIM_PRIVATE_KEY: &str = "sim-private-key-0000";

/// One simulated snapshot.
#[derive(Debug, Clone)]
pub struct SimSnapshot {
    /// 24-hex id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// `COMPLETED` normally.
    pub status: String,
    /// Scheduled time.
    pub scheduled: DateTime<Utc>,
    /// Finish time.
    pub finished: DateTime<Utc>,
}

impl SimSnapshot {
    /// SHA-256 of the bytes the simulator serves for it.
    pub fn sha256(&self) -> String {
        content::sha256_of(&self.id, self.size)
    }

    /// SHA-256 of the file the simulator serves for one component (`replica_set`) of a sharded
    /// cluster's snapshot: each component is its own archive of `size` bytes.
    pub fn component_sha256(&self, replica_set: &str) -> String {
        content::sha256_of(&component_seed(&self.id, replica_set), self.size)
    }
}

/// What a component's content is generated from.
pub(crate) fn component_seed(snapshot_id: &str, replica_set: &str) -> String {
    format!("{snapshot_id}/{replica_set}")
}

/// A simulated cluster (Flex unless `dedicated`).
#[derive(Debug, Clone, Default)]
pub struct SimCluster {
    /// Project id.
    pub project_id: String,
    /// Cluster name.
    pub name: String,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<SimSnapshot>,
    /// A dedicated (non-Flex) cluster: the Flex API refuses it.
    pub dedicated: bool,
    /// Its tags (`ResourceTag`), as the cluster listings show them.
    pub tags: Vec<(String, String)>,
    /// Atlas takes no backups of it (`backupEnabled: false` / `backupSettings.enabled: false`).
    pub backups_off: bool,
    /// A sharded (dedicated) cluster with this many shards and a dedicated config server;
    /// 0 for a replica set or a Flex cluster.
    pub shards: usize,
}

impl SimCluster {
    /// A sharded cluster's replica sets, each a component of its snapshots: the shards
    /// (`atlas-<name>-shard-<i>`) and then the config server (`atlas-<name>-config-0`). Empty
    /// for a replica set or a Flex cluster.
    pub fn replica_sets(&self) -> Vec<String> {
        if self.shards == 0 {
            return Vec::new();
        }
        (0..self.shards)
            .map(|i| format!("atlas-{}-shard-{i}", self.name))
            .chain(std::iter::once(format!("atlas-{}-config-0", self.name)))
            .collect()
    }
}

/// A restore job.
#[derive(Debug, Clone)]
pub(crate) struct SimJob {
    pub(crate) id: String,
    pub(crate) project_id: String,
    pub(crate) cluster: String,
    pub(crate) snapshot_id: String,
    pub(crate) polls: u32,
    pub(crate) created: DateTime<Utc>,
    pub(crate) token: String,
    pub(crate) failed: bool,
    /// A dedicated cluster's job: its URL serves one GET.
    pub(crate) dedicated: bool,
    /// GETs of its URL so far.
    pub(crate) fetches: u32,
    /// A sharded cluster's job: the components whose URL was used (one GET each).
    pub(crate) fetched_components: Vec<String>,
}

/// Everything the simulator holds.
#[derive(Debug, Default)]
pub(crate) struct SimState {
    pub(crate) clusters: Vec<SimCluster>,
    pub(crate) faults: Faults,
    pub(crate) observed: Observed,
    pub(crate) jobs: Vec<SimJob>,
    pub(crate) tokens: HashMap<String, DateTime<Utc>>,
    pub(crate) nonces: HashSet<String>,
    /// The highest `nc` seen per nonce, under `strict_digest_nc`.
    pub(crate) nonce_counts: HashMap<String, u32>,
    pub(crate) next_id: u64,
    /// Organisations and their projects (`GET /orgs/{orgId}/groups`).
    pub(crate) orgs: Vec<(String, Vec<String>)>,
}

impl SimState {
    /// The replica sets of a job's cluster, each a file of its download (none unless sharded).
    pub(crate) fn replica_sets_of(&self, job: &SimJob) -> Vec<String> {
        self.clusters
            .iter()
            .find(|c| c.project_id == job.project_id && c.name == job.cluster)
            .map(SimCluster::replica_sets)
            .unwrap_or_default()
    }

    pub(crate) fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:024x}", 0x5e00_0000_0000_0000_u64 + self.next_id)
    }
}

/// A running simulator. Dropping the handle does not stop it; call [`Simulator::stop`].
#[derive(Clone)]
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<Mutex<SimState>>,
    stop: CancellationToken,
}

impl Simulator {
    /// Serves `clusters` on `listen` (use port 0 for any free port).
    pub async fn start(listen: SocketAddr, clusters: Vec<SimCluster>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(SimState {
            clusters,
            ..SimState::default()
        }));
        let stop = CancellationToken::new();
        let router = routes::router(Arc::clone(&state), addr);
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Ok(Self { addr, state, stop })
    }

    /// Base URL to put in `atlas.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic inside a handler must not hide the state from the test that inspects it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the faults.
    pub fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.lock().faults);
    }

    /// What it saw so far.
    pub fn observed(&self) -> Observed {
        self.lock().observed.clone()
    }

    /// The clusters and their snapshots.
    pub fn clusters(&self) -> Vec<SimCluster> {
        self.lock().clusters.clone()
    }

    /// Adds a snapshot to a cluster (a new day's snapshot).
    pub fn add_snapshot(&self, project_id: &str, cluster: &str, snapshot: SimSnapshot) {
        if let Some(c) = self
            .lock()
            .clusters
            .iter_mut()
            .find(|c| c.project_id == project_id && c.name == cluster)
        {
            c.snapshots.push(snapshot);
        }
    }

    /// Makes a cluster dedicated (or Flex): an upgrade, or a name reused for the other kind.
    pub fn set_dedicated(&self, project_id: &str, cluster: &str, dedicated: bool) {
        for c in &mut self.lock().clusters {
            if c.project_id == project_id && c.name == cluster {
                c.dedicated = dedicated;
            }
        }
    }

    /// Removes a snapshot, as Atlas's retention does after about 8 days.
    pub fn expire_snapshot(&self, snapshot_id: &str) {
        for c in &mut self.lock().clusters {
            c.snapshots.retain(|s| s.id != snapshot_id);
        }
    }

    /// Makes `org_id` an organisation holding `projects` (a project need not have clusters).
    pub fn set_org(&self, org_id: &str, projects: &[&str]) {
        let mut s = self.lock();
        s.orgs.retain(|(o, _)| o != org_id);
        s.orgs.push((
            org_id.to_owned(),
            projects.iter().map(|p| (*p).to_owned()).collect(),
        ));
    }

    /// Adds a cluster, as creating one in Atlas does.
    pub fn add_cluster(&self, cluster: SimCluster) {
        self.lock().clusters.push(cluster);
    }

    /// Removes a cluster, as terminating one in Atlas does.
    pub fn remove_cluster(&self, project_id: &str, cluster: &str) {
        self.lock()
            .clusters
            .retain(|c| !(c.project_id == project_id && c.name == cluster));
    }

    /// Starts a download job of a dedicated cluster as a person would in the Atlas UI (for a
    /// snapshot id that need not be listed): under `one_download_per_cluster` it holds the
    /// cluster's download slot until it expires ([`Simulator::expire_jobs`]).
    pub fn start_foreign_download(&self, project_id: &str, cluster: &str, snapshot_id: &str) {
        let mut s = self.lock();
        let job = routes::new_job(
            &mut s,
            project_id.to_owned(),
            cluster.to_owned(),
            snapshot_id.to_owned(),
            true,
        );
        s.jobs.push(job);
    }

    /// Makes every download job issued so far expired: its `expirationDate` passes and its
    /// URL answers 403.
    pub fn expire_jobs(&self) {
        for job in &mut self.lock().jobs {
            job.created -= ChronoDuration::hours(5);
        }
    }

    /// SHA-256 of what each download job of this snapshot serves (one entry per job, in the
    /// order they were created; all equal unless `content_per_job`).
    pub fn job_sha256s(&self, snapshot_id: &str) -> Vec<String> {
        let s = self.lock();
        let Some(size) = s
            .clusters
            .iter()
            .flat_map(|c| c.snapshots.iter())
            .find(|x| x.id == snapshot_id)
            .map(|x| x.size)
        else {
            return Vec::new();
        };
        let per_job = s.faults.content_per_job;
        s.jobs
            .iter()
            .filter(|j| j.snapshot_id == snapshot_id)
            .map(|j| {
                if per_job {
                    content::sha256_of(&format!("{snapshot_id}-{}", j.id), size)
                } else {
                    content::sha256_of(snapshot_id, size)
                }
            })
            .collect()
    }

    /// Invalidates every issued access token (the next API call gets a 401).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// A scenario: `clusters` Flex clusters in one project, each with `per_cluster` daily snapshots
/// of sizes cycling through `sizes`.
pub fn scenario(
    project_id: &str,
    cluster_names: &[&str],
    per_cluster: usize,
    sizes: &[u64],
) -> Vec<SimCluster> {
    let now = Utc::now();
    let mut counter: u64 = 0;
    cluster_names
        .iter()
        .enumerate()
        .map(|(ci, name)| SimCluster {
            project_id: project_id.to_owned(),
            name: (*name).to_owned(),
            dedicated: false,
            tags: Vec::new(),
            backups_off: false,
            shards: 0,
            snapshots: (0..per_cluster)
                .map(|day| {
                    counter += 1;
                    let age = i64::try_from(per_cluster - day).unwrap_or(0);
                    let scheduled = now - ChronoDuration::days(age) - ChronoDuration::hours(2);
                    SimSnapshot {
                        id: format!(
                            "{:08x}{:016x}",
                            0x6a6f_78e0_u32 + u32::try_from(ci).unwrap_or(0),
                            counter
                        ),
                        size: sizes[(counter as usize) % sizes.len().max(1)],
                        status: "COMPLETED".to_owned(),
                        scheduled,
                        finished: scheduled + ChronoDuration::seconds(106),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The project id the demo uses.
pub const DEMO_PROJECT_ID: &str = "32b6e34b3d91647abb20e7b8";

/// The demo's clusters: two Flex clusters and a dedicated replica set, with three snapshots
/// of a few MiB each, and a sharded cluster (three shards and a config server) with two.
pub fn demo_clusters() -> Vec<SimCluster> {
    let mut clusters = scenario(
        DEMO_PROJECT_ID,
        &["orders-flex", "billing-flex", "payments-m10"],
        3,
        &[3 << 20, 5 << 20, (2 << 20) + 12_345],
    );
    if let Some(c) = clusters.last_mut() {
        c.dedicated = true;
        c.tags = vec![("env".to_owned(), "prod".to_owned())];
    }
    // A sharded cluster: three shards and a config server, a file of its own for each.
    let mut sharded = scenario(DEMO_PROJECT_ID, &["catalog-sharded"], 2, &[1 << 20]);
    for c in &mut sharded {
        c.dedicated = true;
        c.shards = 3;
        c.tags = vec![("env".to_owned(), "prod".to_owned())];
        for (i, snap) in c.snapshots.iter_mut().enumerate() {
            // Ids of their own, apart from the other clusters'.
            snap.id = format!("6b{:022x}", i + 1);
        }
    }
    clusters.extend(sharded);
    clusters
}
