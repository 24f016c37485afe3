//! Transfers: the jobs that move data — captures (database → storage) and restores
//! (backup → database) — and the [`Engine`] that launches, tracks, cancels and finishes them.
//!
//! Each transfer runs as one task: it waits for a free slot, runs its work (`capture::run` or
//! `restore::run`) with a [`job::JobCtx`] for logs, progress and cancellation, then records how
//! it ended. Whatever happens, a capture that did not succeed leaves no object behind.
//!
//! Here: the engine itself (slots, the running transfers, cancel, how each ended). Around it:
//! `start.rs` (checking and starting each kind of transfer), `work.rs` (a job in progress),
//! `recover.rs` (start-up recovery), `expire.rs` (retention runs after a capture),
//! `links.rs` (signed and presigned download links), `rebuild.rs` (`catalog:rebuild`),
//! `error.rs`. The engine gets its catalog, storage, tools, registry, clock and notifier from
//! the composition root (`crate::service`); it hands none of them out.

pub mod atomic;
mod by_database;
mod capture;
pub mod claims;
mod copy;
mod download;
mod error;
mod expire;
pub mod hold;
pub mod job;
pub mod links;
pub mod manifest;
mod pull;
pub mod rebuild;
mod recover;
mod restore;
pub mod restore_url;
mod roles;
mod server;
mod start;
mod upload;
mod verify;
mod work;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::catalog::{
    Catalog, Origin, TransferId, TransferKind, TransferRecord, TransferState, VerifyMode,
};
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::pg::{PgTools, PgUrl};
use crate::registry::Registry;
use crate::storage::Storage;
use claims::Claims;
use job::{Control, JobCtx, StopReason};
use work::{Held, Job};

pub use crate::registry::confirm_word;
pub use download::{DumpForm, PlainDump};
pub use error::{TransferError, UploadError};
pub use links::{BackupUrl, LinkRefused, Links};
pub use pull::DumpStream;
pub use rebuild::{RebuildReport, rebuild_catalog};
pub use server::SetRestore;
pub use start::RestoreExtras;
pub use upload::Upload;

/// How a transfer's work ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum JobEnd {
    /// Told to stop (cancel or shutdown); the stop reason says which.
    Stopped,
    /// Failed, with the message for the user.
    Failed(String),
}

impl JobEnd {
    fn failed(msg: impl std::fmt::Display) -> JobEnd {
        JobEnd::Failed(msg.to_string())
    }
}

/// What a queued transfer will do.
enum Work {
    Capture {
        url: PgUrl,
    },
    Restore {
        backup: Box<TransferRecord>,
        url: PgUrl,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
        /// Created in the target before pg_restore (Heroku's `--extensions`).
        extensions: Vec<String>,
        /// Create the roles the backup carries that the target's server lacks, first.
        roles: bool,
    },
    Copy {
        source: PgUrl,
        target: PgUrl,
    },
    RestoreUrl {
        source: restore_url::DumpSource,
        url: PgUrl,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
    },
    Verify {
        backup: Box<TransferRecord>,
        mode: VerifyMode,
        /// The server of the scratch database, for a restore test.
        target: Option<PgUrl>,
    },
}

/// The transfer machinery of one service: starts transfers, tracks the running ones.
///
/// Its methods that are not `async` block on the catalog (a file, or a network round trip with
/// a shared catalog): call them off the async threads (`spawn_blocking`); the `async` ones do
/// that themselves.
pub struct Engine {
    /// Where failures are reported (a webhook, when configured).
    notifier: Arc<crate::notify::Notifier>,
    catalog: Arc<dyn Catalog>,
    storage: Arc<dyn Storage>,
    tools: PgTools,
    /// Where the databases users name are resolved.
    registry: Arc<Registry>,
    tmp_dir: PathBuf,
    zstd_level: i32,
    zstd_workers: u32,
    download_limits: restore_url::DownloadLimits,
    /// How new backups are encrypted (`age`), if they are.
    encryption: Option<String>,
    running: Mutex<HashMap<TransferId, Arc<Control>>>,
    /// Which transfer writes which database, and which backups are being read or deleted.
    claims: Claims,
    /// Transfers whose end the catalog would not take (a full disk, say): shown from here, as
    /// they ended, while the recording is retried.
    unrecorded: Mutex<HashMap<TransferId, TransferRecord>>,
    slots: Arc<Semaphore>,
    /// Dumps being rewritten for downloads, links and exports (see [`download::MAX_REWRITES`]).
    rewrites: Arc<Semaphore>,
    /// Backups whose export is being written (one writer each).
    exporting: Mutex<std::collections::HashSet<TransferId>>,
    tasks: TaskTracker,
    /// The wall clock transfers are stamped with (a test clock in schedule tests).
    clock: Arc<dyn Clock>,
    /// Bumped whenever a transfer ends, so that watchers can wait instead of polling.
    ended: tokio::sync::watch::Sender<u64>,
}

