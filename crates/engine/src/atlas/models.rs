//! Atlas response bodies, parsed leniently: every field optional, unknown fields ignored, enums
//! compared case-insensitively with a catch-all (CONTRACT §1, §9).

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// `Paginated…View`: `{ links, results, totalCount }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items of this page.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    /// `self`, `next`, … links.
    #[serde(default)]
    pub links: Vec<Link>,
    /// An estimate, when `includeCount=true`.
    pub total_count: Option<u64>,
}

impl<T> Page<T> {
    /// Whether Atlas says there is a next page.
    pub fn has_next_link(&self) -> bool {
        self.links.iter().any(|l| l.rel.as_deref() == Some("next"))
    }

    /// Whether another page follows this one, given how many items earlier pages held: never
    /// after an empty page; always when a `next` link is present; otherwise while `totalCount`
    /// says more items exist than have been seen.
    pub fn more_after(&self, seen_before: usize) -> bool {
        if self.results.is_empty() {
            return false;
        }
        let seen = u64::try_from(seen_before + self.results.len()).unwrap_or(u64::MAX);
        self.has_next_link() || self.total_count.is_some_and(|total| seen < total)
    }
}

/// `Link`.
#[derive(Debug, Deserialize)]
pub struct Link {
    /// Target.
    pub href: Option<String>,
    /// Relation (`self`, `next`, `previous`).
    pub rel: Option<String>,
}

/// `status` of snapshots and restore jobs (`PENDING, QUEUED, RUNNING, FAILED, COMPLETED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting to start.
    Pending,
    /// Queued.
    Queued,
    /// In progress.
    Running,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// Anything this version does not know (kept, never fatal).
    Unknown(String),
}

impl Phase {
    fn parse(value: Option<&str>) -> Self {
        let Some(v) = value else {
            return Self::Unknown(String::new());
        };
        match v.to_ascii_uppercase().as_str() {
            "PENDING" => Self::Pending,
            "QUEUED" => Self::Queued,
            "RUNNING" | "INPROGRESS" | "IN_PROGRESS" => Self::Running,
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            _ => Self::Unknown(v.to_owned()),
        }
    }

    /// The name as Atlas writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Unknown(s) => s,
        }
    }
}

/// A snapshot as the pipeline sees it: `FlexBackupSnapshot20241113` as Atlas sends it, or a
/// dedicated cluster's `DiskBackupReplicaSet` mapped to it (`dedicated.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// 24-hex id.
    pub id: Option<String>,
    /// Raw status text; see [`Snapshot::phase`].
    pub status: Option<String>,
    /// Note the capital DB.
    #[serde(rename = "mongoDBVersion")]
    pub mongodb_version: Option<String>,
    /// When it was scheduled.
    pub scheduled_time: Option<DateTime<Utc>>,
    /// When it started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished.
    pub finish_time: Option<DateTime<Utc>>,
    /// When Atlas deletes it.
    pub expiration: Option<DateTime<Utc>>,
    /// Dedicated clusters: `scheduled`, `onDemand` or `fallback` (none for Flex).
    #[serde(skip)]
    pub snapshot_type: Option<String>,
    /// Dedicated clusters: a sharded cluster's snapshot (several files).
    #[serde(skip)]
    pub sharded: bool,
    /// A sharded cluster's snapshot: the replica sets it is made of (`members[].replicaSetName`:
    /// the shards and the config server), as D3 lists them.
    #[serde(skip)]
    pub replica_sets: Vec<String>,
}

impl Snapshot {
    /// Parsed status.
    pub fn phase(&self) -> Phase {
        Phase::parse(self.status.as_deref())
    }
}

/// A download job as the pipeline sees it: `FlexBackupRestoreJob20241113` as Atlas sends it, or
/// a dedicated cluster's `DiskBackupSnapshotRestoreJob` mapped to it (`dedicated.rs`). Its
/// `Debug` hides the URL (audit L15).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreJob {
    /// 24-hex id.
    pub id: Option<String>,
    /// `RESTORE` or `DOWNLOAD`.
    pub delivery_type: Option<String>,
    /// Raw status text; see [`RestoreJob::phase`].
    pub status: Option<String>,
    /// Pre-signed download URL (a bearer secret: never log it).
    pub snapshot_url: Option<String>,
    /// When the URL stops working.
    pub expiration_date: Option<DateTime<Utc>>,
    /// The snapshot it serves.
    pub snapshot_id: Option<String>,
    /// A sharded cluster's download: one file per replica set (`components`), each with its
    /// own URL; empty for a replica set or a Flex cluster, whose file is `snapshot_url`.
    #[serde(skip)]
    pub components: Vec<JobComponent>,
}

