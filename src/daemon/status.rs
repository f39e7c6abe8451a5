//! What the status page shows, gathered from the journal (each target's runs, archives and
//! failures; re-read at most every [`JOURNAL_EVERY`], so that reloading the page cannot load
//! the journal the transfers write to), the scheduler (runs in progress, next runs) and the
//! progress board (transfers in flight, live).
//! Must not: render anything (that is `server::page`) or write anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::server::StatusSource;
use crate::server::page::{StatusView, TargetView};
use atlas_archiver_engine::journal::Journal;
use atlas_archiver_engine::pipeline::facts::{TargetSummary, target_summaries};
use atlas_archiver_engine::progress::Board;
use atlas_archiver_engine::target::Target;

/// The journal is read again for the page at most this often.
const JOURNAL_EVERY: Duration = Duration::from_secs(2);

/// The journal's part of the page, or why it could not be read.
type Summaries = Result<Vec<TargetSummary>, String>;

/// When each target runs next, as the scheduling loop last planned it.
#[derive(Debug, Clone, Default)]
pub struct NextRuns(Arc<Mutex<HashMap<Target, DateTime<Utc>>>>);

impl NextRuns {
    /// Records the plan of one target.
    pub fn set(&self, target: &Target, due: Option<DateTime<Utc>>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match due {
            Some(due) => map.insert(target.clone(), due),
            None => map.remove(target),
        };
    }

    fn get(&self, target: &Target) -> Option<DateTime<Utc>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
            .copied()
    }
}

/// The daemon's [`StatusSource`].
pub struct DaemonStatus {
    journal: Journal,
    targets: Box<dyn Fn() -> Vec<Target> + Send + Sync>,
    started: DateTime<Utc>,
    board: Board,
    next_runs: NextRuns,
    running: Box<dyn Fn() -> Vec<Target> + Send + Sync>,
    credential_expires: Option<DateTime<Utc>>,
    cache: tokio::sync::Mutex<Option<(Instant, Summaries)>>,
}

impl DaemonStatus {
    /// For the targets `targets` gives (they change as discovery finds clusters); `running`
    /// says which targets have a run in progress, `credential_expires` when the Atlas secret
    /// ends.
    pub fn new(
        journal: Journal,
        targets: impl Fn() -> Vec<Target> + Send + Sync + 'static,
        (board, next_runs): (Board, NextRuns),
        running: impl Fn() -> Vec<Target> + Send + Sync + 'static,
        credential_expires: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            credential_expires,
            journal,
            targets: Box::new(targets),
            started: Utc::now(),
            board,
            next_runs,
            running: Box::new(running),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    async fn summaries(&self) -> Summaries {
        let mut cache = self.cache.lock().await;
        if let Some((at, summaries)) = cache.as_ref()
            && at.elapsed() < JOURNAL_EVERY
        {
            return summaries.clone();
        }
        let read = async {
            let history = self.journal.target_history().await?;
            target_summaries(&self.journal, &history, &(self.targets)(), self.started).await
        };
        let summaries = read.await.map_err(|e| e.to_string());
        *cache = Some((Instant::now(), summaries.clone()));
        summaries
    }
}

#[async_trait]
impl StatusSource for DaemonStatus {
    async fn status(&self) -> StatusView {
        let (summaries, journal_error) = match self.summaries().await {
            Ok(s) => (s, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let running = (self.running)();
        StatusView {
            now: Utc::now(),
            targets: summaries
                .into_iter()
                .map(|summary| TargetView {
                    running: running.contains(&summary.target),
                    next_run: self.next_runs.get(&summary.target),
                    summary,
                })
                .collect(),
            transfers: self.board.transfers(),
            journal_error,
            credential_expires: self.credential_expires,
        }
    }
}
