//! The composition root: the one place that builds the parts of a running service — catalog,
//! storage, registry, transfer engine, links, scheduler, protector, team — and hands each what it
//! needs. Nothing else builds them, and no part hands out another's (the engine is not a
//! container: the scheduler, the protector and the routes get the catalog or storage from
//! here).
//!
//! `pgbackups serve` opens the foundations from the configuration ([`Foundations::open`]);
//! in-process tests give their own (an in-memory catalog, a faulty store) to
//! [`Service::compose`].

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock, TestClock};
use crate::config::ServiceConfig;
use crate::notify::Notifier;
use crate::pg::PgTools;
use crate::protect::Protector;
use crate::registry::Registry;
use crate::schedule::{Scheduler, Starter};
use crate::secret::Secrets;
use crate::storage::Storage;
use crate::team::Team;
use crate::transfer::{Engine, Links};

/// What the service is built on: opened from the configuration, or given by a test.
pub struct Foundations {
    pub catalog: Arc<dyn Catalog>,
    pub storage: Arc<dyn Storage>,
    pub secrets: Arc<Secrets>,
    pub tools: PgTools,
    /// The wall clock (a test clock in schedule tests).
    pub clock: Arc<dyn Clock>,
    /// Where failures are reported (a webhook, when configured).
    pub notifier: Arc<Notifier>,
}

/// Why the foundations could not be opened, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read or create the service's secrets in {dir}: {source}")]
    Secrets {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open catalog {path}: {source}")]
    Catalog {
        /// The SQLite file, or the PostgreSQL URL without its password.
        path: String,
        #[source]
        source: crate::catalog::CatalogError,
    },
    #[error(transparent)]
    Storage(#[from] StoreOpenError),
    #[error(
        "PGBACKUPS_TEST_CLOCK must be START,SPEED (such as 2026-03-08T09:59:00Z,60), not `{0}`"
    )]
    TestClock(String),
    #[error(transparent)]
    Notifier(#[from] crate::notify::NotifyError),
}

impl Foundations {
    /// Opens what `config` names: the secrets and catalog in the data directory, the store
    /// (probed: a wrong bucket or bad credentials stop the service here, with the reason), the
    /// clock, the notifier and the PostgreSQL client tools.
    pub fn open(config: &ServiceConfig) -> Result<Foundations, OpenError> {
        let dir = &config.data_dir;
        let secrets =
            Arc::new(
                Secrets::load_or_create(dir).map_err(|source| OpenError::Secrets {
                    dir: dir.clone(),
                    source,
                })?,
            );
        let catalog = open_catalog(config)?;
        let storage = open_configured_storage(config, true)?;
        let clock: Arc<dyn Clock> = match &config.test_clock {
            Some(spec) => {
                let clock =
                    TestClock::parse(spec).ok_or_else(|| OpenError::TestClock(spec.clone()))?;
                tracing::warn!(
                    "schedules run on a test clock ({spec}); do not use this in production"
                );
                Arc::new(clock)
            }
            None => Arc::new(SystemClock),
        };
        let notifier = Notifier::new(config.notify_url.as_deref())?;
        let tools = PgTools::discover(&config.pg_bin_dirs);
        tracing::info!("PostgreSQL client tools: {}", tools.describe());
        Ok(Foundations {
            catalog,
            storage,
            secrets,
            tools,
            clock,
            notifier,
        })
    }
}

/// The catalog `config` names: the shared PostgreSQL one (`--catalog`), else the SQLite file
/// in the data directory.
fn open_catalog(config: &ServiceConfig) -> Result<Arc<dyn Catalog>, OpenError> {
    match &config.catalog {
        Some(pg) => {
            let target = crate::catalog::PgTarget::new(pg.url.clone(), pg.password.clone());
            let described = target.describe();
            let catalog =
                crate::catalog::open_postgres(&target).map_err(|source| OpenError::Catalog {
                    path: described.clone(),
                    source,
                })?;
            tracing::info!("PostgreSQL catalog: {described}");
            Ok(catalog)
        }
        None => {
            let path = config.catalog_path();
            crate::catalog::open(&path).map_err(|source| OpenError::Catalog {
                path: path.display().to_string(),
                source,
            })
        }
    }
}

/// Why `catalog:migrate` could not copy the catalog, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "name the PostgreSQL catalog to migrate into: --catalog postgres://user@host/database, PGBACKUPS_CATALOG, or `catalog` in the configuration file"
    )]
    NoTarget,
    #[error("there is no SQLite catalog at {}", .0.display())]
    NoSource(std::path::PathBuf),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("copying the catalog into {target} failed: {source}")]
    Copy {
        target: String,
        #[source]
        source: crate::catalog::CatalogError,
    },
}

/// `catalog:migrate --from-sqlite PATH`: copies the SQLite catalog at `from` (only read) into
/// the PostgreSQL catalog `config` names, which must be empty. Stop the service that uses
/// `from` first: what it writes meanwhile would not be copied.
pub fn migrate_sqlite_catalog(
    config: &ServiceConfig,
    from: &std::path::Path,
) -> Result<crate::catalog::Copied, MigrateError> {
    if config.catalog.is_none() {
        return Err(MigrateError::NoTarget);
    }
    if !from.is_file() {
        return Err(MigrateError::NoSource(from.to_path_buf()));
    }
    let source = crate::catalog::open(from).map_err(|source| OpenError::Catalog {
        path: from.display().to_string(),
        source,
    })?;
    let target = open_catalog(config)?;
    let described = config
        .catalog
        .as_ref()
        .map(|c| crate::pg::redact(&c.url))
        .unwrap_or_default();
    crate::catalog::copy_catalog(&*source, &*target).map_err(|source| MigrateError::Copy {
        target: described,
        source,
    })
}

