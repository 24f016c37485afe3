//! Transfers: the jobs that move data — captures (database → storage) and restores
//! (backup → database) — and the [`Engine`] that starts, tracks, cancels and recovers them.
//!
//! Each transfer runs as one task: it waits for a free slot, runs its work (`capture::run` or
//! `restore::run`) with a [`job::JobCtx`] for logs, progress and cancellation, then records how
//! it ended. Whatever happens, a capture that did not succeed leaves no object behind.

pub mod atomic;
mod capture;
pub mod claims;
mod copy;
mod download;
pub mod hold;
pub mod job;
pub mod manifest;
mod pushpull;
mod restore;
pub mod restore_url;
mod verify;

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::catalog::{
    Catalog, CatalogError, Origin, TransferId, TransferKind, TransferRecord, TransferState,
    VerifyMode,
};
use crate::config::ServiceConfig;
use crate::pg::client::ScriptEnd;
use crate::pg::{DumpFilter, FilterError, PgTools, PgUrl, PgUrlError};
use crate::schedule::{Clock, retention};
use crate::secret::{Secrets, UnsealError};
use crate::storage::{Storage, StorageError};
use claims::{BackupRead, ClaimError, Claims, TargetHold};
use job::{Control, JobCtx, StopReason};

pub use download::PlainDump;

/// A request that cannot be carried out, in words the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("no backup or transfer {0}; list them with `pgbackups backups`")]
    NotFound(TransferId),
    #[error(
        "no database named `{0}` is registered; add it with `pgbackups databases:add {0} postgres://...`, or pass a postgres:// URL instead"
    )]
    UnknownDatabase(String),
    #[error(
        "no database is registered; add one with `pgbackups databases:add NAME postgres://...`, or pass a postgres:// URL"
    )]
    NoDatabases,
    #[error("several databases are registered ({0}); name the one you mean")]
    WhichDatabase(String),
    #[error(
        "`{0}` is not a valid database name: use 1 to 63 letters, digits, `_` or `-`, starting with a letter, digit or `_` (or pass a postgres:// URL)"
    )]
    BadName(String),
    #[error(transparent)]
    BadUrl(#[from] PgUrlError),
    #[error("this is destructive: confirm it by passing --confirm {expected}{given}")]
    Confirm { expected: String, given: String },
    #[error(
        "{id} is not a completed backup (it is {state}); pick a completed one from `pgbackups backups`"
    )]
    NotCompleted { id: TransferId, state: String },
    #[error("{0} is a restore, not a backup")]
    NotABackup(TransferId),
    #[error("{0} is still running; cancel it first with `pgbackups backups:cancel {0}`")]
    StillRunning(TransferId),
    #[error(
        "backup {backup} is being restored by {restore}; wait for it to end or cancel it first"
    )]
    InUse {
        backup: TransferId,
        restore: TransferId,
    },
    #[error("{id} is not running (it is {state}); nothing to cancel")]
    NotRunning { id: TransferId, state: String },
    #[error("no capture or restore is running; nothing to cancel")]
    NothingRunning,
    #[error("there is no completed backup yet; take one with `pgbackups backups:capture`")]
    NoBackups,
    #[error(transparent)]
    BadFilter(#[from] FilterError),
    #[error("{0}")]
    Target(String),
    #[error("a restore source must be a backup ID (b001) or an http(s) URL")]
    BadSourceUrl,
    #[error(
        "a restore test needs a server for its scratch database, and the backup's database {0} is not registered: pass --target DATABASE_OR_URL"
    )]
    VerifyTarget(String),
    #[error("{0}; the target database was not changed")]
    Upload(String),
    #[error("the source and the target are the same database; a copy needs two")]
    SameDatabase,
    #[error("--jobs must be between 1 and 64, not {0}")]
    BadJobs(u32),
    #[error("the service is shutting down; try again once it is back")]
    ShuttingDown,
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(
        "{0} has ended, but the catalog has not yet taken how (see the service's log: a full disk?); try again once it has"
    )]
    Unrecorded(TransferId),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    #[error("internal error: {0}")]
    Internal(String),
}

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

/// How a transfer that was running when the service stopped is recorded at the next start.
const INTERRUPTED: &str = "interrupted: the service stopped (it crashed or was killed) while this transfer was running; start it again";

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

/// A link to a backup, from [`Engine::backup_url`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BackupUrl {
    pub id: TransferId,
    pub url: String,
    pub expires_at: jiff::Timestamp,
    /// `dump` (a plain custom-format dump) or `zstd` (the stored object: the dump compressed
    /// with zstd).
    pub content: String,
}

