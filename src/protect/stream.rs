//! One protected database's WAL stream and base backups.
//!
//! The stock `pg_receivewal` writes the server's WAL into a spool directory as the server
//! writes it (no slot of its own). Each tick, completed segments go into the store (the same
//! objects `wal-push` writes) and only then is the database's replication slot advanced past
//! them, so the server keeps every byte of WAL until it is durable in the store. The segment
//! still filling is uploaded as `….partial` every few seconds, so the store is seconds behind
//! the server even when a segment takes hours to fill. Base backups are taken on a period.
//!
//! Restarts resume without a gap: `pg_receivewal` starts after the newest file in the spool;
//! with an empty spool, a zero-filled `.partial` of the segment holding the slot's position
//! makes it start at that segment (everything before the slot is stored, since the slot only
//! moves after that). Every completed segment in the spool is stored, whatever the slot says.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

mod live;
mod receiver;

use live::LAG_LIMIT_BYTES;
pub use live::{Live, ReceiverState};
use receiver::{Receiver, app_name};

use super::spool::{PartialMark, Sweep};
use crate::pg::client::{query, quote_literal};
use crate::pg::{PgTools, PgUrl};
use crate::pitr::{self, BaseBackup, BaseBackupError, format_lsn, parse_lsn};
use crate::storage::Storage;

/// What a stream needs to run.
#[derive(Clone)]
pub(super) struct Setup {
    pub name: String,
    pub slot: String,
    pub url: PgUrl,
    pub storage: Arc<dyn Storage>,
    pub tools: PgTools,
    pub spool: PathBuf,
    pub base_every: Duration,
    pub keep_base: u32,
    /// The lag limit, base backup retry, partial upload and WAL wait timings.
    pub tuning: crate::config::Tuning,
    /// Where problems are reported as they appear and go.
    pub notifier: Arc<crate::notify::Notifier>,
    /// When the protection began: the first base backup is the first one since then (the
    /// archive may hold older ones of another cluster or slot, which a gap may separate
    /// from this stream).
    pub since: Timestamp,
}

/// The supervisor's own state.
struct Stream {
    setup: Setup,
    live: Arc<Mutex<Live>>,
    receiver: Option<Receiver>,
    restart_at: Instant,
    backoff: Duration,
    segment_size: u64,
    /// Where the slot is: everything before it is in the store.
    slot_lsn: u64,
    /// The end of the newest whole segment stored, and what the newest partial upload
    /// surely held.
    stored_lsn: u64,
    partial_lsn: u64,
    received_lsn: Option<u64>,
    partial: Option<PartialMark>,
    partial_at: Instant,
    /// (time, server position) every two seconds while the store is behind: how long ago
    /// the server was where the store is.
    samples: VecDeque<(Timestamp, u64)>,
    /// The lag over the last day, for the dashboard's chart.
    lag_history: live::LagHistory,
    sampled_at: Instant,
    checked_at: Option<Instant>,
    warned_lag_at: Option<Instant>,
    base: Option<tokio::task::JoinHandle<Result<BaseBackup, BaseBackupError>>>,
    next_base_at: Option<Timestamp>,
    /// The oldest base backup's start (time, LSN), for the WAL volume per day.
    oldest_base: Option<(Timestamp, u64)>,
    advance_failed_at: Option<Instant>,
    /// The problem kinds last notified.
    notified: Vec<&'static str>,
    /// Fires when the stream stops: a running base backup stops with it.
    stop: CancellationToken,
}

