//! The `pgbackups` command line: `serve`, and the commands that drive a running service
//! through its API. Commands parse, call, print; the work happens in the service (or, for
//! the commands that use the store directly, in the library).
//!
//! `args.rs` holds the clap definitions; each command group has its own module that runs its
//! commands, and `print/` the pure functions that turn answers into text.

mod archive;
mod args;
mod backups;
mod client;
mod cluster;
mod confirm;
mod databases;
mod download;
mod password;
mod print;
mod protection;
mod pullpush;
mod schedules;
mod serve;
mod shared;
mod table;
mod team;
mod transfers;
mod urlarg;
mod watch;

pub use args::{
    ArchiveCommand, ArchiveName, BackupCommand, Cli, ClusterCommand, Command, DatabaseCommand,
    FilterArgs, HerokuListFlags, ProtectionCommand, ScheduleCommand, StoreArgs, TargetDir,
    TeamCommand, TimelineArg, TransferCommand, WaitIntervalArg,
};
pub use client::{CliError, Client};
pub use shared::Env;

/// Runs a parsed command line with the environment `main` read; returns the process exit
/// code.
pub async fn run(cli: Cli, env: Env) -> Result<i32, CliError> {
    let env = &env;
    match cli.command {
        Command::CatalogMigrate {
            from_sqlite,
            catalog,
            data_dir,
            store,
        } => serve::migrate(from_sqlite, catalog, data_dir, store).await,
        Command::Serve {
            data_dir,
            store,
            listen,
            public_url,
            trusted_proxy,
            max_running,
            notify_url,
            catalog,
        } => {
            serve::run(serve::ServeArgs {
                catalog,
                data_dir,
                store,
                listen,
                public_url,
                trusted_proxies: trusted_proxy,
                max_running,
                notify_url,
            })
            .await
        }
        Command::Archive(c) => archive::run(c, env).await,
        Command::Cluster(c) => cluster::run(c, env).await,
        Command::Protection(c) => protection::run(c, env).await,
        Command::Database(c) => databases::run(c, env).await,
        Command::Backup(c) => backups::run(c, env).await,
        Command::Schedule(c) => schedules::run(c, env).await,
        Command::Transfer(c) => transfers::run(c, env).await,
        Command::Team(c) => team::run(c, env).await,
    }
}
