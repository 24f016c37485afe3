//! `serve`: the service, configured from the data directory, the configuration file and the
//! flags.

use std::path::PathBuf;

use super::args::StoreArgs;
use super::client::CliError;

/// The flags of `serve` beyond the store's.
pub struct ServeArgs {
    pub data_dir: Option<PathBuf>,
    pub store: StoreArgs,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub max_running: Option<usize>,
    pub notify_url: Option<String>,
}

pub async fn run(args: ServeArgs) -> Result<i32, CliError> {
    let (mut config, file) = args.store.service_config(args.data_dir)?;
    config.listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| crate::config::DEFAULT_LISTEN.to_string());
    config.max_running = args.max_running.or(file.max_running).unwrap_or(4);
    config.public_url = args.public_url.or(file.public_url);
    config.notify_url = args.notify_url.or(file.notify_url);
    crate::server::serve(config).await.map_err(CliError::lib)?;
    Ok(0)
}
