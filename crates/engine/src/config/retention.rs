//! Validation of `[retention]` and each target's `retention = { … }` (merged over it): counts,
//! `keep_within`, the time zone, `min_keep`, and the refusal of a policy that keeps nothing.
//! Must not: apply a policy (that is `crate::retention`).

use super::raw;
use super::units::parse_duration;
use super::validator::Validator;
use super::{ConfigError, RetentionConfig};
use crate::retention::Policy;
use crate::target::Target;

impl Validator<'_> {
    pub(super) fn retention(
        &self,
        default: Option<&raw::RawRetention>,
        raw_targets: &[raw::RawTarget],
        targets: &[Target],
    ) -> Result<RetentionConfig, ConfigError> {
        let default_policy = match default {
            Some(r) => Some(self.policy("retention", r)?),
            None => None,
        };
        let mut overrides = Vec::new();
        for (i, (raw, target)) in raw_targets.iter().zip(targets).enumerate() {
            if let Some(own) = &raw.retention {
                let merged = default.cloned().unwrap_or_default().overridden_by(own);
                overrides.push((
                    target.clone(),
                    self.policy(&format!("target[{i}].retention"), &merged)?,
                ));
            }
        }
        Ok(RetentionConfig {
            default: default_policy,
            overrides,
        })
    }

    fn policy(&self, key: &str, r: &raw::RawRetention) -> Result<Policy, ConfigError> {
        let zone = r.timezone.as_deref().unwrap_or("UTC");
        let timezone: chrono_tz::Tz = zone.parse().map_err(|_| {
            self.invalid(
                &format!("{key}.timezone"),
                format!("`{zone}` is not an IANA time zone (e.g. \"UTC\", \"Europe/Berlin\")"),
            )
        })?;
        let keep_within = match &r.keep_within {
            None => None,
            Some(text) => Some(
                parse_duration(text).map_err(|m| self.invalid(&format!("{key}.keep_within"), m))?,
            ),
        };
        let policy = Policy {
            keep_last: r.keep_last.unwrap_or(0),
            keep_daily: r.keep_daily.unwrap_or(0),
            keep_weekly: r.keep_weekly.unwrap_or(0),
            keep_monthly: r.keep_monthly.unwrap_or(0),
            keep_yearly: r.keep_yearly.unwrap_or(0),
            keep_within,
            timezone,
            min_keep: r.min_keep.unwrap_or(3),
        };
        if policy.is_empty() {
            return Err(self.invalid(
                key,
                "keeps nothing, so pruning would remove every archive: set at least one of keep_last, keep_daily, keep_weekly, keep_monthly, keep_yearly or keep_within (or remove the table to keep everything)",
            ));
        }
        if policy.min_keep == 0 {
            return Err(self.invalid(
                &format!("{key}.min_keep"),
                "must be at least 1 (the newest archive is always kept)",
            ));
        }
        Ok(policy)
    }
}
