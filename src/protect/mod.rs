//! Continuous Protection run by the service: `protect DATABASE` streams the database's WAL
//! into the store as it is written and takes base backups on a period, so that `rollback`
//! and `fork` (in `pitr`) can restore it to any moment since the oldest kept base backup.
//!
//! The WAL arrives through the stock `pg_receivewal` and base backups through the stock
//! `pg_basebackup`, supervised (see `stream.rs`; ARCHITECTURE.md says why not the
//! replication protocol in our own code). The server keeps the WAL through a physical
//! replication slot, `pgbackups_<database>`, which the service advances only past WAL that
//! is durable in the store.

mod spool;
mod stream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use stream::{Live, ReceiverState};

use crate::catalog::{Catalog, CatalogError, ProtectionRecord};
use crate::notify::Notifier;
use crate::pg::client::{PgError, query, quote_literal};
use crate::pg::{PgTools, PgUrl};
use crate::pitr::ArchiveInfo;
use crate::registry::{Registry, RegistryError, check_name};
use crate::storage::Storage;

/// A base backup a day unless told otherwise, and a week of them kept.
pub const DEFAULT_BASE_EVERY: Duration = Duration::from_secs(86_400);
pub const DEFAULT_KEEP_BASE: u32 = 7;

/// Why a protection call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error("{0}")]
    NotFound(String),
    /// The server or the request is not ready for it; the message says what to change.
    #[error("{0}")]
    Refused(String),
    /// The registry refused the database (an unknown or invalid name, say) or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Internal(String),
}

/// Why a replication connection or slot could not be had; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(
        "the server refuses replication connections from this host ({source}). Add this line to pg_hba.conf and reload the server (SELECT pg_reload_conf()): host replication {user} {host}/{cidr} scram-sha-256"
    )]
    NoHbaEntry {
        user: String,
        host: String,
        cidr: &'static str,
        #[source]
        source: PgError,
    },
    #[error(
        "the role {user} cannot stream WAL ({source}). As a superuser, run: ALTER ROLE {user} REPLICATION"
    )]
    NotReplicationRole {
        user: String,
        #[source]
        source: PgError,
    },
    #[error("cannot open a replication connection: {0}")]
    Connect(#[source] PgError),
    #[error("IDENTIFY_SYSTEM gave no timeline")]
    NoTimeline,
    #[error("cannot create replication slot {slot}: {source}")]
    CreateSlot {
        slot: String,
        #[source]
        source: PgError,
    },
}

impl From<ReplicationError> for ProtectError {
    fn from(e: ReplicationError) -> Self {
        ProtectError::Refused(e.to_string())
    }
}

/// Runs a blocking catalog or registry call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProtectError> + Send + 'static,
) -> Result<T, ProtectError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProtectError::Internal(e.to_string()))?
}

/// One database's protection, as `protection:info` shows it.
#[derive(Debug, Serialize)]
pub struct ProtectionView {
    pub database: String,
    /// Streamed by this service (`protect`), or only archived (`wal-push`) under this name.
    pub protected: bool,
    pub slot: Option<String>,
    pub base_every_secs: Option<u64>,
    pub keep_base: Option<u32>,
    pub since: Option<Timestamp>,
    pub live: Option<Live>,
    /// The archive in the store (read for one database at a time).
    pub archive: Option<ArchiveInfo>,
    /// Everything wrong, one line each: never silent.
    pub problems: Vec<String>,
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    live: Arc<Mutex<Live>>,
    record: ProtectionRecord,
}

/// The protected databases' streams.
pub struct Protector {
    catalog: Arc<dyn Catalog>,
    storage: Arc<dyn Storage>,
    tools: PgTools,
    /// Where protected databases' URLs are unsealed.
    registry: Arc<Registry>,
    /// Where protection problems are reported.
    notifier: Arc<Notifier>,
    tuning: crate::config::Tuning,
    spool_root: PathBuf,
    streams: Mutex<HashMap<String, Running>>,
    /// One protect or unprotect at a time, so that two calls never start two streams.
    changing: tokio::sync::Mutex<()>,
}

