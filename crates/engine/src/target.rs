//! A target: one (project, cluster) pair of Atlas, and the rules Atlas sets for its two names.
//! Every layer speaks of targets; the config only lists them.
//! Must not: import anything of this crate.

use std::fmt;

use serde::Serialize;

/// One (project, cluster) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Target {
    /// Atlas project id.
    pub project_id: String,
    /// Flex cluster name.
    pub cluster: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project_id, self.cluster)
    }
}

impl Target {
    /// Parses `PROJECT_ID/CLUSTER` as given to `--target`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (project_id, cluster) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not PROJECT_ID/CLUSTER"))?;
        validate_project_id(project_id)?;
        validate_cluster_name(cluster)?;
        Ok(Self {
            project_id: project_id.to_owned(),
            cluster: cluster.to_owned(),
        })
    }
}

/// Which Atlas API serves a cluster's backups: Flex clusters and dedicated (M10+) clusters have
/// their own endpoints, models and download jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// A Flex cluster (`/flexClusters/{name}/backup/…`).
    Flex,
    /// A dedicated cluster, replica set or sharded (`/clusters/{name}/backup/…`).
    Dedicated,
}

impl ClusterKind {
    /// The name used in `kind = "..."` and in the journal.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Dedicated => "dedicated",
        }
    }

    /// Parses [`ClusterKind::name`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "flex" => Some(Self::Flex),
            "dedicated" => Some(Self::Dedicated),
            _ => None,
        }
    }
}

/// Whether `(project_id, cluster)` is one of `targets`; an empty list selects every target.
pub fn selects(targets: &[Target], project_id: &str, cluster: &str) -> bool {
    targets.is_empty()
        || targets
            .iter()
            .any(|t| t.project_id == project_id && t.cluster == cluster)
}

/// `^[a-f0-9]{24}$`, as the Atlas API requires for `groupId`.
pub fn validate_project_id(id: &str) -> Result<(), String> {
    if id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not an Atlas project id: expected 24 lowercase hex digits (^[a-f0-9]{{24}}$)"
        ))
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9-]*$`, as the Atlas API requires for Flex cluster names.
pub fn validate_cluster_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a cluster name: expected letters, digits and '-', not starting with '-' (^[a-zA-Z0-9][a-zA-Z0-9-]*$)"
        ))
    }
}