/// What `catalog:rebuild` did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RebuildReport {
    /// Backups recreated from their manifests.
    pub added: Vec<TransferId>,
    /// Backups the catalog already had.
    pub present: Vec<TransferId>,
    /// Manifests that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Manifests whose object is missing.
    pub orphaned: Vec<String>,
    /// Backups in the store whose ID the catalog already gives to another backup (one made
    /// on this service before the rebuild), with the stored object's key. They are not lost:
    /// the object and its manifest stay in the store.
    #[serde(default)]
    pub conflicts: Vec<(TransferId, String)>,
}

/// Why a download link is refused (answered with 403).
#[derive(Clone, Debug)]
pub struct LinkRefused(pub &'static str);

/// What a service link's signature covers: the backup, its content and the expiry.
fn link_message(backup: &TransferRecord, expiry: i64) -> String {
    format!(
        "GET\n{}\n{}\n{expiry}",
        backup.id,
        backup.sha256.as_deref().unwrap_or("")
    )
}

/// The transfer machinery of one service: starts transfers, tracks the running ones.
pub struct Engine {
    /// Where failures are reported (a webhook, when configured).
    notifier: Arc<crate::notify::Notifier>,
    catalog: Arc<Catalog>,
    storage: Arc<dyn Storage>,
    tools: PgTools,
    secrets: Arc<Secrets>,
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
    tasks: TaskTracker,
    /// The wall clock transfers are stamped with (a test clock in schedule tests).
    clock: Arc<dyn Clock>,
    /// Bumped whenever a transfer ends, so that watchers can wait instead of polling.
    ended: tokio::sync::watch::Sender<u64>,
}

/// A transfer's work in progress: the record it keeps up to date and its context.
pub(crate) struct Job {
    engine: Arc<Engine>,
    ctx: JobCtx,
    rec: TransferRecord,
    /// Set by a restore once it has started changing the target, so that how it ended can say so.
    target_touched: bool,
    /// Set when whether the target was emptied is not known (the connection broke during the
    /// drop's commit).
    target_unknown: bool,
    /// What the transfer holds (its target, the backup it reads); released once its end is
    /// recorded.
    held: Held,
}

/// The claims a transfer holds while it runs (see `claims.rs`).
#[derive(Default)]
pub(crate) struct Held {
    target: Option<TargetHold>,
    backup: Option<BackupRead>,
}

impl Held {
    fn target(target: TargetHold) -> Held {
        Held {
            target: Some(target),
            backup: None,
        }
    }

    /// Names the transfer in the refusals others get while it holds them.
    fn name(&self, rec: &TransferRecord) {
        let what = match rec.kind {
            TransferKind::Capture => "a capture",
            TransferKind::Restore => "a restore",
            TransferKind::Copy => "a copy",
            TransferKind::Verify => "a verification",
        };
        let by = format!("{} ({what})", rec.id);
        if let Some(t) = &self.target {
            t.name(&by);
        }
        if let Some(b) = &self.backup {
            b.name(&by);
        }
    }
}

impl Job {
    fn log(&self, line: &str) {
        self.ctx.log(line);
    }

    /// Holds the target under the identity its server reports for it (the database's OID and
    /// when the server started), so that two host names of one server cannot
    /// let two transfers write one database. Called before the target is touched.
    async fn hold_server_identity(&mut self, url: &PgUrl) -> Result<(), JobEnd> {
        // In numbers only: a time as text follows the session's TimeZone and DateStyle, which
        // differ between roles; and without the name, so that it survives an atomic swap's
        // rename.
        const WHO: &str = "SELECT oid || ':' || (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint FROM pg_database WHERE datname = current_database()";
        let rows = tokio::select! {
            r = crate::pg::client::query(&self.engine.tools, url, WHO) => r.map_err(JobEnd::failed)?,
            _ = self.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
        };
        let identity = rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or_default();
        if let Some(target) = self.held.target.as_mut() {
            target
                .also_identity(&identity, &claims::target_name(url))
                .map_err(JobEnd::failed)?;
        }
        Ok(())
    }

    /// Empties the target, as Heroku does, and records whether it did. Whatever interleaving
    /// of cancel and drop happens, `target_touched` is true exactly when the drop committed
    /// (or may have: then the message says so).
    async fn empty_target(&mut self, url: &PgUrl) -> Result<(), JobEnd> {
        hold::at(&self.ctx, "before-empty").await;
        if self.ctx.is_cancelled() {
            return Err(JobEnd::Stopped);
        }
        self.hold_server_identity(url).await?;
        self.log(&format!(
            "Dropping all objects in database {} (schemas, extensions, large objects)",
            url.dbname()
        ));
        // Unique on the server even when two services run transfers with the same ID.
        let nonce = crate::secret::random_hex(4).unwrap_or_default();
        let tag = format!("pgbackups-{}-empty-{nonce}", self.rec.id);
        let cleaned =
            crate::pg::client::clean_database(&self.engine.tools, url, self.ctx.cancelled(), &tag)
                .await;
        match cleaned {
            ScriptEnd::Committed => {
                self.target_touched = true;
                restore::log_kept(self, url).await;
            }
            ScriptEnd::RolledBack(_) if self.ctx.is_cancelled() => {
                self.log("The drop was cancelled before it committed: nothing was dropped");
                return Err(JobEnd::Stopped);
            }
            ScriptEnd::RolledBack(e) => {
                return Err(JobEnd::failed(format!(
                    "could not empty the target database: {e}"
                )));
            }
            ScriptEnd::Unknown(why) => {
                self.target_touched = true;
                self.target_unknown = true;
                return Err(JobEnd::failed(format!(
                    "the connection broke while the target database was being emptied ({why})"
                )));
            }
        }
        hold::at(&self.ctx, "after-empty").await;
        if self.ctx.is_cancelled() {
            return Err(JobEnd::Stopped);
        }
        Ok(())
    }

    async fn save(&self) -> Result<(), JobEnd> {
        let catalog = self.engine.catalog.clone();
        let rec = self.rec.clone();
        tokio::task::spawn_blocking(move || catalog.save_transfer(&rec))
            .await
            .map_err(JobEnd::failed)?
            .map_err(JobEnd::failed)
    }
}

impl Engine {
    /// An engine over an opened catalog and storage.
    pub fn new(
        config: &ServiceConfig,
        catalog: Arc<Catalog>,
        storage: Arc<dyn Storage>,
        secrets: Arc<Secrets>,
        tools: PgTools,
        clock: Arc<dyn Clock>,
        notifier: Arc<crate::notify::Notifier>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            notifier,
            catalog,
            storage,
            tools,
            secrets,
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
            tasks: TaskTracker::new(),
            clock,
            ended: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Where failures are reported.
    pub fn notifier(&self) -> &Arc<crate::notify::Notifier> {
        &self.notifier
    }

    /// The catalog this engine records into.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The storage this engine writes to.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The wall clock of this service.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The client tools found on this machine.
    pub fn tools(&self) -> &PgTools {
        &self.tools
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TransferId, Arc<Control>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- start-up ----

    /// Runs once at start-up, before any new transfer: marks transfers that were running when
    /// the service last stopped as Failed (interrupted), removes what they left in storage,
    /// and empties the scratch directory. Returns the IDs it marked.
    pub fn recover_interrupted(&self) -> Result<Vec<TransferId>, TransferError> {
        let now = self.clock.now();
        let mut marked = Vec::new();
        for mut t in self.catalog.unfinished_transfers()? {
            if t.kind == TransferKind::Capture
                && let Some(key) = &t.object_key
            {
                manifest::delete_backup(self.storage.as_ref(), key)?;
            }
            let mut msg = INTERRUPTED.to_string();
            if t.kind == TransferKind::Verify {
                msg.push_str(". Its scratch database is dropped at start when the server is known");
            } else if let Some(stage) = atomic::Stage::parse(t.detail.as_deref()) {
                msg.push_str(&format!(". {}", stage.interrupted()));
            } else if t.kind != TransferKind::Capture {
                msg.push_str(". The target database may have been emptied and only partially restored: restore again");
            }
            t.state = TransferState::Failed;
            t.finished_at = Some(now);
            t.error = Some(msg.clone());
            self.catalog.save_transfer(&t)?;
            self.catalog.append_logs(t.id, &[(now, msg)])?;
            marked.push(t.id);
        }
        let collected = self.storage.collect_partial()?;
        if collected > 0 {
            tracing::info!("removed {collected} partial object(s) left by an interrupted run");
        }
        if let Ok(entries) = std::fs::read_dir(&self.tmp_dir) {
            for e in entries.flatten() {
                let path = e.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        std::fs::create_dir_all(&self.tmp_dir).map_err(|e| {
            TransferError::Internal(format!(
                "cannot create scratch directory {}: {e}",
                self.tmp_dir.display()
            ))
        })?;
        Ok(marked)
    }

    // ---- databases ----

    /// Resolves what a user typed for a database: a registered name, a `postgres://` URL, or
    /// nothing (the only registered database). Returns the label to record and the URL.
    pub fn resolve_database(
        &self,
        reference: Option<&str>,
    ) -> Result<(String, PgUrl), TransferError> {
        let name = match reference.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) if r.starts_with("postgres://") || r.starts_with("postgresql://") => {
                let url = PgUrl::parse(r)?;
                return Ok((url.redacted(), url));
            }
            Some(r) => r.to_string(),
            None => {
                let dbs = self.catalog.list_databases()?;
                match dbs.as_slice() {
                    [] => return Err(TransferError::NoDatabases),
                    [one] => one.name.clone(),
                    many => {
                        return Err(TransferError::WhichDatabase(
                            many.iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ));
                    }
                }
            }
        };
        check_name(&name)?;
        let sealed = self
            .catalog
            .database_url_sealed(&name)?
            .ok_or_else(|| TransferError::UnknownDatabase(name.clone()))?;
        let url = PgUrl::parse(&self.secrets.unseal(&sealed)?)?;
        Ok((name, url))
    }

    /// Registers a database under `name`, its URL sealed.
    pub fn add_database(&self, name: &str, url: &str) -> Result<PgUrl, TransferError> {
        check_name(name)?;
        let url = PgUrl::parse(url)?;
        let sealed = self
            .secrets
            .seal(url.expose())
            .map_err(|e| TransferError::Internal(e.to_string()))?;
        self.catalog
            .add_database(name, &sealed, &url.redacted(), self.clock.now())?;
        Ok(url)
    }

    // ---- transfers ----

    /// Starts a capture of `database` (a name, a URL, or the only registered database).
    pub fn start_capture(
        self: &Arc<Self>,
        database: Option<&str>,
        origin: Origin,
    ) -> Result<TransferRecord, TransferError> {
        self.start_partial_capture(database, origin, DumpFilter::default())
    }

    /// Starts a capture of the schemas and tables `filter` selects (all when it is empty).
    pub fn start_partial_capture(
        self: &Arc<Self>,
        database: Option<&str>,
        origin: Origin,
        filter: DumpFilter,
    ) -> Result<TransferRecord, TransferError> {
        filter.validate()?;
        let (label, url) = self.resolve_database(database)?;
        let prefix = match origin {
            Origin::Manual => 'b',
            Origin::Scheduled => 'a',
        };
        let mut rec = self.new_transfer(prefix, TransferKind::Capture, origin, label)?;
        if !filter.is_empty() {
            rec.filter = filter;
            self.catalog.save_transfer(&rec)?;
        }
        self.launch(rec.clone(), Held::default(), Work::Capture { url });
        Ok(rec)
    }

    /// Starts a restore of `backup` (the newest completed backup when `None`) into `database`,
    /// after checking the confirmation against the target's name.
    pub fn start_restore(
        self: &Arc<Self>,
        backup: Option<TransferId>,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
    ) -> Result<TransferRecord, TransferError> {
        check_jobs(jobs)?;
        let backup = match backup {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        let (label, url) = self.resolve_database(database)?;
        check_confirm(&label, confirm)?;
        let held = Held {
            target: Some(self.claims.hold_target(&url, "a restore being started")?),
            backup: Some(
                self.claims
                    .read_backup(backup.id, "a restore being started")?,
            ),
        };
        // A delete that ended between the lookup and the claim has removed it.
        let backup = self.completed_backup(backup.id)?;
        let mut rec = self.new_transfer('r', TransferKind::Restore, Origin::Manual, label)?;
        rec.backup_id = Some(backup.id);
        self.catalog.save_transfer(&rec)?;
        self.launch(
            rec.clone(),
            held,
            Work::Restore {
                backup: Box::new(backup),
                url,
                jobs,
                atomic,
            },
        );
        Ok(rec)
    }

    /// Starts a verification of a completed backup (the newest without `id`). A restore test
    /// (`mode` Restore) needs a server for its scratch database: `target` (a registered name
    /// or URL), else the server of the backup's own database.
    pub fn start_verify(
        self: &Arc<Self>,
        id: Option<TransferId>,
        mode: VerifyMode,
        target: Option<&str>,
        origin: Origin,
    ) -> Result<TransferRecord, TransferError> {
        let backup = match id {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        let mode = if mode == VerifyMode::Off {
            VerifyMode::Checksum
        } else {
            mode
        };
        // The server of a restore test's scratch database: its label (a registered name, or a
        // redacted URL) and URL.
        let server = match (mode, target) {
            (VerifyMode::Restore, Some(t)) => Some(self.resolve_database(Some(t))?),
            (VerifyMode::Restore, None) => match self.resolve_database(Some(&backup.database)) {
                Ok(found) => Some(found),
                Err(TransferError::UnknownDatabase(_) | TransferError::BadUrl(_)) => {
                    return Err(TransferError::VerifyTarget(backup.database.clone()));
                }
                Err(e) => return Err(e),
            },
            _ => None,
        };
        let held = Held {
            target: None,
            backup: Some(
                self.claims
                    .read_backup(backup.id, "a verification being started")?,
            ),
        };
        let backup = self.completed_backup(backup.id)?;
        let mut rec =
            self.new_transfer('v', TransferKind::Verify, origin, backup.database.clone())?;
        rec.backup_id = Some(backup.id);
        // Where the scratch database goes, so that start-up recovery can drop it after a
        // crash (a registered name; a URL is recorded redacted and cannot be).
        rec.source = server.as_ref().map(|(label, _)| label.clone());
        self.catalog.save_transfer(&rec)?;
        self.launch(
            rec.clone(),
            held,
            Work::Verify {
                backup: Box::new(backup),
                mode,
                target: server.map(|(_, url)| url),
            },
        );
        Ok(rec)
    }

    /// Recreates the catalog's backups from the manifests in the store (after the service's
    /// disk was lost). Backups the catalog already has are left alone; ID counters move past
    /// every ID found, so that new backups never reuse one.
    pub fn rebuild_catalog(&self) -> Result<RebuildReport, TransferError> {
        let found = manifest::scan(self.storage.as_ref())?;
        // Every ID the store shows, readable manifest or not, moves the counters past it.
        for key in found
            .orphaned
            .iter()
            .chain(found.unreadable.iter().map(|(k, _)| k))
        {
            let name = key.rsplit('/').next().unwrap_or("");
            if let Some(id) = name
                .split('-')
                .next()
                .and_then(|p| p.parse::<TransferId>().ok())
            {
                self.catalog.bump_id_counter(id)?;
            }
        }
        let mut report = RebuildReport {
            unreadable: found.unreadable,
            orphaned: found.orphaned,
            ..RebuildReport::default()
        };
        for m in found.manifests {
            let id = m.backup.id;
            self.catalog.bump_id_counter(id)?;
            if m.backup.kind != TransferKind::Capture || !id.is_backup() {
                continue;
            }
            if let Some(existing) = self.catalog.transfer(id)? {
                if existing.object_key == m.backup.object_key {
                    report.present.push(id);
                } else {
                    // The ID was reused by a backup made before the rebuild.
                    report
                        .conflicts
                        .push((id, m.backup.object_key.clone().unwrap_or_default()));
                }
                continue;
            }
            let mut rec = m.backup;
            rec.state = TransferState::Succeeded;
            rec.pinned = false;
            self.catalog.save_transfer(&rec)?;
            if let Some(layout) = &m.layout {
                let json = serde_json::to_string(layout)
                    .map_err(|e| TransferError::Internal(e.to_string()))?;
                self.catalog.set_layout(id, &json)?;
            }
            self.catalog.append_logs(
                id,
                &[(
                    self.clock.now(),
                    "Recreated from the manifest in the store by catalog:rebuild".to_string(),
                )],
            )?;
            report.added.push(id);
        }
        Ok(report)
    }

    /// Drops the scratch databases of verifications, and the fresh databases of atomic
    /// restores, that were running when the service stopped (`recover_interrupted` returned
    /// their IDs).
    pub async fn drop_stale_scratch(&self, interrupted: &[TransferId]) {
        for id in interrupted {
            let Ok(Some(t)) = self.catalog.transfer(*id) else {
                continue;
            };
            if let Some(stage) = atomic::Stage::parse(t.detail.as_deref()) {
                let (outcome, swapped) = atomic::recover(self, &t, &stage).await;
                // A swap that committed finished the restore's work: only its record is missing.
                let lead = if swapped {
                    "interrupted: the service stopped (it crashed or was killed) before it recorded how this restore ended"
                } else {
                    INTERRUPTED
                };
                self.record_recovery(t, lead, outcome);
                continue;
            }
            let Some(server) = t.source.filter(|_| t.kind == TransferKind::Verify) else {
                continue;
            };
            let name = verify::scratch_name(t.id);
            match self.resolve_database(Some(&server)) {
                Ok((_, url)) => {
                    let admin = url.with_dbname("postgres");
                    match verify::drop_scratch(&self.tools, &admin, &name).await {
                        Ok(()) => tracing::info!("dropped {name}, left by interrupted {id}"),
                        Err(e) => tracing::warn!("could not drop {name} (left by {id}): {e}"),
                    }
                }
                Err(_) => tracing::warn!(
                    "{id} was interrupted; its scratch database {name} on {server} may remain: drop it"
                ),
            }
        }
    }

    /// Completes an interrupted transfer's error with what start-up recovery found and did.
    fn record_recovery(&self, mut t: TransferRecord, lead: &str, outcome: String) {
        let now = self.clock.now();
        t.error = Some(format!("{lead}. {outcome}"));
        let saved = self
            .catalog
            .save_transfer(&t)
            .and_then(|()| self.catalog.append_logs(t.id, &[(now, outcome)]));
        if let Err(e) = saved {
            tracing::error!("could not record the recovery of {}: {e}", t.id);
        }
    }

    /// After a scheduled capture: starts its verification when the database's schedule asks
    /// for one (automatic restore tests).
    fn verify_if_scheduled(self: &Arc<Self>, backup: TransferId, database: &str) {
        let mode = match self.catalog.schedules() {
            Ok(all) => all
                .into_iter()
                .find(|s| s.database == database)
                .map(|s| s.verify)
                .unwrap_or_default(),
            Err(e) => {
                tracing::error!("cannot read the schedule of {database}: {e}");
                return;
            }
        };
        if mode == VerifyMode::Off {
            return;
        }
        match self.start_verify(Some(backup), mode, None, Origin::Scheduled) {
            Ok(v) => tracing::info!("verifying scheduled backup {backup} as {}", v.id),
            Err(e) => tracing::error!("could not start the verification of {backup}: {e}"),
        }
    }

    /// Starts a restore of the dump at an http(s) URL into `database`, after checking the
    /// confirmation against the target's name.
    pub fn start_restore_from_url(
        self: &Arc<Self>,
        source: &str,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
    ) -> Result<TransferRecord, TransferError> {
        check_jobs(jobs)?;
        let parsed = url::Url::parse(source)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if parsed.is_none() {
            return Err(TransferError::BadSourceUrl);
        }
        let (label, url) = self.resolve_database(database)?;
        check_confirm(&label, confirm)?;
        let held = Held::target(self.claims.hold_target(&url, "a restore being started")?);
        let mut rec = self.new_transfer('r', TransferKind::Restore, Origin::Manual, label)?;
        rec.source = Some(restore_url::shown_url(source));
        self.catalog.save_transfer(&rec)?;
        self.launch(
            rec.clone(),
            held,
            Work::RestoreUrl {
                source: restore_url::DumpSource::Url(source.to_string()),
                url,
                jobs,
                atomic,
            },
        );
        Ok(rec)
    }

    /// Starts a restore of an uploaded dump file: `body` is streamed into scratch space
    /// (checked to start like a custom-format dump, within the size limit), then restored as
    /// from a URL.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_restore_from_upload(
        self: &Arc<Self>,
        name: &str,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
        mut body: impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Unpin,
    ) -> Result<TransferRecord, TransferError> {
        use futures_util::StreamExt;
        use std::io::Write;
        check_jobs(jobs)?;
        let (label, url) = self.resolve_database(database)?;
        check_confirm(&label, confirm)?;
        let held = Held::target(self.claims.hold_target(&url, "a restore being started")?);
        let mut rec = self.new_transfer('r', TransferKind::Restore, Origin::Manual, label)?;
        held.name(&rec);
        let shown: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
        rec.source = Some(format!("uploaded file {shown}"));
        self.catalog.save_transfer(&rec)?;
        let path = self.tmp_dir.join(format!("upload-{}.dump", rec.id));
        let limit = self.download_limits.max_bytes;
        let received: Result<u64, String> = async {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot write the scratch file: {e}"))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("the upload broke off: {e}"))?;
                if !crate::stream::starts_like_a_dump(n, &chunk) {
                    return Err("this file is not a custom-format dump (pg_dump -Fc): it does not start with PGDMP".to_string());
                }
                n += chunk.len() as u64;
                if n > limit {
                    return Err(format!("the file is over the limit of {limit} bytes (PGBACKUPS_URL_MAX_BYTES)"));
                }
                out.write_all(&chunk).map_err(|e| format!("cannot write the scratch file: {e}"))?;
            }
            out.flush().map_err(|e| format!("cannot write the scratch file: {e}"))?;
            if n == 0 {
                return Err("the file is empty".to_string());
            }
            Ok(n)
        }
        .await;
        if let Err(e) = received {
            let _ = std::fs::remove_file(&path);
            rec.state = TransferState::Failed;
            rec.error = Some(format!("{e}. The target database was not changed"));
            rec.finished_at = Some(self.clock.now());
            self.catalog.save_transfer(&rec)?;
            return Err(TransferError::Upload(e));
        }
        self.launch(
            rec.clone(),
            held,
            Work::RestoreUrl {
                source: restore_url::DumpSource::Uploaded {
                    file: restore_url::UploadedFile(path),
                    name: shown,
                },
                url,
                jobs,
                atomic,
            },
        );
        Ok(rec)
    }

    /// Starts a copy of `source` into `target` (names or URLs), after checking the
    /// confirmation against the target's name. The target's objects are dropped first.
    pub fn start_copy(
        self: &Arc<Self>,
        source: &str,
        target: &str,
        confirm: Option<&str>,
        filter: DumpFilter,
    ) -> Result<TransferRecord, TransferError> {
        let (_, target_url) = self.resolve_database(Some(target))?;
        let mut hold = Some(
            self.claims
                .hold_target(&target_url, "a copy being started")?,
        );
        self.start_copy_held(source, target, confirm, filter, &mut hold)
    }

    /// [`Engine::start_copy`] for a caller that already holds the target (pull and push,
    /// which look at it before they copy).
    fn start_copy_held(
        self: &Arc<Self>,
        source: &str,
        target: &str,
        confirm: Option<&str>,
        filter: DumpFilter,
        hold: &mut Option<TargetHold>,
    ) -> Result<TransferRecord, TransferError> {
        filter.validate()?;
        let (source_label, source_url) = self.resolve_database(Some(source))?;
        let (target_label, target_url) = self.resolve_database(Some(target))?;
        check_confirm(&target_label, confirm)?;
        if source_url.host_port() == target_url.host_port()
            && source_url.dbname() == target_url.dbname()
        {
            return Err(TransferError::SameDatabase);
        }
        let mut rec = self.new_transfer('c', TransferKind::Copy, Origin::Manual, target_label)?;
        rec.source = Some(source_label);
        rec.filter = filter;
        self.catalog.save_transfer(&rec)?;
        // Taken only now: a caller that fails before here keeps it while it cleans up.
        let Some(hold) = hold.take() else {
            return Err(TransferError::Internal(
                "the copy's target is not held".into(),
            ));
        };
        self.launch(
            rec.clone(),
            Held::target(hold),
            Work::Copy {
                source: source_url,
                target: target_url,
            },
        );
        Ok(rec)
    }

    fn new_transfer(
        &self,
        prefix: char,
        kind: TransferKind,
        origin: Origin,
        label: String,
    ) -> Result<TransferRecord, TransferError> {
        if self.tasks.is_closed() {
            return Err(TransferError::ShuttingDown);
        }
        let id = self.catalog.next_id(prefix)?;
        let rec = TransferRecord::new(id, kind, origin, label, self.clock.now());
        self.catalog.save_transfer(&rec)?;
        Ok(rec)
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
    /// A link that fetches a completed backup without the API token until `expires` has
    /// passed. Plain, unencrypted backups on a store that presigns (S3, GCS, Azure) get a
    /// presigned link to the stored object, which is the dump compressed with zstd; the
    /// others (and any with `plain`) get a link to this service, signed with HMAC-SHA256,
    /// that streams the plain custom-format dump. `base` is the service's public URL.
    pub fn backup_url(
        &self,
        id: Option<TransferId>,
        expires: std::time::Duration,
        plain: bool,
        base: &str,
    ) -> Result<BackupUrl, TransferError> {
        let backup = match id {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        let expires_at = self
            .clock
            .now()
            .checked_add(jiff::SignedDuration::from_secs(expires.as_secs() as i64))
            .map_err(|e| TransferError::Internal(e.to_string()))?;
        if !plain && let Some(key) = &backup.object_key {
            match self.storage.signed_url(key, expires) {
                Ok(Some(url)) => {
                    return Ok(BackupUrl {
                        id: backup.id,
                        url,
                        expires_at,
                        content: "zstd".into(),
                    });
                }
                Ok(None) => {}
                // Credentials that cannot presign (a GCS login without a key, say): the
                // service's own link still works.
                Err(e) => tracing::warn!(
                    "cannot presign a link to {}; giving a service link instead: {e}",
                    backup.id
                ),
            }
        }
        let expiry = expires_at.as_second();
        let sig = self.secrets.sign_link(&link_message(&backup, expiry));
        Ok(BackupUrl {
            id: backup.id,
            url: format!(
                "{}/links/{}?expires={expiry}&sig={sig}",
                base.trim_end_matches('/'),
                backup.id
            ),
            expires_at,
            content: "dump".into(),
        })
    }

    /// The backup a service link names, if its signature is right and it has not expired.
    pub fn check_link(
        &self,
        id: TransferId,
        expiry: i64,
        sig: &str,
    ) -> Result<TransferRecord, LinkRefused> {
        // One answer for an unknown backup and a bad signature: a link must not tell which
        // backups exist.
        let invalid = LinkRefused(
            "this link is not valid: it was altered, or its backup was deleted or replaced",
        );
        let backup = self.completed_backup(id).map_err(|_| invalid.clone())?;
        if !self
            .secrets
            .link_signature_matches(&link_message(&backup, expiry), sig)
        {
            return Err(invalid);
        }
        if self.clock.now().as_second() > expiry {
            return Err(LinkRefused(
                "the link has expired: ask for a new one with `pgbackups backups:url`",
            ));
        }
        Ok(backup)
    }

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

    /// Expires what the database's retention policy no longer keeps, among the backups of
    /// the kind the job just made (manual or scheduled). Problems are logged, never fatal: the
    /// capture itself succeeded.
    async fn apply_retention(&self, job: &Job) {
        let (catalog, storage) = (self.catalog.clone(), self.storage.clone());
        let current = job.rec.clone();
        let claims = self.claims.clone();
        let result = tokio::task::spawn_blocking(move || {
            expire(&catalog, storage.as_ref(), &claims, &current)
        })
        .await;
        match result {
            Ok(Ok(expired)) => {
                for (id, why) in expired {
                    job.log(&format!("Expired backup {id} ({why})"));
                }
            }
            Ok(Err(e)) => job.log(&format!("Retention could not run: {e}")),
            Err(e) => job.log(&format!("Retention could not run: {e}")),
        }
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
            } => match atomic {
                None => restore::run(job, &backup, url, jobs).await,
                Some(swap) => {
                    // The swap renames the target: hold it under its server identity too.
                    job.hold_server_identity(&url).await?;
                    let fresh = atomic::prepare(job, &url).await?;
                    let restored = restore::run(job, &backup, fresh.url.clone(), jobs).await;
                    // Whatever happened to the fresh database, the target was not emptied.
                    job.target_unknown = false;
                    atomic::finish(job, &url, &fresh, swap, restored).await
                }
            },
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

/// Deletes the backups of `current`'s database and kind that its policy no longer keeps
/// (never `current`, a pinned one, or one being restored). Returns what it expired and why.
fn expire(
    catalog: &Catalog,
    storage: &dyn Storage,
    claims: &Claims,
    current: &TransferRecord,
) -> Result<Vec<(TransferId, String)>, TransferError> {
    // Partial captures are not what a policy counts: they neither expire nor get expired.
    if !current.filter.is_empty() {
        return Ok(Vec::new());
    }
    let policy = catalog.retention(&current.database)?.unwrap_or_default();
    let tz = catalog
        .schedules()?
        .iter()
        .find(|s| s.database == current.database)
        .and_then(|s| crate::schedule::spec_of(s).ok())
        .map(|spec| spec.time_zone().clone())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let in_use: Vec<TransferId> = catalog
        .unfinished_transfers()?
        .iter()
        .filter_map(|t| t.backup_id)
        .collect();
    let mut candidates: Vec<retention::Candidate> = catalog
        .transfers(Some(TransferKind::Capture))?
        .into_iter()
        .filter(|t| {
            t.database == current.database
                && t.is_completed_backup()
                && t.id != current.id
                && t.filter.is_empty()
        })
        .map(|t| retention::Candidate {
            id: t.id,
            origin: t.origin,
            captured_at: t.started_at.unwrap_or(t.created_at),
            pinned: t.pinned || in_use.contains(&t.id),
        })
        .collect();
    candidates.push(retention::Candidate {
        id: current.id,
        origin: current.origin,
        captured_at: current.started_at.unwrap_or(current.created_at),
        pinned: true,
    });
    let why = match current.origin {
        Origin::Manual => format!(
            "retention keeps the newest {} manual backups",
            policy.manual
        ),
        Origin::Scheduled => format!(
            "retention keeps {} daily, {} weekly and {} monthly scheduled backups",
            policy.daily, policy.weekly, policy.monthly
        ),
    };
    let mut expired = Vec::new();
    for id in retention::expired(&candidates, &policy, &tz) {
        let Some(t) = catalog.transfer(id)? else {
            continue;
        };
        if t.origin != current.origin {
            continue;
        }
        // A backup that started being read since the policy was applied stays; one that a
        // user deleted meanwhile is gone.
        let Ok(_deleting) = claims.delete_backup(id) else {
            continue;
        };
        if catalog.transfer(id)?.is_none() {
            continue;
        }
        if let Some(key) = &t.object_key {
            manifest::delete_backup(storage, key)?;
        }
        catalog.delete_transfer(id)?;
        expired.push((id, why.clone()));
    }
    Ok(expired)
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

/// `--jobs` between 1 and 64.
fn check_jobs(jobs: u32) -> Result<(), TransferError> {
    if (1..=64).contains(&jobs) {
        Ok(())
    } else {
        Err(TransferError::BadJobs(jobs))
    }
}

/// Database names: short, safe in URLs, shells and file names, and never mistaken for an
/// option (`-rf`, `--help`): a letter, digit or `_` first, then letters, digits, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), TransferError> {
    // What was meant as a URL is answered as one: with the accepted schemes, and without
    // echoing its password (`postgress://u:pw@h/db`, `http://...`).
    if name.contains("://") {
        return Err(TransferError::BadUrl(PgUrlError::Scheme(
            crate::pg::redact(name),
        )));
    }
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok = first_ok
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TransferError::BadName(crate::pg::redact(name)))
    }
}

/// The word a user must pass to `--confirm` for a database label: the registered name, or the
/// database name inside a URL.
pub fn confirm_word(label: &str) -> String {
    match PgUrl::parse(label) {
        Ok(url) => url.dbname(),
        Err(_) => label.to_string(),
    }
}

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
        assert!(check_name("DATABASE_URL").is_ok());
        assert!(check_name("bad name").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("-rf").is_err());
        assert!(check_name("--help").is_err());
        assert!(check_name("_x-1").is_ok());
        let err = check_name("postgress://u:pw@h/db").unwrap_err().to_string();
        assert!(!err.contains("pw@") && err.contains("postgres://"), "{err}");
    }
}
