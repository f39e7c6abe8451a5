//! A run and a target's run: list the target's snapshots, archive each completed one in turn,
//! record the run in the journal and the metrics, and report the snapshots Atlas no longer
//! lists that were never archived (LOST).
//! Must not: transfer bytes itself (that is `attempt.rs`).

use chrono::Utc;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::transfer::TransferError;
use super::{ArchiveError, Archiver, SnapshotOutcome, TargetReport, is_object_id};
use crate::atlas::models::{Phase, Snapshot};
use crate::journal::{RunSummary, SnapshotState};
use crate::reason::Reason;
use crate::target::Target;
use crate::telemetry::RunStatus;

impl Archiver {
    /// Runs every target (all at once; transfers are bounded by `max_concurrent_transfers`)
    /// and records the run.
    pub async fn run(
        &self,
        kind: &str,
        targets: &[Target],
    ) -> Result<Vec<TargetReport>, ArchiveError> {
        let run_id = self.journal.start_run(kind).await?;
        let reports: Vec<TargetReport> =
            futures_util::future::join_all(targets.iter().map(|t| self.archive_target(t))).await;
        let mut summary = RunSummary::default();
        for r in &reports {
            for s in &r.snapshots {
                match s {
                    SnapshotOutcome::Archived { .. } | SnapshotOutcome::Adopted { .. } => {
                        summary.archived += 1
                    }
                    SnapshotOutcome::AlreadyArchived { .. } | SnapshotOutcome::Pruned { .. } => {
                        summary.skipped += 1
                    }
                    SnapshotOutcome::Failed { .. } | SnapshotOutcome::Lost { .. } => {
                        summary.failed += 1
                    }
                }
            }
            if let Some(e) = &r.error {
                summary.error = Some(format!("{}: {e}", r.target));
            }
        }
        self.journal.finish_run(run_id, summary).await?;
        Ok(reports)
    }

    /// Archives every completed, not yet archived snapshot of one target, and records the run
    /// of the target in the journal and the metrics.
    pub async fn archive_target(&self, target: &Target) -> TargetReport {
        let started = std::time::Instant::now();
        if let Err(e) = self.journal.target_started(target, Utc::now()).await {
            error!(project = %target.project_id, cluster = %target.cluster, error = %e, "cannot record the run in the journal");
            return TargetReport {
                target: target.clone(),
                snapshots: Vec::new(),
                error: Some(e.to_string()),
                waiting: 0,
            };
        }
        let report = self.archive_target_snapshots(target).await;
        let success = report.succeeded();
        let finished = Utc::now();
        // A run that a shutdown cut short is left without an end, like one the process died
        // in: the next start catches it up at once, so a planned restart resumes like a crash
        // does (audits L1 and L20).
        let interrupted = !success && self.shutdown.drain.is_cancelled();
        if interrupted {
            info!(project = %target.project_id, cluster = %target.cluster, "run interrupted by shutdown; the next start runs it again");
        } else if let Err(e) = self
            .journal
            .target_finished(target, success, report.error.as_deref(), finished)
            .await
        {
            error!(project = %target.project_id, cluster = %target.cluster, error = %e, "cannot record the end of the run in the journal");
        }
        self.metrics.record_run(
            target,
            if success {
                RunStatus::Success
            } else {
                RunStatus::Failure
            },
            started.elapsed().as_secs_f64(),
            finished.timestamp_millis() as f64 / 1000.0,
        );
        report
    }

