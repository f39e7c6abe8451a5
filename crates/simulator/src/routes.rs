//! HTTP handlers of the simulator.
//! Over 500 lines: one handler per Atlas endpoint and fault of the contract, kept together so the simulated API reads as one surface.

// Handlers answer with a `Response` either way; boxing the early-return error would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use rand::RngExt as _;
use serde_json::{Value, json};

use super::content::SnapshotBytes;
use super::digest;
use super::{
    RangeFault, SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_PRIVATE_KEY, SIM_PUBLIC_KEY, SimCluster,
    SimJob, SimState,
};

mod dedicated;
mod listing;

/// The Flex endpoints' media type (CONTRACT.md section 2), spelled out here rather than taken
/// from the client, so that a client that sends the wrong one is caught.
const FLEX_MEDIA_TYPE: &str = "application/vnd.atlas.2024-11-13+json";
/// The dedicated clusters' backup endpoints' media type (CONTRACT.md section 3).
const DEDICATED_MEDIA_TYPE: &str = "application/vnd.atlas.2023-01-01+json";

/// The cluster listing's media type (its latest version, 2024-08-05).
const CLUSTERS_MEDIA_TYPE: &str = "application/vnd.atlas.2024-08-05+json";

/// The media type an API path requires.
fn media_type_for(path: &str) -> &'static str {
    if path.contains("/flexClusters/") || path.ends_with("/flexClusters") {
        FLEX_MEDIA_TYPE
    } else if path.ends_with("/clusters") {
        CLUSTERS_MEDIA_TYPE
    } else {
        DEDICATED_MEDIA_TYPE
    }
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<SimState>>,
    addr: SocketAddr,
}

impl App {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) fn router(state: Arc<Mutex<SimState>>, addr: SocketAddr) -> Router {
    let base = "/api/atlas/v2/groups/{group}/flexClusters/{name}/backup";
    let app = App { state, addr };
    // Faults, the media type and authentication apply to every Atlas API route, once, here.
    let api = Router::new()
        .route(&format!("{base}/snapshots"), get(list_snapshots))
        .route(&format!("{base}/snapshots/{{id}}"), get(get_snapshot))
        .route(&format!("{base}/download"), post(request_download))
        .route(&format!("{base}/restoreJobs"), get(list_jobs))
        .route(&format!("{base}/restoreJobs/{{id}}"), get(get_job))
        .merge(dedicated::routes())
        .merge(listing::routes())
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), api_gate));
    Router::new()
        .route("/api/oauth/token", post(token))
        .route("/backup/download/{token}/{file}", get(download))
        .route("/restore/{token}/{file}", get(download))
        .route("/_simulator/observed", get(observed))
        .merge(api)
        .fallback(not_found)
        .with_state(app)
}

/// What the simulator has served so far (not an Atlas endpoint: for benchmarks and for anyone
/// who wants to see what a run asked of Atlas).
async fn observed(State(app): State<App>) -> Response {
    let o = app.lock().observed.clone();
    ok_json_as(
        &json!({
            "token_requests": o.token_requests,
            "api_requests": o.api_requests,
            "download_requests": o.download_requests,
            "snapshot_downloads": o.snapshot_downloads,
            "ranged_downloads": o.ranged_downloads,
            "bounded_ranges": o.bounded_ranges,
            "throttled": o.throttled,
            "credentials_sent_to_snapshot_url": o.credentials_sent_to_snapshot_url,
        }),
        "application/json",
    )
}

async fn api_gate(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(r) = gate(
        &app,
        request.method(),
        request.headers(),
        request.uri().path(),
    ) {
        return r;
    }
    next.run(request).await
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The Atlas error envelope, as `application/json` with `X-Error-Code`.
fn envelope(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json!({
        "detail": detail,
        "error": status.as_u16(),
        "errorCode": code,
        "parameters": [],
        "reason": status.canonical_reason().unwrap_or(""),
    });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-error-code", v);
    }
    response
}

