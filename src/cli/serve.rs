//! `serve`: the service, configured from the data directory, the configuration file, the
//! environment and the flags.

use std::path::PathBuf;

use super::args::StoreArgs;
use super::client::CliError;

/// The flags of `serve` beyond the store's.
pub struct ServeArgs {
    pub data_dir: Option<PathBuf>,
    pub store: StoreArgs,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub max_running: Option<usize>,
    pub notify_url: Option<String>,
    /// `--catalog`, without `PGBACKUPS_CATALOG` (the configuration reads that).
    pub catalog: Option<String>,
}

pub async fn run(args: ServeArgs) -> Result<i32, CliError> {
    let config = crate::config::load(crate::config::Flags {
        listen: args.listen,
        public_url: args.public_url,
        trusted_proxies: args.trusted_proxies,
        max_running: args.max_running,
        notify_url: args.notify_url,
        catalog: args.catalog,
        ..args.store.flags(args.data_dir)
    })
    .map_err(CliError::lib)?;
    crate::server::serve(config).await.map_err(CliError::lib)?;
    Ok(0)
}

/// `catalog:migrate --from-sqlite PATH`: the SQLite catalog copied into the PostgreSQL one
/// the configuration names.
pub async fn migrate(
    from: PathBuf,
    catalog: Option<String>,
    data_dir: Option<PathBuf>,
    store: StoreArgs,
) -> Result<i32, CliError> {
    let config = crate::config::load(crate::config::Flags {
        catalog,
        ..store.flags(data_dir)
    })
    .map_err(CliError::lib)?;
    let copied =
        tokio::task::spawn_blocking(move || crate::service::migrate_sqlite_catalog(&config, &from))
            .await?
            .map_err(CliError::lib)?;
    println!(
        "Copied {} databases, {} transfers ({} log lines), {} users, {} tokens, {} audit lines.",
        copied.databases,
        copied.transfers,
        copied.log_lines,
        copied.users,
        copied.tokens,
        copied.audit_lines
    );
    println!(
        "Start the service with this catalog and the same data directory (its key opens the sealed URLs)."
    );
    Ok(0)
}