/// The parts of one service, wired together.
pub struct Service {
    pub catalog: Arc<dyn Catalog>,
    pub storage: Arc<dyn Storage>,
    pub secrets: Arc<Secrets>,
    pub tools: PgTools,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<Notifier>,
    /// The registered databases.
    pub registry: Arc<Registry>,
    /// Starts, tracks, cancels and finishes transfers.
    pub engine: Arc<Engine>,
    /// Download links to backups.
    pub links: Arc<Links>,
    /// Daily scheduled captures (not yet running: `serve` spawns its task).
    pub scheduler: Arc<Scheduler>,
    /// Continuous Protection (no stream started yet: `serve` calls `start_all`).
    pub protector: Arc<Protector>,
    /// Users, roles, personal tokens, browser sessions and the audit log.
    pub team: Arc<Team>,
}

impl Service {
    /// Builds every part over `base`. Starts nothing: recovery, the scheduler's task and the
    /// protection streams are the caller's to start, in its order.
    pub fn compose(config: &ServiceConfig, base: Foundations) -> Service {
        let Foundations {
            catalog,
            storage,
            secrets,
            tools,
            clock,
            notifier,
        } = base;
        let registry = Arc::new(Registry::new(
            catalog.clone(),
            secrets.clone(),
            clock.clone(),
        ));
        let engine = Engine::new(
            config,
            catalog.clone(),
            storage.clone(),
            registry.clone(),
            tools.clone(),
            clock.clone(),
            notifier.clone(),
        );
        let links = Arc::new(Links::new(
            engine.clone(),
            storage.clone(),
            secrets.clone(),
            clock.clone(),
        ));
        let starter: Arc<dyn Starter> = Arc::new(engine.clone());
        let scheduler = Scheduler::new(catalog.clone(), starter, clock.clone());
        let protector = Protector::new(
            catalog.clone(),
            storage.clone(),
            tools.clone(),
            registry.clone(),
            notifier.clone(),
            &config.data_dir,
            config.tuning,
        );
        let team = Arc::new(Team::new(catalog.clone(), clock.clone()));
        Service {
            catalog,
            storage,
            secrets,
            tools,
            clock,
            notifier,
            registry,
            engine,
            links,
            scheduler,
            protector,
            team,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service over an in-memory catalog and a local store in a temporary directory.
    fn compose_in_memory(dir: &std::path::Path) -> Service {
        let config = ServiceConfig::new(dir.to_path_buf());
        let base = Foundations {
            catalog: crate::catalog::open_in_memory().unwrap(),
            storage: Arc::new(crate::storage::LocalStorage::new(dir.join("store")).unwrap()),
            secrets: Arc::new(Secrets::load_or_create(dir).unwrap()),
            tools: PgTools::discover(&[]),
            clock: Arc::new(SystemClock),
            notifier: Notifier::disabled(),
        };
        Service::compose(&config, base)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_parts_share_one_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let service = compose_in_memory(dir.path());
        // What the registry records, the engine resolves and the catalog shows.
        service
            .registry
            .add("main", "postgres://u:pw@localhost/app")
            .unwrap();
        assert_eq!(service.catalog.list_databases().unwrap().len(), 1);
        let engine = service.engine.clone();
        let interrupted = tokio::task::spawn_blocking(move || engine.recover_interrupted())
            .await
            .unwrap()
            .unwrap();
        assert!(interrupted.is_empty());
        // No backup yet: a link is refused, and a capture can start (it then fails to
        // connect, which is not what this test is about).
        assert!(
            service
                .links
                .backup_url(None, std::time::Duration::from_secs(60), false, "http://x")
                .is_err()
        );
        let engine = service.engine.clone();
        let rec = tokio::task::spawn_blocking(move || {
            engine.start_capture(None, crate::catalog::Origin::Manual)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(rec.id.to_string(), "b001");
        assert_eq!(rec.database, "main");
        service
            .engine
            .shutdown(std::time::Duration::from_secs(10))
            .await;
        assert!(!service.protector.is_protected("main"));
    }
}

/// Why the configured store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("cannot open storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("encryption: {0}")]
    Keys(#[from] crate::crypt::KeyError),
}

/// Opens the store `config` names, wrapped in age encryption when keys are configured. With
/// `probe`, a remote store is proved writable first (the service does it once at start;
/// `wal-push`, run once per WAL segment, does not).
pub fn open_configured_storage(
    config: &ServiceConfig,
    probe: bool,
) -> Result<Arc<dyn Storage>, StoreOpenError> {
    let storage = crate::storage::open_storage(&config.storage, &config.data_dir, probe)?;
    if config.encryption.is_empty() {
        return Ok(storage);
    }
    let keys = crate::crypt::Keys::load(&config.encryption)?;
    if !keys.encrypts() {
        tracing::warn!(
            "an age identity is configured but no recipient: new backups are NOT encrypted (add the public key with --encrypt-to; `age-keygen -y KEYFILE` prints it)"
        );
    }
    Ok(Arc::new(crate::crypt::EncryptedStorage::new(storage, keys)))
}