    pub(super) async fn archive_target_snapshots(&self, target: &Target) -> TargetReport {
        let span = info_span!("target", project = %target.project_id, cluster = %target.cluster);
        async {
            let mut report = TargetReport {
                target: target.clone(),
                snapshots: Vec::new(),
                error: None,
                waiting: 0,
            };
            // The listing's retries (a 429's `Retry-After`, 5xx backoff) end at once on shutdown.
            let listed = match self.until_shutdown(self.list_target(target)).await.and_then(|l| l) {
                Ok(l) => l,
                Err(e @ ArchiveError::Transfer(TransferError::Cancelled)) => {
                    warn!("shutting down: the listing was interrupted; the next run lists again");
                    report.error = Some(e.to_string());
                    return report;
                }
                Err(e) => {
                    error!(error = %e, "cannot list snapshots");
                    report.error = Some(e.to_string());
                    return report;
                }
            };
            info!(count = listed.len(), "listed snapshots");
            let options = self.options(target);
            let mut downloads = 0u32;
            // Set once Atlas says another download holds this cluster's slot: the snapshots
            // that have no download job of ours yet wait for a later run instead of each
            // asking again.
            let mut slot_taken = false;
            for snapshot in in_scope(&listed, &options, Utc::now()) {
                let id = match Listed::of(snapshot, &options) {
                    Listed::Completed(id) => id,
                    Listed::NoId => continue,
                    Listed::OtherType { id, snapshot_type } => {
                        debug!(snapshot = %id, snapshot_type = %snapshot_type, "not a snapshot type this target archives (snapshot_types)");
                        continue;
                    }
                    Listed::BadId(id) => {
                        warn!(snapshot = %id.escape_debug().to_string(), "Atlas listed a snapshot id that is not 24 lowercase hex digits; skipping it");
                        continue;
                    }
                    Listed::UnknownStatus { id, status } => {
                        warn!(snapshot = %id, status = %status, "snapshot has a status this version does not know; skipping it for now");
                        continue;
                    }
                    Listed::NotCompleted { id, status } => {
                        info!(snapshot = %id, status = %status, "snapshot not completed yet; a later run takes it");
                        continue;
                    }
                };
                if self.shutdown.drain.is_cancelled() {
                    info!("shutting down: the remaining snapshots wait for the next run");
                    break;
                }
                if options.max_per_run.is_some() || slot_taken {
                    match self.waits(target, &id, slot_taken).await {
                        Ok(Wait::No) => {}
                        Ok(Wait::Download) => match options.max_per_run {
                            Some(max) if downloads >= max => {
                                report.waiting += 1;
                                continue;
                            }
                            _ => downloads += 1,
                        },
                        Ok(Wait::ForSlot) => {
                            report.waiting += 1;
                            continue;
                        }
                        Err(e) => {
                            report.error = Some(format!("{e}; stopping this target"));
                            break;
                        }
                    }
                }
                let outcome = self.watched_snapshot(target, &id, snapshot).await;
                if let Err(e @ ArchiveError::DownloadSlotTaken(_)) = &outcome {
                    warn!(snapshot = %id, error = %e, "snapshot waits for a later run");
                    slot_taken = true;
                    report.waiting += 1;
                    continue;
                }
                let journal_failed = match &outcome {
                    Err(ArchiveError::Journal(e)) => Some(e.to_string()),
                    _ => None,
                };
                report.snapshots.push(match outcome {
                    Ok(o) => o,
                    Err(e) => SnapshotOutcome::Failed {
                        snapshot_id: id.clone(),
                        reason: e.reason().to_string(),
                        error: e.to_string(),
                    },
                });
                if let Some(e) = journal_failed {
                    error!(error = %e, "the journal failed; stopping this target");
                    report.error = Some(format!("{e}; stopping this target"));
                    break;
                }
            }
            if report.waiting > 0 {
                info!(waiting = report.waiting, max_per_run = options.max_per_run.unwrap_or(0), download_slot_taken = slot_taken, "snapshots left for later runs, newest taken first");
            }
            self.metrics.record_waiting(target, report.waiting);
            match self.report_lost(target, &listed).await {
                Ok(lost) => report.snapshots.extend(lost),
                Err(e) => report.error = Some(e.to_string()),
            }
            report
        }
        .instrument(span)
        .await
    }

