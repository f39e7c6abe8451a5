//! The dedicated clusters' backup endpoints (CONTRACT.md section 3, `openapi-subset.yaml`):
//! D1 and D2 (`DiskBackupReplicaSet`, lower-case statuses), D5 (a restore job with
//! `deliveryType: "download"`), D6 and D7 (jobs without a `status` field: ready when
//! `deliveryUrl` is non-empty, which lists its URL twice as Atlas may; failed when `failed`).
//! The URL is `/restore/<token>/restore-<snapshotId>.tar.gz`, one GET only, for an hour.
//! Sharded clusters: D3 and D4 (`DiskBackupShardedClusterSnapshot`, with `members`), D1 lists
//! none of their snapshots, and a job lists one `components` entry per replica set (the shards,
//! then the config server), each with its own one-time URL
//! `/restore/<token>/<replicaSetName>-restore-<snapshotId>.tar.gz`, all of them in
//! `deliveryUrl` too.
//! Must not: share anything with the client under test.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};

use super::{
    App, DEDICATED_MEDIA_TYPE, any_cluster, downloadable, envelope, job_index, job_phase,
    jobs_page, json_request, new_job, ok_json_as, page, requested_snapshot, time,
};
use crate::{SimCluster, SimJob, SimSnapshot, SimState};

pub(super) fn routes() -> Router<App> {
    let base = "/api/atlas/v2/groups/{group}/clusters/{name}/backup";
    Router::new()
        .route(&format!("{base}/snapshots"), get(list_snapshots))
        .route(&format!("{base}/snapshots/{{id}}"), get(get_snapshot))
        .route(
            &format!("{base}/snapshots/shardedClusters"),
            get(list_sharded_snapshots),
        )
        .route(
            &format!("{base}/snapshots/shardedCluster/{{id}}"),
            get(get_sharded_snapshot),
        )
        .route(
            &format!("{base}/restoreJobs"),
            get(list_jobs).post(request_download),
        )
        .route(&format!("{base}/restoreJobs/{{id}}"), get(get_job))
}

/// A dedicated cluster, or Atlas's answer for a Flex one on this API.
fn cluster<'a>(s: &'a SimState, group: &str, name: &str) -> Result<&'a SimCluster, Response> {
    let c = any_cluster(s, group, name)?;
    if !c.dedicated {
        return Err(envelope(
            StatusCode::BAD_REQUEST,
            "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API",
            &format!("Cannot use flex cluster {name} in the cluster API."),
        ));
    }
    Ok(c)
}

fn snapshot_json(s: &SimState, c: &SimCluster, snap: &SimSnapshot) -> Value {
    let snapshot_type = if s.faults.fallback_snapshots.contains(&snap.id) {
        "fallback"
    } else {
        "scheduled"
    };
    json!({
        "id": snap.id,
        "status": snap.status.to_ascii_lowercase(),
        "type": "replicaSet",
        "snapshotType": snapshot_type,
        "frequencyType": "daily",
        "cloudProvider": "AWS",
        "createdAt": time(snap.finished),
        "expiresAt": time(snap.finished + ChronoDuration::days(7)),
        "mongodVersion": "8.0.4",
        "replicaSetName": format!("atlas-{}-shard-0", c.name),
        "storageSizeBytes": snap.size,
        "copyRegions": [],
        "policyItems": [],
        "links": [],
    })
}

/// `DiskBackupShardedClusterSnapshot`: the replica set's fields minus `replicaSetName`,
/// `cloudProvider` and `copyRegions`, plus `configServerType`, `members` and `snapshotIds`.
fn sharded_json(s: &SimState, c: &SimCluster, snap: &SimSnapshot) -> Value {
    let mut v = snapshot_json(s, c, snap);
    if let Some(o) = v.as_object_mut() {
        for field in ["replicaSetName", "cloudProvider", "copyRegions"] {
            o.remove(field);
        }
    }
    let sets = c.replica_sets();
    v["type"] = json!("shardedCluster");
    v["storageSizeBytes"] = json!(snap.size * sets.len() as u64);
    v["configServerType"] = json!("DEDICATED");
    v["members"] = sets
        .iter()
        .enumerate()
        .map(|(i, rs)| json!({"cloudProvider": "AWS", "id": member_id(&snap.id, i), "replicaSetName": rs}))
        .collect();
    v["snapshotIds"] = (0..sets.len())
        .map(|i| json!(member_id(&snap.id, i)))
        .collect();
    v
}

/// The id of a member's own snapshot within a sharded snapshot.
fn member_id(snapshot_id: &str, i: usize) -> String {
    format!("{}{i:02x}", &snapshot_id[..snapshot_id.len().min(22)])
}

