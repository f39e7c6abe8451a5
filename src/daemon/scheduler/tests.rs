//! The loop under tokio's paused clock: days of schedule in milliseconds.

use std::sync::Mutex as StdMutex;

use super::*;

/// Wall time that moves with tokio's (paused) clock.
struct TestClock {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
    /// A step of the wall clock (chrony stepping a wrong RTC back, say).
    step: StdMutex<chrono::Duration>,
}

impl TestClock {
    fn at(text: &str) -> Self {
        Self {
            start_wall: DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
            start: tokio::time::Instant::now(),
            step: StdMutex::new(chrono::Duration::zero()),
        }
    }

    fn step_by(&self, by: chrono::Duration) {
        *self
            .step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        let step = *self
            .step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or_default() + step
    }
}

/// One recorded run: (cluster, start, end).
type RunRecord = (String, DateTime<Utc>, DateTime<Utc>);

/// Records every run; each run takes `duration` of (paused) time.
struct Recorder {
    clock: Arc<TestClock>,
    durations: HashMap<String, Duration>,
    runs: StdMutex<Vec<RunRecord>>,
}

use std::collections::HashMap;

#[async_trait]
impl TargetRunner for Recorder {
    async fn run_target(&self, target: Target) -> bool {
        let start = self.clock.now();
        let d = self
            .durations
            .get(&target.cluster)
            .copied()
            .unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(d).await;
        let end = self.clock.now();
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((target.cluster.clone(), start, end));
        true
    }
}