/// Runs the stream until `stop`; never returns early (failures are retried and reported in
/// `live`).
pub(super) async fn run(setup: Setup, live: Arc<Mutex<Live>>, stop: CancellationToken) {
    let mut s = Stream {
        setup,
        live,
        receiver: None,
        restart_at: Instant::now(),
        backoff: Duration::from_secs(1),
        segment_size: 0,
        slot_lsn: 0,
        stored_lsn: 0,
        partial_lsn: 0,
        received_lsn: None,
        partial: None,
        partial_at: Instant::now(),
        samples: VecDeque::new(),
        lag_history: live::LagHistory::default(),
        sampled_at: Instant::now() - Duration::from_secs(60),
        checked_at: None,
        warned_lag_at: None,
        base: None,
        next_base_at: None,
        oldest_base: None,
        advance_failed_at: None,
        notified: Vec::new(),
        stop: stop.clone(),
    };
    // A completed segment waits at most this long for its upload to start.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        s.step().await;
    }
    if let Some(r) = s.receiver.take() {
        let _ = r.child.stop().await;
    }
    if let Some(base) = s.base.take() {
        // The stop reached the base backup too: pg_basebackup is terminated and its object
        // aborted (never described, so it does not exist as a base backup). Should that
        // take too long, dropping the task kills pg_basebackup.
        let abort = base.abort_handle();
        if tokio::time::timeout(Duration::from_secs(15), base)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    s.set(|l| l.receiver = ReceiverState::Stopped);
}

