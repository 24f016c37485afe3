//! The clap definitions of the commands about WAL and clusters: the archive (`wal-push`,
//! `wal-fetch`, `base-backup`), Continuous Protection, and new clusters (`rollback`, `fork`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::StoreArgs;

/// The WAL archive in the store, used as PostgreSQL's archive and restore commands, and base backups of an archived cluster.
#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Archive one WAL file durably into the store: PostgreSQL's archive_command, as
    /// `pgbackups wal-push --name main %p`. Exits 0 only once the file is durable in the
    /// store; pushing a file that is already archived with the same content succeeds, with
    /// different content fails.
    #[command(name = "wal-push")]
    WalPush {
        /// The WAL file (%p).
        path: PathBuf,
        /// Whose WAL this is (a registered database name, or any name of the cluster).
        #[arg(long)]
        name: String,
        /// Directory for the catalog, secrets and local storage.
        #[arg(long, env = "PGBACKUPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restore one WAL file from the store: PostgreSQL's restore_command, as
    /// `pgbackups wal-fetch --name main %f %p`. Exits 0 when fetched, 1 when the store has no
    /// such file (the end of the archive), and 126 when the store cannot be read after a few
    /// retries, which makes PostgreSQL stop recovery instead of ending it early.
    #[command(name = "wal-fetch")]
    WalFetch {
        /// The WAL file's name (%f).
        file: String,
        /// Where to write it (%p).
        dest: PathBuf,
        #[arg(long)]
        name: String,
        /// Directory for the catalog, secrets and local storage.
        #[arg(long, env = "PGBACKUPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The cluster's WAL segment size in bytes: with it, the next segments are fetched
        /// in the background while PostgreSQL replays this one (rollback sets it).
        #[arg(long)]
        segment_size: Option<u64>,
        /// Fetch through this pgbackups service (its URL) instead of reading the store, with
        /// the WAL token for NAME in --token-file (`rollback --through-service` sets both).
        #[arg(long, value_name = "URL", requires = "token_file")]
        service: Option<String>,
        /// The file holding the WAL token (never the command line: `ps` shows it).
        #[arg(long, value_name = "PATH", requires = "service")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Fetch the segments after AFTER into DIR ahead of recovery (started by wal-fetch).
    #[command(name = "wal-prefetch", hide = true)]
    WalPrefetch {
        #[arg(long)]
        name: String,
        #[arg(long)]
        after: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        segment_size: u64,
        #[arg(long, env = "PGBACKUPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Take a base backup of a cluster whose WAL is archived under NAME (`wal-push --name
    /// NAME`): pg_basebackup streamed into the store. The connection URL comes from
    /// PGBACKUPS_DATABASE_URL or standard input (never the command line: it holds a
    /// password). The role needs REPLICATION.
    #[command(name = "base-backup")]
    BaseBackup {
        #[arg(long)]
        name: String,
        /// Directory for the catalog, secrets and local storage.
        #[arg(long, env = "PGBACKUPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// New clusters from an archive: a rollback to a moment, or a fork at its latest moment.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Restore NAME as it was at a moment into a new data directory: the newest base backup
    /// before it, and the archived WAL replayed up to it (restore_command = pgbackups
    /// wal-fetch), then promoted. A time or LSN past the end of the archive is refused before
    /// anything is unpacked. With --start, also start the server and wait until recovery has
    /// reached the target and it accepts writes (or report the server's own error).
    Rollback {
        #[command(flatten)]
        name: ArchiveName,
        /// The moment: an RFC 3339 time such as 2026-11-25T05:30:00Z.
        #[arg(long, group = "target")]
        to: Option<String>,
        /// The moment as an interval before now: such as 90s, 15m, 2h, 1d.
        #[arg(long, group = "target")]
        by: Option<String>,
        /// A WAL position (as pg_current_wal_lsn() prints it).
        #[arg(long, group = "target")]
        lsn: Option<crate::pg::wal_names::Lsn>,
        /// A transaction ID: recovery stops after it commits.
        #[arg(long, group = "target")]
        xid: Option<u64>,
        /// A restore point made with pg_create_restore_point('NAME'): recovery stops there
        /// (the first one of that name after the oldest base backup, which it starts from).
        #[arg(long, value_name = "NAME", group = "target")]
        restore_point: Option<String>,
        /// The earliest consistent moment of a base backup (the newest, or --base-backup):
        /// exactly what the base backup holds.
        #[arg(long, group = "target")]
        immediate: bool,
        /// With --immediate: the base backup (its ID, as protection:info lists them).
        #[arg(long, value_name = "ID", requires = "immediate")]
        base_backup: Option<String>,
        #[command(flatten)]
        timeline: TimelineArg,
        #[command(flatten)]
        target_dir: TargetDir,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restore NAME at the latest moment of its archive into a new data directory (a fork).
    Fork {
        #[command(flatten)]
        name: ArchiveName,
        #[command(flatten)]
        timeline: TimelineArg,
        #[command(flatten)]
        target_dir: TargetDir,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Continuous Protection in the service, and the archives it keeps.
#[derive(Subcommand, Debug)]
pub enum ProtectionCommand {
    /// Protect DATABASE continuously: its WAL streams into the store as the server writes it
    /// (through a replication slot, pgbackups_<database>, advanced only past WAL durable in
    /// the store), with a base backup now and then every --base-every. The role needs
    /// REPLICATION and a `replication` line in pg_hba.conf; the error says what to change.
    /// Protecting a protected database updates its settings.
    Protect {
        database: String,
        /// Time between base backups: such as 6h, 1d (default 1d).
        #[arg(long)]
        base_every: Option<String>,
        /// Base backups kept, with the WAL they need (default 7).
        #[arg(long)]
        keep: Option<u32>,
    },
    /// Stop protecting DATABASE and drop its replication slot. Its archive stays in the store
    /// (rollback and fork still work; protection:expire trims it).
    Unprotect { database: String },
    /// Show Continuous Protection: for each protected database (or DATABASE), the restorable
    /// window, the WAL lag in bytes and seconds, the last base backup, WAL volume per day, and
    /// any gap or problem (reported loudly, exit status 3). With --name, read an archive
    /// straight from the store, without the service.
    #[command(name = "protection:info")]
    ProtectionInfo {
        database: Option<String>,
        /// Read the archive of NAME from the store directly (no service needed).
        #[arg(long, conflicts_with = "database")]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Keep the newest --keep base backups of NAME (by time) and the WAL they need; delete the
    /// older ones and the WAL before the oldest kept base backup.
    #[command(name = "protection:expire")]
    ProtectionExpire {
        #[command(flatten)]
        name: ArchiveName,
        #[arg(long)]
        keep: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Whose archive: DATABASE, or --name as given to `wal-push --name`.
#[derive(Args, Debug, Clone)]
pub struct ArchiveName {
    /// The database (the name its WAL is archived under).
    #[arg(value_name = "DATABASE", required_unless_present = "name")]
    pub database: Option<String>,
    /// The same, as a flag.
    #[arg(long, conflicts_with = "database")]
    pub name: Option<String>,
}

impl ArchiveName {
    pub fn get(self) -> String {
        self.database.or(self.name).unwrap_or_default()
    }
}

/// Where a rolled-back or forked cluster goes.
#[derive(Args, Debug, Clone)]
pub struct TargetDir {
    /// The new cluster's data directory (must not exist, or be empty).
    #[arg(
        long = "target-dir",
        value_name = "DIR",
        required_unless_present = "old_data_dir"
    )]
    pub target_dir: Option<PathBuf>,
    /// The old spelling of --target-dir, kept for one release.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        hide = true,
        conflicts_with = "target_dir"
    )]
    pub old_data_dir: Option<PathBuf>,
    /// The port it listens on (default: the one in the backed-up configuration).
    #[arg(long)]
    pub port: Option<u16>,
    /// Start it (pg_ctl start), wait until recovery has reached the target and it accepts
    /// writes, and print its connection URL.
    #[arg(long)]
    pub start: bool,
    /// With --start: how long to wait for the end of recovery, such as 30m or 2h (default 1h).
    #[arg(long, value_name = "INTERVAL", requires = "start")]
    pub timeout: Option<String>,
    /// The recovered server fetches its WAL through the pgbackups service (PGBACKUPS_URL and
    /// PGBACKUPS_TOKEN, or the local one) with a token limited to this archive, instead of
    /// reading the store: for a store the server's OS user cannot (or should not) read.
    #[arg(long)]
    pub through_service: bool,
}

/// What `--data-dir` on `rollback` and `fork` prints: it names the new cluster's directory
/// there, where every other command's `--data-dir` is pgbackups' own.
pub const DATA_DIR_DEPRECATED: &str =
    "--data-dir for rollback/fork is deprecated; use --target-dir";

impl TargetDir {
    /// The new cluster's directory, and the deprecation message when it was given with the
    /// old spelling. clap makes sure one of the two is there.
    pub fn dir(&self) -> (PathBuf, Option<&'static str>) {
        match (&self.target_dir, &self.old_data_dir) {
            (Some(d), _) => (d.clone(), None),
            (None, Some(d)) => (d.clone(), Some(DATA_DIR_DEPRECATED)),
            (None, None) => (PathBuf::new(), None),
        }
    }
}

/// The timeline recovery follows.
#[derive(Args, Debug, Clone)]
pub struct TimelineArg {
    /// `latest` (the newest in the archive: the default), `current` (the base backup's) or a
    /// timeline ID such as 2 (recovery_target_timeline).
    #[arg(long = "timeline", value_name = "N|latest|current")]
    pub timeline: Option<String>,
}