fn target(name: &str) -> Target {
    Target {
        project_id: "32b6e34b3d91647abb20e7b8".into(),
        cluster: name.into(),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Runs the loop for `span` of simulated time and returns the recorded runs.
async fn simulate(
    start: &str,
    span: Duration,
    targets: Vec<(&str, &str, Duration)>,
    last_runs: Vec<(&str, &str)>,
    settings: LoopSettings,
) -> Vec<RunRecord> {
    let clock = Arc::new(TestClock::at(start));
    let recorder = Arc::new(Recorder {
        clock: Arc::clone(&clock),
        durations: targets
            .iter()
            .map(|(n, _, d)| ((*n).to_owned(), *d))
            .collect(),
        runs: StdMutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let control = Control::new(
        Arc::clone(&recorder),
        Arc::clone(&clock),
        targets.iter().map(|(n, _, _)| target(n)).collect(),
        stop.clone(),
    );
    let schedules = targets
        .iter()
        .map(|(n, cron, _)| (target(n), Schedule::parse(cron, "UTC").unwrap()))
        .collect();
    let last: Vec<LastRun> = last_runs
        .iter()
        .map(|(n, at)| LastRun {
            target: target(&n.replace('!', "")),
            started_at: utc(at),
            // A name ending in `!` marks a run the process died in.
            finished: !n.ends_with('!'),
        })
        .collect();
    let planned = plan(schedules, &last, clock.now(), &settings);
    let loop_task = tokio::spawn(run_loop(
        Arc::clone(&control),
        planned,
        settings,
        stop.clone(),
        |_| {},
    ));
    tokio::time::sleep(span).await;
    stop.cancel();
    let _ = loop_task.await;
    control.wait_idle().await;
    recorder
        .runs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn settings() -> LoopSettings {
    LoopSettings {
        slice: Duration::from_secs(1),
        jitter: Duration::ZERO,
        run_on_first_start: false,
    }
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_target_never_overlap_and_slots_during_a_run_are_skipped() {
    // Every 10 minutes; each run takes 25 minutes.
    let runs = simulate(
        "2026-06-01T00:00:30Z",
        Duration::from_secs(3 * 3600),
        vec![("slow", "*/10 * * * *", Duration::from_secs(25 * 60))],
        vec![],
        settings(),
    )
    .await;
    assert!(runs.len() >= 5 && runs.len() <= 7, "{} runs", runs.len());
    for pair in runs.windows(2) {
        assert!(pair[1].1 >= pair[0].2, "overlap: {pair:?}");
    }
    // Each run starts on a slot.
    assert!(runs.iter().all(|r| r.1.timestamp() % 600 == 0), "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn downtime_gives_one_catch_up_run_and_no_backlog() {
    // Daily at 03:00; the last run was three days ago; started at 12:00.
    let runs = simulate(
        "2026-06-10T12:00:00Z",
        Duration::from_secs(20 * 3600),
        vec![("daily", "0 3 * * *", Duration::from_secs(60))],
        vec![("daily", "2026-06-07T03:00:02Z")],
        settings(),
    )
    .await;
    let starts: Vec<DateTime<Utc>> = runs.iter().map(|r| r.1).collect();
    assert_eq!(
        starts,
        vec![utc("2026-06-10T12:00:00Z"), utc("2026-06-11T03:00:00Z")],
        "one catch-up now, then on schedule"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_start_waits_for_the_first_slot_unless_configured() {
    let runs = simulate(
        "2026-06-10T12:00:00Z",
        Duration::from_secs(6 * 3600),
        vec![("fresh", "0 3 * * *", Duration::from_secs(60))],
        vec![],
        settings(),
    )
    .await;
    assert!(runs.is_empty(), "{runs:?}");
    let eager = LoopSettings {
        run_on_first_start: true,
        ..settings()
    };
    let runs = simulate(
        "2026-06-10T12:00:00Z",
        Duration::from_secs(3600),
        vec![("fresh", "0 3 * * *", Duration::from_secs(60))],
        vec![],
        eager,
    )
    .await;
    assert_eq!(runs.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_its_window_and_is_stable_per_target() {
    let jittered = LoopSettings {
        jitter: Duration::from_secs(600),
        ..settings()
    };
    let runs = simulate(
        "2026-06-10T00:00:00Z",
        Duration::from_secs(3 * 86_400),
        vec![
            ("a", "0 3 * * *", Duration::from_secs(5)),
            ("b", "0 3 * * *", Duration::from_secs(5)),
            ("c", "0 3 * * *", Duration::from_secs(5)),
        ],
        vec![],
        jittered,
    )
    .await;
    assert_eq!(runs.len(), 9, "three targets, three days");
    let mut offsets: HashMap<String, Vec<i64>> = HashMap::new();
    for (name, start, _) in &runs {
        let slot = start
            .date_naive()
            .and_hms_opt(3, 0, 0)
            .unwrap_or_default()
            .and_utc();
        let offset = (*start - slot).num_seconds();
        assert!((0..600).contains(&offset), "{name} at {start}");
        offsets.entry(name.clone()).or_default().push(offset);
    }
    for (name, o) in &offsets {
        assert!(
            o.iter().all(|x| (x - o[0]).abs() <= 1),
            "{name}: {o:?} should be stable"
        );
    }
    let distinct: std::collections::HashSet<i64> = offsets.values().map(|o| o[0]).collect();
    assert_eq!(distinct.len(), 3, "targets are spread: {offsets:?}");
}

#[tokio::test(start_paused = true)]
async fn a_long_run_of_one_target_does_not_delay_another() {
    let runs = simulate(
        "2026-06-10T00:30:00Z",
        Duration::from_secs(5 * 3600),
        vec![
            ("big", "0 1 * * *", Duration::from_secs(4 * 3600)),
            ("small", "0 * * * *", Duration::from_secs(60)),
        ],
        vec![],
        settings(),
    )
    .await;
    let small: Vec<DateTime<Utc>> = runs
        .iter()
        .filter(|r| r.0 == "small")
        .map(|r| r.1)
        .collect();
    assert_eq!(
        small,
        [
            "2026-06-10T01:00:00Z",
            "2026-06-10T02:00:00Z",
            "2026-06-10T03:00:00Z",
            "2026-06-10T04:00:00Z",
            "2026-06-10T05:00:00Z"
        ]
        .map(utc)
    );
    assert!(
        runs.iter()
            .any(|r| r.0 == "big" && r.1 == utc("2026-06-10T01:00:00Z"))
    );
}

#[tokio::test(start_paused = true)]
async fn the_http_trigger_respects_the_no_overlap_rule() {
    let clock = Arc::new(TestClock::at("2026-06-10T00:00:00Z"));
    let recorder = Arc::new(Recorder {
        clock: Arc::clone(&clock),
        durations: HashMap::from([("t".to_owned(), Duration::from_secs(100))]),
        runs: StdMutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let control = Control::new(recorder, clock, vec![target("t")], stop.clone());
    assert_eq!(control.trigger(&target("t"), "test"), Ok(()));
    assert_eq!(
        control.trigger(&target("t"), "test"),
        Err(TriggerError::AlreadyRunning)
    );
    assert_eq!(
        control.trigger(&target("nope"), "test"),
        Err(TriggerError::UnknownTarget)
    );
    tokio::time::sleep(Duration::from_secs(101)).await;
    assert_eq!(control.trigger(&target("t"), "test"), Ok(()));
    stop.cancel();
    assert_eq!(
        control.trigger(&target("t"), "test"),
        Err(TriggerError::ShuttingDown)
    );
    control.wait_idle().await;
}

/// A runner whose first run panics, as a bug or a hostile answer might make it.
struct PanicsOnce {
    runs: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl TargetRunner for PanicsOnce {
    async fn run_target(&self, _target: Target) -> bool {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("simulated panic in a run");
        }
        true
    }
}

#[tokio::test(start_paused = true)]
async fn m1_a_run_that_panics_does_not_leave_its_target_running_forever() {
    let clock = Arc::new(TestClock::at("2026-06-10T00:00:00Z"));
    let runner = Arc::new(PanicsOnce {
        runs: std::sync::atomic::AtomicU32::new(0),
    });
    let stop = CancellationToken::new();
    let control = Control::new(Arc::clone(&runner), clock, vec![target("t")], stop.clone());
    assert_eq!(control.trigger(&target("t"), "test"), Ok(()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        control.running_targets().is_empty(),
        "the panicked run ended"
    );
    assert_eq!(control.trigger(&target("t"), "test"), Ok(()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runner.runs.load(Ordering::SeqCst), 2);
    stop.cancel();
    control.wait_idle().await;
}

#[tokio::test(start_paused = true)]
async fn l2_a_backwards_clock_step_does_not_delay_the_next_run_by_the_step() {
    // Booted with the clock four years ahead; chrony steps it back ten seconds later. An
    // hourly schedule must run within the hour, not in four years.
    let clock = Arc::new(TestClock::at("2030-01-01T00:00:30Z"));
    let recorder = Arc::new(Recorder {
        clock: Arc::clone(&clock),
        durations: HashMap::new(),
        runs: StdMutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let control = Control::new(
        Arc::clone(&recorder),
        Arc::clone(&clock),
        vec![target("hourly")],
        stop.clone(),
    );
    let planned = plan(
        vec![(
            target("hourly"),
            Schedule::parse("0 * * * *", "UTC").unwrap(),
        )],
        &[],
        clock.now(),
        &settings(),
    );
    let loop_task = tokio::spawn(run_loop(
        Arc::clone(&control),
        planned,
        settings(),
        stop.clone(),
        |_| {},
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    clock.step_by(utc("2026-01-01T00:00:40Z") - clock.now());
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    stop.cancel();
    let _ = loop_task.await;
    control.wait_idle().await;
    let runs = recorder
        .runs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let starts: Vec<DateTime<Utc>> = runs.iter().map(|(_, start, _)| *start).collect();
    assert_eq!(
        starts,
        [utc("2026-01-01T01:00:00Z"), utc("2026-01-01T02:00:00Z")],
        "the slots after the step, on time"
    );
}

#[tokio::test(start_paused = true)]
async fn l20_a_run_the_process_died_in_is_caught_up_at_start() {
    // Hourly; the 00:00 run started at 00:00:05. Restarted at 00:30.
    let span = Duration::from_secs(10 * 60);
    let finished = simulate(
        "2026-06-01T00:30:00Z",
        span,
        vec![("done", "0 * * * *", Duration::from_secs(1))],
        vec![("done", "2026-06-01T00:00:05Z")],
        settings(),
    )
    .await;
    assert!(
        finished.is_empty(),
        "a finished run is not repeated: {finished:?}"
    );
    let died = simulate(
        "2026-06-01T00:30:00Z",
        span,
        vec![("died", "0 * * * *", Duration::from_secs(1))],
        vec![("died!", "2026-06-01T00:00:05Z")],
        settings(),
    )
    .await;
    assert_eq!(
        died.iter().map(|(_, start, _)| *start).collect::<Vec<_>>(),
        [utc("2026-06-01T00:30:00Z")],
        "the interrupted slot's work runs at once"
    );
}
