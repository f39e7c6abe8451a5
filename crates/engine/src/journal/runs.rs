//! The `runs`, `target_runs` and `target_kinds` tables: when each run started and ended and how,
//! each target's last run (the daemon's catch-up rule and the status page read them back), and
//! the kind Atlas said each cluster is.
//! Must not: touch snapshot rows.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::snapshots::parse_time;
use super::{Journal, JournalError, now, query_all, sql_error};
use crate::target::{ClusterKind, Target};

/// How a run ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Snapshots archived in this run.
    pub archived: u32,
    /// Snapshots already archived before.
    pub skipped: u32,
    /// Snapshots that failed.
    pub failed: u32,
    /// A run-level error (Atlas unreachable, …).
    pub error: Option<String>,
}

impl Journal {
    /// Records the start of a run.
    pub async fn start_run(&self, kind: &str) -> Result<i64, JournalError> {
        let kind = kind.to_owned();
        self.with(move |c, p| {
            c.execute(
                "INSERT INTO runs (kind, started_at, status) VALUES (?1, ?2, 'running')",
                params![kind, now()],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// Records the end of a run.
    pub async fn finish_run(&self, run_id: i64, summary: RunSummary) -> Result<(), JournalError> {
        self.with(move |c, p| {
            let status = if summary.failed > 0 || summary.error.is_some() { "failed" } else { "ok" };
            c.execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, archived = ?4, skipped = ?5, failed = ?6, error = ?7 WHERE id = ?1",
                params![run_id, now(), status, summary.archived, summary.skipped, summary.failed, summary.error],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// The most recent runs, newest first.
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RunRecord>, JournalError> {
        self.with(move |c, p| {
            query_all(c, p, "SELECT id, kind, started_at, finished_at, status, archived, skipped, failed, error FROM runs ORDER BY id DESC LIMIT ?1", params![limit], |r| {
                    Ok(RunRecord {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        started_at: r.get(2)?,
                        finished_at: r.get(3)?,
                        status: r.get(4)?,
                        archived: r.get(5)?,
                        skipped: r.get(6)?,
                        failed: r.get(7)?,
                        error: r.get(8)?,
                    })
                })
        })
        .await
    }

    /// Records that a target's run started (the daemon's catch-up rule reads it back).
    pub async fn target_started(
        &self,
        target: &Target,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let target = target.clone();
        self.with(move |c, p| {
            c.execute(
                "INSERT INTO target_runs (project_id, cluster, last_started_at, first_started_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (project_id, cluster) DO UPDATE SET last_started_at = excluded.last_started_at,
                    first_started_at = COALESCE(first_started_at, excluded.first_started_at)",
                params![target.project_id, target.cluster, at.to_rfc3339()],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// Records how a target's run ended; `error` is why it failed as a whole (its listing), if
    /// it did.
    pub async fn target_finished(
        &self,
        target: &Target,
        success: bool,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let target = target.clone();
        let error = error.map(str::to_owned);
        self.with(move |c, p| {
            c.execute(
                "UPDATE target_runs SET last_finished_at = ?3, last_status = ?4,
                    last_success_at = CASE WHEN ?5 THEN ?3 ELSE last_success_at END,
                    last_error = ?6
                 WHERE project_id = ?1 AND cluster = ?2",
                params![
                    target.project_id,
                    target.cluster,
                    at.to_rfc3339(),
                    if success { "ok" } else { "failed" },
                    success,
                    error
                ],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// The kind recorded for a target's cluster, if one was.
    pub async fn target_kind(&self, target: &Target) -> Result<Option<ClusterKind>, JournalError> {
        let target = target.clone();
        self.with(move |c, p| {
            let kind: Option<String> = c
                .query_row(
                    "SELECT kind FROM target_kinds WHERE project_id = ?1 AND cluster = ?2",
                    params![target.project_id, target.cluster],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sql_error(p, &e))?;
            Ok(kind.as_deref().and_then(ClusterKind::parse))
        })
        .await
    }

    /// Records the kind Atlas said a target's cluster is.
    pub async fn record_target_kind(
        &self,
        target: &Target,
        kind: ClusterKind,
    ) -> Result<(), JournalError> {
        let target = target.clone();
        self.with(move |c, p| {
            c.execute(
                "INSERT INTO target_kinds (project_id, cluster, kind, detected_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project_id, cluster) DO UPDATE SET kind = excluded.kind, detected_at = excluded.detected_at",
                params![target.project_id, target.cluster, kind.name(), now()],
            )
            .map_err(|e| sql_error(p, &e))?;
            Ok(())
        })
        .await
    }

    /// Each target's last run, as recorded.
    pub async fn target_history(&self) -> Result<Vec<TargetHistory>, JournalError> {
        self.with(|c, p| {
            query_all(c, p, "SELECT project_id, cluster, last_started_at, last_success_at, last_status, last_finished_at, first_started_at, last_error FROM target_runs", [], |r| {
                    Ok(TargetHistory {
                        target: Target {
                            project_id: r.get(0)?,
                            cluster: r.get(1)?,
                        },
                        last_started_at: parse_time(r.get(2)?),
                        last_success_at: parse_time(r.get(3)?),
                        last_status: r.get(4)?,
                        last_finished_at: parse_time(r.get(5)?),
                        first_started_at: parse_time(r.get(6)?),
                        last_error: r.get(7)?,
                    })
                })
        })
        .await
    }
}

/// One row of `target_runs`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetHistory {
    /// The target.
    pub target: Target,
    /// When its last run started.
    pub last_started_at: Option<DateTime<Utc>>,
    /// When its last run ended; before `last_started_at` (or none) when the process died in it.
    pub last_finished_at: Option<DateTime<Utc>>,
    /// When a run last archived everything.
    pub last_success_at: Option<DateTime<Utc>>,
    /// `ok` or `failed`.
    pub last_status: Option<String>,
    /// When its first run started.
    pub first_started_at: Option<DateTime<Utc>>,
    /// Why its last run failed as a whole (its listing), if it did.
    pub last_error: Option<String>,
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// `once`, `run`, `demo`.
    pub kind: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time, if it ended.
    pub finished_at: Option<String>,
    /// `running`, `ok` or `failed`.
    pub status: String,
    /// Archived in this run.
    pub archived: u32,
    /// Already archived before.
    pub skipped: u32,
    /// Failed.
    pub failed: u32,
    /// Run-level error.
    pub error: Option<String>,
}