fn ok_json(value: &Value) -> Response {
    ok_json_as(value, FLEX_MEDIA_TYPE)
}

fn ok_json_as(value: &Value, media_type: &str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format!("{media_type};charset=utf-8")),
            (
                header::HeaderName::from_static("ratelimit-limit"),
                "1200".to_owned(),
            ),
            (
                header::HeaderName::from_static("ratelimit-remaining"),
                "1199".to_owned(),
            ),
        ],
        value.to_string(),
    )
        .into_response()
}

async fn not_found() -> Response {
    envelope(
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "Cannot find resource.",
    )
}

fn unauthorized(s: &mut SimState) -> Response {
    challenge(s, false)
}

/// A 401 with a new Digest challenge; `stale` says the credentials were good but the nonce or
/// its count was not (RFC 2617 §3.2.1).
fn challenge(s: &mut SimState, stale: bool) -> Response {
    let nonce: String = format!("{:032x}", rand::rng().random::<u128>());
    s.nonces.insert(nonce.clone());
    let mut r = envelope(
        StatusCode::UNAUTHORIZED,
        "UNEXPECTED_ERROR",
        "You are not authorized for this resource.",
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        r#"Digest realm="MMS Public API", domain="", nonce="{nonce}", algorithm=MD5, qop="auth", stale={stale}"#
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Faults, the versioned media type and authentication, shared by every API route.
fn gate(app: &App, method: &Method, headers: &HeaderMap, uri_path: &str) -> Result<(), Response> {
    let mut s = app.lock();
    s.observed.api_requests += 1;
    if s.faults.api_429_burst > 0 {
        s.faults.api_429_burst -= 1;
        s.observed.throttled += 1;
        let mut r = envelope(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED_TOKEN_BUCKET",
            "Rate limit exceeded for api/atlas/v2/groups. Please retry after 1 seconds. Request capacity: 10. Refill rate: 5 per 60 seconds.",
        );
        if let Some(secs) = s.faults.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    if s.faults.api_500_burst > 0 {
        s.faults.api_500_burst -= 1;
        return Err(envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            "Unexpected error.",
        ));
    }
    if s.faults.api_503_burst > 0 {
        s.faults.api_503_burst -= 1;
        return Err(envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "Service unavailable.",
        ));
    }
    let media = media_type_for(uri_path);
    let accept_ok = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(media));
    if !accept_ok {
        s.observed.missing_accept += 1;
        return Err(envelope(
            StatusCode::NOT_ACCEPTABLE,
            "INVALID_VERSION_DATE",
            &format!("This resource requires Accept: {media}."),
        ));
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let valid = s.tokens.get(token).is_some_and(|exp| *exp > Utc::now());
        return if valid {
            Ok(())
        } else {
            Err(unauthorized(&mut s))
        };
    }
    if auth.starts_with("Digest") {
        let params = digest::params(auth).unwrap_or_default();
        let nonce_known = digest::param(&params, "nonce").is_some_and(|n| s.nonces.contains(n));
        let uri_ok =
            digest::param(&params, "uri").is_some_and(|u| u.split('?').next() == Some(uri_path));
        if nonce_known
            && uri_ok
            && digest::verifies(&params, method.as_str(), SIM_PUBLIC_KEY, SIM_PRIVATE_KEY)
        {
            if s.faults.stale_next_digests > 0 {
                s.faults.stale_next_digests -= 1;
                s.observed.stale_digests += 1;
                return Err(challenge(&mut s, true));
            }
            if s.faults.strict_digest_nc {
                let nonce = digest::param(&params, "nonce")
                    .unwrap_or_default()
                    .to_owned();
                let nc = digest::param(&params, "nc")
                    .and_then(|n| u32::from_str_radix(n, 16).ok())
                    .unwrap_or(0);
                let seen = s.nonce_counts.entry(nonce).or_insert(0);
                if nc <= *seen {
                    s.observed.stale_digests += 1;
                    return Err(challenge(&mut s, true));
                }
                *seen = nc;
            }
            s.observed.digest_ok += 1;
            return Ok(());
        }
    }
    Err(unauthorized(&mut s))
}

