//! The listings discovery reads (`atlas-listing-and-dedicated.md` §2-4, `openapi-subset.yaml`):
//! `GET /orgs/{orgId}/groups` (2023-01-01), `GET /groups/{groupId}/flexClusters`
//! (2024-11-13, `FlexClusterDescription20241113`) and `GET /groups/{groupId}/clusters`
//! (2024-08-05, `ClusterDescription20240805`, one `replicationSpecs` entry per shard), each
//! paged with `links` and `totalCount`, clusters with their `tags`.
//! Must not: share anything with the client under test.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{
    App, CLUSTERS_MEDIA_TYPE, DEDICATED_MEDIA_TYPE, FLEX_MEDIA_TYPE, envelope, ok_json_as, page,
};
use crate::{SimCluster, SimState};

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/api/atlas/v2/orgs/{org}/groups", get(org_groups))
        .route(
            "/api/atlas/v2/groups/{group}/flexClusters",
            get(flex_clusters),
        )
        .route("/api/atlas/v2/groups/{group}/clusters", get(clusters))
}

fn object_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A project Atlas knows: one of an organisation, or one with clusters.
fn known_project(s: &SimState, group: &str) -> Result<(), Response> {
    if !object_id(group) {
        return Err(envelope(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Invalid groupId {group}."),
        ));
    }
    let known = s.clusters.iter().any(|c| c.project_id == group)
        || s.orgs.iter().any(|(_, p)| p.iter().any(|p| p == group));
    if known {
        Ok(())
    } else {
        Err(envelope(
            StatusCode::NOT_FOUND,
            "GROUP_NOT_FOUND",
            &format!("No group with ID {group} exists."),
        ))
    }
}

fn tags(c: &SimCluster) -> Value {
    Value::Array(
        c.tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

async fn org_groups(
    State(app): State<App>,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    let s = app.lock();
    let Some((_, projects)) = s.orgs.iter().find(|(o, _)| *o == org) else {
        return envelope(
            StatusCode::NOT_FOUND,
            "ORG_NOT_FOUND",
            &format!("No organization with ID {org} exists."),
        );
    };
    let items = projects
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "name": format!("project-{i}"),
                "orgId": org,
                "clusterCount": s.clusters.iter().filter(|c| c.project_id == *id).count(),
                "created": "2026-01-05T10:00:00Z",
                "tags": [],
                "withDefaultAlertsSettings": true,
            })
        })
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

async fn flex_clusters(
    State(app): State<App>,
    Path(group): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    cluster_page(&app, &group, (&q, &uri), false, |group, c| {
        json!({
            "id": format!("{:024x}", c.name.len() as u64 + 0x6b00_0000_0000),
            "groupId": group,
            "name": c.name,
            "clusterType": "REPLICASET",
            "stateName": "IDLE",
            "mongoDBVersion": "8.0.29",
            "backupSettings": {"enabled": !c.backups_off},
            "providerSettings": {"backingProviderName": "AWS", "diskSizeGB": 5.0, "providerName": "FLEX", "regionName": "US_EAST_1"},
            "tags": tags(c),
            "terminationProtectionEnabled": false,
            "versionReleaseSystem": "LTS",
            "createDate": "2026-01-05T10:00:00Z",
        })
    })
}

async fn clusters(
    State(app): State<App>,
    Path(group): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    cluster_page(&app, &group, (&q, &uri), true, |group, c| {
        let region = json!({"providerName": "AWS", "regionName": "EU_WEST_1", "priority": 7,
            "electableSpecs": {"instanceSize": "M10", "nodeCount": 3}});
        // One `replicationSpecs` entry per shard; a replica set has one.
        let specs: Vec<Value> = (0..c.shards.max(1))
            .map(|i| json!({"id": format!("6a70000000000000000000{i:02x}"), "zoneName": "Zone 1", "regionConfigs": [region.clone()]}))
            .collect();
        json!({
            "id": format!("{:024x}", c.name.len() as u64 + 0x6c00_0000_0000),
            "groupId": group,
            "name": c.name,
            "clusterType": if c.shards > 0 { "SHARDED" } else { "REPLICASET" },
            "stateName": "IDLE",
            "paused": false,
            "backupEnabled": !c.backups_off,
            "mongoDBVersion": "8.0.29",
            "replicationSpecs": specs,
            "tags": tags(c),
            "createDate": "2026-01-05T10:00:00Z",
        })
    })
}

/// One page of a project's Flex (`dedicated = false`) or dedicated clusters, each shown by
/// `show`, in its listing's media type.
fn cluster_page(
    app: &App,
    group: &str,
    (q, uri): (&HashMap<String, String>, &axum::http::Uri),
    dedicated: bool,
    show: fn(&str, &SimCluster) -> Value,
) -> Response {
    let s = app.lock();
    if let Err(r) = known_project(&s, group) {
        return r;
    }
    let items = s
        .clusters
        .iter()
        .filter(|c| c.project_id == group && c.dedicated == dedicated)
        .map(|c| show(group, c))
        .collect();
    let listing = page(
        items,
        q,
        uri.path(),
        &format!("http://{}", app.addr),
        s.faults.page_cap,
    );
    ok_json_as(
        &listing,
        if dedicated {
            CLUSTERS_MEDIA_TYPE
        } else {
            FLEX_MEDIA_TYPE
        },
    )
}
