//! The status page (`GET /`): one server-rendered HTML page for a person, with each target's
//! state, last success, recovery point, next run, archives and recent failures, and the
//! transfers in flight. No script, no external asset (a CSP forbids both), readable on a phone,
//! refreshed by the browser every [`REFRESH_SECONDS`].
//! Must not: read anything itself (it renders a [`StatusView`]), or show a URL or a secret.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};

use atlas_archiver_engine::config::CREDENTIAL_WARNING;
use atlas_archiver_engine::config::units::format_bytes;
use atlas_archiver_engine::pipeline::facts::TargetSummary;
use atlas_archiver_engine::progress::TransferView;

/// How often the browser reloads the page.
pub const REFRESH_SECONDS: u32 = 15;
/// A recovery point older than this is shown as stale: the `AtlasArchiverRecoveryPointOld`
/// rule of `deploy/prometheus/alerts.yaml` fires at the same age.
const STALE_RECOVERY_POINT: Duration = Duration::from_secs(36 * 3600);

/// Everything the page shows, gathered by the daemon.
#[derive(Debug, Clone)]
pub struct StatusView {
    /// When it was gathered.
    pub now: DateTime<Utc>,
    /// One entry per configured target, in config order.
    pub targets: Vec<TargetView>,
    /// Transfers in flight.
    pub transfers: Vec<TransferView>,
    /// Why the journal could not be read, when it could not.
    pub journal_error: Option<String>,
    /// When the Atlas secret expires, when the config says.
    pub credential_expires: Option<DateTime<Utc>>,
}

/// One target on the page.
#[derive(Debug, Clone)]
pub struct TargetView {
    /// What the journal knows.
    pub summary: TargetSummary,
    /// A run of it is in progress.
    pub running: bool,
    /// When it runs next.
    pub next_run: Option<DateTime<Utc>>,
}

/// A target's state, as the page names it (`data-state`): how its last finished run went, or
/// `never-run` ("new") when none has finished yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ok,
    Failing,
    NeverRun,
}

impl State {
    fn of(t: &TargetView) -> Self {
        match t
            .summary
            .history
            .as_ref()
            .and_then(|h| h.last_status.as_deref())
        {
            Some("ok") => Self::Ok,
            Some(_) => Self::Failing,
            None => Self::NeverRun,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::NeverRun => "never-run",
        }
    }

    fn badge(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Failing => "FAILING",
            Self::NeverRun => "NEW",
        }
    }
}

/// The page.
pub fn render(view: &StatusView) -> String {
    let states: Vec<State> = view.targets.iter().map(State::of).collect();
    let count = |s: State| states.iter().filter(|x| **x == s).count();
    let failing = count(State::Failing);
    let headline = if view.journal_error.is_some() {
        "The journal cannot be read".to_owned()
    } else {
        headline(view.targets.len(), count(State::Ok), failing)
    };
    let overall = if failing > 0 || view.journal_error.is_some() {
        "failing"
    } else {
        "ok"
    };
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>atlas-archiver</h1>
<p id="summary" class="summary {overall}" data-state="{overall}">{headline}</p>
<p class="meta">version {version} · as of {now} · reloads every {REFRESH_SECONDS} s · <a href="/metrics">metrics</a></p>
</header>
<main>
"#,
        title = esc(&format!("atlas-archiver: {headline}")),
        headline = esc(&headline),
        version = env!("CARGO_PKG_VERSION"),
        now = when(view.now),
    );
    if let Some(expires) = view.credential_expires {
        let near = expires - view.now <= CREDENTIAL_WARNING;
        let _ = writeln!(
            out,
            r#"<p id="credential" class="{}">The Atlas service account secret {} {}.</p>"#,
            if near { "alert" } else { "meta" },
            if expires <= view.now {
                "expired at"
            } else {
                "expires at"
            },
            esc(&moment(expires, view.now)),
        );
    }
    if let Some(e) = &view.journal_error {
        let _ = writeln!(
            out,
            r#"<p id="journal-error" class="alert">The journal cannot be read, so this page may be out of date: {}</p>"#,
            esc(e)
        );
    }
    transfers(&mut out, view);
    out.push_str("<section id=\"targets\">\n<h2>Targets</h2>\n");
    if view.targets.is_empty() && view.journal_error.is_none() {
        out.push_str("<p class=\"empty\">No target is configured.</p>\n");
    }
    for (t, state) in view.targets.iter().zip(&states) {
        target(&mut out, t, *state, view.now);
    }
    out.push_str("</section>\n</main>\n</body>\n</html>\n");
    out
}

