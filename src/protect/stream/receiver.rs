//! The stream's `pg_receivewal`: started where the slot is (the spool made to resume there),
//! watched, restarted with a growing delay, and its failures explained.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::super::ReplicationError;
use super::super::spool::{SpoolError, resume_at};
use super::{ReceiverState, Stream};
use crate::pg::client::{PgError, query, quote_literal, tool_command};
use crate::pg::{PgTool, PgUrl, ToolError};
use crate::pitr::{format_lsn, parse_lsn};
use crate::proc::{RunError, Running, error_summary};

/// Why the receiver could not be started (it is tried again after a delay).
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    #[error(transparent)]
    Query(#[from] PgError),
    #[error("the server did not say its WAL segment size")]
    NoSegmentSize,
    #[error("unexpected wal_segment_size `{0}`")]
    BadSegmentSize(String),
    #[error("cannot drop the invalidated slot {slot}: {source}")]
    DropSlot {
        slot: String,
        #[source]
        source: PgError,
    },
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The slot was missing or invalidated and was created again: the next start uses it.
    #[error("replication slot {slot} {why} and has been created again")]
    SlotRecreated { slot: String, why: &'static str },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the spool could not be prepared: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    NoTool(#[from] ToolError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A running `pg_receivewal` (which keeps the last lines it printed).
pub(super) struct Receiver {
    pub(super) child: Running,
    pub(super) started: Instant,
}

impl Stream {
    /// Starts the receiver when it is not running and its restart delay has passed; notices
    /// when it exits.
    pub(super) async fn watch_receiver(&mut self) {
        if let Some(r) = &mut self.receiver {
            let exited = match r.child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => Ok((status, r.started.elapsed())),
                Err(e) => Err(e),
            };
            let r = self.receiver.take();
            match exited {
                Ok((status, ran)) => {
                    // A receiver that streamed a while failed for a new reason: retry soon.
                    if ran > Duration::from_secs(60) {
                        self.backoff = Duration::from_secs(1);
                    }
                    let lines = match r {
                        Some(r) => r
                            .child
                            .exited()
                            .await
                            .map(|f| f.stderr.lines())
                            .unwrap_or_default(),
                        None => Vec::new(),
                    };
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
                self.fail(e.to_string());
            }
        }
    }

    pub(super) fn fail(&mut self, why: String) {
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
    async fn start_receiver(&mut self) -> Result<Receiver, StartError> {
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
        .await?;
        let row = rows.first().ok_or(StartError::NoSegmentSize)?;
        let size: u64 = row[0]
            .parse()
            .map_err(|_| StartError::BadSegmentSize(row[0].clone()))?;
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
                    .map_err(|source| StartError::DropSlot {
                        slot: setup.slot.clone(),
                        source,
                    })?;
                }
                crate::protect::create_slot(&setup.tools, &setup.url, &setup.slot).await?;
                self.set(|l| l.slot_recreated_at = Some(Timestamp::now()));
                return Err(StartError::SlotRecreated {
                    slot: self.setup.slot.clone(),
                    why,
                });
            }
        };
        let current = crate::protect::identify_system(&setup.tools, &setup.url)
            .await?
            .timeline;
        // The slot's position may lie before the server's last timeline switch (a slot made
        // just after a promotion): the spool must then resume on the timeline it lies on, and
        // pg_receivewal follows the switch from there.
        let timeline = if current > 1 {
            let history =
                crate::protect::timeline_history(&setup.tools, &setup.url, current).await?;
            timeline_of(slot, &history, current)
        } else {
            current
        };
        self.segment_size = size;
        self.slot_lsn = slot;
        self.stored_lsn = self.stored_lsn.max(slot);
        let spool = setup.spool.clone();
        tokio::task::spawn_blocking(move || {
            resume_at(&spool, crate::pg::wal_names::Lsn(slot), size, timeline)
        })
        .await??;

        let exe = setup.tools.newest(PgTool::ReceiveWal)?;
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
            .keep_lines(20)
            .grace(Duration::from_secs(5))
            .log_to({
                let name = setup.name.clone();
                Arc::new(
                    move |line: &str| tracing::debug!(database = %name, "pg_receivewal: {line}"),
                )
            });
        let child = cmd.spawn()?;
        tracing::info!(database = %setup.name, "WAL receiver started at {}", format_lsn(slot));
        Ok(Receiver {
            child,
            started: Instant::now(),
        })
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

/// The application name the receiver connects with, to find it in `pg_stat_replication`.
pub(super) fn app_name(slot: &str) -> String {
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