/// Finds a Flex cluster, or answers as Atlas does.
fn cluster<'a>(s: &'a SimState, group: &str, name: &str) -> Result<&'a SimCluster, Response> {
    let c = any_cluster(s, group, name)?;
    if c.dedicated {
        return Err(envelope(
            StatusCode::BAD_REQUEST,
            "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API",
            &format!("Cannot use non-flex cluster {name} in the flex API."),
        ));
    }
    Ok(c)
}

/// Finds a cluster of either kind, or answers as Atlas does.
fn any_cluster<'a>(s: &'a SimState, group: &str, name: &str) -> Result<&'a SimCluster, Response> {
    let object_id = group.len() == 24
        && group
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !object_id {
        return Err(envelope(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Invalid groupId {group}."),
        ));
    }
    if !s.clusters.iter().any(|c| c.project_id == group) {
        return Err(envelope(
            StatusCode::NOT_FOUND,
            "GROUP_NOT_FOUND",
            &format!("No group with ID {group} exists."),
        ));
    }
    let c = s
        .clusters
        .iter()
        .find(|c| c.project_id == group && c.name == name)
        .ok_or_else(|| {
            envelope(
                StatusCode::NOT_FOUND,
                "CLUSTER_NOT_FOUND",
                &format!("No cluster named {name} exists in group {group}."),
            )
        })?;
    Ok(c)
}

async fn token(State(app): State<App>, headers: HeaderMap, body: String) -> Response {
    let mut s = app.lock();
    s.observed.token_requests += 1;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{SIM_CLIENT_ID}:{SIM_CLIENT_SECRET}");
    if !body
        .split('&')
        .any(|kv| kv == "grant_type=client_credentials")
    {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"unsupported_grant_type"}"#,
        )
            .into_response();
    }
    let transient_rejection = s.faults.reject_next_logins > 0;
    if transient_rejection {
        s.faults.reject_next_logins -= 1;
    }
    if transient_rejection || basic.as_deref() != Some(expected.as_str()) {
        s.observed.rejected_logins += 1;
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#,
        )
            .into_response();
    }
    let lifetime = s.faults.token_lifetime_secs.unwrap_or(3600);
    let token = format!("sim-token-{:032x}", rand::rng().random::<u128>());
    s.tokens.insert(
        token.clone(),
        Utc::now() + ChronoDuration::seconds(i64::try_from(lifetime).unwrap_or(3600)),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime}).to_string(),
    )
        .into_response()
}

fn snapshot_json(snap: &super::SimSnapshot) -> Value {
    json!({
        "id": snap.id,
        "status": snap.status,
        "mongoDBVersion": "8.0.29",
        "scheduledTime": time(snap.scheduled),
        "startTime": time(snap.scheduled + ChronoDuration::seconds(27)),
        "finishTime": time(snap.finished),
        "expiration": time(snap.scheduled + ChronoDuration::days(8)),
        // Fields the schema does not list appear in real responses; clients must ignore them.
        "frequencyType": "daily",
    })
}

/// One page of a listing. `cap` is the most items the server puts on a page whatever
/// `itemsPerPage` asks (Atlas may serve fewer than asked on a page that is not the last).
fn page(
    items: Vec<Value>,
    query: &HashMap<String, String>,
    path: &str,
    base: &str,
    cap: Option<usize>,
) -> Value {
    let per_page: usize = query
        .get("itemsPerPage")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .clamp(1, 500)
        .min(cap.unwrap_or(usize::MAX).max(1));
    let page_num: usize = query
        .get("pageNum")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let start = (page_num - 1) * per_page;
    let results: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
    let mut links = vec![
        json!({"rel": "self", "href": format!("{base}{path}?includeCount=true&pageNum={page_num}&itemsPerPage={per_page}")}),
    ];
    if start + per_page < total {
        links.push(json!({"rel": "next", "href": format!("{base}{path}?includeCount=true&pageNum={}&itemsPerPage={per_page}", page_num + 1)}));
    }
    json!({ "links": links, "results": results, "totalCount": total })
}