/// D3: a sharded cluster's snapshots; none for a replica set. The spec declares no paging
/// parameters here: every snapshot is on the one page.
async fn list_sharded_snapshots(
    State(app): State<App>,
    Path((group, name)): Path<(String, String)>,
) -> Response {
    let s = app.lock();
    let c = match cluster(&s, &group, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let items: Vec<Value> = if c.shards == 0 {
        Vec::new()
    } else {
        c.snapshots
            .iter()
            .rev()
            .map(|snap| sharded_json(&s, c, snap))
            .collect()
    };
    let total = items.len();
    ok_json_as(
        &json!({"results": items, "totalCount": total, "links": []}),
        DEDICATED_MEDIA_TYPE,
    )
}

/// D4: one sharded snapshot.
async fn get_sharded_snapshot(
    State(app): State<App>,
    Path((group, name, id)): Path<(String, String, String)>,
) -> Response {
    one_snapshot(&app, (&group, &name, &id), true)
}

async fn list_snapshots(
    State(app): State<App>,
    Path((group, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    let s = app.lock();
    let c = match cluster(&s, &group, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // D1 lists a replica set's snapshots; a sharded cluster's are on D3.
    let items = c
        .snapshots
        .iter()
        .rev()
        .filter(|_| c.shards == 0)
        .map(|snap| snapshot_json(&s, c, snap))
        .collect();
    let listing = page(
        items,
        &q,
        uri.path(),
        &format!("http://{}", app.addr),
        s.faults.page_cap,
    );
    ok_json_as(&listing, DEDICATED_MEDIA_TYPE)
}

async fn get_snapshot(
    State(app): State<App>,
    Path((group, name, id)): Path<(String, String, String)>,
) -> Response {
    one_snapshot(&app, (&group, &name, &id), false)
}

/// D2 (`sharded = false`, a replica set's snapshot) or D4 (a sharded cluster's).
fn one_snapshot(app: &App, (group, name, id): (&str, &str, &str), sharded: bool) -> Response {
    let s = app.lock();
    let c = match cluster(&s, group, name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match c
        .snapshots
        .iter()
        .find(|x| x.id == id && (c.shards > 0) == sharded)
    {
        Some(snap) if sharded => ok_json_as(&sharded_json(&s, c, snap), DEDICATED_MEDIA_TYPE),
        Some(snap) => ok_json_as(&snapshot_json(&s, c, snap), DEDICATED_MEDIA_TYPE),
        None => envelope(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            &format!("Cannot find resource snapshot {id}."),
        ),
    }
}

fn job_json(app: &App, s: &SimState, job: &SimJob) -> Value {
    let phase = job_phase(s, job);
    let mut v = json!({
        "id": job.id,
        "deliveryType": "download",
        "snapshotId": job.snapshot_id,
        "deliveryUrl": [],
        "cancelled": false,
        "expired": Utc::now() > job.created + ChronoDuration::hours(1),
        "failed": job.failed,
        "timestamp": time(job.created),
        "links": [],
    });
    let replica_sets = s.replica_sets_of(job);
    if phase == "COMPLETED" && !replica_sets.is_empty() {
        // A sharded cluster's download: one file per replica set, each in `components` and
        // all of them in `deliveryUrl`.
        let urls: Vec<String> = replica_sets
            .iter()
            .map(|rs| {
                format!(
                    "{}/restore/{}/{rs}-restore-{}.tar.gz",
                    super::download_origin(app, s),
                    job.token,
                    job.snapshot_id
                )
            })
            .collect();
        v["components"] = replica_sets
            .iter()
            .zip(&urls)
            .map(|(rs, url)| json!({"downloadUrl": url, "replicaSetName": rs, "privateDownloadDeliveryUrls": []}))
            .collect();
        v["deliveryUrl"] = json!(urls);
        v["expiresAt"] = json!(time(job.created + ChronoDuration::hours(1)));
        v["finishedAt"] = json!(time(Utc::now()));
    } else if phase == "COMPLETED" {
        let url = format!(
            "{}/restore/{}/restore-{}.tar.gz",
            super::download_origin(app, s),
            job.token,
            job.snapshot_id
        );
        // Atlas may list the same file more than once.
        v["deliveryUrl"] = json!([url, url]);
        v["expiresAt"] = json!(time(job.created + ChronoDuration::hours(1)));
        v["finishedAt"] = json!(time(Utc::now()));
    }
    v
}

async fn request_download(
    State(app): State<App>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match json_request(&headers, &body, DEDICATED_MEDIA_TYPE) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    // The enum is lower-case on this API (CONTRACT §3.2).
    if request.get("deliveryType").and_then(Value::as_str) != Some("download") {
        return envelope(
            StatusCode::BAD_REQUEST,
            "INVALID_ENUM_VALUE",
            "deliveryType must be one of automated, download, pointInTime.",
        );
    }
    let snapshot_id = match requested_snapshot(&request) {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let mut s = app.lock();
    s.observed.download_requests += 1;
    if let Err(r) = downloadable(
        &s,
        cluster(&s, &group, &name),
        &snapshot_id,
        ("SNAPSHOT_NOT_FOUND", "snapshot"),
    ) {
        return r;
    }
    if s.faults.one_download_per_cluster {
        let now = Utc::now();
        let busy = s.jobs.iter().any(|j| {
            j.dedicated
                && j.project_id == group
                && j.cluster == name
                && !j.failed
                && j.fetches == 0
                && now <= j.created + ChronoDuration::hours(1)
        });
        if busy {
            return envelope(
                StatusCode::BAD_REQUEST,
                "CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY",
                "Cannot create a manual download of a snapshot when there is already an active download for that snapshot.",
            );
        }
    }
    let job = new_job(&mut s, group, name, snapshot_id, true);
    let v = job_json(&app, &s, &job);
    s.jobs.push(job);
    ok_json_as(&v, DEDICATED_MEDIA_TYPE)
}

async fn list_jobs(
    State(app): State<App>,
    Path((group, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    let s = app.lock();
    if let Err(r) = cluster(&s, &group, &name) {
        return r;
    }
    ok_json_as(
        &jobs_page(&app, &s, (&group, &name), (&q, &uri), job_json),
        DEDICATED_MEDIA_TYPE,
    )
}

async fn get_job(
    State(app): State<App>,
    Path((group, name, id)): Path<(String, String, String)>,
) -> Response {
    let mut s = app.lock();
    if let Err(r) = cluster(&s, &group, &name) {
        return r;
    }
    let index = match job_index(&s, (&group, &name), &id, "RESTORE_JOB_NOT_FOUND") {
        Ok(i) => i,
        Err(r) => return r,
    };
    s.jobs[index].polls += 1;
    let job = s.jobs[index].clone();
    ok_json_as(&job_json(&app, &s, &job), DEDICATED_MEDIA_TYPE)
}
