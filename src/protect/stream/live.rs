//! What a protected database's stream reports: the receiver's state, the positions, the lag
//! and the problems `protection:info`, the dashboard and notifications show.

use jiff::Timestamp;
use serde::Serialize;

use crate::pitr::BaseBackup;

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
    /// The lag in seconds over the last day, the worst of each five minutes, oldest first.
    pub lag_history: Vec<(Timestamp, u64)>,
}

/// The lag over the last day in five-minute buckets, each the worst lag seen in it: what the
/// dashboard charts. At most 288 buckets, whatever the uptime.
#[derive(Clone, Debug, Default)]
pub struct LagHistory {
    buckets: std::collections::VecDeque<(Timestamp, u64)>,
}

impl LagHistory {
    const BUCKET_SECS: i64 = 300;
    const KEEP_SECS: i64 = 24 * 3600;

    /// Notes a lag of `lag_seconds` seen at `at`.
    pub fn record(&mut self, at: Timestamp, lag_seconds: u64) {
        let start = at.as_second() - at.as_second().rem_euclid(Self::BUCKET_SECS);
        match self.buckets.back_mut() {
            Some((t, worst)) if t.as_second() == start => *worst = (*worst).max(lag_seconds),
            _ => self
                .buckets
                .push_back((Timestamp::from_second(start).unwrap_or(at), lag_seconds)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(t, _)| t.as_second() <= at.as_second() - Self::KEEP_SECS)
        {
            self.buckets.pop_front();
        }
    }

    /// The buckets, oldest first.
    pub fn points(&self) -> Vec<(Timestamp, u64)> {
        self.buckets.iter().copied().collect()
    }
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
    pub(super) fn problem_kinds(&self) -> Vec<&'static str> {
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

pub(super) const LAG_LIMIT_BYTES: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_history_keeps_the_worst_of_each_five_minutes_for_a_day() {
        let mut h = LagHistory::default();
        let t0: Timestamp = "2026-11-30T00:00:10Z".parse().unwrap();
        h.record(t0, 1);
        h.record(t0 + jiff::SignedDuration::from_secs(60), 7);
        h.record(t0 + jiff::SignedDuration::from_secs(120), 2);
        h.record(t0 + jiff::SignedDuration::from_secs(300), 0);
        let p = h.points();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1, 7);
        assert_eq!(p[0].0.to_string(), "2026-11-30T00:00:00Z");
        // A day of samples every two seconds keeps 288 buckets.
        for i in 0..(2 * 24 * 3600 / 2) {
            h.record(t0 + jiff::SignedDuration::from_secs(i * 2), 1);
        }
        assert_eq!(h.points().len(), 288);
    }
}