async fn list_snapshots(
    State(app): State<App>,
    Path((group, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    let mut s = app.lock();
    let c = match cluster(&s, &group, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Newest first, as Atlas lists them.
    let items = c.snapshots.iter().rev().map(snapshot_json).collect();
    let listing = page(
        items,
        &q,
        uri.path(),
        &format!("http://{}", app.addr),
        s.faults.page_cap,
    );
    if s.faults.cut_listing_bodies > 0 {
        s.faults.cut_listing_bodies -= 1;
        return cut_in_half(&listing);
    }
    let answer = ok_json(&listing);
    if let Some((n, bytes)) = s.faults.oversized_listing.take() {
        if n > 1 {
            s.faults.oversized_listing = Some((n - 1, bytes));
        }
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, FLEX_MEDIA_TYPE)],
            Body::from(vec![b' '; bytes]),
        )
            .into_response();
    }
    // The list changes between pages: a new snapshot lands at the front, shifting later pages.
    if s.faults.new_snapshot_after_first_page && q.get("pageNum").is_none_or(|p| p == "1") {
        s.faults.new_snapshot_after_first_page = false;
        let id = s.new_id();
        let now = Utc::now();
        if let Some(c) = s
            .clusters
            .iter_mut()
            .find(|c| c.project_id == group && c.name == name)
        {
            c.snapshots.push(super::SimSnapshot {
                id,
                size: 1 << 16,
                status: "COMPLETED".into(),
                scheduled: now,
                finished: now,
            });
        }
    }
    answer
}

/// The answer with its full `Content-Length`, but the connection breaks after half the body:
/// a proxy or load balancer dropping a response in flight.
fn cut_in_half(value: &Value) -> Response {
    let bytes = Bytes::from(value.to_string());
    let half = bytes.slice(..bytes.len() / 2);
    let stream =
        futures_util::stream::iter([Ok(half), Err(std::io::Error::other("simulated cut"))]);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, FLEX_MEDIA_TYPE.to_owned()),
            (header::CONTENT_LENGTH, bytes.len().to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn get_snapshot(
    State(app): State<App>,
    Path((group, name, id)): Path<(String, String, String)>,
) -> Response {
    let s = app.lock();
    let c = match cluster(&s, &group, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match c.snapshots.iter().find(|x| x.id == id) {
        Some(snap) => ok_json(&snapshot_json(snap)),
        None => envelope(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            &format!("Cannot find resource snapshot {id}."),
        ),
    }
}

fn job_phase(s: &SimState, job: &SimJob) -> &'static str {
    if job.failed {
        return "FAILED";
    }
    let needed = s.faults.polls_until_complete.unwrap_or(2);
    if s.faults.jobs_never_complete {
        return if job.polls == 0 { "PENDING" } else { "RUNNING" };
    }
    if job.polls >= needed || s.faults.url_in_post {
        "COMPLETED"
    } else if job.polls == 0 {
        "PENDING"
    } else {
        "RUNNING"
    }
}

/// Where snapshot URLs point: the simulator itself, or the address `download_via` names (a
/// proxy in front of the downloads, as a CDN or a far-away region would be).
fn download_origin(app: &App, s: &SimState) -> String {
    match &s.faults.download_via {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", app.addr),
    }
}

fn job_json(app: &App, s: &SimState, job: &SimJob) -> Value {
    let phase = job_phase(s, job);
    let mut v = json!({
        "id": job.id,
        "deliveryType": "DOWNLOAD",
        "status": phase,
        "snapshotId": job.snapshot_id,
        "instanceName": job.cluster,
        "projectId": job.project_id,
        "expirationDate": time(job.created + ChronoDuration::hours(4)),
        "restoreScheduledDate": time(job.created),
        "links": [],
    });
    if phase == "COMPLETED" {
        v["snapshotUrl"] = json!(format!(
            "{}/backup/download/{}/{}.tar.gz?sig={}",
            download_origin(app, s),
            job.token,
            job.snapshot_id,
            job.token
        ));
        v["restoreFinishedDate"] = json!(time(Utc::now()));
    }
    v
}

/// A download request's JSON body, sent with the API's `media_type`, or Atlas's refusal.
fn json_request(headers: &HeaderMap, body: &[u8], media_type: &str) -> Result<Value, Response> {
    let content_type_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(media_type));
    if !content_type_ok {
        return Err(envelope(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            &format!("Content-Type must be {media_type}."),
        ));
    }
    serde_json::from_slice(body).map_err(|_| {
        envelope(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            "Request body is not valid JSON.",
        )
    })
}