impl Stream {
    fn set(&self, f: impl FnOnce(&mut Live)) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut live);
    }

    async fn step(&mut self) {
        self.watch_receiver().await;
        if self.segment_size == 0 {
            // Not started yet (or the server was unreachable): nothing to store.
            return;
        }
        self.store_spool().await;
        self.sample().await;
        self.base_backups().await;
        self.check_archive().await;
        self.notify();
    }

    /// Notifies when a kind of problem appears, and when the last one goes.
    fn notify(&mut self) {
        let (kinds, problems) = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            (live.problem_kinds(), live.problems())
        };
        if kinds == self.notified {
            return;
        }
        let appeared = kinds.iter().any(|k| !self.notified.contains(k));
        let (event, message) = if appeared {
            ("protection.problem", problems.join("; "))
        } else if kinds.is_empty() {
            (
                "protection.recovered",
                "no problem any more: WAL streams into the store".to_string(),
            )
        } else {
            self.notified = kinds;
            return;
        };
        self.setup.notifier.send(crate::notify::Event {
            event,
            database: self.setup.name.clone(),
            id: None,
            message,
            at: Timestamp::now(),
        });
        self.notified = kinds;
    }

    /// Stores what the spool has ready and moves the slot past it.
    async fn store_spool(&mut self) {
        let partial_due = self.partial_at.elapsed() >= self.setup.tuning.partial_every;
        // What the receiver had reported before the partial file is read: the upload holds
        // at least this much.
        let received = self.received_lsn;
        let job = Sweep {
            spool: self.setup.spool.clone(),
            storage: self.setup.storage.clone(),
            name: self.setup.name.clone(),
            stored_lsn: crate::pg::wal_names::Lsn(self.stored_lsn.max(self.slot_lsn)),
            segment_size: self.segment_size,
            partial: partial_due.then(|| self.partial.clone()),
        };
        let done = match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(d) => d,
            Err(e) => {
                self.set(|l| l.store_error = Some(e.to_string()));
                return;
            }
        };
        if partial_due {
            self.partial_at = Instant::now();
        }
        if let Some(mark) = done.partial {
            self.partial = Some(mark);
        }
        // Uploaded now, or unchanged since the last upload: either way the store has what
        // the receiver had reported before this pass.
        if (done.partial_stored || done.partial_current)
            && let Some(r) = received
        {
            self.partial_lsn = self.partial_lsn.max(r);
        }
        if let Some(end) = done.stored_end {
            self.stored_lsn = self.stored_lsn.max(end.0);
        }
        let stored_any = done.stored_end.is_some() || done.partial_stored;
        self.set(|l| {
            l.store_error = done.error.as_ref().map(ToString::to_string);
            if stored_any {
                l.stored_at = Some(Timestamp::now());
            }
        });
        if let Some(e) = &done.error {
            tracing::warn!(database = %self.setup.name, "cannot store WAL (kept in the spool, retrying): {e}");
        }
        if self.stored_lsn > self.slot_lsn {
            let sql = format!(
                "SELECT pg_replication_slot_advance({}, {})",
                quote_literal(&self.setup.slot),
                quote_literal(&format_lsn(self.stored_lsn))
            );
            // Tried at most every 10 s while it fails: the WAL stays held (and stored).
            if self
                .advance_failed_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
            {
                return;
            }
            match query(&self.setup.tools, &self.setup.url, &sql).await {
                Ok(_) => {
                    self.slot_lsn = self.stored_lsn;
                    self.advance_failed_at = None;
                }
                Err(e) => {
                    self.advance_failed_at = Some(Instant::now());
                    tracing::warn!(database = %self.setup.name, "cannot advance slot {} (the server keeps the WAL meanwhile): {e}", self.setup.slot)
                }
            }
        }
    }

    /// Every two seconds: where the server, the slot and the receiver are, and the lag.
    async fn sample(&mut self) {
        if self.sampled_at.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.sampled_at = Instant::now();
        let sql = format!(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, \
             (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = {slot}), \
             (SELECT max(write_lsn) FROM pg_stat_replication WHERE application_name = {app}), \
             (SELECT wal_status FROM pg_replication_slots WHERE slot_name = {slot})",
            slot = quote_literal(&self.setup.slot),
            app = quote_literal(&app_name(&self.setup.slot)),
        );
        let Ok(rows) = query(&self.setup.tools, &self.setup.url, &sql).await else {
            return;
        };
        let field = |i: usize| {
            rows.first()
                .and_then(|r| r.get(i))
                .and_then(|v| parse_lsn(v))
        };
        let (Some(server), slot, received) = (field(0), field(1), field(2)) else {
            return;
        };
        let wal_status = rows
            .first()
            .and_then(|r| r.get(3))
            .filter(|s| !s.is_empty())
            .cloned();
        if slot.is_none() {
            // Noticed by the next start of the receiver, which recreates it.
            if let Some(r) = self.receiver.take() {
                let _ = r.child.stop().await;
                self.fail(format!(
                    "replication slot {} is missing or invalidated",
                    self.setup.slot
                ));
            }
        }
        if received.is_some() {
            self.received_lsn = received;
        }
        let stored = self.stored_lsn.max(self.partial_lsn);
        let now = Timestamp::now();
        self.samples.push_back((now, server));
        // Keep one sample at or before the stored position (when the server was there);
        // drop older ones, and bound the history at a day of samples.
        while self.samples.len() > 1 && self.samples[1].1 <= stored {
            self.samples.pop_front();
        }
        if self.samples.len() > 43_200 {
            self.samples.pop_front();
        }
        let lag_bytes = server.saturating_sub(stored);
        let lag_seconds = if lag_bytes == 0 {
            0
        } else {
            self.samples
                .front()
                .map(|(t, _)| now.duration_since(*t).as_secs().max(0) as u64)
                .unwrap_or(0)
        };
        // Further behind than the limit (`Tuning::lag_limit`, default 300 s) is a problem.
        let lagging =
            lag_seconds > self.setup.tuning.lag_limit.as_secs() || lag_bytes > LAG_LIMIT_BYTES;
        if lagging
            && self
                .warned_lag_at
                .is_none_or(|t| t.elapsed() > Duration::from_secs(600))
        {
            tracing::warn!(
                database = %self.setup.name,
                "WAL archiving is {lag_seconds} s ({}) behind the server",
                crate::format::bytes(lag_bytes)
            );
            self.warned_lag_at = Some(Instant::now());
        }
        let per_day = self.per_day(server);
        self.lag_history.record(now, lag_seconds);
        let lag_history = self.lag_history.points();
        self.set(|l| {
            l.lag_history = lag_history;
            l.server_lsn = Some(format_lsn(server));
            l.slot_lsn = slot.map(format_lsn);
            l.received_lsn = received.map(format_lsn);
            l.stored_lsn = Some(format_lsn(stored));
            l.lag_bytes = Some(lag_bytes);
            l.lag_seconds = Some(lag_seconds);
            l.lagging = lagging;
            l.slot_retained_bytes = slot.map(|s| server.saturating_sub(s));
            l.slot_wal_status = wal_status;
            if per_day.is_some() {
                l.wal_bytes_per_day = per_day;
            }
        });
    }

    /// WAL per day from the oldest base backup's start to now.
    fn per_day(&self, server: u64) -> Option<u64> {
        let (since, from) = self.oldest_base?;
        let secs = Timestamp::now().duration_since(since).as_secs_f64();
        (secs >= 60.0).then(|| (server.saturating_sub(from) as f64 * 86_400.0 / secs) as u64)
    }

    /// Starts a base backup when one is due and the stream runs; records how it ended.
    async fn base_backups(&mut self) {
        if let Some(task) = &self.base {
            if !task.is_finished() {
                return;
            }
            let Some(task) = self.base.take() else { return };
            let retry = self.setup.tuning.base_retry;
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(BaseBackupError::Task(e)),
            };
            match result {
                Ok(b) => {
                    tracing::info!(database = %self.setup.name, "base backup {} stored", b.id);
                    let next = later(b.started_at, self.setup.base_every);
                    self.next_base_at = Some(next);
                    self.set(|l| {
                        l.base_backup_error = None;
                        l.base_backup_running = false;
                        l.next_base_backup_at = Some(next);
                    });
                    self.checked_at = None;
                }
                Err(e) => {
                    tracing::error!(database = %self.setup.name, "base backup failed: {e}");
                    let next = later(Timestamp::now(), retry);
                    self.next_base_at = Some(next);
                    self.set(|l| {
                        l.base_backup_error = Some(e.to_string());
                        l.base_backup_running = false;
                        l.next_base_backup_at = Some(next);
                    });
                }
            }
            return;
        }
        let Some(next) = self.next_base_at else {
            return; // not known until the archive was read
        };
        if Timestamp::now() < next || self.receiver.is_none() {
            return;
        }
        let setup = self.setup.clone();
        let stop = self.stop.clone();
        self.set(|l| l.base_backup_running = true);
        self.base = Some(tokio::spawn(async move {
            let b = pitr::take_base_backup_until(
                setup.storage.clone(),
                &setup.tools,
                &setup.url,
                &setup.name,
                setup.tuning.base_wal_wait,
                &stop,
            )
            .await?;
            let (storage, name, keep) = (setup.storage, setup.name, setup.keep_base as usize);
            let expired =
                tokio::task::spawn_blocking(move || pitr::expire(storage.as_ref(), &name, keep))
                    .await?;
            match expired {
                Ok(x) if !x.base_backups.is_empty() => tracing::info!(
                    "expired base backups {:?} and {} WAL files",
                    x.base_backups,
                    x.wal_files
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot expire old base backups: {e}"),
            }
            Ok(b)
        }));
    }

    /// Every minute (and after a base backup): the window, base backups and gaps, from the
    /// store.
    async fn check_archive(&mut self) {
        if self
            .checked_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.checked_at = Some(Instant::now());
        let (storage, name) = (self.setup.storage.clone(), self.setup.name.clone());
        let info =
            tokio::task::spawn_blocking(move || pitr::archive_info(storage.as_ref(), &name)).await;
        let info = match info {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                tracing::warn!(database = %self.setup.name, "cannot read the archive: {e}");
                return;
            }
            Err(_) => return,
        };
        if !info.gaps.is_empty() {
            tracing::error!(database = %self.setup.name, "WAL gaps in the store: {:?}", info.gaps);
        }
        if self.next_base_at.is_none() {
            self.next_base_at = Some(
                info.base_backups
                    .iter()
                    .rfind(|b| b.started_at >= self.setup.since)
                    .map(|b| later(b.started_at, self.setup.base_every))
                    .unwrap_or_else(Timestamp::now),
            );
        }
        self.oldest_base = info
            .base_backups
            .iter()
            .map(|b| (b.started_at, b.start_lsn.0))
            .min_by_key(|(t, _)| *t);
        let next = self.next_base_at;
        self.set(|l| {
            l.earliest = info.earliest;
            l.base_backups = info.base_backups.len();
            l.last_base_backup = info.base_backups.last().cloned();
            l.gaps = info.gaps.clone();
            l.next_base_backup_at = next;
        });
    }
}

/// `at + by`, or the end of time when that overflows.
fn later(at: Timestamp, by: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(by)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}
