//! What several command groups share: the environment the CLI reads, backup IDs and path
//! parts, durations on the command line, `--json` output, and the store of the commands
//! that use it directly.

use std::path::PathBuf;

use super::args::StoreArgs;
use super::client::{CliError, Client};
use crate::catalog::{TransferId, TransferRecord};
use crate::config::ServiceConfig;

/// The environment variables the commands read, read once by `main` (empty means unset).
/// Secrets stay here: they are never printed, and never put on a command line.
#[derive(Clone, Default)]
pub struct Env {
    /// `PGBACKUPS_URL`: where the service is.
    pub url: Option<String>,
    /// `PGBACKUPS_TOKEN`: the API token.
    pub token: Option<String>,
    /// `PGBACKUPS_DATABASE_URL`: the connection URL of `base-backup`.
    pub database_url: Option<String>,
    /// `PGBACKUPS_SOURCE_URL`: what a source argument `-` stands for.
    pub source_url: Option<String>,
    /// `PGBACKUPS_TARGET_URL`: what a target argument `-` stands for.
    pub target_url: Option<String>,
    /// `PGBACKUPS_PG_BIN`: where to look first for the PostgreSQL tools that `pull` and `push`
    /// run on this machine (as the service's own setting).
    pub pg_bin: Vec<std::path::PathBuf>,
}

impl Env {
    /// From the variables' values as `main` reads them: empty or blank ones count as unset.
    pub fn new(get: impl Fn(&str) -> Option<String>) -> Env {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Env {
            url: get("PGBACKUPS_URL"),
            token: get("PGBACKUPS_TOKEN"),
            database_url: get("PGBACKUPS_DATABASE_URL"),
            source_url: get("PGBACKUPS_SOURCE_URL"),
            target_url: get("PGBACKUPS_TARGET_URL"),
            pg_bin: get("PGBACKUPS_PG_BIN")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("Env")
            .field("url", &self.url)
            .field("token", &set(&self.token))
            .field("database_url", &set(&self.database_url))
            .field("source_url", &set(&self.source_url))
            .field("target_url", &set(&self.target_url))
            .field("pg_bin", &self.pg_bin)
            .finish()
    }
}

pub fn parse_id(s: &str) -> Result<TransferId, CliError> {
    s.parse().map_err(CliError::from)
}

/// A backup ID argument as the API's paths take it: `latest` when left out.
pub fn id_or_latest(id: Option<String>) -> Result<String, CliError> {
    Ok(match id {
        Some(id) => parse_id(&id)?.to_string(),
        None => "latest".to_string(),
    })
}

/// One path segment of an API URL.
pub fn path_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `--json`: the service's answer as is, pretty-printed.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(CliError::Json)?;
    println!("{text}");
    Ok(())
}

pub async fn newest_backup(c: &Client) -> Result<TransferId, CliError> {
    let all: Vec<TransferRecord> = c.get("/transfers?kind=capture").await?;
    all.iter()
        .max_by_key(|t| t.created_at)
        .map(|t| t.id)
        .ok_or_else(|| {
            CliError::msg("there are no backups yet; take one with `pgbackups backups:capture`")
        })
}

/// Seconds in `60m`, `12h`, `7d`, `90s` or `3600`, for the option `flag`.
pub fn parse_duration(flag: &str, text: &str) -> Result<u64, CliError> {
    seconds(text).ok_or_else(|| {
        CliError::msg(format!(
            "{flag} `{text}` is not a duration: use such as 90s, 60m, 12h or 7d"
        ))
    })
}

/// Seconds in `60m`, `12h`, `7d`, `90s` or `3600`.
fn seconds(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(n.saturating_mul(mult))
}

impl StoreArgs {
    /// The service's configuration from the data directory, the configuration file, the
    /// environment and these flags (which win).
    pub fn service_config(self, data_dir: Option<PathBuf>) -> Result<ServiceConfig, CliError> {
        crate::config::load(self.flags(data_dir)).map_err(CliError::lib)
    }

    /// These flags (and `--data-dir`) as the configuration loading takes them.
    pub fn flags(self, data_dir: Option<PathBuf>) -> crate::config::Flags {
        crate::config::Flags {
            data_dir,
            config: self.config,
            storage: self.storage,
            storage_endpoint: self.storage_endpoint,
            storage_region: self.storage_region,
            encrypt_to: self.encrypt_to,
            identity_file: self.identity_file,
            passphrase_file: self.passphrase_file,
            ..Default::default()
        }
    }

    /// These flags as arguments of a `pgbackups` child (`wal-fetch`, `wal-prefetch`), with
    /// paths made absolute (PostgreSQL runs the restore_command in its own data directory).
    pub fn as_args(&self) -> Vec<String> {
        let abs = |p: &PathBuf| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        };
        let mut out = Vec::new();
        let mut push = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push(flag.to_string());
                out.push(v);
            }
        };
        push("--config", self.config.as_ref().map(abs));
        push("--storage", self.storage.clone());
        push("--storage-endpoint", self.storage_endpoint.clone());
        push("--storage-region", self.storage_region.clone());
        push("--identity-file", self.identity_file.as_ref().map(abs));
        push("--passphrase-file", self.passphrase_file.as_ref().map(abs));
        out
    }
}

/// Runs `work` on a blocking thread with the store `config` names, opened without the
/// start-up probe (these commands open it once per use: per WAL segment, for wal-push).
pub async fn on_store<T, E>(
    config: ServiceConfig,
    work: impl FnOnce(&dyn crate::storage::Storage) -> Result<T, E> + Send + 'static,
) -> Result<T, CliError>
where
    T: Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let storage =
            crate::service::open_configured_storage(&config, false).map_err(CliError::lib)?;
        work(storage.as_ref()).map_err(CliError::lib)
    })
    .await
    .map_err(CliError::Task)?
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::seconds("90s"), Some(90));
        assert_eq!(super::seconds(" 60m"), Some(3600));
        assert_eq!(super::seconds("12h"), Some(43_200));
        assert_eq!(super::seconds("7d"), Some(604_800));
        assert_eq!(super::seconds("3600"), Some(3600));
        assert_eq!(super::seconds("2w"), None);
        assert_eq!(super::seconds("m"), None);
        let e = super::parse_duration("--expires", "soon");
        assert_eq!(
            e.err().map(|e| e.to_string()).as_deref(),
            Some("--expires `soon` is not a duration: use such as 90s, 60m, 12h or 7d")
        );
    }

    #[test]
    fn empty_variables_are_unset_and_secrets_not_shown() {
        let env = super::Env::new(|k| match k {
            "PGBACKUPS_URL" => Some("http://x".into()),
            "PGBACKUPS_TOKEN" => Some("s3cret".into()),
            "PGBACKUPS_SOURCE_URL" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(env.url.as_deref(), Some("http://x"));
        assert_eq!(env.source_url, None);
        assert!(!format!("{env:?}").contains("s3cret"));
    }
}
