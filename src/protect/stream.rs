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
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use super::spool::{PartialMark, Sweep, resume_at};
use crate::pg::client::{query, quote_literal, tool_command};
use crate::pg::{PgTool, PgTools, PgUrl};
use crate::pitr::{self, BaseBackup, format_lsn, parse_lsn};
use crate::storage::Storage;
use crate::transfer::pipeline::{error_summary, spawn_tool, terminate};

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

/// What the receiver is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverState {
    #[default]
    Starting,
    Streaming,
    /// It exited with an error and is restarted with a growing delay (at most 30 s).
    Failing,
    Stopped,
}

/// A stream's state as the service sees it now: the live half of `protection:info`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Live {
    pub receiver: ReceiverState,
    /// Why the receiver last failed (pg_receivewal's error).
    pub receiver_error: Option<String>,
    pub receiver_restarts: u64,
    /// The server's current WAL position, its slot's, what the receiver has, and what the
    /// store has (every byte before `stored_lsn` is durable in the store).
    pub server_lsn: Option<String>,
    pub slot_lsn: Option<String>,
    pub received_lsn: Option<String>,
    pub stored_lsn: Option<String>,
    /// When WAL last went into the store.
    pub stored_at: Option<Timestamp>,
    /// WAL the server has written that is not in the store yet, in bytes and in seconds (how
    /// long ago the server was at the store's position).
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<u64>,
    /// The lag is over the limit (`Tuning::lag_limit` or 1 GiB): a problem.
    #[serde(skip)]
    pub(crate) lagging: bool,
    /// The slot holds this much WAL on the server (its distance from the server's position).
    pub slot_retained_bytes: Option<u64>,
    /// The slot's `wal_status`: `reserved` or `extended` is fine; `unreserved` means the server
    /// is about to remove WAL it holds (max_slot_wal_keep_size), `lost` that it did.
    pub slot_wal_status: Option<String>,
    /// A store failure of the last tick (WAL is kept in the spool and retried).
    pub store_error: Option<String>,
    /// The slot was found missing (dropped by hand?) and created again: WAL written meanwhile
    /// may be lost, which the gap check reports.
    pub slot_recreated_at: Option<Timestamp>,
    pub base_backup_running: bool,
    pub base_backup_error: Option<String>,
    pub next_base_backup_at: Option<Timestamp>,
    /// From the store (refreshed every minute and after each base backup).
    pub earliest: Option<Timestamp>,
    pub base_backups: usize,
    pub last_base_backup: Option<BaseBackup>,
    pub gaps: Vec<(String, String)>,
    /// The average WAL the server writes per day, since the oldest kept base backup.
    pub wal_bytes_per_day: Option<u64>,
}

