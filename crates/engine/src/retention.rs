//! The retention rules: which archives of one target a policy keeps, with the rule(s) that keep
//! each. Semantics are restic's `forget`: for each `keep_<period> = N` rule, the newest archive in
//! each of the last N periods that hold an archive (and, while the rule still has a count left,
//! the oldest archive too); days, ISO weeks, months and years in the policy's time zone;
//! `keep_within` counts back from the newest archive, not from now; the union of every rule is
//! kept. On top of restic: `min_keep` (never fewer than this many, the newest ones), and the
//! newest archive is always kept.
//! Must not: do I/O, or import anything of this crate (it is pure and table-tested).

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// A retention policy, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The newest N archives.
    pub keep_last: u32,
    /// The newest archive of each of the last N days that have one.
    pub keep_daily: u32,
    /// The newest archive of each of the last N ISO weeks that have one.
    pub keep_weekly: u32,
    /// The newest archive of each of the last N months that have one.
    pub keep_monthly: u32,
    /// The newest archive of each of the last N years that have one.
    pub keep_yearly: u32,
    /// Every archive taken within this long before the newest one.
    pub keep_within: Option<Duration>,
    /// The zone whose calendar draws the day, week, month and year boundaries.
    pub timezone: Tz,
    /// Never keep fewer than this many archives (the newest ones).
    pub min_keep: u32,
}

impl Policy {
    /// Whether no rule keeps anything (such a policy is refused: it would remove everything).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none_or(|d| d.is_zero())
    }
}

/// The verdict on one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Kept (true) or to be removed.
    pub keep: bool,
    /// The rules that keep it (`daily 3`, `within 30d`, `min_keep`, `newest`), empty if removed.
    pub reasons: Vec<String>,
}