impl Engine {
    /// An engine over an opened catalog and storage (the composition root builds it).
    pub fn new(
        config: &ServiceConfig,
        catalog: Arc<dyn Catalog>,
        storage: Arc<dyn Storage>,
        registry: Arc<Registry>,
        tools: PgTools,
        clock: Arc<dyn Clock>,
        notifier: Arc<crate::notify::Notifier>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            notifier,
            catalog,
            storage,
            tools,
            registry,
            tmp_dir: config.tmp_dir(),
            zstd_level: config.zstd_level,
            zstd_workers: config.zstd_workers,
            download_limits: config.download_limits,
            encryption: config
                .encryption
                .encrypts_new_backups()
                .then(|| "age".to_string()),
            running: Mutex::new(HashMap::new()),
            claims: Claims::default(),
            unrecorded: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(config.max_running.max(1))),
            rewrites: Arc::new(Semaphore::new(download::MAX_REWRITES)),
            exporting: Mutex::new(std::collections::HashSet::new()),
            tasks: TaskTracker::new(),
            clock,
            ended: tokio::sync::watch::Sender::new(0),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TransferId, Arc<Control>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A completed backup by ID.
    pub fn completed_backup(&self, id: TransferId) -> Result<TransferRecord, TransferError> {
        let rec = self.transfer(id)?;
        if rec.kind != TransferKind::Capture {
            return Err(TransferError::NotABackup(id));
        }
        if !rec.is_completed_backup() {
            return Err(TransferError::NotCompleted {
                id,
                state: rec.state.as_str().to_string(),
            });
        }
        Ok(rec)
    }

    /// The newest completed backup.
    pub fn latest_backup(&self) -> Result<TransferRecord, TransferError> {
        self.catalog
            .transfers(Some(TransferKind::Capture))?
            .into_iter()
            .filter(|t| t.is_completed_backup())
            .max_by_key(|t| (t.finished_at, t.created_at))
            .ok_or(TransferError::NoBackups)
    }

    /// One transfer, with live progress if it is running.
    pub fn transfer(&self, id: TransferId) -> Result<TransferRecord, TransferError> {
        let mut rec = self
            .catalog
            .transfer(id)?
            .ok_or(TransferError::NotFound(id))?;
        self.overlay_progress(&mut rec);
        Ok(rec)
    }

    /// All transfers of a kind (or all), oldest first, with live progress.
    pub fn transfers(
        &self,
        kind: Option<TransferKind>,
    ) -> Result<Vec<TransferRecord>, TransferError> {
        let mut all = self.catalog.transfers(kind)?;
        for t in &mut all {
            self.overlay_progress(t);
        }
        Ok(all)
    }

    // A database's transfers as its page and the overview read them (newest few, counts,
    // summaries), with the same overlay of live progress: `by_database.rs`.

