//! The listings discovery reads (CONTRACT §2 and `atlas-listing-and-dedicated.md` §2-4): the
//! projects of an organisation, and the Flex and dedicated clusters of a project, every page,
//! parsed leniently into one [`ListedCluster`] shape.
//! Must not: decide which clusters to archive (that is `discover.rs`).

use serde::Deserialize;

use super::{AtlasClient, AtlasError, DEDICATED_MEDIA_TYPE, FLEX_MEDIA_TYPE};
use crate::target::ClusterKind;

/// `GET /groups/{groupId}/clusters`: the latest version (2024-08-05).
const CLUSTERS_MEDIA_TYPE: &str = "application/vnd.atlas.2024-08-05+json";

/// A project of an organisation (`Group`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// `id` (24 hex digits).
    pub id: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

/// A cluster as a listing shows it, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCluster {
    /// `name`.
    pub name: String,
    /// Which listing it came from.
    pub kind: ClusterKind,
    /// `tags` (`ResourceTag`: key and value).
    pub tags: Vec<(String, String)>,
    /// Whether Atlas backs it up (`backupSettings.enabled` for Flex, `backupEnabled` for
    /// dedicated); `None` when the listing does not say.
    pub backup_enabled: Option<bool>,
    /// `clusterType`: `REPLICASET`, `SHARDED`, `GEOSHARDED`.
    pub cluster_type: Option<String>,
    /// A free or shared-tier cluster listed by the cluster API (`providerName: TENANT`): Atlas
    /// takes no cloud backups of it, and a Flex one is listed by the Flex API too.
    pub tenant: bool,
}

#[derive(Debug, Deserialize)]
struct Tag {
    key: Option<String>,
    value: Option<String>,
}

fn tags(list: Option<Vec<Tag>>) -> Vec<(String, String)> {
    list.unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlexBody {
    name: Option<String>,
    tags: Option<Vec<Tag>>,
    backup_settings: Option<FlexBackupSettings>,
    cluster_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FlexBackupSettings {
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterBody {
    name: Option<String>,
    tags: Option<Vec<Tag>>,
    backup_enabled: Option<bool>,
    cluster_type: Option<String>,
    #[serde(default)]
    replication_specs: Vec<ReplicationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplicationSpec {
    #[serde(default)]
    region_configs: Vec<RegionConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegionConfig {
    provider_name: Option<String>,
}

impl AtlasClient {
    /// Every project of an organisation (`GET /orgs/{orgId}/groups`, role Organization Member).
    pub async fn org_projects(&self, org_id: &str) -> Result<Vec<Project>, AtlasError> {
        self.list_all(
            "list the organisation's projects",
            DEDICATED_MEDIA_TYPE,
            &format!("/api/atlas/v2/orgs/{org_id}/groups"),
        )
        .await
    }

    /// Every Flex and dedicated cluster of a project (role Project Read Only), each once; a
    /// cluster both listings show is the Flex one.
    pub async fn project_clusters(
        &self,
        project_id: &str,
    ) -> Result<Vec<ListedCluster>, AtlasError> {
        let flex: Vec<FlexBody> = self
            .list_all(
                "list Flex clusters",
                FLEX_MEDIA_TYPE,
                &format!("/api/atlas/v2/groups/{project_id}/flexClusters"),
            )
            .await?;
        let dedicated: Vec<ClusterBody> = self
            .list_all(
                "list clusters",
                CLUSTERS_MEDIA_TYPE,
                &format!("/api/atlas/v2/groups/{project_id}/clusters"),
            )
            .await?;
        let mut all: Vec<ListedCluster> = Vec::new();
        for f in flex {
            let Some(name) = f.name else { continue };
            all.push(ListedCluster {
                name,
                kind: ClusterKind::Flex,
                tags: tags(f.tags),
                backup_enabled: f.backup_settings.and_then(|b| b.enabled),
                cluster_type: f.cluster_type,
                tenant: false,
            });
        }
        for c in dedicated {
            let Some(name) = c.name else { continue };
            if all.iter().any(|seen| seen.name == name) {
                continue;
            }
            let tenant = c
                .replication_specs
                .iter()
                .flat_map(|s| &s.region_configs)
                .any(|r| {
                    r.provider_name
                        .as_deref()
                        .is_some_and(|p| p.eq_ignore_ascii_case("TENANT"))
                });
            all.push(ListedCluster {
                name,
                kind: ClusterKind::Dedicated,
                tags: tags(c.tags),
                backup_enabled: c.backup_enabled,
                cluster_type: c.cluster_type,
                tenant,
            });
        }
        Ok(all)
    }
}