/// Applies `policy` to archives taken at `times` (any order). Returns one verdict per input, in
/// the input's order.
pub fn apply(policy: &Policy, times: &[DateTime<Utc>]) -> Vec<Verdict> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    // Newest first; ties keep their input order.
    order.sort_by(|a, b| times[*b].cmp(&times[*a]));
    let mut verdicts = vec![
        Verdict {
            keep: false,
            reasons: Vec::new(),
        };
        times.len()
    ];
    let Some(&newest) = order.first() else {
        return verdicts;
    };
    let zone = policy.timezone;
    type Bucketer = fn(DateTime<Tz>, usize) -> i64;
    let mut rules: [(u32, Bucketer, Option<i64>, &str); 5] = [
        (policy.keep_last, |_, nr| nr as i64, None, "last"),
        (
            policy.keep_daily,
            |t, _| i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day()),
            None,
            "daily",
        ),
        (
            policy.keep_weekly,
            |t, _| {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            },
            None,
            "weekly",
        ),
        (
            policy.keep_monthly,
            |t, _| i64::from(t.year()) * 100 + i64::from(t.month()),
            None,
            "monthly",
        ),
        (
            policy.keep_yearly,
            |t, _| i64::from(t.year()),
            None,
            "yearly",
        ),
    ];
    let horizon = policy
        .keep_within
        .filter(|d| !d.is_zero())
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| (times[newest] - d, d));
    let last = order.len() - 1;
    let mut counts = [0u32; 5];
    for (nr, &i) in order.iter().enumerate() {
        let local = times[i].with_timezone(&zone);
        let mut reasons = Vec::new();
        if let Some((start, d)) = horizon
            && times[i] > start
        {
            reasons.push(format!(
                "within {}",
                humantime::format_duration(d.to_std().unwrap_or_default())
            ));
        }
        for (r, (count, bucket, previous, name)) in rules.iter_mut().enumerate() {
            if *count == 0 {
                continue;
            }
            let value = bucket(local, nr);
            let new_period = Some(value) != *previous;
            // A new period, or (as restic does) the oldest archive while the rule has a count
            // left, so that the longest history the counts allow is kept.
            if new_period || nr == last {
                *previous = Some(value);
                *count -= 1;
                counts[r] += 1;
                let oldest = if new_period { "" } else { "oldest " };
                reasons.push(format!("{oldest}{name} {}", counts[r]));
            }
        }
        verdicts[i].keep = !reasons.is_empty();
        verdicts[i].reasons = reasons;
    }
    // The newest archive is never removed, and never fewer than `min_keep` are kept.
    let min_keep = policy.min_keep.max(1) as usize;
    let mut kept = verdicts.iter().filter(|v| v.keep).count();
    for &i in &order {
        if kept >= min_keep {
            break;
        }
        if !verdicts[i].keep {
            verdicts[i].keep = true;
            verdicts[i].reasons.push("min_keep".into());
            kept += 1;
        }
    }
    if !verdicts[newest].keep {
        verdicts[newest].keep = true;
        verdicts[newest].reasons.push("newest".into());
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::{Policy, apply};
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    fn policy() -> Policy {
        Policy {
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            keep_within: None,
            timezone: chrono_tz::UTC,
            min_keep: 1,
        }
    }

    fn t(text: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    /// The kept times and their reasons, newest first.
    fn kept(p: &Policy, times: &[&str]) -> Vec<(String, Vec<String>)> {
        let parsed: Vec<DateTime<Utc>> = times.iter().map(|s| t(s)).collect();
        let verdicts = apply(p, &parsed);
        let mut out: Vec<(DateTime<Utc>, String, Vec<String>)> = verdicts
            .iter()
            .zip(times)
            .filter(|(v, _)| v.keep)
            .map(|(v, s)| (t(s), (*s).to_owned(), v.reasons.clone()))
            .collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.0));
        out.into_iter().map(|(_, s, r)| (s, r)).collect()
    }

    fn names(k: &[(String, Vec<String>)]) -> Vec<&str> {
        k.iter().map(|(s, _)| s.as_str()).collect()
    }

    #[test]
    fn the_rules_as_a_table() {
        let days: Vec<String> = (1..=20)
            .map(|d| format!("2026-11-{d:02}T06:00:00Z"))
            .collect();
        let days: Vec<&str> = days.iter().map(String::as_str).collect();
        struct Case {
            what: &'static str,
            policy: Policy,
            times: Vec<&'static str>,
            kept: Vec<&'static str>,
        }
        let leak = |v: &[&str]| -> Vec<&'static str> {
            v.iter()
                .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
                .collect()
        };
        let cases = vec![
            Case {
                what: "keep_daily 3 of 20 days: the newest three days",
                policy: Policy {
                    keep_daily: 3,
                    ..policy()
                },
                times: leak(&days),
                kept: leak(&[days[19], days[18], days[17]]),
            },
            Case {
                what: "keep_last 2: the two newest, whatever their day",
                policy: Policy {
                    keep_last: 2,
                    ..policy()
                },
                times: vec![
                    "2026-11-01T01:00:00Z",
                    "2026-11-01T02:00:00Z",
                    "2026-11-01T03:00:00Z",
                ],
                kept: vec!["2026-11-01T03:00:00Z", "2026-11-01T02:00:00Z"],
            },
            Case {
                what: "two in one day: keep_daily keeps the newest of the day (and, counts left, the oldest archive)",
                policy: Policy {
                    keep_daily: 5,
                    ..policy()
                },
                times: vec![
                    "2026-11-01T01:00:00Z",
                    "2026-11-01T23:00:00Z",
                    "2026-11-02T05:00:00Z",
                    "2026-11-02T04:00:00Z",
                ],
                kept: vec![
                    "2026-11-02T05:00:00Z",
                    "2026-11-01T23:00:00Z",
                    "2026-11-01T01:00:00Z",
                ],
            },
            Case {
                what: "ISO weeks: Sunday 2026-11-15 and Monday 2026-11-16 are two weeks; Monday 16 and Sunday 22 one",
                policy: Policy {
                    keep_weekly: 2,
                    ..policy()
                },
                times: vec![
                    "2026-11-15T12:00:00Z",
                    "2026-11-16T12:00:00Z",
                    "2026-11-22T12:00:00Z",
                    "2026-11-14T12:00:00Z",
                ],
                kept: vec!["2026-11-22T12:00:00Z", "2026-11-15T12:00:00Z"],
            },
            Case {
                what: "monthly and yearly draw from the same archives: the union is kept",
                policy: Policy {
                    keep_monthly: 2,
                    keep_yearly: 2,
                    ..policy()
                },
                times: vec![
                    "2025-06-10T00:00:00Z",
                    "2025-12-31T00:00:00Z",
                    "2026-10-05T00:00:00Z",
                    "2026-11-03T00:00:00Z",
                    "2026-11-20T00:00:00Z",
                ],
                kept: vec![
                    "2026-11-20T00:00:00Z",
                    "2026-10-05T00:00:00Z",
                    "2025-12-31T00:00:00Z",
                ],
            },
            Case {
                what: "keep_within counts back from the newest archive, not from now; exactly 3d before is outside (restic: strictly after)",
                policy: Policy {
                    keep_within: Some(Duration::from_secs(3 * 86_400)),
                    ..policy()
                },
                times: vec![
                    "2020-01-01T00:00:00Z",
                    "2020-01-03T00:00:00Z",
                    "2020-01-03T00:00:01Z",
                    "2020-01-06T00:00:00Z",
                ],
                kept: vec!["2020-01-06T00:00:00Z", "2020-01-03T00:00:01Z"],
            },
            Case {
                what: "min_keep tops up with the newest",
                policy: Policy {
                    keep_yearly: 1,
                    min_keep: 3,
                    ..policy()
                },
                times: leak(&days[..5]),
                kept: leak(&[days[4], days[3], days[2]]),
            },
            Case {
                what: "a rule with counts left keeps the oldest archive too (restic)",
                policy: Policy {
                    keep_monthly: 3,
                    ..policy()
                },
                times: leak(&days[..4]),
                kept: leak(&[days[3], days[0]]),
            },
        ];
        for c in cases {
            let got = kept(&c.policy, &c.times);
            assert_eq!(names(&got), c.kept, "{}: {got:?}", c.what);
        }
    }

    #[test]
    fn reasons_name_the_rules() {
        let p = Policy {
            keep_daily: 2,
            keep_weekly: 1,
            keep_within: Some(Duration::from_secs(86_400)),
            ..policy()
        };
        let got = kept(
            &p,
            &[
                "2026-11-20T06:00:00Z",
                "2026-11-19T06:00:00Z",
                "2026-11-01T06:00:00Z",
            ],
        );
        assert_eq!(got[0].1, vec!["within 1day", "daily 1", "weekly 1"]);
        assert_eq!(got[1].1, vec!["daily 2"]);
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn days_are_the_time_zones_days_across_dst() {
        // Berlin springs forward on 2026-03-29: 00:30 CET and 23:30 CEST are one local day;
        // in UTC they are two.
        let times = ["2026-03-28T23:30:00Z", "2026-03-29T21:30:00Z"];
        let utc = Policy {
            keep_daily: 1,
            ..policy()
        };
        let berlin = Policy {
            timezone: chrono_tz::Europe::Berlin,
            keep_daily: 2,
            ..policy()
        };
        assert_eq!(names(&kept(&utc, &times)), vec![times[1]]);
        // One Berlin day: the newest, and the oldest while counts are left.
        let got = kept(&berlin, &times);
        assert_eq!(got[1].1, vec!["oldest daily 2"], "{got:?}");
        let two_days = ["2026-03-29T21:30:00Z", "2026-03-29T22:30:00Z"];
        let got = kept(
            &Policy {
                keep_daily: 2,
                keep_last: 0,
                ..berlin.clone()
            },
            &two_days,
        );
        assert_eq!(
            got[1].1,
            vec!["daily 2"],
            "00:30 CEST on the 30th is a new Berlin day: {got:?}"
        );
        // New York: 18:30 and 19:30 on 1 March are one day, though UTC crossed midnight.
        let ny = Policy {
            timezone: chrono_tz::America::New_York,
            keep_daily: 1,
            min_keep: 1,
            ..policy()
        };
        assert_eq!(
            kept(&ny, &["2026-03-01T23:30:00Z", "2026-03-02T00:30:00Z"]).len(),
            1
        );
    }

    #[test]
    fn ties_the_newest_and_the_empty_policy() {
        // Two archives at the same instant: the first given wins the period.
        let p = Policy {
            keep_last: 1,
            ..policy()
        };
        let same = [t("2026-11-01T00:00:00Z"), t("2026-11-01T00:00:00Z")];
        let v = apply(&p, &same);
        assert!(v[0].keep && !v[1].keep, "{v:?}");
        assert!(apply(&p, &[]).is_empty());
        assert!(policy().is_empty());
        assert!(
            Policy {
                keep_within: Some(Duration::ZERO),
                ..policy()
            }
            .is_empty()
        );
        assert!(
            !Policy {
                keep_yearly: 1,
                ..policy()
            }
            .is_empty()
        );
        // Whatever the rules, the newest archive stays.
        let v = apply(
            &Policy {
                min_keep: 0,
                ..policy()
            },
            &same,
        );
        assert!(v[0].keep, "{v:?}");
    }
}