    /// Like [`Engine::transfer`], but when the transfer is still going, waits up to `wait` for
    /// it to end first: watchers learn of the end at once without polling fast.
    pub async fn transfer_after(
        self: &Arc<Self>,
        id: TransferId,
        wait: Duration,
    ) -> Result<TransferRecord, TransferError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut ended = self.ended.subscribe();
        loop {
            let engine = self.clone();
            let rec = tokio::task::spawn_blocking(move || engine.transfer(id))
                .await
                .map_err(|e| TransferError::Internal(e.to_string()))??;
            if rec.state.is_finished() {
                return Ok(rec);
            }
            match tokio::time::timeout_at(deadline, ended.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(rec),
            }
        }
    }

    fn overlay_progress(&self, rec: &mut TransferRecord) {
        if let Some(ended) = self.unrecorded().get(&rec.id) {
            *rec = ended.clone();
            return;
        }
        if let Some(c) = self.running().get(&rec.id) {
            rec.bytes_processed = c.bytes();
        }
    }

    fn unrecorded(&self) -> std::sync::MutexGuard<'_, HashMap<TransferId, TransferRecord>> {
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how a transfer ended. When the catalog refuses (a full disk, a locked file),
    /// the end is shown from memory at once — so that watchers stop, a cancel is told the
    /// truth, and nothing shows it running — and the recording is retried until it is taken
    /// or the service stops (the next start then marks it interrupted).
    async fn record_end(&self, rec: TransferRecord, held: Held) {
        let mut held = Some(held);
        let id = rec.id;
        let mut delay = Duration::from_millis(500);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let catalog = self.catalog.clone();
            let copy = rec.clone();
            let saved = tokio::task::spawn_blocking(move || catalog.save_transfer(&copy)).await;
            match saved {
                Ok(Ok(())) => {
                    if attempts > 1 {
                        tracing::info!(transfer = %id, "recorded how {id} ended, after {attempts} attempts");
                    }
                    self.unrecorded().remove(&id);
                    return;
                }
                Ok(Err(e)) if attempts == 1 => tracing::error!(
                    transfer = %id,
                    "could not record how {id} ended ({e}); it is shown as it ended and the recording is retried: free space or fix the catalog's disk"
                ),
                Err(e) if attempts == 1 => {
                    tracing::error!(transfer = %id, "could not record how {id} ended ({e}); retrying")
                }
                _ => {}
            }
            if attempts == 1 {
                self.unrecorded().insert(id, rec.clone());
                self.running().remove(&id);
                // Its work is over: the target is free, and the backup it read may go (a
                // delete of *this* backup waits for the record, see `delete_backup`).
                drop(held.take());
                self.ended.send_modify(|n| *n += 1);
            }
            if self.tasks.is_closed() && attempts > 3 {
                tracing::error!(transfer = %id, "the service is stopping and how {id} ended is still not recorded; the next start marks it interrupted");
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Cancels a running (or pending) transfer; the newest one when `id` is `None`.
    pub fn cancel(&self, id: Option<TransferId>) -> Result<TransferId, TransferError> {
        let running = self.running();
        let id = match id {
            Some(id) => id,
            None => {
                let mut ids: Vec<TransferId> = running.keys().copied().collect();
                drop(running);
                let mut newest: Option<(Timestamp, TransferId)> = None;
                for id in ids.drain(..) {
                    if let Some(t) = self.catalog.transfer(id)?
                        && newest.is_none_or(|(at, _)| t.created_at > at)
                    {
                        newest = Some((t.created_at, id));
                    }
                }
                return match newest {
                    Some((_, id)) => self.cancel(Some(id)),
                    None => Err(TransferError::NothingRunning),
                };
            }
        };
        match running.get(&id) {
            Some(c) => {
                c.stop(StopReason::Cancel);
                Ok(id)
            }
            None => {
                drop(running);
                let rec = self.transfer(id)?;
                Err(TransferError::NotRunning {
                    id,
                    state: rec.state.as_str().to_string(),
                })
            }
        }
    }

    /// Deletes a backup's object and record, once `confirm` names its database.
    pub fn delete_backup(
        &self,
        id: TransferId,
        confirm: Option<&str>,
    ) -> Result<(), TransferError> {
        let rec = self.transfer(id)?;
        if rec.kind != TransferKind::Capture {
            return Err(TransferError::NotABackup(id));
        }
        if !rec.state.is_finished() {
            return Err(TransferError::StillRunning(id));
        }
        // From here until the object and record are gone, no restore, download or
        // verification of it can start, and no second delete can.
        let _deleting = self.claims.delete_backup(id)?;
        if self.unrecorded().contains_key(&id) {
            // Its end is still being written to the catalog, which would bring it back.
            return Err(TransferError::Unrecorded(id));
        }
        hold::pause("delete");
        if let Some(restore) = self
            .catalog
            .unfinished_transfers()?
            .into_iter()
            .find(|t| t.backup_id == Some(id))
        {
            return Err(TransferError::InUse {
                backup: id,
                restore: restore.id,
            });
        }
        check_confirm(&rec.database, confirm)?;
        // A delete that was waiting behind another one finds the backup gone.
        let rec = self.transfer(id)?;
        if let Some(key) = &rec.object_key {
            manifest::delete_backup(self.storage.as_ref(), key)?;
        }
        self.catalog.delete_transfer(id)?;
        Ok(())
    }

    /// Pins (or unpins) a completed backup: pinned backups are never expired.
    pub fn set_pinned(
        &self,
        id: TransferId,
        pinned: bool,
    ) -> Result<TransferRecord, TransferError> {
        let rec = self.transfer(id)?;
        if rec.kind != TransferKind::Capture {
            return Err(TransferError::NotABackup(id));
        }
        self.catalog.set_pinned(id, pinned)?;
        self.transfer(id)
    }

    /// Stops every running transfer (they end Failed: interrupted by shutdown) and waits for
    /// them to record how they ended, up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        for c in self.running().values() {
            c.stop(StopReason::Shutdown);
        }
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some transfers did not stop in time; they will show as interrupted at the next start"
            );
        }
    }

    fn launch(self: &Arc<Self>, rec: TransferRecord, held: Held, work: Work) {
        held.name(&rec);
        let (ctx, log_writer) = JobCtx::new(rec.id, self.catalog.clone());
        self.running().insert(rec.id, ctx.control.clone());
        // A shutdown that began after `new_transfer` checked has already stopped the others.
        if self.tasks.is_closed() {
            ctx.control.stop(StopReason::Shutdown);
        }
        let engine = self.clone();
        self.tasks.spawn(async move {
            let id = rec.id;
            let mut job = Job {
                engine: engine.clone(),
                ctx,
                rec,
                target_touched: false,
                target_unknown: false,
                held,
            };
            let result = engine.run_job(&mut job, work).await;
            let verify_next = result.is_ok()
                && job.rec.kind == TransferKind::Capture
                && job.rec.origin == Origin::Scheduled;
            let database = job.rec.database.clone();
            engine.finish(job, result, log_writer).await;
            engine.running().remove(&id);
            if verify_next {
                let e = engine.clone();
                let _ =
                    tokio::task::spawn_blocking(move || e.verify_if_scheduled(id, &database)).await;
            }
        });
    }

    async fn run_job(&self, job: &mut Job, work: Work) -> Result<(), JobEnd> {
        let slots = self.slots.clone();
        let _permit = tokio::select! {
            p = slots.acquire_owned() => p.map_err(JobEnd::failed)?,
            _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
        };
        job.rec.state = TransferState::Running;
        job.rec.started_at = Some(self.clock.now());
        job.save().await?;
        match work {
            Work::Capture { url } => {
                capture::run(job, url).await?;
                // Only after a success: a failed capture never costs an older good backup.
                self.apply_retention(job).await;
                Ok(())
            }
            Work::Restore {
                backup,
                url,
                jobs,
                atomic,
                extensions,
                roles,
            } => {
                // Owners and privileges are restored only once the roles they name exist.
                let keep_owners = roles && roles::create_missing(job, &backup, &url).await?;
                match atomic {
                    None => restore::run(job, &backup, url, jobs, &extensions, keep_owners).await,
                    Some(swap) => {
                        // The swap renames the target: hold it under its server identity too.
                        job.hold_server_identity(&url).await?;
                        let fresh = atomic::prepare(job, &url).await?;
                        let restored = restore::run(
                            job,
                            &backup,
                            fresh.url.clone(),
                            jobs,
                            &extensions,
                            keep_owners,
                        )
                        .await;
                        // Whatever happened to the fresh database, the target was not emptied.
                        job.target_unknown = false;
                        atomic::finish(job, &url, &fresh, swap, restored).await
                    }
                }
            }
            Work::Copy { source, target } => copy::run(job, source, target).await,
            Work::Verify {
                backup,
                mode,
                target,
            } => verify::run(job, &backup, mode, target).await,
            Work::RestoreUrl {
                source,
                url,
                jobs,
                atomic,
            } => match atomic {
                None => restore_url::run(job, source, url, jobs).await,
                Some(swap) => {
                    job.hold_server_identity(&url).await?;
                    let fresh = atomic::prepare(job, &url).await?;
                    let restored = restore_url::run(job, source, fresh.url.clone(), jobs).await;
                    job.target_unknown = false;
                    atomic::finish(job, &url, &fresh, swap, restored).await
                }
            },
        }
    }

    async fn finish(&self, mut job: Job, result: Result<(), JobEnd>, log_writer: job::LogWriter) {
        let stop = job.ctx.control.stop_reason();
        let (state, message) = match (result, stop) {
            (Ok(()), _) => (TransferState::Succeeded, None),
            (Err(_), Some(StopReason::Cancel)) => {
                (TransferState::Cancelled, Some("cancelled by request".to_string()))
            }
            (Err(_), Some(StopReason::Shutdown)) => (
                TransferState::Failed,
                Some("interrupted: the service was shut down while this transfer was running; start it again".to_string()),
            ),
            (Err(JobEnd::Failed(msg)), None) => (TransferState::Failed, Some(msg)),
            (Err(JobEnd::Stopped), None) => {
                (TransferState::Failed, Some("stopped for an unknown reason".to_string()))
            }
        };
        let message = message.map(|m| {
            if job.rec.kind == TransferKind::Verify {
                // Its only target is its own scratch database, which it drops.
                m
            } else if job.target_unknown {
                format!("{m}. Whether the target database was emptied is not known: look at it, and restore again if it was")
            } else if job.target_touched {
                format!("{m}. The target database was emptied before the restore began, so it is now only partially restored: fix the cause and restore again")
            } else if job.rec.kind != TransferKind::Capture {
                format!("{m}. The target database was not changed")
            } else {
                m
            }
        });
        if state != TransferState::Succeeded
            && job.rec.kind == TransferKind::Capture
            && let Some(key) = job.rec.object_key.clone()
        {
            let storage = self.storage.clone();
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || manifest::delete_backup(storage.as_ref(), &key))
                    .await
            {
                job.log(&format!("could not remove the unfinished object: {e}"));
            }
        }
        match &message {
            Some(m) => job.log(&format!("{}: {m}", state_word(state))),
            None => job.log(&format!("{} {}", job.rec.id, state_word(state))),
        }
        job.rec.bytes_processed = job.ctx.bytes();
        if state == TransferState::Failed {
            self.notifier.send(crate::notify::Event {
                event: "transfer.failed",
                database: job.rec.database.clone(),
                id: Some(job.rec.id.to_string()),
                message: message.clone().unwrap_or_default(),
                at: self.clock.now(),
            });
        }
        job.rec.state = state;
        job.rec.error = message;
        job.rec.finished_at = Some(self.clock.now());
        let Job { ctx, rec, held, .. } = job;
        log_writer.close(ctx).await;
        hold::pause_async("before-record-end").await;
        // Only once its end is recorded (or shown) may another transfer write its target.
        self.record_end(rec, held).await;
        self.ended.send_modify(|n| *n += 1);
    }
}

