//! `[[discover]]`: the selectors of clusters found by listing Atlas (projects or an
//! organisation, kinds, a glob on the name, tags, exclusions), validated beside
//! `validator.rs`, which calls it. The matching itself is `crate::discover`'s.
//! Must not: call Atlas, read files or the environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validator::Validator;
use super::{ClusterOptions, ConfigError, raw};
use crate::target::{ClusterKind, validate_project_id};

/// `[[discover]]` as written.
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscover {
    /// Atlas project ids whose clusters to consider (or `org_id`).
    pub projects: Option<Vec<String>>,
    /// An organisation id: every project of it (role Organization Member), instead of `projects`.
    pub org_id: Option<String>,
    /// Which kinds of cluster: `["flex", "dedicated"]` (default: both).
    pub kinds: Option<Vec<String>>,
    /// A glob on the cluster name (`*` any run of characters, `?` one), e.g. `"prod-*"` (default: every name).
    pub name: Option<String>,
    /// Cluster tags that must all match, e.g. `{ env = "prod" }` (default: none required).
    pub tags: Option<BTreeMap<String, String>>,
    /// Cluster names (or globs) never archived by this selector.
    pub exclude: Option<Vec<String>>,
    /// As a target's `snapshot_types`, for the dedicated clusters this selector finds.
    pub snapshot_types: Option<Vec<String>>,
    /// As a target's `since`, for every cluster this selector finds.
    pub since: Option<String>,
    /// As a target's `max_per_run`, for every cluster this selector finds.
    pub max_per_run: Option<u32>,
}

/// Where a selector looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverScope {
    /// These projects.
    Projects(Vec<String>),
    /// Every project of this organisation.
    Org(String),
}

/// One validated `[[discover]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverRule {
    /// Its place in the file (`discover[N]`), for messages.
    pub index: usize,
    /// Where it looks.
    pub scope: DiscoverScope,
    /// The kinds it takes.
    pub kinds: Vec<ClusterKind>,
    /// The glob on the name, if any.
    pub name: Option<String>,
    /// Tags that must all match.
    pub tags: BTreeMap<String, String>,
    /// Names or globs it never takes.
    pub exclude: Vec<String>,
    /// The options of the targets it finds (the kind is the listing's).
    pub options: ClusterOptions,
}

impl Validator<'_> {
    /// Every `[[discover]]`.
    pub(super) fn discover(&self, all: &[RawDiscover]) -> Result<Vec<DiscoverRule>, ConfigError> {
        all.iter()
            .enumerate()
            .map(|(index, d)| self.discover_rule(index, d))
            .collect()
    }

    fn discover_rule(&self, index: usize, d: &RawDiscover) -> Result<DiscoverRule, ConfigError> {
        let key = format!("discover[{index}]");
        let scope = match (&d.projects, &d.org_id) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    &key,
                    "has both projects and org_id: use one (org_id takes every project of the organisation)",
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    &key,
                    "needs projects = [\"<project id>\", ...] or org_id = \"<organisation id>\"",
                ));
            }
            (Some(projects), None) => {
                if projects.is_empty() {
                    return Err(self.invalid(
                        &format!("{key}.projects"),
                        "is empty: list at least one project id (or use org_id)",
                    ));
                }
                for p in projects {
                    validate_project_id(p)
                        .map_err(|m| self.invalid(&format!("{key}.projects"), m))?;
                }
                DiscoverScope::Projects(projects.clone())
            }
            (None, Some(org)) => {
                validate_project_id(org).map_err(|_| {
                    self.invalid(
                        &format!("{key}.org_id"),
                        format!("`{org}` is not an organisation id (24 lowercase hex digits)"),
                    )
                })?;
                DiscoverScope::Org(org.clone())
            }
        };
        let kinds = match &d.kinds {
            None => vec![ClusterKind::Flex, ClusterKind::Dedicated],
            Some(list) if list.is_empty() => {
                return Err(self.invalid(
                    &format!("{key}.kinds"),
                    "is empty: nothing would be found (remove it for both kinds)",
                ));
            }
            Some(list) => list
                .iter()
                .map(|k| {
                    ClusterKind::parse(k).ok_or_else(|| {
                        self.invalid(
                            &format!("{key}.kinds"),
                            format!("`{k}` is not a kind: use \"flex\" and/or \"dedicated\""),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let globs = d.name.iter().chain(d.exclude.iter().flatten());
        for glob in globs {
            if glob.is_empty()
                || !glob
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?'))
            {
                return Err(self.invalid(
                    &format!("{key}.name"),
                    format!(
                        "`{glob}` is not a cluster name glob: letters, digits, `-`, and `*` or `?`"
                    ),
                ));
            }
        }
        for (k, v) in d.tags.iter().flatten() {
            if k.is_empty() || k.len() > 255 || v.is_empty() || v.len() > 255 {
                return Err(self.invalid(
                    &format!("{key}.tags"),
                    format!("`{k}`: Atlas tag keys and values are 1 to 255 characters"),
                ));
            }
        }
        let as_target = raw::RawTarget {
            snapshot_types: d.snapshot_types.clone(),
            since: d.since.clone(),
            max_per_run: d.max_per_run,
            ..raw::RawTarget::default()
        };
        Ok(DiscoverRule {
            index,
            scope,
            kinds,
            name: d.name.clone(),
            tags: d.tags.clone().unwrap_or_default(),
            exclude: d.exclude.clone().unwrap_or_default(),
            options: self.cluster_options(&key, &as_target)?,
        })
    }
}