    /// What the journal says of a listed snapshot before its turn: nothing to download
    /// (archived or pruned), a download to count against `max_per_run`, or, once the cluster's
    /// download slot is taken, a wait for a later run (unless the journal remembers a download
    /// job or an upload of ours for it: the job holding the slot may be its own).
    async fn waits(
        &self,
        target: &Target,
        id: &str,
        slot_taken: bool,
    ) -> Result<Wait, ArchiveError> {
        let row = self
            .journal
            .get(&crate::journal::SnapshotKey::new(target, id))
            .await?;
        Ok(match row {
            Some(r) if matches!(r.state, SnapshotState::Archived | SnapshotState::Pruned) => {
                Wait::No
            }
            Some(r) if r.restore_job_id.is_some() || r.upload_id.is_some() => Wait::Download,
            _ if slot_taken => Wait::ForSlot,
            _ => Wait::Download,
        })
    }

    /// One snapshot under the run watchdog: work that makes no progress for
    /// `schedule.stall_timeout` is cancelled (as a crash would stop it: its steps are journalled)
    /// and failed with reason `STALLED`, so that a wedge is reported instead of holding the
    /// target's run forever.
    async fn watched_snapshot(
        &self,
        target: &Target,
        id: &str,
        snapshot: &Snapshot,
    ) -> Result<SnapshotOutcome, ArchiveError> {
        let limit = self.settings.stall_timeout;
        let label = format!("{target}/{id}");
        let stalled = match self
            .watchdog
            .watch(&label, limit, self.archive_snapshot(target, id, snapshot))
            .await
        {
            Ok(outcome) => return outcome,
            Err(stalled) => stalled,
        };
        let e = ArchiveError::Stalled { idle: stalled.idle };
        let key = crate::journal::SnapshotKey::new(target, id);
        // Recording the stall is watched too: a journal wedged on its disk must show on
        // `/healthz`, not hang this target's run unseen.
        let recorded = self
            .watchdog
            .watch(
                &label,
                limit,
                self.journal.fail(&key, &e.reason(), &e.to_string()),
            )
            .await;
        match recorded {
            Ok(Ok(_)) => {}
            Ok(Err(j)) => {
                // Refused: the stall came after the snapshot was archived (committed just
                // before the cancel), or the row is gone.
                if let Ok(Some(row)) = self.journal.get(&key).await
                    && row.state == SnapshotState::Archived
                {
                    info!(snapshot = %id, "the stalled work had already archived the snapshot");
                    return Ok(SnapshotOutcome::AlreadyArchived {
                        snapshot_id: id.to_owned(),
                    });
                }
                warn!(snapshot = %id, error = %j, "cannot record the stall in the journal");
            }
            Err(_) => {
                error!(snapshot = %id, "the journal did not answer within schedule.stall_timeout")
            }
        }
        error!(snapshot = %id, error = %e, "snapshot not archived: its work stalled");
        self.metrics.record_failure(target, &e.reason());
        Err(e)
    }

    /// Snapshots the journal knows as not archived that Atlas no longer lists: reported once,
    /// loudly, because that is the event an operator most needs to hear about.
    pub(super) async fn report_lost(
        &self,
        target: &Target,
        listed: &[Snapshot],
    ) -> Result<Vec<SnapshotOutcome>, ArchiveError> {
        let mut lost = Vec::new();
        for record in self.journal.snapshots(Some(target.clone())).await? {
            let still_listed = listed
                .iter()
                .any(|s| s.id.as_deref() == Some(record.snapshot_id.as_str()));
            if matches!(
                record.state,
                SnapshotState::Archived | SnapshotState::Pruned
            ) || still_listed
                || Reason::SnapshotLost.is(record.last_reason.as_deref())
            {
                continue;
            }
            // The object may be complete in the bucket, only its manifest missing (a crash, or a
            // store incident on the snapshot's last day): finish it rather than cry LOST (M2).
            if let Some(object_key) = record.object_key.clone() {
                match self.finish_recorded_upload(&record, &object_key).await {
                    Ok(Some(outcome)) => {
                        lost.push(outcome);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(snapshot = %record.snapshot_id, error = %e, "cannot finish the recorded upload of a snapshot Atlas no longer lists");
                        lost.push(SnapshotOutcome::Failed {
                            snapshot_id: record.snapshot_id.clone(),
                            reason: e.reason().to_string(),
                            error: e.to_string(),
                        });
                        continue;
                    }
                }
                // An upload still open for it can never be finished now: abort it, so that no
                // billed orphan stays behind.
                if record.upload_id.is_some() {
                    self.abort_recorded_upload(&record.key(), &object_key)
                        .await?;
                }
            }
            error!(snapshot = %record.snapshot_id, "snapshot LOST: Atlas no longer holds it and it was never archived");
            self.metrics.record_lost(target);
            self.journal
                .fail(
                    &record.key(),
                    &Reason::SnapshotLost,
                    "Atlas no longer holds this snapshot and it was never archived",
                )
                .await?;
            lost.push(SnapshotOutcome::Lost {
                snapshot_id: record.snapshot_id,
            });
        }
        Ok(lost)
    }
}