fn headline(total: usize, ok: usize, failing: usize) -> String {
    let never = total - ok - failing;
    let plural = |n: usize| if n == 1 { "target" } else { "targets" };
    match (ok, failing, never) {
        (0, 0, 0) => "No target configured".to_owned(),
        (_, 0, 0) => format!("All {total} {} OK", plural(total)),
        (_, f, 0) => format!("{f} of {total} {} failing", plural(total)),
        (o, 0, n) => format!("{o} OK, {n} new"),
        (o, f, n) => format!("{f} failing, {o} OK, {n} new"),
    }
}

fn transfers(out: &mut String, view: &StatusView) {
    out.push_str("<section id=\"transfers\">\n<h2>In flight</h2>\n");
    if view.transfers.is_empty() {
        out.push_str("<p class=\"empty\">No transfer in flight.</p>\n");
    } else {
        out.push_str("<ul>\n");
    }
    for t in &view.transfers {
        let rate = t.bytes_per_second;
        let (bar, of, eta) = match t.total {
            Some(total) => (
                format!(
                    r#"<progress max="{total}" value="{}"></progress>"#,
                    t.done.min(total)
                ),
                format!(" of {}", format_bytes(total)),
                if rate > 0.0 {
                    let left = total.saturating_sub(t.done) as f64 / rate;
                    format!(" · {} left", span(Duration::from_secs_f64(left.min(1e9))))
                } else {
                    String::new()
                },
            ),
            None => (
                "<progress></progress>".to_owned(),
                String::new(),
                String::new(),
            ),
        };
        let _ = writeln!(
            out,
            r#"<li class="transfer" data-transfer="{label}"><span class="label">{label}</span>{bar}<span class="numbers">{done}{of} · {rate}/s{eta}</span></li>"#,
            label = esc(&t.label),
            done = format_bytes(t.done),
            rate = format_bytes(rate as u64),
        );
    }
    if !view.transfers.is_empty() {
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn target(out: &mut String, t: &TargetView, state: State, now: DateTime<Utc>) {
    let s = &t.summary;
    let history = s.history.as_ref();
    let name = esc(&s.target.to_string());
    let _ = write!(
        out,
        r#"<article class="target {state}" data-target="{name}" data-state="{state}" data-running="{running}">
<h3><span class="badge">{badge}</span>{running_badge} <span class="cluster">{cluster}</span> <span class="project">{project}</span></h3>
<dl>
"#,
        state = state.name(),
        running = t.running,
        badge = state.badge(),
        running_badge = if t.running {
            r#" <span class="badge running">RUNNING</span>"#
        } else {
            ""
        },
        cluster = esc(&s.target.cluster),
        project = esc(&s.target.project_id),
    );
    let last_success = history.and_then(|h| h.last_success_at);
    row(
        out,
        "last-success",
        "Last success",
        last_success.map_or_else(|| "never".to_owned(), |at| moment(at, now)),
        last_success.is_none() && state != State::NeverRun,
    );
    let recovery = s
        .facts
        .newest_archived
        .and_then(|t| DateTime::<Utc>::from_timestamp_millis((t * 1000.0) as i64));
    let stale = recovery.is_none_or(|at| {
        (now - at)
            .to_std()
            .is_ok_and(|age| age > STALE_RECOVERY_POINT)
    });
    row(
        out,
        "recovery-point",
        "Recovery point",
        recovery.map_or_else(
            || "no snapshot archived yet".to_owned(),
            |at| format!("snapshot taken {}", moment(at, now)),
        ),
        stale && state != State::NeverRun,
    );
    row(
        out,
        "next-run",
        "Next run",
        if t.running {
            "running now".to_owned()
        } else {
            t.next_run
                .map_or_else(|| "not planned".to_owned(), |at| moment(at, now))
        },
        false,
    );
    row(
        out,
        "archives",
        "Archives",
        match s.archives {
            0 => "none yet".to_owned(),
            n => format!(
                "{n} archive{} · {}",
                if n == 1 { "" } else { "s" },
                format_bytes(s.archived_bytes)
            ),
        },
        false,
    );
    if s.facts.lost > 0 {
        row(
            out,
            "lost",
            "Lost",
            format!(
                "{} snapshot{} deleted by Atlas before it could be archived",
                s.facts.lost,
                if s.facts.lost == 1 { "" } else { "s" }
            ),
            true,
        );
    }
    out.push_str("</dl>\n");
    failures(out, t, now);
    out.push_str("</article>\n");
}

fn row(out: &mut String, id: &str, term: &str, value: String, warn: bool) {
    let _ = writeln!(
        out,
        r#"<div class="row{}" data-field="{id}"><dt>{term}</dt><dd>{}</dd></div>"#,
        if warn { " warn" } else { "" },
        esc(&value)
    );
}

fn failures(out: &mut String, t: &TargetView, now: DateTime<Utc>) {
    let s = &t.summary;
    let run_error = s
        .history
        .as_ref()
        .filter(|h| h.last_status.as_deref() == Some("failed"))
        .and_then(|h| h.last_error.as_ref().map(|e| (e, h.last_finished_at)));
    if run_error.is_none() && s.recent_failures.is_empty() {
        return;
    }
    let total = s.failed + u64::from(run_error.is_some());
    let _ = writeln!(
        out,
        r#"<details class="failures" open><summary>Recent failures ({total})</summary><ul>"#
    );
    if let Some((e, at)) = run_error {
        let _ = writeln!(
            out,
            r#"<li data-failure="run"><strong>Last run</strong>{} <span class="message">{}</span></li>"#,
            at.map(|at| format!(" ({})", esc(&moment(at, now))))
                .unwrap_or_default(),
            esc(e)
        );
    }
    for f in &s.recent_failures {
        let lost = f.is_lost();
        let _ = writeln!(
            out,
            r#"<li data-failure="{id}"><code>{id}</code> <span class="reason">{reason}</span> ({at}, {attempts} attempt{plural}) <span class="message">{message}</span></li>"#,
            id = esc(&f.snapshot_id),
            reason = if lost {
                "LOST".to_owned()
            } else {
                esc(f.last_reason.as_deref().unwrap_or("failed"))
            },
            at = esc(&moment(f.updated_at, now)),
            attempts = f.attempts,
            plural = if f.attempts == 1 { "" } else { "s" },
            message = esc(f.last_error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</ul></details>\n");
}

/// `2026-12-03 13:40 UTC (10 min ago)`, or `(in 3 h)` for a time to come.
fn moment(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = now - at;
    let relative = match delta.to_std() {
        Ok(past) if past < Duration::from_secs(60) => "just now".to_owned(),
        Ok(past) => format!("{} ago", span(past)),
        Err(_) => format!("in {}", span((at - now).to_std().unwrap_or_default())),
    };
    format!("{} ({relative})", when(at))
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A rough duration: `42 s`, `12 min`, `5 h`, `3 d`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// Escapes text for HTML content and quoted attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r"
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--run:#0969da;--line:#d0d7de;--dim:#57606a}
@media (prefers-color-scheme:dark){:root{--ok:#3fb950;--bad:#f85149;--warn:#d29922;--run:#58a6ff;--line:#30363d;--dim:#8b949e}}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:60rem;padding:1rem}
h1{font-size:1.3rem;margin:0}
h2{font-size:1.05rem;margin:1.5rem 0 .5rem}
h3{font-size:1rem;margin:0 0 .5rem;display:flex;flex-wrap:wrap;gap:.4rem;align-items:baseline}
.summary{font-size:1.15rem;font-weight:600;margin:.4rem 0}
.summary.ok{color:var(--ok)}.summary.failing{color:var(--bad)}
.meta,.project,.empty{color:var(--dim);font-size:.85rem}
.alert{border:2px solid var(--bad);padding:.6rem;border-radius:6px}
.target{border:1px solid var(--line);border-left:6px solid var(--dim);border-radius:6px;padding:.7rem .9rem;margin:.6rem 0}
.target.ok{border-left-color:var(--ok)}.target.failing{border-left-color:var(--bad)}
.badge{font-size:.72rem;font-weight:700;letter-spacing:.04em;padding:.1rem .4rem;border-radius:4px;color:#fff;background:var(--dim)}
.ok .badge{background:var(--ok)}.failing .badge{background:var(--bad)}.badge.running{background:var(--run)}
.cluster{font-weight:600}
dl{margin:0;display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.3rem 1rem}
.row dt{font-size:.78rem;color:var(--dim);text-transform:uppercase;letter-spacing:.03em}
.row dd{margin:0;overflow-wrap:anywhere}
.row.warn dd{color:var(--warn);font-weight:600}
.failures{margin-top:.6rem}
.failures summary{cursor:pointer;color:var(--bad);font-weight:600}
.failures ul{margin:.3rem 0;padding-left:1.1rem}
.failures li{margin:.25rem 0;overflow-wrap:anywhere}
.reason{font-weight:600}
.message{display:block;color:var(--dim);font-size:.85rem}
#transfers ul{list-style:none;padding:0;margin:0}
.transfer{display:grid;grid-template-columns:1fr;gap:.2rem;margin:.4rem 0}
.transfer .label{font-family:ui-monospace,monospace;font-size:.85rem;overflow-wrap:anywhere}
.transfer .numbers{color:var(--dim);font-size:.85rem}
progress{width:100%;height:.8rem}
code{font-size:.85rem}
";

#[cfg(test)]
mod tests {
    use super::*;
    use atlas_archiver_engine::journal::TargetHistory;
    use atlas_archiver_engine::target::Target;
    use atlas_archiver_engine::telemetry::TargetFacts;

    fn view(status: Option<&str>, error: Option<&str>) -> TargetView {
        let target = Target {
            project_id: "32b6e34b3d91647abb20e7b8".into(),
            cluster: "orders-flex".into(),
        };
        TargetView {
            summary: TargetSummary {
                history: status.map(|s| TargetHistory {
                    target: target.clone(),
                    last_started_at: None,
                    last_finished_at: None,
                    last_success_at: None,
                    last_status: Some(s.into()),
                    first_started_at: None,
                    last_error: error.map(str::to_owned),
                }),
                target,
                facts: TargetFacts::default(),
                archives: 0,
                archived_bytes: 0,
                recent_failures: Vec::new(),
                failed: 0,
            },
            running: false,
            next_run: None,
        }
    }

    #[test]
    fn the_headline_counts_every_state() {
        let page = |targets: Vec<TargetView>| {
            render(&StatusView {
                now: Utc::now(),
                targets,
                transfers: Vec::new(),
                journal_error: None,
                credential_expires: None,
            })
        };
        assert!(page(vec![]).contains(">No target configured</p>"));
        assert!(page(vec![view(Some("ok"), None)]).contains(">All 1 target OK</p>"));
        let mixed = page(vec![
            view(Some("ok"), None),
            view(
                Some("failed"),
                Some("cannot list snapshots: <b>HTTP 503</b>"),
            ),
            view(None, None),
        ]);
        assert!(mixed.contains(">1 failing, 1 OK, 1 new</p>"), "{mixed}");
        assert!(
            mixed.contains("cannot list snapshots: &lt;b&gt;HTTP 503&lt;/b&gt;"),
            "run errors are shown, escaped: {mixed}"
        );
        assert!(!mixed.contains("<b>HTTP"));
        assert!(mixed.contains(r#"data-state="never-run""#));
        let now = Utc::now();
        let credential = |days: i64| {
            render(&StatusView {
                now,
                targets: Vec::new(),
                transfers: Vec::new(),
                journal_error: None,
                credential_expires: Some(now + chrono::Duration::days(days)),
            })
        };
        assert!(credential(90).contains(
            r#"<p id="credential" class="meta">The Atlas service account secret expires at"#
        ));
        assert!(credential(5).contains(
            r#"<p id="credential" class="alert">The Atlas service account secret expires at"#
        ));
        assert!(credential(-1).contains("secret expired at"));
    }

    #[test]
    fn spans_and_moments_read_as_a_person_says_them() {
        assert_eq!(span(Duration::from_secs(42)), "42 s");
        assert_eq!(span(Duration::from_secs(600)), "10 min");
        assert_eq!(span(Duration::from_secs(5 * 3600)), "5 h");
        assert_eq!(span(Duration::from_secs(3 * 86_400)), "3 d");
        let now = Utc::now();
        assert!(moment(now - chrono::Duration::hours(3), now).ends_with("(3 h ago)"));
        assert!(moment(now + chrono::Duration::minutes(30), now).ends_with("(in 30 min)"));
        assert!(moment(now, now).ends_with("(just now)"));
    }
}