/// The request's `snapshotId`, or Atlas's refusal.
fn requested_snapshot(request: &Value) -> Result<String, Response> {
    request
        .get("snapshotId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            envelope(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "snapshotId is required.",
            )
        })
}

/// Whether `snapshot_id` can be downloaded from the cluster `found`: listed, and not vanished;
/// else Atlas's answer (`code` and `what` for a missing snapshot differ between the two APIs).
fn downloadable(
    s: &SimState,
    found: Result<&SimCluster, Response>,
    snapshot_id: &str,
    (code, what): (&str, &str),
) -> Result<(), Response> {
    let listed = found?.snapshots.iter().any(|x| x.id == snapshot_id);
    if !listed || s.faults.vanished.contains(snapshot_id) {
        return Err(envelope(
            StatusCode::NOT_FOUND,
            code,
            &format!("Cannot find {what} {snapshot_id}."),
        ));
    }
    Ok(())
}

/// A new download job of a snapshot, failing when the faults say so.
pub(crate) fn new_job(
    s: &mut SimState,
    group: String,
    name: String,
    snapshot_id: String,
    dedicated: bool,
) -> SimJob {
    SimJob {
        id: s.new_id(),
        project_id: group,
        cluster: name,
        failed: s.faults.fail_jobs_for.contains(&snapshot_id),
        snapshot_id,
        polls: 0,
        created: Utc::now(),
        token: format!("{:032x}", rand::rng().random::<u128>()),
        dedicated,
        fetches: 0,
        fetched_components: Vec::new(),
    }
}

async fn request_download(
    State(app): State<App>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let snapshot_id =
        match json_request(&headers, &body, FLEX_MEDIA_TYPE).and_then(|r| requested_snapshot(&r)) {
            Ok(id) => id,
            Err(refusal) => return refusal,
        };
    let mut s = app.lock();
    s.observed.download_requests += 1;
    if let Err(r) = downloadable(
        &s,
        cluster(&s, &group, &name),
        &snapshot_id,
        ("RESOURCE_NOT_FOUND", "resource snapshot"),
    ) {
        return r;
    }
    let in_progress = s.jobs.iter().any(|j| {
        j.snapshot_id == snapshot_id
            && !j.failed
            && matches!(job_phase(&s, j), "PENDING" | "RUNNING" | "QUEUED")
    });
    if in_progress {
        return envelope(
            StatusCode::CONFLICT,
            "CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY",
            "A download of this snapshot is already in progress.",
        );
    }
    // A job for another snapshot than the one asked for (a server bug the client must catch).
    let snapshot_id = if s.faults.job_for_other_snapshot_burst > 0 {
        s.faults.job_for_other_snapshot_burst -= 1;
        "0123456789abcdef01234567".to_owned()
    } else {
        snapshot_id
    };
    let job = new_job(&mut s, group, name, snapshot_id, false);
    let v = job_json(&app, &s, &job);
    s.jobs.push(job);
    ok_json(&v)
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
    ok_json(&jobs_page(&app, &s, (&group, &name), (&q, &uri), job_json))
}