fn state_word(s: TransferState) -> &'static str {
    match s {
        TransferState::Pending => "Pending",
        TransferState::Running => "Running",
        TransferState::Succeeded => "Completed",
        TransferState::Failed => "Failed",
        TransferState::Cancelled => "Cancelled",
    }
}

/// Runs blocking work (the catalog, the registry) off the async threads: every catalog call
/// from async code goes through here or `spawn_blocking`.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TransferError> + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TransferError::Internal(e.to_string()))?
}

/// Checks that `--confirm` names the database a destructive transfer would change.
fn check_confirm(label: &str, confirm: Option<&str>) -> Result<(), TransferError> {
    let expected = confirm_word(label);
    match confirm.map(str::trim) {
        Some(c) if c == expected => Ok(()),
        given => Err(TransferError::Confirm {
            given: given
                .map(|g| format!(" (you passed `{g}`)"))
                .unwrap_or_default(),
            expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_names_the_database() {
        assert_eq!(confirm_word("main"), "main");
        assert_eq!(confirm_word("postgres://u:***@h:5432/app"), "app");
        assert!(check_confirm("main", Some("main")).is_ok());
        assert!(check_confirm("main", Some("other")).is_err());
        assert!(check_confirm("main", None).is_err());
        // A name the registry refuses is refused as a transfer request is.
        let check_name = |n: &str| crate::registry::check_name(n).map_err(TransferError::from);
        assert!(check_name("_x-1").is_ok());
        assert!(matches!(check_name("-rf"), Err(TransferError::BadName(_))));
    }
}
