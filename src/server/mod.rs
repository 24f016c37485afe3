//! `pgbackups serve`: the HTTP/JSON API in front of the transfer engine.
//!
//! Every route but a few open ones needs a credential (`auth.rs`): the service's API token
//! (generated on first start and kept in the data directory with mode 0600), a user's
//! personal token, or a browser session; what each role may do is `roles.rs`'s one table.
//! `/healthz` is open: it says only that the service is up. The API is documented in
//! `docs/API.md`.
//!
//! `serve()` owns the process around the service: the data directory and its lock, the
//! listener, start-up recovery, signals and shutdown. The parts themselves are built by the
//! composition root, `crate::service`.

pub mod auth;
mod extract;
mod pages;
pub mod roles;
mod routes;

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SERVICE_URL_FILE, ServiceConfig};
use crate::protect::ProtectError;
use crate::service::{Foundations, Service};
use crate::storage::Storage;
use crate::transfer::TransferError;

pub use routes::router;

/// Why the service could not start or run, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {}: {source}", dir.display())]
    CreateDataDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make data directory {} private: {source}", dir.display())]
    PrivateDataDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} {}: {source}", path.display())]
    Lock {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another pgbackups service is already running with data directory {}; stop it or pass another --data-dir",
        .0.display()
    )]
    Locked(std::path::PathBuf),
    #[error(transparent)]
    Open(#[from] crate::service::OpenError),
    #[error("cannot recover from the previous run: {0}")]
    Recover(#[source] TransferError),
    #[error("cannot listen on {listen}: {source}; pass another --listen address")]
    Listen {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(#[source] std::io::Error),
    #[error("cannot write {SERVICE_URL_FILE}: {0}")]
    UrlFile(#[source] std::io::Error),
    #[error("cannot resume Continuous Protection: {0}")]
    Protection(#[source] ProtectError),
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

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
        .map_err(|source| ServeError::CreateDataDir {
            dir: dir.clone(),
            source,
        })?;
    // The directory holds the token, the key and (with local storage) every dump.
    let mode = std::fs::metadata(dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| ServeError::PrivateDataDir {
                dir: dir.clone(),
                source,
            },
        )?;
        tracing::warn!(
            "data directory {} was mode {mode:o}; made it 0700",
            dir.display()
        );
    }
    let _lock = lock_data_dir(dir)?;
    crate::transfer::hold::arm(&config.test_holds);

    // Opening the catalog (migrations), probing the store and asking each client tool its
    // version block: off the async threads, like every later catalog call.
    let opening = config.clone();
    let base = tokio::task::spawn_blocking(move || Foundations::open(&opening)).await??;
    let service = Service::compose(&config, base);
    // Start-up recovery reads and writes the catalog: off the async threads.
    let engine = service.engine.clone();
    let interrupted = tokio::task::spawn_blocking(move || engine.recover_interrupted())
        .await?
        .map_err(ServeError::Recover)?;
    for id in &interrupted {
        tracing::warn!(transfer = %id, "marked failed: it was running when the service last stopped");
        let engine = service.engine.clone();
        let id = *id;
        if let Ok(Ok(t)) = tokio::task::spawn_blocking(move || engine.transfer(id)).await {
            service.notifier.send(crate::notify::Event {
                event: "transfer.failed",
                database: t.database,
                id: Some(id.to_string()),
                message: t.error.unwrap_or_default(),
                at: service.clock.now(),
            });
        }
    }
    service.engine.drop_stale_scratch(&interrupted).await;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            listen: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let url = format!("http://{addr}");
    crate::durable::write_file(
        &dir.join(SERVICE_URL_FILE),
        format!("{url}\n").as_bytes(),
        0o600,
    )
    .map_err(ServeError::UrlFile)?;
    tracing::info!("storage: {}", service.storage.describe());
    // The first line on stdout is the address, for scripts and the test harness.
    println!(
        "pgbackups listening on {url} (data directory {})",
        dir.display()
    );

    let protector = service.protector.clone();
    tokio::task::spawn_blocking(move || protector.start_all())
        .await?
        .map_err(ServeError::Protection)?;
    tokio::spawn(retry_storage_aborts(
        service.storage.clone(),
        config.tuning.storage_sweep,
    ));
    let stop_scheduler = tokio_util::sync::CancellationToken::new();
    tokio::spawn(service.scheduler.clone().run(stop_scheduler.clone()));
    let public_url = config.public_url.clone().unwrap_or_else(|| url.clone());
    let app = router(&service, &public_url, &config.trusted_proxies);
    let protector = service.protector.clone();
    let shutdown_engine = service.engine.clone();
    let stopped = Arc::new(tokio::sync::Notify::new());
    let stopped_tx = stopped.clone();
    // With the client's address in each request (`ConnectInfo<SocketAddr>`): login limits
    // count per address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
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
        r = server => r.map_err(ServeError::Serve)?,
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
        .map_err(|source| ServeError::Lock {
            what: "open",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServeError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(ServeError::Lock {
            what: "lock",
            path,
            source,
        }),
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