impl Live {
    /// What is wrong, one line each: shown loudly by `protection:info` and the dashboard.
    pub fn problems(&self) -> Vec<String> {
        self.problems_by_kind()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// The kinds of problem there are now (what a notification is sent for when it appears).
    fn problem_kinds(&self) -> Vec<&'static str> {
        self.problems_by_kind()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn problems_by_kind(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.receiver == ReceiverState::Failing {
            let why = self.receiver_error.as_deref().unwrap_or("unknown error");
            out.push(("receiver", format!("WAL receiver failing: {why}")));
        }
        if let Some(e) = &self.store_error {
            out.push(("store", format!("cannot store WAL: {e}")));
        }
        if let (Some(s), Some(b)) = (self.lag_seconds, self.lag_bytes)
            && self.lagging
        {
            let behind = crate::format::bytes(b);
            out.push((
                "lag",
                format!("WAL archiving is {s} s ({behind}) behind the server"),
            ));
        }
        if let Some(status @ ("unreserved" | "lost")) = self.slot_wal_status.as_deref() {
            out.push((
                "slot",
                format!(
                    "the replication slot is {status}: the server removes (or removed) WAL that is not stored yet (max_slot_wal_keep_size); the store must catch up"
                ),
            ));
        }
        if let Some(at) = self.slot_recreated_at {
            out.push((
                "slot recreated",
                format!(
                    "the replication slot was missing and was created again at {at}: WAL written before may be missing"
                ),
            ));
        }
        for (from, to) in &self.gaps {
            out.push((
                "gap",
                format!(
                    "WAL gap: {from} .. {to} missing from the store (rollbacks cannot cross it; a new base backup starts a new window)"
                ),
            ));
        }
        if let Some(e) = &self.base_backup_error {
            out.push(("base backup", format!("last base backup failed: {e}")));
        }
        out
    }
}

const LAG_LIMIT_BYTES: u64 = 1 << 30;

/// A running `pg_receivewal` and the last lines it printed.
struct Receiver {
    child: tokio::process::Child,
    lines: Arc<Mutex<VecDeque<String>>>,
    started: Instant,
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
    sampled_at: Instant,
    checked_at: Option<Instant>,
    warned_lag_at: Option<Instant>,
    base: Option<tokio::task::JoinHandle<Result<BaseBackup, String>>>,
    next_base_at: Option<Timestamp>,
    /// The oldest base backup's start (time, LSN), for the WAL volume per day.
    oldest_base: Option<(Timestamp, u64)>,
    advance_failed_at: Option<Instant>,
    /// The problem kinds last notified.
    notified: Vec<&'static str>,
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
        sampled_at: Instant::now() - Duration::from_secs(60),
        checked_at: None,
        warned_lag_at: None,
        base: None,
        next_base_at: None,
        oldest_base: None,
        advance_failed_at: None,
        notified: Vec::new(),
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
    if let Some(mut r) = s.receiver.take() {
        let _ = terminate(&mut r.child, Duration::from_secs(5)).await;
    }
    if let Some(base) = s.base.take() {
        // Dropping the task kills pg_basebackup; its object is never described, so it does
        // not exist as a base backup.
        base.abort();
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

    /// Starts the receiver when it is not running and its restart delay has passed; notices
    /// when it exits.
    async fn watch_receiver(&mut self) {
        if let Some(r) = &mut self.receiver {
            match r.child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => {
                    // A receiver that streamed a while failed for a new reason: retry soon.
                    if r.started.elapsed() > Duration::from_secs(60) {
                        self.backoff = Duration::from_secs(1);
                    }
                    let lines: Vec<String> = r
                        .lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned()
                        .collect();
                    let why = explain(&error_summary(&lines), &self.setup.url);
                    tracing::warn!(
                        database = %self.setup.name,
                        "pg_receivewal exited ({status}): {why}; restarting in {} s",
                        self.backoff.as_secs()
                    );
                    self.fail(why);
                }
                Err(e) => self.fail(format!("cannot watch pg_receivewal: {e}")),
            }
            self.receiver = None;
            return;
        }
        if Instant::now() < self.restart_at {
            return;
        }
        match self.start_receiver().await {
            Ok(r) => {
                self.receiver = Some(r);
                self.set(|l| {
                    l.receiver = ReceiverState::Streaming;
                    l.receiver_error = None;
                });
            }
            Err(e) => {
                tracing::warn!(database = %self.setup.name, "cannot start the WAL receiver: {e}");
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.restart_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        self.set(|l| {
            l.receiver = ReceiverState::Failing;
            l.receiver_error = Some(why);
            l.receiver_restarts += 1;
        });
    }

    /// Reads where the slot is, makes sure the spool resumes there, and starts
    /// `pg_receivewal`.
    async fn start_receiver(&mut self) -> Result<Receiver, String> {
        let setup = &self.setup;
        let rows = query(
            &setup.tools,
            &setup.url,
            &format!(
                "SELECT setting, (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = {slot}), \
                 (SELECT wal_status FROM pg_replication_slots WHERE slot_name = {slot}) \
                 FROM pg_settings WHERE name = 'wal_segment_size'",
                slot = quote_literal(&setup.slot)
            ),
        )
        .await
        .map_err(|e| e.to_string())?;
        let row = rows
            .first()
            .ok_or("the server did not say its WAL segment size")?;
        let size: u64 = row[0]
            .parse()
            .map_err(|_| format!("unexpected wal_segment_size `{}`", row[0]))?;
        let status = row.get(2).map(String::as_str).unwrap_or("");
        let slot = match row.get(1).and_then(|l| parse_lsn(l)) {
            Some(lsn) => lsn,
            None => {
                // Dropped behind our back, or invalidated by max_slot_wal_keep_size (lost):
                // hold the WAL from now on, and say so loudly.
                let why = if status.is_empty() {
                    "is missing (dropped by hand?)"
                } else {
                    "was invalidated by the server (max_slot_wal_keep_size: WAL it held was removed)"
                };
                tracing::error!(
                    database = %setup.name,
                    "replication slot {} {why}; creating it again (WAL written meanwhile may be missing from the store)",
                    setup.slot
                );
                if !status.is_empty() {
                    query(
                        &setup.tools,
                        &setup.url,
                        &format!(
                            "SELECT pg_drop_replication_slot({})",
                            quote_literal(&setup.slot)
                        ),
                    )
                    .await
                    .map_err(|e| format!("cannot drop the invalidated slot {}: {e}", setup.slot))?;
                }
                super::create_slot(&setup.tools, &setup.url, &setup.slot).await?;
                self.set(|l| l.slot_recreated_at = Some(Timestamp::now()));
                return Err(format!(
                    "replication slot {} {why} and has been created again",
                    setup.slot
                ));
            }
        };
        let current = super::identify_system(&setup.tools, &setup.url)
            .await?
            .timeline;
        // The slot's position may lie before the server's last timeline switch (a slot made
        // just after a promotion): the spool must then resume on the timeline it lies on, and
        // pg_receivewal follows the switch from there.
        let timeline = if current > 1 {
            let history = super::timeline_history(&setup.tools, &setup.url, current).await?;
            timeline_of(slot, &history, current)
        } else {
            current
        };
        self.segment_size = size;
        self.slot_lsn = slot;
        self.stored_lsn = self.stored_lsn.max(slot);
        let spool = setup.spool.clone();
        tokio::task::spawn_blocking(move || resume_at(&spool, slot, size, timeline))
            .await
            .map_err(|e| e.to_string())??;

        let exe = setup
            .tools
            .newest(PgTool::ReceiveWal)
            .map_err(|e| e.to_string())?;
        let mut cmd = tool_command(&exe, Some(&setup.url));
        cmd.env("PGAPPNAME", app_name(&setup.slot))
            .arg("--directory")
            .arg(&setup.spool)
            .args([
                "--no-loop",
                "--verbose",
                "--status-interval=1",
                "--no-password",
                "--dbname",
                &setup.url.without_password(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_tool(&mut cmd, "pg_receivewal").map_err(|e| e.to_string())?;
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let (lines, name) = (lines.clone(), setup.name.clone());
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    tracing::debug!(database = %name, "pg_receivewal: {line}");
                    let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
                    if l.len() == 20 {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        tracing::info!(database = %setup.name, "WAL receiver started at {}", format_lsn(slot));
        Ok(Receiver {
            child,
            lines,
            started: Instant::now(),
        })
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
            stored_lsn: self.stored_lsn.max(self.slot_lsn),
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
            self.stored_lsn = self.stored_lsn.max(end);
        }
        let stored_any = done.stored_end.is_some() || done.partial_stored;
        self.set(|l| {
            l.store_error = done.error.clone();
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
            if let Some(mut r) = self.receiver.take() {
                let _ = terminate(&mut r.child, Duration::from_secs(5)).await;
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
        self.set(|l| {
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
                Err(e) => Err(format!("the base backup task failed: {e}")),
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
                        l.base_backup_error = Some(e);
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
        self.set(|l| l.base_backup_running = true);
        self.base = Some(tokio::spawn(async move {
            let b = pitr::take_base_backup(
                setup.storage.clone(),
                &setup.tools,
                &setup.url,
                &setup.name,
                setup.tuning.base_wal_wait,
            )
            .await?;
            let (storage, name, keep) = (setup.storage, setup.name, setup.keep_base as usize);
            let expired =
                tokio::task::spawn_blocking(move || pitr::expire(storage.as_ref(), &name, keep))
                    .await
                    .map_err(|e| e.to_string())?;
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
            .filter_map(|b| Some((b.started_at, parse_lsn(&b.start_lsn)?)))
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

/// The timeline that `lsn` lies on, from a timeline history (`(parent timeline, switch
/// point)`, oldest first) that ends in `current`.
fn timeline_of(lsn: u64, history: &[(u32, u64)], current: u32) -> u32 {
    history
        .iter()
        .find(|(_, switch)| lsn < *switch)
        .map(|(tli, _)| *tli)
        .unwrap_or(current)
}

/// `at + by`, or the end of time when that overflows.
fn later(at: Timestamp, by: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(by)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The application name the receiver connects with, to find it in `pg_stat_replication`.
fn app_name(slot: &str) -> String {
    format!("{slot}_receiver")
}

/// pg_receivewal's error, with what to do about the usual ones.
fn explain(summary: &str, url: &PgUrl) -> String {
    let user = url.user().unwrap_or_default();
    if summary.contains("no pg_hba.conf entry for replication connection") {
        format!(
            "{summary}. Add a line such as `host replication {user} <this host's address>/32 scram-sha-256` to pg_hba.conf and reload the server"
        )
    } else if summary.contains("must be superuser or replication role")
        || summary.contains("permission denied to start WAL sender")
    {
        format!("{summary}. The role needs REPLICATION: ALTER ROLE {user} REPLICATION")
    } else if summary.contains("requested WAL segment")
        && summary.contains("has already been removed")
    {
        format!(
            "{summary}. The server no longer has WAL the archive needs: there is a gap; a new base backup starts a new window"
        )
    } else if summary.is_empty() {
        "pg_receivewal exited without saying why".to_string()
    } else {
        summary.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_lies_on_the_timeline_whose_range_holds_it() {
        let history = [(1, 0x300_0000), (2, 0x500_0000)];
        assert_eq!(timeline_of(0x200_0000, &history, 3), 1);
        assert_eq!(timeline_of(0x300_0000, &history, 3), 2);
        assert_eq!(timeline_of(0x600_0000, &history, 3), 3);
        assert_eq!(timeline_of(0x100, &[], 1), 1);
    }
}
