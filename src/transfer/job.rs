//! What every running transfer has: its cancellation token, its progress counter, and a log
//! that reaches the catalog in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, TransferId};

/// Why a running transfer was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A user asked (`backups:cancel`): the transfer ends Cancelled.
    Cancel,
    /// The service is shutting down: the transfer ends Failed (interrupted).
    Shutdown,
}

/// The part of a running transfer that others hold: to stop it and to read its progress.
#[derive(Default)]
pub struct Control {
    pub cancel: CancellationToken,
    progress: AtomicU64,
    stop_reason: std::sync::Mutex<Option<StopReason>>,
}

impl Control {
    /// Asks the transfer to stop; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.cancel.cancel();
    }

    /// Why the transfer was told to stop, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        *self.stop_reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes processed so far.
    pub fn bytes(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

/// The handle a transfer's work uses to log, count progress and notice cancellation.
#[derive(Clone)]
pub struct JobCtx {
    pub id: TransferId,
    pub control: Arc<Control>,
    log_tx: mpsc::UnboundedSender<(Timestamp, String)>,
}

/// The log writer task behind a [`JobCtx`]; [`LogWriter::close`] flushes it.
pub struct LogWriter {
    task: JoinHandle<()>,
}

impl JobCtx {
    /// A context for transfer `id` whose log lines go to `catalog`.
    pub fn new(id: TransferId, catalog: Arc<dyn Catalog>) -> (JobCtx, LogWriter) {
        let (log_tx, mut rx) = mpsc::unbounded_channel::<(Timestamp, String)>();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 500 {
                    match rx.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
                let catalog = catalog.clone();
                let written =
                    tokio::task::spawn_blocking(move || catalog.append_logs(id, &batch)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(transfer = %id, "could not write log lines: {e}"),
                    Err(e) => tracing::error!(transfer = %id, "log writer failed: {e}"),
                }
            }
        });
        let ctx = JobCtx {
            id,
            control: Arc::new(Control::default()),
            log_tx,
        };
        (ctx, LogWriter { task })
    }

    /// Adds a line to the transfer's log (and the service's own log).
    pub fn log(&self, line: &str) {
        tracing::info!(transfer = %self.id, "{line}");
        let _ = self.log_tx.send((Timestamp::now(), line.to_string()));
    }

    /// Counts `n` more bytes processed.
    pub fn add_progress(&self, n: u64) {
        self.control.progress.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes processed so far.
    pub fn bytes(&self) -> u64 {
        self.control.bytes()
    }

    /// The token that fires when the transfer is told to stop.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.control.cancel
    }

    /// Whether the transfer has been told to stop.
    pub fn is_cancelled(&self) -> bool {
        self.control.cancel.is_cancelled()
    }

    /// Where a tool's stderr lines go: this transfer's log.
    pub fn sink(&self) -> crate::proc::Sink {
        let ctx = self.clone();
        std::sync::Arc::new(move |line: &str| ctx.log(line))
    }
}

impl LogWriter {
    /// Waits until every line logged through `ctx` (which is consumed) is in the catalog.
    pub async fn close(self, ctx: JobCtx) {
        drop(ctx);
        let _ = self.task.await;
    }
}

impl crate::stream::Progress for JobCtx {
    fn add_progress(&self, n: u64) {
        JobCtx::add_progress(self, n)
    }

    fn is_cancelled(&self) -> bool {
        JobCtx::is_cancelled(self)
    }
}
