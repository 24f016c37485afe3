//! The scheduler inside the service: starts each database's daily capture when it is due.
//!
//! It keeps the next run of every schedule in a min-heap, so each wake-up costs work in
//! proportion to the runs that are due, not to the number of schedules. Schedules change
//! rarely; a change rebuilds the heap. A run is claimed in the catalog by (database, local
//! date) before it starts, so it starts once even across restarts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Clock, DailyAt};
use crate::catalog::{Catalog, CatalogError, Origin, ScheduleRecord, TransferId};
use crate::transfer::{Engine, TransferError};

/// What a due run does: start a scheduled capture of a database. The service's engine does
/// it; the scheduler benchmark uses a stub.
pub trait Starter: Send + Sync {
    fn start(&self, database: &str) -> Result<TransferId, TransferError>;
}

impl Starter for Arc<Engine> {
    fn start(&self, database: &str) -> Result<TransferId, TransferError> {
        self.start_capture(Some(database), Origin::Scheduled)
            .map(|rec| rec.id)
    }
}

/// Never sleep longer than this, so that a wall clock that jumps (NTP, suspend) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The scheduler of one service.
pub struct Scheduler {
    catalog: Arc<Catalog>,
    starter: Arc<dyn Starter>,
    clock: Arc<dyn Clock>,
    changed: Notify,
}

/// A run waiting in the heap: when, whose, which local date.
type Pending = Reverse<(Timestamp, String, Date)>;

impl Scheduler {
    pub fn new(
        catalog: Arc<Catalog>,
        starter: Arc<dyn Starter>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            catalog,
            starter,
            clock,
            changed: Notify::new(),
        })
    }

    /// The clock schedules are computed with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Tells the running scheduler that schedules changed.
    pub fn schedules_changed(&self) {
        self.changed.notify_one();
    }

    /// Runs until `stop` fires.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let (mut heap, mut specs) = match self.plan() {
                Ok(plan) => plan,
                Err(e) => {
                    tracing::error!(
                        "scheduler: cannot read the schedules: {e}; retrying in a minute"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(MAX_SLEEP) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            };
            // Until the schedules change: start what is due, sleep until the next.
            loop {
                let now = self.clock.now();
                let mut due_now = Vec::new();
                while heap.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
                    if let Some(Reverse((due, db, date))) = heap.pop() {
                        if let Some(spec) = specs.get(&db) {
                            let (d, t) = spec.next_after(due.max(now));
                            heap.push(Reverse((t, db.clone(), d)));
                        }
                        due_now.push((db, date.to_string(), due));
                    }
                }
                if !due_now.is_empty() {
                    self.fire(due_now).await;
                }
                let wait = heap
                    .peek()
                    .map(|Reverse((t, _, _))| self.clock.until(*t))
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.changed.notified() => break,
                    _ = stop.cancelled() => return,
                }
            }
            specs.clear();
        }
    }

    /// The heap of next runs. A schedule whose latest run (at or before now) came after it
    /// was set and was never started gets that run now: a run missed while the service was
    /// down is made up once — only the latest, not one per missed day.
    fn plan(&self) -> Result<(BinaryHeap<Pending>, HashMap<String, DailyAt>), CatalogError> {
        let now = self.clock.now();
        let catalog = &self.catalog;
        let mut heap = BinaryHeap::new();
        let mut specs = HashMap::new();
        for s in catalog.schedules()? {
            let Ok(spec) = spec_of(&s) else {
                tracing::error!(database = %s.database, "scheduler: schedule with unknown zone {}", s.zone);
                continue;
            };
            let (date, due) = spec.latest_due(now);
            let claimed = catalog.run_claimed(&s.database, &date.to_string())?;
            let next = if due >= s.created_at && !claimed {
                (due, s.database.clone(), date)
            } else {
                let (d, t) = spec.next_after(now);
                (t, s.database.clone(), d)
            };
            heap.push(Reverse(next));
            specs.insert(s.database.clone(), spec);
        }
        Ok((heap, specs))
    }

    /// Claims the runs due now in one transaction, then starts the ones this node claimed.
    async fn fire(&self, runs: Vec<(String, String, Timestamp)>) {
        let (catalog, starter, now) =
            (self.catalog.clone(), self.starter.clone(), self.clock.now());
        let result = tokio::task::spawn_blocking(move || {
            let claimed = catalog.claim_runs(&runs, now)?;
            let mut started = Vec::new();
            for ((db, date, _), mine) in runs.into_iter().zip(claimed) {
                if !mine {
                    continue; // started already (before a restart, or by another node)
                }
                match starter.start(&db) {
                    Ok(id) => {
                        tracing::info!(database = %db, transfer = %id, "scheduled capture of {date} started");
                        started.push((db, date, id));
                    }
                    Err(e) => {
                        tracing::error!(database = %db, "scheduled capture of {date} could not start: {e}; it will be made up when the service starts again");
                        if let Err(e) = catalog.unclaim_run(&db, &date) {
                            tracing::error!(database = %db, "scheduler: cannot give up the claim of {date}: {e}");
                        }
                    }
                }
            }
            catalog.set_run_transfers(&started)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("scheduler: cannot record runs: {e}"),
            Err(e) => tracing::error!("scheduler: {e}"),
        }
    }
}

/// The parsed schedule of a stored record.
pub fn spec_of(s: &ScheduleRecord) -> Result<DailyAt, super::ScheduleError> {
    DailyAt::new(s.hour, s.minute, &s.zone)
}
