use chrono::{NaiveDate, TimeZone};

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn schedule(expr: &str, zone: &str) -> Schedule {
    Schedule::parse(expr, zone).unwrap()
}

/// Every slot in `[from, to)`.
fn slots(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = from - chrono::Duration::seconds(1);
    while let Some(next) = s.next_after(t) {
        if next >= to {
            break;
        }
        out.push(next);
        t = next;
    }
    out
}

/// Slots of a daily job falling on one local calendar day.
fn runs_on_local_day(s: &Schedule, day: NaiveDate) -> Vec<DateTime<Utc>> {
    let zone = s.zone();
    let start = zone
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .unwrap_or_else(|| panic!("midnight exists"))
        .with_timezone(&Utc);
    slots(
        s,
        start - chrono::Duration::hours(2),
        start + chrono::Duration::hours(50),
    )
    .into_iter()
    .filter(|t| t.with_timezone(&zone).date_naive() == day)
    .collect()
}

#[test]
fn five_and_six_field_expressions() {
    let s = schedule("30 2 * * *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-03-01T00:00:00Z")),
        Some(utc("2026-03-01T02:30:00Z"))
    );
    let s6 = schedule("*/10 * * * * *", "UTC");
    assert_eq!(
        s6.next_after(utc("2026-03-01T00:00:01Z")),
        Some(utc("2026-03-01T00:00:10Z"))
    );
    assert!(Schedule::parse("* * * *", "UTC").is_err(), "4 fields");
    assert!(
        Schedule::parse("0 0 0 1 1 * 2030", "UTC").is_err(),
        "7 fields"
    );
}

#[test]
fn a_0230_daily_job_runs_exactly_once_on_dst_days() {
    // 2026: Europe spring-forward 29 March, fall-back 25 October; US 8 March and 1 November.
    let cases = [
        (
            "Europe/Berlin",
            NaiveDate::from_ymd_opt(2026, 3, 29),
            "2026-03-29T01:00:00Z",
        ),
        (
            "Europe/Berlin",
            NaiveDate::from_ymd_opt(2026, 10, 25),
            "2026-10-25T00:30:00Z",
        ),
        (
            "America/New_York",
            NaiveDate::from_ymd_opt(2026, 3, 8),
            "2026-03-08T07:00:00Z",
        ),
        (
            "America/New_York",
            // In New York 01:00-02:00 repeats; 02:30 happens once, in EST.
            NaiveDate::from_ymd_opt(2026, 11, 1),
            "2026-11-01T07:30:00Z",
        ),
    ];
    for (zone, day, expected) in cases {
        let day = day.unwrap_or_else(|| panic!("date"));
        let s = schedule("30 2 * * *", zone);
        let runs = runs_on_local_day(&s, day);
        assert_eq!(runs, vec![utc(expected)], "{zone} {day}");
        // And the days around it are ordinary.
        for other in [day.pred_opt(), day.succ_opt()].into_iter().flatten() {
            assert_eq!(runs_on_local_day(&s, other).len(), 1, "{zone} {other}");
        }
    }
}

#[test]
fn a_job_inside_the_repeated_hour_runs_once() {
    // 01:30 happens twice in New York on 1 November 2026 (EDT, then EST): one run, the first.
    let s = schedule("30 1 * * *", "America/New_York");
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
    assert_eq!(
        runs_on_local_day(&s, day),
        vec![utc("2026-11-01T05:30:00Z")]
    );
}

#[test]
fn hourly_jobs_skip_the_gap_and_do_not_double_in_the_overlap() {
    let s = schedule("0 * * * *", "Europe/Berlin");
    // Spring forward: 23 local hours.
    assert_eq!(
        slots(&s, utc("2026-03-28T23:00:00Z"), utc("2026-03-29T22:00:00Z")).len(),
        23
    );
    // Fall back: every real hour once (25 of them in the local day).
    let fall = slots(&s, utc("2026-10-24T22:00:00Z"), utc("2026-10-25T23:00:00Z"));
    let mut dedup = fall.clone();
    dedup.dedup();
    assert_eq!(fall, dedup, "no slot twice");
    assert!(fall.len() >= 24, "{}", fall.len());
}

#[test]
fn monthly_and_yearly_expressions() {
    let monthly = schedule("0 3 1 * *", "UTC");
    let got = slots(
        &monthly,
        utc("2026-01-15T00:00:00Z"),
        utc("2026-05-15T00:00:00Z"),
    );
    assert_eq!(
        got,
        [
            "2026-02-01T03:00:00Z",
            "2026-03-01T03:00:00Z",
            "2026-04-01T03:00:00Z",
            "2026-05-01T03:00:00Z"
        ]
        .map(utc)
    );
    let yearly = schedule("0 0 1 1 *", "Europe/Berlin");
    assert_eq!(
        yearly.next_after(utc("2026-06-01T00:00:00Z")),
        Some(utc("2026-12-31T23:00:00Z"))
    );
    assert_eq!(
        yearly.next_after(utc("2026-12-31T23:00:00Z")),
        Some(utc("2027-12-31T23:00:00Z"))
    );
}

#[test]
fn invalid_expressions_and_zones_are_refused() {
    for bad in [
        "61 * * * *",
        "* * 32 * *",
        "not cron at all",
        "",
        "0 0 30 2 *",
    ] {
        assert!(
            matches!(
                Schedule::parse(bad, "UTC"),
                Err(ScheduleError::Expression { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        Schedule::parse("0 0 * * *", "Mars/Olympus").err(),
        Some(ScheduleError::Zone("Mars/Olympus".into()))
    );
}

#[test]
fn jitter_is_stable_within_its_window_and_spreads_targets() {
    let window = Duration::from_secs(600);
    let a = stable_jitter("32b6e34b3d91647abb20e7b8/orders-flex", window);
    assert_eq!(
        a,
        stable_jitter("32b6e34b3d91647abb20e7b8/orders-flex", window)
    );
    let spread: Vec<Duration> = (0..50)
        .map(|i| stable_jitter(&format!("p/c{i}"), window))
        .collect();
    assert!(spread.iter().all(|d| *d < window));
    let distinct: std::collections::HashSet<_> = spread.iter().map(Duration::as_secs).collect();
    assert!(distinct.len() > 30, "targets spread over the window");
    assert_eq!(stable_jitter("x", Duration::ZERO), Duration::ZERO);
}

#[test]
fn catch_up_runs_once_after_downtime_and_never_on_a_first_start() {
    let s = schedule("0 3 * * *", "UTC");
    let now = utc("2026-06-10T12:00:00Z");
    // Down for three days: one catch-up, for the latest slot only.
    assert_eq!(
        on_start(&s, Some(utc("2026-06-07T03:00:05Z")), now, false),
        StartDecision::CatchUp {
            slot: utc("2026-06-10T03:00:00Z")
        }
    );
    // Ran after today's slot: nothing missed.
    assert_eq!(
        on_start(&s, Some(utc("2026-06-10T03:00:01Z")), now, false),
        StartDecision::Wait
    );
    // Never ran: wait, unless configured.
    assert_eq!(on_start(&s, None, now, false), StartDecision::Wait);
    assert_eq!(
        on_start(&s, None, now, true),
        StartDecision::CatchUp {
            slot: utc("2026-06-10T03:00:00Z")
        }
    );
}