/// One page of a cluster's download jobs, each shown by `show`.
fn jobs_page(
    app: &App,
    s: &SimState,
    (group, name): (&str, &str),
    (q, uri): (&HashMap<String, String>, &axum::http::Uri),
    show: fn(&App, &SimState, &SimJob) -> Value,
) -> Value {
    let items = s
        .jobs
        .iter()
        .filter(|j| j.project_id == group && j.cluster == name)
        .map(|j| show(app, s, j))
        .collect();
    page(
        items,
        q,
        uri.path(),
        &format!("http://{}", app.addr),
        s.faults.page_cap,
    )
}

/// Where a cluster's job `id` is in the list, or Atlas's 404 with `code`.
fn job_index(
    s: &SimState,
    (group, name): (&str, &str),
    id: &str,
    code: &str,
) -> Result<usize, Response> {
    s.jobs
        .iter()
        .position(|j| j.id == id && j.project_id == group && j.cluster == name)
        .ok_or_else(|| {
            envelope(
                StatusCode::NOT_FOUND,
                code,
                &format!("Cannot find resource restore job {id}."),
            )
        })
}

async fn get_job(
    State(app): State<App>,
    Path((group, name, id)): Path<(String, String, String)>,
) -> Response {
    let mut s = app.lock();
    if let Err(r) = cluster(&s, &group, &name) {
        return r;
    }
    let index = match job_index(&s, (&group, &name), &id, "RESOURCE_NOT_FOUND") {
        Ok(i) => i,
        Err(r) => return r,
    };
    if s.faults.delete_jobs_while_polled > 0 && s.jobs[index].polls >= 1 {
        // The job is garbage-collected while the client polls it.
        s.faults.delete_jobs_while_polled -= 1;
        s.jobs.remove(index);
        return envelope(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            &format!("Cannot find resource restore job {id}."),
        );
    }
    s.jobs[index].polls += 1;
    let job = s.jobs[index].clone();
    ok_json(&job_json(&app, &s, &job))
}

/// How one download ends early, if it does.
#[derive(Clone, Copy)]
enum Ending {
    /// Serve everything.
    Whole,
    /// Reset the connection at this absolute offset.
    Cut(u64),
    /// End the body cleanly at this offset, short of the announced length.
    Short(u64),
    /// Stop sending at this offset and hang (a stalled server).
    Stall(u64),
}

/// Takes one use of the bounded-range fault when `served` holds its byte.
fn range_fault(
    fault: &mut Option<(RangeFault, u32)>,
    served: std::ops::Range<u64>,
) -> Option<Ending> {
    let (kind, times) = (*fault)?;
    let ending = match kind {
        RangeFault::Cut(at) => Ending::Cut(at),
        RangeFault::Stall(at) => Ending::Stall(at),
    };
    if !ending.at().is_some_and(|at| served.contains(&at)) {
        return None;
    }
    *fault = (times > 1).then(|| (kind, times - 1));
    Some(ending)
}

impl Ending {
    fn at(self) -> Option<u64> {
        match self {
            Self::Whole => None,
            Self::Cut(n) | Self::Short(n) | Self::Stall(n) => Some(n),
        }
    }
}

/// The ETag the snapshot URL sends (strong, stable per snapshot).
fn snapshot_etag(snapshot_id: &str, size: u64) -> String {
    format!("\"{snapshot_id}-{size:x}\"")
}

/// `bytes=N-` (a resume, or the opening GET of a parallel download) or `bytes=N-M` (a range
/// of a parallel download; `M` inclusive, clamped to the object as RFC 9110 says). Any other
/// form (suffix ranges, several ranges) is ignored, as a server may: the whole body is served.
fn range_of(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.parse().ok()?;
    if end.is_empty() {
        return Some((start, None));
    }
    let end: u64 = end.parse().ok()?;
    (end >= start).then_some((start, Some(end)))
}

/// What a snapshot URL serves, once admitted.
struct Served {
    size: u64,
    snapshot_id: String,
    /// The content's seed: the snapshot's id, or the job's too under `content_per_job`.
    seed: String,
    ending: Ending,
    chunked: bool,
    throttle: Option<u64>,
    ranges: bool,
}