/// One file of a sharded cluster's download: `DiskBackupRestoreMember`. Its `Debug` hides the
/// URL.
#[derive(Clone, PartialEq, Eq)]
pub struct JobComponent {
    /// The shard's or the config server's replica set.
    pub replica_set: String,
    /// Its one-time download URL (a bearer secret: never log it).
    pub url: String,
}

impl std::fmt::Debug for JobComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobComponent")
            .field("replica_set", &self.replica_set)
            .field("url", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for RestoreJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreJob")
            .field("id", &self.id)
            .field("delivery_type", &self.delivery_type)
            .field("status", &self.status)
            .field(
                "snapshot_url",
                &self.snapshot_url.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration_date", &self.expiration_date)
            .field("snapshot_id", &self.snapshot_id)
            .field("components", &self.components)
            .finish()
    }
}

impl RestoreJob {
    /// Parsed status.
    pub fn phase(&self) -> Phase {
        Phase::parse(self.status.as_deref())
    }

    /// Whether its file (or, for a sharded cluster's, every component's file) has a URL.
    pub fn has_urls(&self) -> bool {
        if self.components.is_empty() {
            self.snapshot_url.as_deref().is_some_and(|u| !u.is_empty())
        } else {
            self.components.iter().all(|c| !c.url.is_empty())
        }
    }

    /// Whether this is a download (not a restore into another cluster).
    pub fn is_download(&self) -> bool {
        self.delivery_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("DOWNLOAD"))
    }
}

/// The Atlas error envelope `ApiError`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody {
    /// HTTP status.
    pub error: Option<u16>,
    /// Machine-readable code, e.g. `CLUSTER_NOT_FOUND`.
    pub error_code: Option<String>,
    /// Human text.
    pub detail: Option<String>,
    /// HTTP reason phrase.
    pub reason: Option<String>,
}

/// OAuth token response. Its `Debug` hides the token (audit L15).
#[derive(Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds (Atlas: 3600).
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// OAuth error response (`invalid_client`, …).
#[derive(Debug, Default, Deserialize)]
pub struct OAuthErrorBody {
    /// Error code.
    pub error: Option<String>,
    /// Human text.
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: usize, next: bool, total: Option<u64>) -> Page<u8> {
        Page {
            results: vec![0; items],
            links: if next {
                vec![Link {
                    href: Some("x".into()),
                    rel: Some("next".into()),
                }]
            } else {
                Vec::new()
            },
            total_count: total,
        }
    }

    #[test]
    fn a_short_page_does_not_end_a_listing_that_says_more_exist() {
        // Atlas served 40 of 100 asked for, but says 150 exist: keep paging.
        assert!(page(40, false, Some(150)).more_after(0));
        // A `next` link alone is enough.
        assert!(page(3, true, None).more_after(0));
        // The count is reached: the end.
        assert!(!page(50, false, Some(150)).more_after(100));
        // No link, no count: the end.
        assert!(!page(100, false, None).more_after(0));
        // An empty page ends the listing whatever it claims (no endless loop).
        assert!(!page(0, true, Some(1000)).more_after(10));
    }

    #[test]
    fn unknown_fields_and_values_do_not_break_parsing() {
        let json = r#"{"results":[
            {"id":"6a6f78e0cab84da5c4476b25","status":"COMPLETED","mongoDBVersion":"8.0.29",
             "finishTime":"2026-08-02T17:06:56Z","frequencyType":"ondemand","newField":{"x":1}},
            {"id":"6a6f78e0cab84da5c4476b26","status":"ARCHIVING"},
            {"status":"completed"}
        ],"totalCount":3,"links":[{"rel":"self","href":"x"}]}"#;
        let page: Page<Snapshot> = match serde_json::from_str(json) {
            Ok(p) => p,
            Err(e) => panic!("lenient parse failed: {e}"),
        };
        assert_eq!(page.results.len(), 3);
        assert_eq!(page.results[0].phase(), Phase::Completed);
        assert_eq!(page.results[0].mongodb_version.as_deref(), Some("8.0.29"));
        assert_eq!(page.results[1].phase(), Phase::Unknown("ARCHIVING".into()));
        assert_eq!(page.results[2].phase(), Phase::Completed);
        assert!(!page.has_next_link());
    }

    #[test]
    fn l15_debug_never_shows_a_url_or_a_token() {
        let job: RestoreJob = serde_json::from_str(
            r#"{"id":"6a6f78e0cab84da5c4476b25","snapshotUrl":"https://x.example/s.tar.gz?sig=SECRETSIG"}"#,
        )
        .unwrap();
        let token: TokenResponse =
            serde_json::from_str(r#"{"access_token":"SECRETTOKEN","expires_in":3600}"#).unwrap();
        let shown = format!("{job:?} {token:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("6a6f78e0cab84da5c4476b25"));
    }
}
