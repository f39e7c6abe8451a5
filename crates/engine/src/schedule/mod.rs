//! When runs happen: cron expressions (5 fields, or 6 with seconds) in an IANA time zone, the
//! stable per-target jitter, and the start-up catch-up rule. Pure computation on explicit times,
//! so that DST edges and downtime can be tested without waiting.
//! Must not: sleep, spawn, or do I/O (the loop that acts on it is in `daemon`).

use std::hash::{Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    expression: String,
}

impl Schedule {
    /// Parses `expression` (5 fields, or 6 with seconds first) in `zone` (an IANA name).
    pub fn parse(expression: &str, zone: &str) -> Result<Self, ScheduleError> {
        let zone: Tz = zone
            .parse()
            .map_err(|_| ScheduleError::Zone(zone.to_owned()))?;
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError::Expression {
                expression: expression.to_owned(),
                message: format!(
                    "has {fields} fields; write 5 (minute hour day month weekday) or 6 (second first)"
                ),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| ScheduleError::Expression {
                expression: expression.to_owned(),
                message: e.to_string(),
            })?;
        // An expression that never fires (say, 30 February) is a mistake, not a schedule.
        let probe = Utc::now().with_timezone(&zone);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(ScheduleError::Expression {
                expression: expression.to_owned(),
                message: "never matches a real date".into(),
            });
        }
        Ok(Self {
            cron,
            zone,
            expression: expression.to_owned(),
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last slot at or before `t`.
    pub fn previous_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// A schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a cron expression we accept.
    #[error("`{expression}` is not a valid cron expression: {message}")]
    Expression {
        /// What was written.
        expression: String,
        /// Why not.
        message: String,
    },
    /// Not an IANA zone name.
    #[error(
        "`{0}` is not an IANA time zone name (e.g. \"UTC\", \"Europe/Berlin\", \"America/New_York\")"
    )]
    Zone(String),
}

/// A delay in `[0, window)` that is the same for a target on every run and every restart, so
/// that many targets with one schedule spread over the window instead of starting together.
pub fn stable_jitter(key: &str, window: Duration) -> Duration {
    if window.is_zero() {
        return Duration::ZERO;
    }
    // FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
    let mut hasher = Fnv1a::default();
    key.hash(&mut hasher);
    let fraction = (hasher.finish() % 1_000_000) as f64 / 1_000_000.0;
    window.mul_f64(fraction)
}

#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// What to do for a target when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// The slot `slot` passed while the daemon was down: run once now.
    CatchUp {
        /// The missed slot (the latest one; earlier missed slots are not replayed).
        slot: DateTime<Utc>,
    },
    /// Wait for the next slot.
    Wait,
}

/// The catch-up rule: a target whose latest slot passed after its last run runs once, now; a
/// target that never ran waits for its first slot unless `run_on_first_start`.
pub fn on_start(
    schedule: &Schedule,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    run_on_first_start: bool,
) -> StartDecision {
    let Some(previous) = schedule.previous_at_or_before(now) else {
        return StartDecision::Wait;
    };
    match last_run {
        Some(last) if previous > last => StartDecision::CatchUp { slot: previous },
        Some(_) => StartDecision::Wait,
        None if run_on_first_start => StartDecision::CatchUp { slot: previous },
        None => StartDecision::Wait,
    }
}

#[cfg(test)]
mod tests;