/// The checks and faults of a snapshot URL before any byte: credentials, expiry, the link's
/// token, a vanished snapshot, error pages; then how this download will end.
fn admit(
    s: &mut SimState,
    token: &str,
    file: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Served, Response> {
    s.observed.snapshot_downloads += 1;
    if headers.contains_key(header::AUTHORIZATION) {
        s.observed.credentials_sent_to_snapshot_url += 1;
        return Err((
            StatusCode::BAD_REQUEST,
            "credentials must not be sent to a snapshot URL",
        )
            .into_response());
    }
    if s.faults.expired_url_burst > 0 {
        s.faults.expired_url_burst -= 1;
        return Err((
            StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )
            .into_response());
    }
    let Some(index) = s.jobs.iter().position(|j| j.token == token) else {
        return Err((StatusCode::FORBIDDEN, "unknown or expired link").into_response());
    };
    let job = s.jobs[index].clone();
    // A sharded cluster's job serves one file per replica set:
    // `…/<token>/<replicaSetName>-restore-<snapshotId>.tar.gz`.
    let replica_sets = s.replica_sets_of(&job);
    let component = replica_sets
        .iter()
        .find(|rs| file == format!("{rs}-restore-{}.tar.gz", job.snapshot_id))
        .cloned();
    let link_ok = if job.dedicated {
        // `…/<token>/restore-<snapshotId>.tar.gz`, valid for an hour, one GET only.
        (component.is_some()
            || (replica_sets.is_empty() && file == format!("restore-{}.tar.gz", job.snapshot_id)))
            && Utc::now() <= job.created + ChronoDuration::hours(1)
    } else {
        q.get("sig").map(String::as_str) == Some(token)
            && file == format!("{}.tar.gz", job.snapshot_id)
            && Utc::now() <= job.created + ChronoDuration::hours(4)
    };
    if !link_ok {
        return Err((StatusCode::FORBIDDEN, "unknown or expired link").into_response());
    }
    if let Some(rs) = &component {
        if job.fetched_components.contains(rs) {
            return Err((StatusCode::GONE, "this download link was already used").into_response());
        }
        s.jobs[index].fetched_components.push(rs.clone());
        if s.jobs[index].fetched_components.len() == replica_sets.len() {
            s.jobs[index].fetches += 1;
        }
    } else if job.dedicated {
        if job.fetches > 0 {
            return Err((StatusCode::GONE, "this download link was already used").into_response());
        }
        s.jobs[index].fetches += 1;
    }
    let Some(snap) = s
        .clusters
        .iter()
        .flat_map(|c| c.snapshots.iter())
        .find(|x| x.id == job.snapshot_id)
        .cloned()
    else {
        return Err((StatusCode::NOT_FOUND, "snapshot no longer exists").into_response());
    };
    // A proxy or CDN error page served as a success: labelled as HTML, or labelled as a
    // download so that only the content shows it is not an archive.
    let page = if s.faults.html_body_burst > 0 {
        s.faults.html_body_burst -= 1;
        Some(("text/html; charset=utf-8", 1))
    } else if s.faults.html_without_content_type_burst > 0 {
        s.faults.html_without_content_type_burst -= 1;
        Some(("application/octet-stream", 200))
    } else {
        None
    };
    if let Some((content_type, repeat)) = page {
        let body = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>\n";
        return Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type)],
            body.repeat(repeat),
        )
            .into_response());
    }
    let f = &s.faults;
    let mut ending = match (
        f.cut_after.get(&snap.id),
        f.short_body_at.get(&snap.id),
        f.stall_after.get(&snap.id),
    ) {
        (Some(n), _, _) => Ending::Cut(*n),
        (_, Some(n), _) => Ending::Short(*n),
        (_, _, Some(n)) => Ending::Stall(*n),
        _ => Ending::Whole,
    };
    if ending.at().is_some() && s.faults.cut_times > 0 {
        s.faults.cut_times -= 1;
        if s.faults.cut_times == 0 {
            s.faults.cut_after.remove(&snap.id);
            s.faults.short_body_at.remove(&snap.id);
            s.faults.stall_after.remove(&snap.id);
        }
    }
    if let Some(rs) = &component
        && let Some((after, times)) = s.faults.cut_component.get(rs).copied()
    {
        ending = Ending::Cut(after);
        match times {
            0 => {}
            1 => {
                s.faults.cut_component.remove(rs);
            }
            n => {
                s.faults.cut_component.insert(rs.clone(), (after, n - 1));
            }
        }
    }
    if ending.at().is_some_and(|c| c >= snap.size) {
        ending = Ending::Whole;
    }
    let seed = match &component {
        Some(rs) => crate::component_seed(&snap.id, rs),
        None if s.faults.content_per_job => format!("{}-{}", snap.id, job.id),
        None => snap.id.clone(),
    };
    Ok(Served {
        size: snap.size,
        snapshot_id: snap.id,
        seed,
        ending,
        chunked: s.faults.chunked,
        throttle: s.faults.throttle_bytes_per_sec,
        ranges: s.faults.range_support,
    })
}

