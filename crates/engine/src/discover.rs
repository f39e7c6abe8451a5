//! Discovery: what the configuration resolves to right now. Lists the projects and clusters
//! each `[[discover]]` names, keeps the clusters it selects (kind, name glob, tags,
//! exclusions) beside the configured `[[target]]`s, says why each listed cluster was taken or
//! not, and turns the result into the targets a run archives.
//! Must not: archive, schedule or journal anything; a listing that fails is reported, never
//! read as "the clusters are gone".

use serde::Serialize;
use tracing::{error, info};

use crate::atlas::listing::ListedCluster;
use crate::atlas::{AtlasClient, AtlasError};
use crate::config::{ClusterOptions, Config, DiscoverRule, DiscoverScope, KindChoice};
use crate::target::{ClusterKind, Target, validate_cluster_name, validate_project_id};

/// Where a resolved target comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
pub enum Origin {
    /// A `[[target]]` of the file.
    Configured,
    /// Found by `discover[rule]`, for the reason given.
    Discovered {
        /// The selector's place in the file.
        rule: usize,
        /// Why it matched (`name prod-* and tags env=prod`).
        why: String,
    },
}

/// One target the configuration resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The target.
    pub target: Target,
    /// Its kind, when configured or listed.
    pub kind: Option<ClusterKind>,
    /// Where it comes from.
    #[serde(flatten)]
    pub origin: Origin,
}

/// A listed cluster a selector did not take, and why (so a selector can be checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its project and name.
    pub target: Target,
    /// Which listing showed it.
    pub kind: ClusterKind,
    /// The selector.
    pub rule: usize,
    /// Why not.
    pub why: String,
}

/// A selector whose listing failed: its clusters are unknown this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The selector.
    pub rule: usize,
    /// The message (no secret: Atlas errors never quote credentials).
    pub error: String,
}

/// What the configuration resolves to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resolved {
    /// Configured targets first (file order), then discovered ones (listing order), each once.
    pub targets: Vec<Resolution>,
    /// Listed clusters no selector took.
    pub skipped: Vec<Skipped>,
    /// Selectors whose listing failed.
    pub failures: Vec<Failure>,
}

impl Resolved {
    /// The configured targets only (no discovery run).
    pub fn configured(config: &Config) -> Self {
        Self {
            targets: config
                .clusters
                .iter()
                .map(|(target, options)| Resolution {
                    target: target.clone(),
                    kind: match options.kind {
                        KindChoice::Known(k) => Some(k),
                        KindChoice::Auto => None,
                    },
                    origin: Origin::Configured,
                })
                .collect(),
            ..Self::default()
        }
    }

    /// The discovered targets, with the options their selector gives them (the kind is the
    /// listing's).
    pub fn discovered(&self, config: &Config) -> Vec<(Target, ClusterOptions)> {
        self.targets
            .iter()
            .filter_map(|r| match &r.origin {
                Origin::Discovered { rule, .. } => {
                    let mut options = config
                        .discover
                        .iter()
                        .find(|d| d.index == *rule)
                        .map(|d| d.options.clone())
                        .unwrap_or_default();
                    if let Some(kind) = r.kind {
                        options.kind = KindChoice::Known(kind);
                    }
                    Some((r.target.clone(), options))
                }
                Origin::Configured => None,
            })
            .collect()
    }

    /// The config with the discovered targets added: what a run archives.
    pub fn apply(&self, config: &Config) -> Config {
        let discovered = self.discovered(config);
        let mut config = config.clone();
        for (target, options) in discovered {
            config.targets.push(target.clone());
            config.clusters.push((target, options));
        }
        config
    }
}

/// Lists what every `[[discover]]` of `config` names and resolves the targets. A selector
/// whose listing fails is recorded in [`Resolved::failures`]; the others still resolve.
/// Each failure is logged at `error`, the outcome at `info`.
pub async fn resolve(config: &Config, client: &AtlasClient) -> Resolved {
    let mut resolved = Resolved::configured(config);
    for rule in &config.discover {
        if let Err(e) = resolve_rule(rule, client, &mut resolved).await {
            error!(selector = %format!("discover[{}]", rule.index), error = %e, "discovery failed: the clusters of this selector are not archived in this run");
            resolved.failures.push(Failure {
                rule: rule.index,
                error: e.to_string(),
            });
        }
    }
    let found = resolved
        .targets
        .iter()
        .filter(|r| matches!(r.origin, Origin::Discovered { .. }))
        .count();
    info!(
        discovered = found,
        skipped = resolved.skipped.len(),
        failed = resolved.failures.len(),
        "discovery done"
    );
    resolved
}

