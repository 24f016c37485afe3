//! The service's configuration: one struct, read once from flags and environment, with
//! defaults that work on a laptop.

use std::path::PathBuf;

/// Everything `pgbackups serve` needs to know.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Holds the catalog, secrets, local storage and scratch space.
    pub data_dir: PathBuf,
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
    pub download_limits: crate::transfer::restore_url::DownloadLimits,
    /// The URL clients reach the service at (behind a proxy, say), for signed download
    /// links; default: the listening address.
    pub public_url: Option<String>,
    /// Where backups are stored (default: the `storage` directory in the data directory).
    pub storage: crate::storage::StorageConfig,
    /// Client-side encryption of new backups, and the keys to read encrypted ones.
    pub encryption: crate::crypt::EncryptionConfig,
    /// A webhook that gets failures as JSON POSTs (see `notify.rs`).
    pub notify_url: Option<String>,
}

/// The configuration file (`--config`, else `pgbackups.toml` in the data directory when it
/// exists). Flags and environment variables override it. See `docs/CONFIG.md`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub max_running: Option<usize>,
    pub public_url: Option<String>,
    pub notify_url: Option<String>,
    #[serde(default)]
    pub storage: crate::storage::StorageConfig,
    #[serde(default)]
    pub encryption: crate::crypt::EncryptionConfig,
}

impl ConfigFile {
    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load(path: &std::path::Path, required: bool) -> Result<ConfigFile, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(ConfigFile::default());
            }
            Err(e) => {
                return Err(format!(
                    "cannot read configuration file {}: {e}",
                    path.display()
                ));
            }
        };
        // It may hold storage credentials: warn when others can read it.
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
            && text.contains("secret")
        {
            tracing::warn!(
                "configuration file {} holds secrets and is readable by others; chmod 600 it",
                path.display()
            );
        }
        toml::from_str(&text)
            .map_err(|e| format!("configuration file {} is not valid: {e}", path.display()))
    }
}

impl ServiceConfig {
    /// The embedded defaults under `data_dir`.
    pub fn new(data_dir: PathBuf) -> ServiceConfig {
        ServiceConfig {
            data_dir,
            listen: DEFAULT_LISTEN.to_string(),
            pg_bin_dirs: pg_bin_dirs_from_env(),
            max_running: 4,
            zstd_level: 1,
            zstd_workers: 2,
            download_limits: download_limits_from_env(),
            public_url: None,
            storage: Default::default(),
            encryption: Default::default(),
            notify_url: None,
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

/// File in the data directory where a running service writes the URL it serves on, so that a
/// CLI sharing the data directory finds it.
pub const SERVICE_URL_FILE: &str = "service.url";

/// The data directory: `$PGBACKUPS_DATA_DIR`, else `$XDG_DATA_HOME/pgbackups`, else
/// `~/.local/share/pgbackups`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PGBACKUPS_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("pgbackups");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/pgbackups")
}

fn download_limits_from_env() -> crate::transfer::restore_url::DownloadLimits {
    let mut l = crate::transfer::restore_url::DownloadLimits::default();
    let num = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(n) = num("PGBACKUPS_URL_MAX_BYTES") {
        l.max_bytes = n;
    }
    if let Some(s) = num("PGBACKUPS_URL_READ_TIMEOUT").filter(|s| *s > 0) {
        l.read_timeout = std::time::Duration::from_secs(s);
    }
    l
}

fn pg_bin_dirs_from_env() -> Vec<PathBuf> {
    std::env::var_os("PGBACKUPS_PG_BIN")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default()
}

/// A number of seconds from the environment variable `var`, or `default` when it is unset or
/// not a number (the tuning knobs the README lists).
pub fn env_secs(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