/// The pre-signed snapshot URL: no Atlas auth, a token in the path and the query. Serves
/// deterministic bytes, optionally honouring `Range` (with `If-Range`), and fails as the faults say.
async fn download(
    State(app): State<App>,
    Path((token, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let admitted = admit(&mut app.lock(), &token, &file, &q, &headers);
    let Served {
        size,
        snapshot_id,
        seed,
        mut ending,
        chunked,
        throttle,
        ranges,
    } = match admitted {
        Ok(served) => served,
        Err(refusal) => return refusal,
    };
    let etag = snapshot_etag(&snapshot_id, size);
    // A range is honoured when supported, inside the object, and the If-Range validator (if any) still matches.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag);
    let range = range_of(&headers).filter(|(n, _)| ranges && if_range_ok && *n < size);
    let start = range.map(|(n, _)| n);
    let offset = start.unwrap_or(0);
    // Exclusive end of what this response serves.
    let stop = range
        .and_then(|(_, end)| end)
        .map_or(size, |e| e.saturating_add(1).min(size));
    let mut generator = SnapshotBytes::new(&seed, size);
    generator.skip(offset);
    if let Some((_, end)) = range {
        let mut app = app.lock();
        app.observed.ranged_downloads += 1;
        if end.is_some() {
            app.observed.bounded_ranges += 1;
            if let Some(fault) = range_fault(&mut app.faults.bounded_range, offset..stop) {
                ending = fault;
            }
        }
    }
    // State: (generator, absolute offset sent so far, finished).
    let stream = futures_util::stream::unfold(
        (generator, offset, false),
        move |(mut generator, sent, finished)| async move {
            const CHUNK: usize = 64 << 10;
            if finished {
                return None;
            }
            if let Some(limit) = ending.at()
                && sent >= limit
            {
                match ending {
                    Ending::Cut(_) => {
                        let cut = std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "simulated connection cut",
                        );
                        return Some((Err(cut), (generator, sent, true)));
                    }
                    Ending::Stall(_) => {
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return None;
                    }
                    Ending::Short(_) | Ending::Whole => return None,
                }
            }
            if generator.remaining() == 0 || sent >= stop {
                return None;
            }
            let mut buf = vec![0u8; CHUNK.min(usize::try_from(stop - sent).unwrap_or(CHUNK))];
            let mut n = generator.fill(&mut buf);
            if let Some(limit) = ending.at() {
                // Serve exactly the bytes before the fault's offset.
                n = n.min(usize::try_from(limit.saturating_sub(sent)).unwrap_or(usize::MAX));
            }
            buf.truncate(n);
            if let Some(rate) = throttle.filter(|r| *r > 0) {
                tokio::time::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64))
                    .await;
            }
            Some((
                Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                (generator, sent + n as u64, false),
            ))
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    if ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if start.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {offset}-{}/{size}", stop - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if !chunked && let Ok(v) = HeaderValue::from_str(&(stop - offset).to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    response
}
