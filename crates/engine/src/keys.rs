//! Object key naming: renders `storage.key_template` for one snapshot, and names its manifest.
//! Must not: do I/O.

use chrono::{DateTime, Utc};

const PLACEHOLDERS: [&str; 8] = [
    "prefix",
    "project_id",
    "cluster",
    "snapshot_id",
    "date",
    "year",
    "month",
    "day",
];

/// Suffix of the manifest object written beside each archive.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Checks that a template only uses known placeholders and includes `{snapshot_id}`, so that
/// two snapshots can never share a key.
pub fn validate_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    let mut has_snapshot = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{template}` has a '{{' without a matching '}}'"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; valid ones are {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        has_snapshot |= name == "snapshot_id";
        rest = &after[close + 1..];
    }
    if !has_snapshot {
        return Err(format!(
            "`{template}` must contain {{snapshot_id}} so that every snapshot gets its own key"
        ));
    }
    if template.starts_with('/') {
        return Err(format!(
            "`{template}` starts with '/': S3 keys are relative"
        ));
    }
    Ok(())
}

/// What a key is made of.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// `storage.prefix`.
    pub prefix: &'a str,
    /// Atlas project id.
    pub project_id: &'a str,
    /// Cluster name.
    pub cluster: &'a str,
    /// Snapshot id.
    pub snapshot_id: &'a str,
    /// When the snapshot finished (its date names the folder).
    pub finished: DateTime<Utc>,
}

/// Renders a (validated) template.
pub fn render(template: &str, parts: &KeyParts<'_>) -> String {
    let date = parts.finished.format("%Y-%m-%d").to_string();
    template
        .replace("{prefix}", parts.prefix)
        .replace("{project_id}", parts.project_id)
        .replace("{cluster}", parts.cluster)
        .replace("{snapshot_id}", parts.snapshot_id)
        .replace("{date}", &date)
        .replace("{year}", &parts.finished.format("%Y").to_string())
        .replace("{month}", &parts.finished.format("%m").to_string())
        .replace("{day}", &parts.finished.format("%d").to_string())
}

/// The longest key prefix every archive of one target shares under `template`: the template's
/// start up to its first placeholder other than `{prefix}`, `{project_id}` and `{cluster}`,
/// rendered (`atlas/<project>/<cluster>/` for the default). Listing it instead of the whole
/// prefix keeps a restore's listing to one target's objects. Falls back to `prefix` when the
/// template does not start with `{prefix}`.
pub fn target_prefix(template: &str, prefix: &str, project_id: &str, cluster: &str) -> String {
    let Some(rest) = template.strip_prefix("{prefix}") else {
        return prefix.to_owned();
    };
    let mut out = prefix.to_owned();
    let mut rest = rest;
    loop {
        match rest.find('{') {
            None => {
                out.push_str(rest);
                return out;
            }
            Some(open) => {
                out.push_str(&rest[..open]);
                let after = &rest[open..];
                if let Some(tail) = after.strip_prefix("{project_id}") {
                    out.push_str(project_id);
                    rest = tail;
                } else if let Some(tail) = after.strip_prefix("{cluster}") {
                    out.push_str(cluster);
                    rest = tail;
                } else {
                    return out;
                }
            }
        }
    }
}

/// The key of one component (`replica_set`) of a sharded cluster's snapshot named `archive_key`:
/// beside the manifest, in a folder named like the archive without its `.tar.gz`
/// (`…/{snapshot_id}/{replica_set}.tar.gz`). `None` for a name that is not a plain replica set
/// name (letters, digits, `-`, `_`, `.`, not starting with `.`), which Atlas never sends: a
/// hostile name must not reach outside the snapshot's folder.
pub fn component_key(archive_key: &str, replica_set: &str) -> Option<String> {
    if !is_plain_name(replica_set) {
        return None;
    }
    let stem = archive_key.strip_suffix(".tar.gz").unwrap_or(archive_key);
    Some(format!("{stem}/{replica_set}.tar.gz"))
}

/// A name that is safe as one key segment and one file name: letters, digits, `-`, `_` and
/// `.`, not empty and not starting with `.`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The manifest key for an archive key.
pub fn manifest_key(archive_key: &str) -> String {
    format!("{archive_key}{MANIFEST_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn default_template_renders_the_documented_layout() {
        let finished = Utc.with_ymd_and_hms(2026, 8, 2, 17, 6, 56).single();
        let Some(finished) = finished else {
            panic!("valid date")
        };
        let key = render(
            "{prefix}{project_id}/{cluster}/{date}/{snapshot_id}.tar.gz",
            &KeyParts {
                prefix: "atlas/",
                project_id: "32b6e34b3d91647abb20e7b8",
                cluster: "orders-flex",
                snapshot_id: "6a6f78e0cab84da5c4476b25",
                finished,
            },
        );
        assert_eq!(
            key,
            "atlas/32b6e34b3d91647abb20e7b8/orders-flex/2026-08-02/6a6f78e0cab84da5c4476b25.tar.gz"
        );
        assert_eq!(manifest_key(&key), format!("{key}.manifest.json"));
    }

    #[test]
    fn a_component_sits_in_a_folder_named_after_the_snapshot() {
        assert_eq!(
            component_key("atlas/p/c/2026-08-02/6a6f.tar.gz", "atlas-c-shard-0").as_deref(),
            Some("atlas/p/c/2026-08-02/6a6f/atlas-c-shard-0.tar.gz")
        );
        assert_eq!(
            component_key("atlas/p/c/6a6f", "atlas-c-config-0").as_deref(),
            Some("atlas/p/c/6a6f/atlas-c-config-0.tar.gz")
        );
        for hostile in ["", "..", "../x", "a/b", ".hidden", "a b", "shard\\0"] {
            assert_eq!(component_key("k.tar.gz", hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn a_target_prefix_stops_at_the_first_per_snapshot_placeholder() {
        let p = "32b6e34b3d91647abb20e7b8";
        assert_eq!(
            target_prefix(
                "{prefix}{project_id}/{cluster}/{date}/{snapshot_id}.tar.gz",
                "atlas/",
                p,
                "orders"
            ),
            format!("atlas/{p}/orders/")
        );
        assert_eq!(
            target_prefix("{prefix}{date}/{cluster}/{snapshot_id}", "a/", p, "c"),
            "a/"
        );
        assert_eq!(target_prefix("{prefix}{snapshot_id}", "a/", p, "c"), "a/");
        assert_eq!(target_prefix("x/{snapshot_id}", "a/", p, "c"), "a/");
    }

    #[test]
    fn templates_are_checked() {
        assert!(validate_template("{prefix}{snapshot_id}").is_ok());
        assert!(validate_template("{prefix}{cluster}.tgz").is_err());
        assert!(validate_template("{prefix}{snapshot}.tgz").is_err());
        assert!(validate_template("{prefix{snapshot_id}").is_err());
        assert!(validate_template("/{snapshot_id}").is_err());
    }
}