/// What [`Archiver::waits`] decides for a snapshot before its turn.
enum Wait {
    /// Archived or pruned: nothing to download.
    No,
    /// A download (counted against `max_per_run`).
    Download,
    /// The cluster's download slot is taken and no job of ours is known for it.
    ForSlot,
}

/// The listed snapshots a run considers, newest first (with `max_per_run`, the recovery point
/// comes before the backlog): those taken within the target's `since`. Shared by `run` and
/// the dry run (`plan`).
pub(super) fn in_scope<'a>(
    listed: &'a [Snapshot],
    options: &crate::config::ClusterOptions,
    now: chrono::DateTime<Utc>,
) -> Vec<&'a Snapshot> {
    let taken = |s: &Snapshot| s.finish_time.or(s.scheduled_time);
    let oldest = options
        .since
        .and_then(|since| chrono::Duration::from_std(since).ok())
        .map(|since| now - since);
    let mut scoped: Vec<&Snapshot> = listed
        .iter()
        .filter(|s| oldest.is_none_or(|o| taken(s).is_none_or(|t| t >= o)))
        .collect();
    scoped.sort_by_key(|s| std::cmp::Reverse(taken(s)));
    scoped
}

/// What a run makes of one listed snapshot, before the journal is asked: the one filter that
/// `run` and the dry run (`plan`) share.
pub(super) enum Listed {
    /// Completed, with an id the contract allows: to archive (unless the journal has it).
    Completed(String),
    /// Not completed yet: a later run takes it.
    NotCompleted {
        /// Snapshot id.
        id: String,
        /// Its status.
        status: String,
    },
    /// A status this version does not know: skipped for now.
    UnknownStatus {
        /// Snapshot id.
        id: String,
        /// Its status.
        status: String,
    },
    /// Ids become parts of object keys and URL paths: only what the contract allows
    /// (`^[a-f0-9]{24}$`), never a path (audit L18).
    BadId(String),
    /// No id at all.
    NoId,
    /// A dedicated cluster's snapshot of a type the target does not archive (`snapshot_types`).
    OtherType {
        /// Snapshot id.
        id: String,
        /// Its `snapshotType`.
        snapshot_type: String,
    },
}

impl Listed {
    pub(super) fn of(snapshot: &Snapshot, options: &crate::config::ClusterOptions) -> Self {
        let Some(id) = snapshot.id.clone() else {
            return Self::NoId;
        };
        if !is_object_id(&id) {
            return Self::BadId(id);
        }
        if let Some(t) = &snapshot.snapshot_type
            && !options.snapshot_types.contains(&t.to_ascii_lowercase())
        {
            return Self::OtherType {
                id,
                snapshot_type: t.clone(),
            };
        }
        match snapshot.phase() {
            Phase::Completed => Self::Completed(id),
            Phase::Unknown(status) => Self::UnknownStatus {
                id,
                status: status.to_owned(),
            },
            other => Self::NotCompleted {
                id,
                status: other.as_str().to_owned(),
            },
        }
    }
}
