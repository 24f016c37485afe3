//! The transfer engine in the test process, without the binary or HTTP: an in-memory catalog,
//! a local store in a temporary directory wrapped in a [`FaultyStorage`], and the stock client
//! tools of the test clusters. [`InProcess::start`] is the one place that builds it, so that a
//! change to how the service composes its engine is made here once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgbackups::catalog::{TransferId, TransferRecord};
use pgbackups::config::ServiceConfig;
use pgbackups::pg::PgTools;
use pgbackups::schedule::SystemClock;
use pgbackups::secret::Secrets;
use pgbackups::service::{Foundations, Service};
use pgbackups::storage::{LocalStorage, Storage};
use pgbackups::transfer::{Engine, RebuildReport, TransferError};

use super::faulty::FaultyStorage;

/// An engine over a fault-injecting local store; the temporary data directory (scratch space,
/// secrets) and the store go away on drop.
pub struct InProcess {
    /// Every part, as the composition root builds them for `serve`.
    pub service: Service,
    pub engine: Arc<Engine>,
    pub store: Arc<FaultyStorage>,
    /// The data directory; the store is its `storage/`.
    pub dir: tempfile::TempDir,
}

impl InProcess {
    /// An engine with a fresh catalog and store. Call inside a Tokio runtime.
    pub fn start() -> InProcess {
        let dir = tempfile::Builder::new()
            .prefix("pgbackups-test-engine-")
            .tempdir()
            .unwrap();
        let config = ServiceConfig::new(dir.path().to_path_buf());
        let local: Arc<dyn Storage> = Arc::new(LocalStorage::new(config.storage_dir()).unwrap());
        let store = FaultyStorage::new(local);
        let service = InProcess::compose(&config, store.clone());
        let engine = service.engine.clone();
        InProcess {
            service,
            engine,
            store,
            dir,
        }
    }

    /// Another engine, with a fresh (empty) catalog, over this one's store: a service whose
    /// disk was lost, for `catalog:rebuild`.
    pub fn with_new_catalog(&self) -> Service {
        let config = ServiceConfig::new(self.dir.path().to_path_buf());
        InProcess::compose(&config, self.store.clone())
    }

    /// Adds a database to the registry, as `databases:add` does.
    pub fn add_database(&self, name: &str, url: &str) {
        self.service.registry.add(name, url).unwrap();
    }

    /// What `serve` does to compose its parts, minus the listener, the scheduler's task and
    /// the protection streams.
    fn compose(config: &ServiceConfig, store: Arc<FaultyStorage>) -> Service {
        let mut config = config.clone();
        config.pg_bin_dirs.insert(0, super::PG_BIN.into());
        let base = Foundations {
            catalog: pgbackups::catalog::open_in_memory().unwrap(),
            storage: store,
            secrets: Arc::new(Secrets::load_or_create(&config.data_dir).unwrap()),
            tools: PgTools::discover(&config.pg_bin_dirs),
            clock: Arc::new(SystemClock),
            notifier: pgbackups::notify::Notifier::disabled(),
        };
        let service = Service::compose(&config, base);
        service.engine.recover_interrupted().unwrap();
        service
    }

    /// Waits up to two minutes for transfer `id` to end; returns its record.
    pub async fn wait(&self, id: TransferId) -> TransferRecord {
        wait_for(&self.engine, id).await
    }

    /// The transfer's log, one line each.
    pub fn log(&self, id: TransferId) -> String {
        self.service
            .catalog
            .logs(id, 0)
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every key in the store under `backups/`, and every file left in its directory
    /// (partial writes included).
    pub fn stored(&self) -> (Vec<String>, Vec<String>) {
        let keys = self.store.inner().list("backups/").unwrap();
        let mut files = Vec::new();
        let root = self.dir.path().join("storage");
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        files.sort();
        (keys, files)
    }
}

/// Waits up to two minutes for transfer `id` of `engine` to end; returns its record.
pub async fn wait_for(engine: &Arc<Engine>, id: TransferId) -> TransferRecord {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rec = engine
            .transfer_after(id, Duration::from_secs(5))
            .await
            .unwrap();
        if rec.state.is_finished() {
            return rec;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not end in two minutes: {rec:?}"
        );
    }
}

/// `catalog:rebuild` on `service`, as the route runs it.
pub fn rebuild(service: &Service) -> Result<RebuildReport, TransferError> {
    pgbackups::transfer::rebuild_catalog(&*service.catalog, &*service.storage, &*service.clock)
}