impl Protector {
    /// The protector of one service (the composition root builds it); spools live under
    /// `data_dir`, timed by `tuning`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        storage: Arc<dyn Storage>,
        tools: PgTools,
        registry: Arc<Registry>,
        notifier: Arc<Notifier>,
        data_dir: &std::path::Path,
        tuning: crate::config::Tuning,
    ) -> Arc<Protector> {
        Arc::new(Protector {
            catalog,
            storage,
            tools,
            registry,
            notifier,
            tuning,
            spool_root: data_dir.join("wal-spool"),
            streams: Mutex::new(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the streams of every protected database (at service start): each resumes from
    /// its slot. Blocks on the catalog: call it off the async threads.
    pub fn start_all(&self) -> Result<(), ProtectError> {
        for record in self.catalog.protections()? {
            match self.registry.resolve(Some(&record.database)) {
                Ok((_, url)) => self.start(record, url),
                Err(e) => tracing::error!(
                    database = %record.database,
                    "cannot resume protection: {e}"
                ),
            }
        }
        Ok(())
    }

    fn start(&self, record: ProtectionRecord, url: PgUrl) {
        if check_name(&record.database).is_err() {
            tracing::error!("not resuming a protection with an invalid name");
            return;
        }
        let setup = stream::Setup {
            name: record.database.clone(),
            slot: record.slot.clone(),
            url,
            storage: self.storage.clone(),
            tools: self.tools.clone(),
            spool: self.spool_root.join(&record.database),
            base_every: Duration::from_secs(record.base_every_secs),
            keep_base: record.keep_base,
            tuning: self.tuning,
            since: record.created_at,
            notifier: self.notifier.clone(),
        };
        let live = Arc::new(Mutex::new(Live::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(stream::run(setup, live.clone(), stop.clone()));
        tracing::info!(database = %record.database, "protection started (slot {})", record.slot);
        let replaced = self.streams().insert(
            record.database.clone(),
            Running {
                stop,
                task,
                live,
                record,
            },
        );
        if let Some(old) = replaced {
            old.stop.cancel();
        }
    }

    /// Protects a registered database: checks that the server allows it (saying what to
    /// change otherwise), creates the slot, records the protection and starts streaming. A
    /// protected database only has its settings updated.
    pub async fn protect(
        &self,
        database: &str,
        base_every: Option<Duration>,
        keep: Option<u32>,
    ) -> Result<ProtectionView, ProtectError> {
        let database = database.trim();
        if database.contains("://") {
            return Err(ProtectError::Refused(
                "protect a registered database: register the URL first with `pgbackups databases:add NAME`".into(),
            ));
        }
        // A registered name only: it names the spool directory, the archive and the slot.
        check_name(database)?;
        let registry = self.registry.clone();
        let reference = database.to_string();
        let (name, url) = blocking(move || Ok(registry.resolve(Some(&reference))?)).await?;
        check_name(&name)?;
        let base_every = base_every.unwrap_or(DEFAULT_BASE_EVERY);
        if base_every < Duration::from_secs(60) || base_every > Duration::from_secs(366 * 86_400) {
            return Err(ProtectError::Refused(
                "--base-every must be from a minute to a year (such as 6h or 1d)".into(),
            ));
        }
        let keep = keep.unwrap_or(DEFAULT_KEEP_BASE);
        if keep == 0 {
            return Err(ProtectError::Refused(
                "--keep must be at least 1: a base backup is where every rollback starts".into(),
            ));
        }
        let _one_at_a_time = self.changing.lock().await;
        let slot = slot_name(&name);
        let catalog = self.catalog.clone();
        let protections = blocking(move || Ok(catalog.protections()?)).await?;
        if let Some(other) = protections
            .iter()
            .find(|p| p.slot == slot && p.database != name)
        {
            return Err(ProtectError::Refused(format!(
                "{name} would share replication slot {slot} with the protected database {}; register it under another name",
                other.database
            )));
        }
        let tools = &self.tools;
        check_server(tools, &url, &slot).await?;
        create_slot(tools, &url, &slot).await?;
        let since = self.streams().get(&name).map(|r| r.record.created_at);
        let record = ProtectionRecord {
            database: name.clone(),
            slot,
            base_every_secs: base_every.as_secs(),
            keep_base: keep,
            created_at: since.unwrap_or_else(Timestamp::now),
        };
        let (catalog, saved) = (self.catalog.clone(), record.clone());
        if let Err(e) = blocking(move || Ok(catalog.set_protection(&saved)?)).await {
            // Not recorded (the database was removed meanwhile, say): a slot made just now
            // would keep WAL on the server with nothing to stream or drop it.
            let fresh = !protections.iter().any(|p| p.database == name);
            if fresh && let Err(d) = drop_slot(tools, &url, &record.slot).await {
                tracing::warn!(database = %name, "cannot drop replication slot {}: {d}", record.slot);
            }
            return Err(e);
        }
        // Only once the new settings are recorded is the running stream replaced: were it
        // taken out of the map first, a refused save would leave it running where neither
        // unprotect nor shutdown can reach it.
        let existing = self.streams().remove(&name);
        if let Some(old) = existing {
            old.stop.cancel();
            let _ = old.task.await;
        }
        self.start(record, url);
        self.view(&name, false).await
    }

    /// Stops protecting `database` and drops its slot. The archive stays in the store. When
    /// the slot cannot be dropped (the server is down), the protection is still removed and
    /// the warning says how to drop the slot, which would otherwise keep WAL on the server.
    pub async fn unprotect(&self, database: &str) -> Result<Option<String>, ProtectError> {
        let _one_at_a_time = self.changing.lock().await;
        let catalog = self.catalog.clone();
        let record = blocking(move || Ok(catalog.protections()?))
            .await?
            .into_iter()
            .find(|p| p.database == database)
            .ok_or_else(|| {
                ProtectError::NotFound(format!(
                    "{database} is not protected; list protections with `pgbackups protection:info`"
                ))
            })?;
        let running = self.streams().remove(database);
        if let Some(running) = running {
            running.stop.cancel();
            let _ = running.task.await;
        }
        let (catalog, name) = (self.catalog.clone(), database.to_string());
        blocking(move || Ok(catalog.remove_protection(&name)?)).await?;
        let spool = self.spool_root.join(database);
        if let Err(e) = check_name(database)
            .map_err(std::io::Error::other)
            .and_then(|()| std::fs::remove_dir_all(&spool))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", spool.display());
        }
        let (registry, name) = (self.registry.clone(), database.to_string());
        let resolved = blocking(move || Ok(registry.resolve(Some(&name))?)).await;
        // Why the slot could not be dropped, if it could not: a warning, not a failure.
        let not_dropped = match resolved {
            Ok((_, url)) => drop_slot(&self.tools, &url, &record.slot)
                .await
                .err()
                .map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        tracing::info!(database = %database, "protection stopped");
        Ok(not_dropped.map(|e| {
            format!(
                "the replication slot {slot} could not be dropped ({e}); it keeps WAL on the server until it is: run SELECT pg_drop_replication_slot('{slot}') there",
                slot = record.slot
            )
        }))
    }

    /// Every protected database, with its live state (no store reads).
    pub async fn list(&self) -> Result<Vec<ProtectionView>, ProtectError> {
        let catalog = self.catalog.clone();
        let names: Vec<String> = blocking(move || Ok(catalog.protections()?))
            .await?
            .into_iter()
            .map(|p| p.database)
            .collect();
        let mut out = Vec::new();
        for name in names {
            out.push(self.view(&name, false).await?);
        }
        Ok(out)
    }

    /// One database (or any name archived with `wal-push`), with its archive read from the
    /// store.
    pub async fn info(&self, database: &str) -> Result<ProtectionView, ProtectError> {
        crate::wal::key(database, "00000001.history")
            .map_err(|e| ProtectError::Refused(e.to_string()))?;
        let view = self.view(database, true).await?;
        let empty = view
            .archive
            .as_ref()
            .is_none_or(|a| a.segments == 0 && a.base_backups.is_empty());
        if !view.protected && empty {
            return Err(ProtectError::NotFound(format!(
                "{database} is not protected and has no archive in the store: protect it with `pgbackups protect {database}`"
            )));
        }
        Ok(view)
    }

    async fn view(
        &self,
        database: &str,
        with_archive: bool,
    ) -> Result<ProtectionView, ProtectError> {
        let (record, live) = match self.streams().get(database) {
            Some(r) => (
                Some(r.record.clone()),
                Some(r.live.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            ),
            None => (None, None),
        };
        let archive = if with_archive {
            let (storage, name) = (self.storage.clone(), database.to_string());
            Some(
                tokio::task::spawn_blocking(move || {
                    crate::pitr::archive_info(storage.as_ref(), &name)
                })
                .await
                .map_err(|e| ProtectError::Internal(e.to_string()))?
                .map_err(|e| ProtectError::Internal(format!("cannot read the archive: {e}")))?,
            )
        } else {
            None
        };
        let mut problems = live.as_ref().map(Live::problems).unwrap_or_default();
        if live.is_none()
            && let Some(a) = &archive
        {
            for (from, to) in &a.gaps {
                problems.push(format!("WAL gap: {from} .. {to} missing from the store"));
            }
        }
        Ok(ProtectionView {
            database: database.to_string(),
            protected: record.is_some(),
            slot: record.as_ref().map(|r| r.slot.clone()),
            base_every_secs: record.as_ref().map(|r| r.base_every_secs),
            keep_base: record.as_ref().map(|r| r.keep_base),
            since: record.as_ref().map(|r| r.created_at),
            live,
            archive,
            problems,
        })
    }

    /// Whether `database` is protected (it cannot be removed then), running or not. Blocks
    /// on the catalog: call it off the async threads.
    pub fn is_protected(&self, database: &str) -> bool {
        self.streams().contains_key(database)
            || self
                .catalog
                .protections()
                .is_ok_and(|p| p.iter().any(|p| p.database == database))
    }

    /// Stops every stream (at service shutdown); slots stay, so streaming resumes at the next
    /// start with nothing lost.
    pub async fn shutdown(&self) {
        let running: Vec<Running> = self.streams().drain().map(|(_, r)| r).collect();
        for r in &running {
            r.stop.cancel();
        }
        for r in running {
            let _ = r.task.await;
        }
    }
}

/// `pgbackups_<database>`, in the characters slot names allow.
fn slot_name(database: &str) -> String {
    let clean: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut slot = format!("pgbackups_{clean}");
    slot.truncate(63);
    slot
}

/// What `IDENTIFY_SYSTEM` says over a replication connection.
pub(crate) struct System {
    pub timeline: u32,
}

/// Opens a replication connection, as `pg_receivewal` will, and asks `IDENTIFY_SYSTEM`:
/// proves that the role and `pg_hba.conf` allow replication.
pub(crate) async fn identify_system(
    tools: &PgTools,
    url: &PgUrl,
) -> Result<System, ReplicationError> {
    let rows = query(
        tools,
        &url.with_param("replication", "true"),
        "IDENTIFY_SYSTEM",
    )
    .await
    .map_err(|e| explain_replication_error(e, url))?;
    let timeline = rows
        .first()
        .and_then(|r| r.get(1))
        .and_then(|t| t.parse().ok())
        .ok_or(ReplicationError::NoTimeline)?;
    Ok(System { timeline })
}

/// The history of `timeline` (`TIMELINE_HISTORY` over a replication connection): each
/// parent timeline with the position where it ended, oldest first.
pub(crate) async fn timeline_history(
    tools: &PgTools,
    url: &PgUrl,
    timeline: u32,
) -> Result<Vec<(u32, u64)>, ReplicationError> {
    let rows = query(
        tools,
        &url.with_param("replication", "true"),
        &format!("TIMELINE_HISTORY {timeline}"),
    )
    .await
    .map_err(|e| explain_replication_error(e, url))?;
    // The file's lines (`1\t0/3000000\treason`) come back split on tabs and newlines; the
    // first also carries the file name in front.
    let mut out = Vec::new();
    for row in rows {
        if let Some(pair) = row.windows(2).find_map(|w| {
            let tli = w[0].trim().parse::<u32>().ok()?;
            let lsn = crate::pitr::parse_lsn(&w[1])?;
            Some((tli, lsn))
        }) {
            out.push(pair);
        }
    }
    Ok(out)
}

fn explain_replication_error(source: PgError, url: &PgUrl) -> ReplicationError {
    let user = url.user().unwrap_or_default().to_string();
    let e = source.to_string();
    if e.contains("no pg_hba.conf entry for replication connection") {
        // `... from host "10.0.0.5", user "app", ...`: the line to add names that address.
        let host = e
            .split("from host \"")
            .nth(1)
            .and_then(|h| h.split('"').next())
            .unwrap_or("<this host's address>")
            .to_string();
        let cidr = if host.contains(':') { "128" } else { "32" };
        ReplicationError::NoHbaEntry {
            user,
            host,
            cidr,
            source,
        }
    } else if e.contains("must be superuser or replication role") {
        ReplicationError::NotReplicationRole { user, source }
    } else {
        ReplicationError::Connect(source)
    }
}

/// Checks what protection needs of the server, saying what to change otherwise.
async fn check_server(tools: &PgTools, url: &PgUrl, slot: &str) -> Result<(), ProtectError> {
    let rows = query(
        tools,
        url,
        &format!(
            "SELECT r.rolreplication OR r.rolsuper, current_setting('wal_level'), \
             current_setting('server_version_num')::int, current_setting('max_replication_slots')::int, \
             (SELECT count(*) FROM pg_replication_slots WHERE slot_name <> {slot}), \
             current_setting('max_wal_senders')::int, pg_is_in_recovery(), \
             (SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')) \
             FROM pg_roles r WHERE r.rolname = current_user",
            slot = quote_literal(slot)
        ),
    )
    .await
    .map_err(|e| ProtectError::Refused(e.to_string()))?;
    let row = rows
        .first()
        .ok_or_else(|| ProtectError::Internal("the server did not describe the role".into()))?;
    let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
    let user = url.user().unwrap_or_default();
    if field(0) != "t" {
        return Err(ProtectError::Refused(format!(
            "the role {user} needs REPLICATION to stream WAL and take base backups. As a superuser, run: ALTER ROLE {user} REPLICATION"
        )));
    }
    if field(1) == "minimal" {
        return Err(ProtectError::Refused(
            "wal_level is minimal, which cannot be streamed: set wal_level = replica in postgresql.conf and restart the server".into(),
        ));
    }
    if field(2).parse::<u32>().unwrap_or(0) < 130000 {
        return Err(ProtectError::Refused(
            "Continuous Protection needs PostgreSQL 13 or newer (base backups with manifests)"
                .into(),
        ));
    }
    if field(6) == "t" {
        return Err(ProtectError::Refused(
            "the server is a standby: protect its primary (base backups taken on a standby would wait for the primary to fill their last WAL segment)".into(),
        ));
    }
    if field(7) != "0" {
        return Err(ProtectError::Refused(
            "the cluster has tablespaces outside its data directory, which base backups streamed to the store do not support yet".into(),
        ));
    }
    if field(5).parse::<u32>().unwrap_or(0) < 2 {
        return Err(ProtectError::Refused(
            "max_wal_senders must be at least 2 (one for the WAL stream, one for base backups): raise it in postgresql.conf and restart the server".into(),
        ));
    }
    let (max_slots, used) = (
        field(3).parse::<u32>().unwrap_or(0),
        field(4).parse::<u32>().unwrap_or(0),
    );
    if used >= max_slots {
        return Err(ProtectError::Refused(format!(
            "all {max_slots} replication slots of the server are in use (max_replication_slots): raise it in postgresql.conf and restart the server, or drop an unused slot"
        )));
    }
    identify_system(tools, url).await?;
    Ok(())
}

/// Drops replication slot `slot` if the server has it.
async fn drop_slot(
    tools: &PgTools,
    url: &PgUrl,
    slot: &str,
) -> Result<(), crate::pg::client::PgError> {
    query(
        tools,
        url,
        &format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {}",
            quote_literal(slot)
        ),
    )
    .await
    .map(|_| ())
}

/// Creates the physical slot `slot` reserving WAL from now, unless it exists.
pub(crate) async fn create_slot(
    tools: &PgTools,
    url: &PgUrl,
    slot: &str,
) -> Result<(), ReplicationError> {
    let lit = quote_literal(slot);
    query(
        tools,
        url,
        &format!(
            "SELECT pg_create_physical_replication_slot({lit}, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {lit})"
        ),
    )
    .await
    .map(|_| ())
    .map_err(|source| ReplicationError::CreateSlot {
        slot: slot.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid() {
        assert_eq!(slot_name("main"), "pgbackups_main");
        assert_eq!(slot_name("My-DB.2"), "pgbackups_my_db_2");
        assert_eq!(slot_name(&"x".repeat(80)).len(), 63);
    }
}
