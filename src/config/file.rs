//! The configuration file (`pgbackups.toml`): its keys, and reading it with errors that say
//! which file and why.

use std::path::{Path, PathBuf};

/// The configuration file (`--config`, else `pgbackups.toml` in the data directory when it
/// exists). Environment variables and flags override it. See `docs/CONFIG.md`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub max_running: Option<usize>,
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed: addresses or `ADDRESS/PREFIX` networks.
    pub trusted_proxies: Option<Vec<String>>,
    pub notify_url: Option<String>,
    /// A PostgreSQL catalog shared by several nodes (`postgres://user:password@host/db`);
    /// absent: the embedded SQLite catalog.
    pub catalog: Option<String>,
    /// Extra directories with the PostgreSQL client tools, searched first.
    pub pg_bin: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub storage: crate::storage::StorageConfig,
    #[serde(default)]
    pub encryption: crate::crypt::EncryptionConfig,
    #[serde(default)]
    pub tuning: TuningFile,
}

/// The `[tuning]` section: the knobs of [`super::Tuning`] and the limits on restores from
/// URLs, each overridden by its environment variable.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningFile {
    pub lag_limit_secs: Option<u64>,
    pub base_retry_secs: Option<u64>,
    pub partial_secs: Option<u64>,
    pub base_wal_wait_secs: Option<u64>,
    pub storage_sweep_secs: Option<u64>,
    pub url_max_bytes: Option<u64>,
    pub url_read_timeout_secs: Option<u64>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing (when it was named) or unreadable.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, or has a key or value this version does not know.
    #[error("configuration file {} is not valid: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: TomlError,
    },
    /// `--catalog` or `PGBACKUPS_CATALOG` with a password in it: a command line is visible to
    /// every user (`ps`), a service's environment to whoever can read its unit.
    #[error(
        "the catalog URL in --catalog or PGBACKUPS_CATALOG must not hold a password (anyone on this machine can read a command line); give it in PGPASSWORD, a passfile (~/.pgpass or PGPASSFILE) or the configuration file's `catalog` URL"
    )]
    CatalogPasswordOutsideFile,
    /// A catalog that is not a PostgreSQL URL.
    #[error(
        "the catalog must be a PostgreSQL URL such as postgres://user@host/database (or `sqlite`, the default), not `{0}`"
    )]
    CatalogUrl(String),
    /// A catalog URL without a user name.
    #[error("the catalog URL {0} names no user; write it as postgres://USER@host/database")]
    CatalogUser(String),
    /// A `--trusted-proxy` (or `trusted_proxies`) that is not an address or network.
    #[error(transparent)]
    Proxy(#[from] super::BadProxy),
}

/// What the TOML parser said, and where, without the line it quotes: the file may hold store
/// credentials, and a typo on such a line would otherwise print the secret.
#[derive(Debug, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct TomlError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl TomlError {
    fn new(e: &toml::de::Error, text: &str) -> TomlError {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let before = text.get(..at).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        TomlError {
            message: e.message().trim_end().to_string(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl ConfigFile {
    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<ConfigFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(ConfigFile::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
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
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            source: TomlError::new(&e, &text),
        })
    }
}
