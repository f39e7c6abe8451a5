//! What a test can make the simulator do wrong ([`Faults`]) and what it saw ([`Observed`]).
//! Must not: act on a fault (the routes do) or reach the engine crate.

use std::collections::{HashMap, HashSet};

/// Faults to inject. Counters (`*_burst`) count down as requests consume them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next N Atlas API calls answer 429.
    pub api_429_burst: u32,
    /// `Retry-After` seconds sent with those 429s (none when `None`).
    pub retry_after_secs: Option<u64>,
    /// The next N Atlas API calls answer 500.
    pub api_500_burst: u32,
    /// The next N Atlas API calls answer 503.
    pub api_503_burst: u32,
    /// Restore jobs for these snapshots end FAILED.
    pub fail_jobs_for: HashSet<String>,
    /// Restore jobs never complete.
    pub jobs_never_complete: bool,
    /// Polls a job needs before COMPLETED (default 2: PENDING, RUNNING, COMPLETED).
    pub polls_until_complete: Option<u32>,
    /// The download POST answers with the URL at once (a COMPLETED job).
    pub url_in_post: bool,
    /// Downloads of these snapshots cut the connection after N bytes (each time, or `cut_times` times).
    pub cut_after: HashMap<String, u64>,
    /// Downloads of these snapshots end cleanly after N bytes, short of their Content-Length.
    pub short_body_at: HashMap<String, u64>,
    /// Downloads of these snapshots stop sending after N bytes and hang.
    pub stall_after: HashMap<String, u64>,
    /// Honour `Range: bytes=N-` and `bytes=N-M` (with `If-Range`) with a 206, as a resumable
    /// server does.
    pub range_support: bool,
    /// How many downloads a cut, short body or stall applies to (0 = every one).
    pub cut_times: u32,
    /// Serve without Content-Length (chunked).
    pub chunked: bool,
    /// Snapshot URLs answer 403, as if expired (the next N downloads; 0 = none).
    pub expired_url_burst: u32,
    /// Snapshots that vanish (404) when a download is requested.
    pub vanished: HashSet<String>,
    /// Serve snapshot bytes at about this rate (a slow link), when set.
    pub throttle_bytes_per_sec: Option<u64>,
    /// Right after serving the first page of a snapshot list, add a new snapshot (once).
    pub new_snapshot_after_first_page: bool,
    /// The next N snapshot downloads answer `200 text/html` with an error page.
    pub html_body_burst: u32,
    /// The next N snapshot downloads answer `200 application/octet-stream` with an HTML page.
    pub html_without_content_type_burst: u32,
    /// The next N restore jobs polled after their first poll disappear (404).
    pub delete_jobs_while_polled: u32,
    /// The next N download requests answer with a job for another snapshot.
    pub job_for_other_snapshot_burst: u32,
    /// The next N token requests are rejected (401 `invalid_client`) even with good
    /// credentials: an identity-provider hiccup, or an IP access list fixed later.
    pub reject_next_logins: u32,
    /// Listings serve at most this many items per page, whatever `itemsPerPage` asks.
    pub page_cap: Option<usize>,
    /// Each download job serves its own bytes (same length, content seeded by the job): as if
    /// Atlas rebuilt the archive for every restore job, so that a splice of two jobs shows.
    pub content_per_job: bool,
    /// The next N snapshot listings send half their JSON and then break the connection.
    pub cut_listing_bodies: u32,
    /// The next N snapshot listings answer a body of this many bytes of JSON whitespace
    /// (`Some((n, bytes))`): an answer no Atlas sends, to check the client's body bound.
    pub oversized_listing: Option<(u32, usize)>,
    /// Digest: refuse an `nc` not above the highest seen for its nonce, as a server that
    /// enforces RFC 2617's replay protection does, answering with a `stale=true` challenge.
    pub strict_digest_nc: bool,
    /// The next N Digest requests with good credentials get a `stale=true` challenge.
    pub stale_next_digests: u32,
    /// Access tokens live this many seconds (default 3600).
    pub token_lifetime_secs: Option<u64>,
    /// Dedicated clusters: snapshots listed with `snapshotType: "fallback"`.
    pub fallback_snapshots: HashSet<String>,
    /// Dedicated clusters: refuse a download job while another one of the same cluster is
    /// live (not failed, not expired, its one-time URL not yet used), as Atlas does in some
    /// cases, with 400 `CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY`.
    pub one_download_per_cluster: bool,
    /// Sharded clusters: the download of this component (replica set name) is cut after
    /// `.0` bytes, `.1` times (0: every time).
    pub cut_component: HashMap<String, (u64, u32)>,
    /// A bounded range (`bytes=N-M`, a parallel download's) that holds the fault's byte meets
    /// the fault there, `.1` times; other GETs are served whole.
    pub bounded_range: Option<(RangeFault, u32)>,
    /// Snapshot URLs name this `host:port` instead of the simulator's own address: a proxy
    /// in front of the downloads (the benchmark's latency proxy).
    pub download_via: Option<String>,
}

/// What the simulator saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// OAuth token requests.
    pub token_requests: u32,
    /// Token requests with bad credentials.
    pub rejected_logins: u32,
    /// Atlas API requests (all endpoints but the token and the snapshot URL).
    pub api_requests: u32,
    /// Download POSTs.
    pub download_requests: u32,
    /// GETs of snapshot URLs.
    pub snapshot_downloads: u32,
    /// GETs of snapshot URLs answered with a 206 (a resumed download, or a parallel one's).
    pub ranged_downloads: u32,
    /// Of those, the ones for a bounded range (`bytes=N-M`: a parallel download's ranges).
    pub bounded_ranges: u32,
    /// Snapshot URL requests that carried an `Authorization` header (must stay 0).
    pub credentials_sent_to_snapshot_url: u32,
    /// API requests that lacked the versioned `Accept` header.
    pub missing_accept: u32,
    /// Requests answered 429.
    pub throttled: u32,
    /// Digest-authenticated requests that passed.
    pub digest_ok: u32,
    /// Digest requests refused as stale (a replayed or out-of-order `nc`).
    pub stale_digests: u32,
}

/// What happens to a bounded range at a byte it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFault {
    /// The connection is reset at this absolute offset.
    Cut(u64),
    /// The range stops sending at this offset and hangs (a black-holed connection).
    Stall(u64),
}