async fn resolve_rule(
    rule: &DiscoverRule,
    client: &AtlasClient,
    resolved: &mut Resolved,
) -> Result<(), AtlasError> {
    let projects = match &rule.scope {
        DiscoverScope::Projects(ids) => ids.clone(),
        DiscoverScope::Org(org) => client
            .org_projects(org)
            .await?
            .into_iter()
            .filter_map(|p| p.id)
            // Ids become URL paths: only what the contract allows.
            .filter(|id| validate_project_id(id).is_ok())
            .collect(),
    };
    for project in projects {
        for cluster in client.project_clusters(&project).await? {
            let target = Target {
                project_id: project.clone(),
                cluster: cluster.name.clone(),
            };
            if resolved.targets.iter().any(|r| r.target == target) {
                continue;
            }
            match judge(rule, &cluster) {
                Ok(why) => resolved.targets.push(Resolution {
                    target,
                    kind: Some(cluster.kind),
                    origin: Origin::Discovered {
                        rule: rule.index,
                        why,
                    },
                }),
                Err(why) => resolved.skipped.push(Skipped {
                    target,
                    kind: cluster.kind,
                    rule: rule.index,
                    why,
                }),
            }
        }
    }
    // A cluster skipped by one selector and taken by a later one is not skipped.
    let taken: Vec<Target> = resolved.targets.iter().map(|r| r.target.clone()).collect();
    resolved.skipped.retain(|s| !taken.contains(&s.target));
    Ok(())
}

/// Whether `rule` takes `cluster`: why it matched, or why not.
pub fn judge(rule: &DiscoverRule, cluster: &ListedCluster) -> Result<String, String> {
    if validate_cluster_name(&cluster.name).is_err() {
        return Err("its name is not one Atlas allows for clusters".into());
    }
    if !rule.kinds.contains(&cluster.kind) {
        return Err(format!("kind {} is not in kinds", cluster.kind.name()));
    }
    if let Some(glob) = &rule.name
        && !glob_matches(glob, &cluster.name)
    {
        return Err(format!("name does not match {glob}"));
    }
    if let Some(glob) = rule.exclude.iter().find(|g| glob_matches(g, &cluster.name)) {
        return Err(format!("excluded by {glob}"));
    }
    for (key, value) in &rule.tags {
        match cluster.tags.iter().find(|(k, _)| k == key) {
            Some((_, v)) if v == value => {}
            Some((_, v)) => return Err(format!("tag {key}={v}, not {value}")),
            None => return Err(format!("no tag {key}")),
        }
    }
    if cluster.tenant {
        return Err("a free or shared-tier cluster: Atlas takes no cloud backups of it".into());
    }
    if cluster.backup_enabled == Some(false) {
        return Err("Atlas takes no backups of it (backups are off for this cluster)".into());
    }
    let mut why = vec![format!("kind {}", cluster.kind.name())];
    if let Some(glob) = &rule.name {
        why.push(format!("name {glob}"));
    }
    if !rule.tags.is_empty() {
        let tags: Vec<String> = rule.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        why.push(format!("tags {}", tags.join(",")));
    }
    Ok(why.join(", "))
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    fn go(g: &[u8], n: &[u8]) -> bool {
        match (g.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&g[1..], n) || (!n.is_empty() && go(g, &n[1..])),
            (Some(b'?'), Some(_)) => go(&g[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&g[1..], &n[1..]),
            _ => false,
        }
    }
    go(glob.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_the_shell_does() {
        assert!(glob_matches("prod-*", "prod-orders"));
        assert!(glob_matches("prod-*", "prod-"));
        assert!(!glob_matches("prod-*", "staging-prod-orders"));
        assert!(glob_matches("*-m10", "orders-m10"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches("*", ""));
    }

    fn rule() -> DiscoverRule {
        DiscoverRule {
            index: 0,
            scope: DiscoverScope::Projects(vec!["5f0a1b2c3d4e5f60718293c4".into()]),
            kinds: vec![ClusterKind::Flex, ClusterKind::Dedicated],
            name: Some("prod-*".into()),
            tags: [("env".to_owned(), "prod".to_owned())].into(),
            exclude: vec!["prod-scratch".into()],
            options: ClusterOptions::default(),
        }
    }

    fn listed(name: &str, tags: &[(&str, &str)]) -> ListedCluster {
        ListedCluster {
            name: name.into(),
            kind: ClusterKind::Dedicated,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            backup_enabled: Some(true),
            cluster_type: Some("REPLICASET".into()),
            tenant: false,
        }
    }

    #[test]
    fn a_selector_says_why_it_takes_a_cluster_or_not() {
        let r = rule();
        assert_eq!(
            judge(&r, &listed("prod-orders", &[("env", "prod")])),
            Ok("kind dedicated, name prod-*, tags env=prod".into())
        );
        assert_eq!(
            judge(&r, &listed("prod-orders", &[("env", "dev")])),
            Err("tag env=dev, not prod".into())
        );
        assert_eq!(
            judge(&r, &listed("prod-orders", &[])),
            Err("no tag env".into())
        );
        assert_eq!(
            judge(&r, &listed("prod-scratch", &[("env", "prod")])),
            Err("excluded by prod-scratch".into())
        );
        assert_eq!(
            judge(&r, &listed("dev-orders", &[("env", "prod")])),
            Err("name does not match prod-*".into())
        );
        let mut off = listed("prod-off", &[("env", "prod")]);
        off.backup_enabled = Some(false);
        assert!(judge(&r, &off).is_err_and(|w| w.contains("no backups")));
        let mut flex_only = rule();
        flex_only.kinds = vec![ClusterKind::Flex];
        assert_eq!(
            judge(&flex_only, &listed("prod-orders", &[("env", "prod")])),
            Err("kind dedicated is not in kinds".into())
        );
    }
}
