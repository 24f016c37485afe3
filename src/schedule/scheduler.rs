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
use crate::catalog::{Origin, ScheduleRecord};
use crate::transfer::Engine;

/// Never sleep longer than this, so that a wall clock that jumps (NTP, suspend) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The scheduler of one service.
pub struct Scheduler {
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
    changed: Notify,
}

/// A run waiting in the heap: when, whose, which local date.
type Pending = Reverse<(Timestamp, String, Date)>;

impl Scheduler {
    pub fn new(engine: Arc<Engine>, clock: Arc<dyn Clock>) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            engine,
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
                while let Some(Reverse((due, db, date))) = heap.peek().cloned() {
                    if due > now {
                        break;
                    }
                    heap.pop();
                    self.fire(&db, date, due).await;
                    if let Some(spec) = specs.get(&db) {
                        let (d, t) = spec.next_after(due.max(now));
                        heap.push(Reverse((t, db, d)));
                    }
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
    fn plan(&self) -> Result<(BinaryHeap<Pending>, HashMap<String, DailyAt>), String> {
        let now = self.clock.now();
        let catalog = self.engine.catalog();
        let mut heap = BinaryHeap::new();
        let mut specs = HashMap::new();
        for s in catalog.schedules().map_err(|e| e.to_string())? {
            let Ok(spec) = spec_of(&s) else {
                tracing::error!(database = %s.database, "scheduler: schedule with unknown zone {}", s.zone);
                continue;
            };
            let (date, due) = spec.latest_due(now);
            let claimed = catalog
                .run_claimed(&s.database, &date.to_string())
                .map_err(|e| e.to_string())?;
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

    async fn fire(&self, db: &str, date: Date, due: Timestamp) {
        let catalog = self.engine.catalog();
        let date_s = date.to_string();
        match catalog.claim_run(db, &date_s, due, self.clock.now()) {
            Ok(true) => {}
            Ok(false) => return, // started already (before a restart, or by another node)
            Err(e) => {
                tracing::error!(database = %db, "scheduler: cannot claim the run of {date_s}: {e}");
                return;
            }
        }
        match self.engine.start_capture(Some(db), Origin::Scheduled) {
            Ok(rec) => {
                tracing::info!(database = %db, transfer = %rec.id, "scheduled capture of {date_s} started");
                if let Err(e) = catalog.set_run_transfer(db, &date_s, rec.id) {
                    tracing::warn!(database = %db, "scheduler: cannot note the run's transfer: {e}");
                }
            }
            Err(e) => {
                tracing::error!(database = %db, "scheduled capture of {date_s} could not start: {e}")
            }
        }
    }
}

/// The parsed schedule of a stored record.
pub fn spec_of(s: &ScheduleRecord) -> Result<DailyAt, super::ScheduleError> {
    DailyAt::new(s.hour, s.minute, &s.zone)
}
