//! The service's configuration: one struct, loaded once (file < environment < flags) by
//! [`load`], then passed down to the parts that use it. Nothing else reads the environment
//! for settings. See `docs/CONFIG.md`.

mod catalog;
mod file;
mod load;
pub mod process_env;
mod proxy;

use std::path::PathBuf;
use std::time::Duration;

pub use catalog::CatalogUrl;
pub use file::{ConfigError, ConfigFile, TomlError, TuningFile};
pub use load::{Flags, default_data_dir, load};
pub use proxy::{BadProxy, TrustedProxy, client_address};

/// Everything `pgbackups serve` (and the commands that use the store directly) needs to
/// know.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Holds the catalog, secrets, local storage and scratch space.
    pub data_dir: PathBuf,
    /// A PostgreSQL catalog that several nodes share; `None`: the SQLite catalog in the data
    /// directory (`catalog_path`).
    pub catalog: Option<CatalogUrl>,
    /// Address the API listens on.
    pub listen: String,
    /// Extra directories to look for pg_dump / pg_restore / psql in, before the usual places.
    pub pg_bin_dirs: Vec<PathBuf>,
    /// How many transfers run at once; more wait as Pending.
    pub max_running: usize,
    /// zstd level for stored dumps (1 = fastest; 3 = zstd's default).
    pub zstd_level: i32,
    /// zstd worker threads (0 = compress on the pipeline thread).
    pub zstd_workers: u32,
    /// Limits on restores from URLs (`PGBACKUPS_URL_MAX_BYTES`, `PGBACKUPS_URL_READ_TIMEOUT`
    /// in seconds).
    pub download_limits: DownloadLimits,
    /// The URL clients reach the service at (behind a proxy, say), for signed download
    /// links; default: the listening address.
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`), for the login
    /// limit per address.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Where backups are stored (default: the `storage` directory in the data directory).
    pub storage: crate::storage::StorageConfig,
    /// Client-side encryption of new backups, and the keys to read encrypted ones.
    pub encryption: crate::crypt::EncryptionConfig,
    /// A webhook that gets failures as JSON POSTs (see `notify.rs`).
    pub notify_url: Option<String>,
    /// Timings of Continuous Protection and the store's clean-up.
    pub tuning: Tuning,
    /// Tests only: `START,SPEED` of a clock the scheduler runs on instead of the system's
    /// (`PGBACKUPS_TEST_CLOCK`).
    pub test_clock: Option<String>,
    /// Tests only, debug builds only: the points where transfers are held
    /// (`PGBACKUPS_TEST_HOLD`, see `transfer/hold.rs`); always empty in a release build.
    pub test_holds: Vec<String>,
}

/// The tuning knobs: timings that operators rarely change and tests shorten. Each is a
/// `[tuning]` key of the configuration file and an environment variable (which wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Archiving further behind than this is a problem (`lag_limit_secs`,
    /// `PGBACKUPS_LAG_LIMIT_SECS`; default 300 s).
    pub lag_limit: Duration,
    /// How long a failed base backup of a protected database waits before the next try
    /// (`base_retry_secs`, `PGBACKUPS_BASE_RETRY_SECS`; default 300 s).
    pub base_retry: Duration,
    /// How often the WAL segment still filling is uploaded (`partial_secs`,
    /// `PGBACKUPS_PARTIAL_SECS`; default 5 s, at least 1 s).
    pub partial_every: Duration,
    /// How long a base backup waits for the WAL up to its end to reach the store
    /// (`base_wal_wait_secs`, `PGBACKUPS_BASE_WAL_WAIT_SECS`; default 120 s).
    pub base_wal_wait: Duration,
    /// How often uploads whose abort failed during a store outage are aborted again
    /// (`storage_sweep_secs`, `PGBACKUPS_STORAGE_SWEEP_SECS`; default 60 s; 0 means 60).
    pub storage_sweep: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            lag_limit: Duration::from_secs(300),
            base_retry: Duration::from_secs(300),
            partial_every: Duration::from_secs(5),
            base_wal_wait: Duration::from_secs(120),
            storage_sweep: Duration::from_secs(60),
        }
    }
}

impl ServiceConfig {
    /// The embedded defaults under `data_dir` (no file, no environment: [`load`] adds those).
    pub fn new(data_dir: PathBuf) -> ServiceConfig {
        ServiceConfig {
            data_dir,
            catalog: None,
            listen: DEFAULT_LISTEN.to_string(),
            pg_bin_dirs: Vec::new(),
            max_running: DEFAULT_MAX_RUNNING,
            zstd_level: 1,
            zstd_workers: 2,
            download_limits: Default::default(),
            public_url: None,
            trusted_proxies: Vec::new(),
            storage: Default::default(),
            encryption: Default::default(),
            notify_url: None,
            tuning: Tuning::default(),
            test_clock: None,
            test_holds: Vec::new(),
        }
    }

    /// Where the catalog database lives.
    pub fn catalog_path(&self) -> PathBuf {
        self.data_dir.join("catalog.db")
    }

    /// Root of the local object store.
    pub fn storage_dir(&self) -> PathBuf {
        self.data_dir.join("storage")
    }

    /// Scratch space for restores (the dump is spooled here so that pg_restore can seek).
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7117";

/// Default number of transfers that run at once.
pub const DEFAULT_MAX_RUNNING: usize = 4;

/// The configuration file's name in the data directory, read when no `--config` is given.
pub const CONFIG_FILE_NAME: &str = "pgbackups.toml";

/// File in the data directory where a running service writes the URL it serves on, so that a
/// CLI sharing the data directory finds it.
pub const SERVICE_URL_FILE: &str = "service.url";

/// Limits on a restore from a URL (`PGBACKUPS_URL_MAX_BYTES`, `PGBACKUPS_URL_READ_TIMEOUT`).
#[derive(Clone, Copy, Debug)]
pub struct DownloadLimits {
    /// The largest file accepted.
    pub max_bytes: u64,
    /// How long the server may stay silent (while connecting, or mid-body).
    pub read_timeout: Duration,
}

impl Default for DownloadLimits {
    fn default() -> DownloadLimits {
        DownloadLimits {
            max_bytes: 1 << 40,
            read_timeout: Duration::from_secs(30),
        }
    }
}
