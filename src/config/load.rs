//! Loading the configuration once, at start: the embedded defaults, then the configuration
//! file, then the environment, then the flags (each layer wins over the ones before).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    CONFIG_FILE_NAME, ConfigError, ConfigFile, DEFAULT_LISTEN, DEFAULT_MAX_RUNNING, ServiceConfig,
    Tuning,
};

/// The command-line values the configuration depends on, as the CLI parsed them. A flag
/// that has an environment variable of its own (`--storage` and `PGBACKUPS_STORAGE`, ...)
/// arrives here already merged with it (flag first), so both sit above the file.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--data-dir` (`PGBACKUPS_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// `--config` (`PGBACKUPS_CONFIG`): a file that must exist.
    pub config: Option<PathBuf>,
    /// `--storage` (`PGBACKUPS_STORAGE`).
    pub storage: Option<String>,
    /// `--storage-endpoint` (`PGBACKUPS_STORAGE_ENDPOINT`).
    pub storage_endpoint: Option<String>,
    /// `--storage-region` (`PGBACKUPS_STORAGE_REGION`).
    pub storage_region: Option<String>,
    /// `--encrypt-to`, repeated: added to the file's recipients.
    pub encrypt_to: Vec<String>,
    /// `--identity-file` (`PGBACKUPS_AGE_IDENTITY_FILE`).
    pub identity_file: Option<PathBuf>,
    /// `--passphrase-file` (`PGBACKUPS_PASSPHRASE_FILE`).
    pub passphrase_file: Option<PathBuf>,
    /// `serve --listen` (`PGBACKUPS_LISTEN`).
    pub listen: Option<String>,
    /// `serve --public-url` (`PGBACKUPS_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// `serve --trusted-proxy`, repeated or comma-separated (`PGBACKUPS_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<String>,
    /// `serve --max-running` (`PGBACKUPS_MAX_RUNNING`).
    pub max_running: Option<usize>,
    /// `serve --notify-url` (`PGBACKUPS_NOTIFY_URL`).
    pub notify_url: Option<String>,
    /// `serve --catalog`: the flag alone (`PGBACKUPS_CATALOG` is read here, below it), so that
    /// a password typed on the command line can be refused.
    pub catalog: Option<String>,
}

/// The service's configuration from the data directory, the configuration file, the
/// environment and `flags`; the one place the process environment is read for settings.
pub fn load(flags: Flags) -> Result<ServiceConfig, ConfigError> {
    load_with(flags, &|name| super::process_env::var_os(name))
}

/// The data directory: `$PGBACKUPS_DATA_DIR`, else `$XDG_DATA_HOME/pgbackups`, else
/// `~/.local/share/pgbackups`.
pub fn default_data_dir() -> PathBuf {
    data_dir_from(&|name| super::process_env::var_os(name))
}

/// Reads one environment variable.
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// [`load`] with the environment `env` (tests give their own).
fn load_with(flags: Flags, env: Env) -> Result<ServiceConfig, ConfigError> {
    let data_dir = flags.data_dir.unwrap_or_else(|| data_dir_from(env));
    let mut config = ServiceConfig::new(data_dir);
    let file = match &flags.config {
        Some(path) => ConfigFile::load(path, true)?,
        None => ConfigFile::load(&config.data_dir.join(CONFIG_FILE_NAME), false)?,
    };

    config.listen = flags
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    config.max_running = flags
        .max_running
        .or(file.max_running)
        .unwrap_or(DEFAULT_MAX_RUNNING);
    config.public_url = flags.public_url.or(file.public_url);
    let proxies = if flags.trusted_proxies.is_empty() {
        file.trusted_proxies.unwrap_or_default()
    } else {
        flags.trusted_proxies
    };
    config.trusted_proxies = proxies
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    config.notify_url = flags.notify_url.or(file.notify_url);
    config.catalog = super::catalog::resolve(flags.catalog, file.catalog, env)?;

    config.pg_bin_dirs = match env("PGBACKUPS_PG_BIN") {
        Some(v) => std::env::split_paths(&v).collect(),
        None => file.pg_bin.unwrap_or_default(),
    };

    let t = &file.tuning;
    let secs = |var: &str, key: Option<u64>| number(env, var).or(key);
    let default = Tuning::default();
    config.tuning = Tuning {
        lag_limit: secs("PGBACKUPS_LAG_LIMIT_SECS", t.lag_limit_secs)
            .map_or(default.lag_limit, Duration::from_secs),
        base_retry: secs("PGBACKUPS_BASE_RETRY_SECS", t.base_retry_secs)
            .map_or(default.base_retry, Duration::from_secs),
        partial_every: secs("PGBACKUPS_PARTIAL_SECS", t.partial_secs)
            .map_or(default.partial_every, |s| Duration::from_secs(s.max(1))),
        base_wal_wait: secs("PGBACKUPS_BASE_WAL_WAIT_SECS", t.base_wal_wait_secs)
            .map_or(default.base_wal_wait, Duration::from_secs),
        storage_sweep: secs("PGBACKUPS_STORAGE_SWEEP_SECS", t.storage_sweep_secs)
            .filter(|s| *s > 0)
            .map_or(default.storage_sweep, Duration::from_secs),
    };
    if let Some(n) = secs("PGBACKUPS_URL_MAX_BYTES", t.url_max_bytes) {
        config.download_limits.max_bytes = n;
    }
    if let Some(s) = number(env, "PGBACKUPS_URL_READ_TIMEOUT")
        .filter(|s| *s > 0)
        .or(t.url_read_timeout_secs.filter(|s| *s > 0))
    {
        config.download_limits.read_timeout = Duration::from_secs(s);
    }

    config.storage = file.storage;
    if flags.storage.is_some() {
        config.storage.url = flags.storage;
    }
    if flags.storage_endpoint.is_some() {
        config.storage.endpoint = flags.storage_endpoint;
    }
    if flags.storage_region.is_some() {
        config.storage.region = flags.storage_region;
    }
    // The AWS tools' own variables: only a default, below the file and the flag.
    if config.storage.endpoint.is_none() {
        config.storage.endpoint =
            text(env, "AWS_ENDPOINT_URL").or_else(|| text(env, "AWS_ENDPOINT"));
    }

    config.encryption = file.encryption;
    config.encryption.recipients.extend(flags.encrypt_to);
    if flags.identity_file.is_some() {
        config.encryption.identity_file = flags.identity_file;
    }
    if flags.passphrase_file.is_some() {
        config.encryption.passphrase_file = flags.passphrase_file;
    }

    config.test_clock = text(env, "PGBACKUPS_TEST_CLOCK").filter(|s| !s.is_empty());
    if cfg!(debug_assertions) {
        config.test_holds = text(env, "PGBACKUPS_TEST_HOLD")
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
    }
    Ok(config)
}

fn data_dir_from(env: Env) -> PathBuf {
    if let Some(d) = env("PGBACKUPS_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = env("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("pgbackups");
    }
    let home = env("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/pgbackups")
}

/// The variable `var` as text; unset or not Unicode: `None`.
fn text(env: Env, var: &str) -> Option<String> {
    env(var).and_then(|v| v.into_string().ok())
}

/// The variable `var` as a whole number; unset or not a number: `None` (the layer below
/// applies).
fn number(env: Env, var: &str) -> Option<u64> {
    text(env, var).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests;
