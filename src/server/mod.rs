//! `pgbackups serve`: the HTTP/JSON API in front of the transfer engine.
//!
//! Every `/api` call needs `Authorization: Bearer <token>` (the token is generated on first
//! start and kept in the data directory with mode 0600). `/healthz` is open: it says only
//! that the service is up. The API is documented in `docs/API.md`.

mod extract;
mod routes;

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::config::{SERVICE_URL_FILE, ServiceConfig};
use crate::pg::PgTools;
use crate::schedule::{Clock, Scheduler, SystemClock, TestClock};
use crate::secret::Secrets;
use crate::storage::Storage;
use crate::transfer::Engine;

pub use routes::router;

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(String);

/// How long running transfers get to record that they were interrupted at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the service until SIGTERM or SIGINT.
///
/// At shutdown, running transfers are stopped (their child processes terminated, partial
/// objects removed) and recorded as Failed (interrupted by shutdown); none is left looking
/// succeeded or running.
pub async fn serve(config: ServiceConfig) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            ServeError(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
    // The directory holds the token, the key and (with local storage) every dump.
    let mode = std::fs::metadata(dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            ServeError(format!(
                "cannot make data directory {} private: {e}",
                dir.display()
            ))
        })?;
        tracing::warn!(
            "data directory {} was mode {mode:o}; made it 0700",
            dir.display()
        );
    }
    let _lock = lock_data_dir(dir)?;

    let secrets = Arc::new(Secrets::load_or_create(dir).map_err(|e| {
        ServeError(format!(
            "cannot read or create the service's secrets in {}: {e}",
            dir.display()
        ))
    })?);
    let catalog = Arc::new(Catalog::open(&config.catalog_path()).map_err(|e| {
        ServeError(format!(
            "cannot open catalog {}: {e}",
            config.catalog_path().display()
        ))
    })?);
    // Probed: a wrong bucket or bad credentials stop the service here, with the reason.
    let storage = open_configured_storage(&config, true).map_err(ServeError)?;
    let clock: Arc<dyn Clock> = match &config.test_clock {
        Some(spec) => {
            let clock = TestClock::parse(spec).ok_or_else(|| {
                ServeError(format!(
                    "PGBACKUPS_TEST_CLOCK must be START,SPEED (such as 2026-03-08T09:59:00Z,60), not `{spec}`"
                ))
            })?;
            tracing::warn!("schedules run on a test clock ({spec}); do not use this in production");
            Arc::new(clock)
        }
        None => Arc::new(SystemClock),
    };
    crate::transfer::hold::arm(&config.test_holds);
    let notifier =
        crate::notify::Notifier::new(config.notify_url.as_deref()).map_err(ServeError)?;
    let tools = PgTools::discover(&config.pg_bin_dirs);
    tracing::info!("PostgreSQL client tools: {}", tools.describe());
    let engine = Engine::new(
        &config,
        catalog,
        storage,
        secrets.clone(),
        tools,
        clock.clone(),
        notifier,
    );
    let interrupted = engine
        .recover_interrupted()
        .map_err(|e| ServeError(format!("cannot recover from the previous run: {e}")))?;
    for id in &interrupted {
        tracing::warn!(transfer = %id, "marked failed: it was running when the service last stopped");
        if let Ok(t) = engine.transfer(*id) {
            engine.notifier().send(crate::notify::Event {
                event: "transfer.failed",
                database: t.database,
                id: Some(id.to_string()),
                message: t.error.unwrap_or_default(),
                at: clock.now(),
            });
        }
    }
    engine.drop_stale_scratch(&interrupted).await;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| {
            ServeError(format!(
                "cannot listen on {}: {e}; pass another --listen address",
                config.listen
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError(format!("cannot read the listening address: {e}")))?;
    let url = format!("http://{addr}");
    crate::durable::write_file(
        &dir.join(SERVICE_URL_FILE),
        format!("{url}\n").as_bytes(),
        0o600,
    )
    .map_err(|e| ServeError(format!("cannot write {SERVICE_URL_FILE}: {e}")))?;
    tracing::info!("storage: {}", engine.storage().describe());
    // The first line on stdout is the address, for scripts and the test harness.
    println!(
        "pgbackups listening on {url} (data directory {})",
        dir.display()
    );

    let protector = crate::protect::Protector::new(engine.clone(), dir, config.tuning);
    protector
        .start_all()
        .map_err(|e| ServeError(format!("cannot resume Continuous Protection: {e}")))?;
    tokio::spawn(retry_storage_aborts(
        engine.storage().clone(),
        config.tuning.storage_sweep,
    ));
    let starter: Arc<dyn crate::schedule::Starter> = Arc::new(engine.clone());
    let scheduler = Scheduler::new(engine.catalog().clone(), starter, clock);
    let stop_scheduler = tokio_util::sync::CancellationToken::new();
    tokio::spawn(scheduler.clone().run(stop_scheduler.clone()));
    let public_url = config.public_url.clone().unwrap_or_else(|| url.clone());
    let app = router(
        engine.clone(),
        secrets,
        scheduler,
        protector.clone(),
        &public_url,
    );
    let shutdown_engine = engine.clone();
    let stopped = Arc::new(tokio::sync::Notify::new());
    let stopped_tx = stopped.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: stopping the scheduler and running transfers");
        stop_scheduler.cancel();
        protector.shutdown().await;
        shutdown_engine.shutdown(SHUTDOWN_GRACE).await;
        stopped_tx.notify_one();
    });
    // Open connections (a long download, a client that stopped reading) get a little time
    // to finish once the transfers are recorded; then the service exits anyway.
    tokio::select! {
        r = server => r.map_err(|e| ServeError(format!("server error: {e}")))?,
        _ = async {
            stopped.notified().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => tracing::warn!("closing connections still open 10 s after shutdown"),
    }
    let _ = std::fs::remove_file(dir.join(SERVICE_URL_FILE));
    tracing::info!("stopped");
    Ok(())
}

/// Every `every` (a minute unless tuned), retries the clean-up of uploads whose abort failed
/// while the store was unreachable, so that no orphan parts outlive an outage.
async fn retry_storage_aborts(storage: Arc<dyn Storage>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.retry_aborts()).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!("aborted {n} interrupted upload(s) left by a store outage")
            }
            Ok(Err(e)) => tracing::warn!("could not clean up interrupted uploads: {e}"),
            _ => {}
        }
    }
}

/// Opens the store `config` names, wrapped in age encryption when keys are configured. With
/// `probe`, a remote store is proved writable first (the service does it once at start;
/// `wal-push`, run once per WAL segment, does not).
pub fn open_configured_storage(
    config: &ServiceConfig,
    probe: bool,
) -> Result<Arc<dyn Storage>, String> {
    let storage = crate::storage::open_storage(&config.storage, &config.data_dir, probe)
        .map_err(|e| format!("cannot open storage: {e}"))?;
    if config.encryption.is_empty() {
        return Ok(storage);
    }
    let keys =
        crate::crypt::Keys::load(&config.encryption).map_err(|e| format!("encryption: {e}"))?;
    if !keys.encrypts() {
        tracing::warn!(
            "an age identity is configured but no recipient: new backups are NOT encrypted (add the public key with --encrypt-to; `age-keygen -y KEYFILE` prints it)"
        );
    }
    Ok(Arc::new(crate::crypt::EncryptedStorage::new(storage, keys)))
}

/// Holds an exclusive lock on the data directory for the life of the service, so that two
/// services never share one catalog and store by accident.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, ServeError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ServeError(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServeError(format!(
            "another pgbackups service is already running with data directory {}; stop it or pass another --data-dir",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(ServeError(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
