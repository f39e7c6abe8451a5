//! A `[[target]]`'s cluster options (`kind`, `snapshot_types`, `since`, `max_per_run`), and the date form of
//! `atlas.client_secret_expires_at`: validation kept beside `validator.rs`, which calls it.
//! Must not: read files or the environment.

use std::time::Duration;

use super::ConfigError;
use super::raw;
use super::validator::Validator;

impl Validator<'_> {
    /// A `[[target]]`'s `kind` and `snapshot_types`.
    pub(super) fn cluster_options(
        &self,
        key: &str,
        t: &raw::RawTarget,
    ) -> Result<crate::config::ClusterOptions, ConfigError> {
        use crate::config::{ClusterOptions, KindChoice};
        let kind = match t.kind.as_deref() {
            None | Some("auto") => KindChoice::Auto,
            Some(text) => {
                KindChoice::Known(crate::target::ClusterKind::parse(text).ok_or_else(|| {
                    self.invalid(
                        &format!("{key}.kind"),
                        format!("`{text}` is not a kind: use \"flex\", \"dedicated\" or \"auto\""),
                    )
                })?)
            }
        };
        let mut options = ClusterOptions {
            kind,
            ..ClusterOptions::default()
        };
        if let Some(types) = &t.snapshot_types {
            if kind == KindChoice::Known(crate::target::ClusterKind::Flex) {
                return Err(self.invalid(
                    &format!("{key}.snapshot_types"),
                    "is for dedicated clusters: a Flex cluster has one kind of snapshot",
                ));
            }
            let mut chosen = Vec::new();
            for name in types {
                let lower = name.to_ascii_lowercase();
                if !matches!(lower.as_str(), "scheduled" | "ondemand" | "fallback") {
                    return Err(self.invalid(
                        &format!("{key}.snapshot_types"),
                        format!("`{name}` is not a snapshot type: use \"scheduled\", \"onDemand\" or \"fallback\""),
                    ));
                }
                chosen.push(lower);
            }
            if chosen.is_empty() {
                return Err(self.invalid(
                    &format!("{key}.snapshot_types"),
                    "is empty: nothing would be archived (remove it for scheduled and onDemand)",
                ));
            }
            options.snapshot_types = chosen;
        }
        if let Some(text) = &t.since {
            let since = self.duration(&format!("{key}.since"), Some(text), Duration::ZERO)?;
            if since.is_zero() {
                return Err(self.invalid(
                    &format!("{key}.since"),
                    "must be longer than zero (remove it to archive every snapshot Atlas holds)",
                ));
            }
            options.since = Some(since);
        }
        if let Some(n) = t.max_per_run {
            if n == 0 {
                return Err(self.invalid(
                    &format!("{key}.max_per_run"),
                    "must be at least 1 (remove it for no limit)",
                ));
            }
            options.max_per_run = Some(n);
        }
        Ok(options)
    }
}

/// `2027-03-01` (midnight UTC) or an RFC 3339 time.
pub(super) fn parse_instant(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}
