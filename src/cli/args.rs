//! The command line's clap definitions: every command and flag, grouped as the modules that
//! run them (one enum per command group, flattened into one list of commands).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// pgbackups: backups for PostgreSQL, in the style of `heroku pg:backups`.
#[derive(Parser, Debug)]
#[command(name = "pgbackups", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What a partial capture or copy takes: pg_dump's selection options, each repeatable.
#[derive(Args, Debug, Default)]
pub struct FilterArgs {
    /// Only schemas matching PATTERN (pg_dump --schema).
    #[arg(long = "schema", value_name = "PATTERN")]
    pub schema: Vec<String>,
    /// Not schemas matching PATTERN (pg_dump --exclude-schema).
    #[arg(long = "exclude-schema", value_name = "PATTERN")]
    pub exclude_schema: Vec<String>,
    /// Only tables matching PATTERN (pg_dump --table).
    #[arg(long = "table", value_name = "PATTERN")]
    pub table: Vec<String>,
    /// The definition but not the rows of tables matching PATTERN (pg_dump --exclude-table-data);
    /// several patterns may be given in one value separated by `;`, as Heroku takes them
    /// (`'logs;items'`). A pattern that matches no table is reported.
    #[arg(long = "exclude-table-data", value_name = "PATTERN")]
    pub exclude_table_data: Vec<String>,
}

impl From<FilterArgs> for crate::pg::DumpFilter {
    fn from(f: FilterArgs) -> crate::pg::DumpFilter {
        crate::pg::DumpFilter {
            schema: f.schema,
            exclude_schema: f.exclude_schema,
            table: f.table,
            exclude_table_data: f.exclude_table_data,
        }
        .split_exclusions()
    }
}

/// Every command. Names follow `heroku pg:backups` (`backups:capture`, ...); each group has its
/// own enum and its own module, flattened here so the command line stays one flat list.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service: API, workers, scheduler and Continuous Protection streams.
    Serve {
        /// Directory for the catalog, secrets and local storage.
        #[arg(long, env = "PGBACKUPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (default 127.0.0.1:7117; use port 0 for any free port).
        #[arg(long, env = "PGBACKUPS_LISTEN")]
        listen: Option<String>,
        /// The URL clients reach this service at (behind a proxy, say), used in signed
        /// download links. Default: the listening address.
        #[arg(long, env = "PGBACKUPS_PUBLIC_URL")]
        public_url: Option<String>,
        /// How many transfers run at once (more wait as Pending; default 4).
        #[arg(long, env = "PGBACKUPS_MAX_RUNNING")]
        max_running: Option<usize>,
        /// A webhook (http or https) that gets a JSON POST when a transfer fails and when a
        /// protected database gets a problem or is rid of it.
        #[arg(long, env = "PGBACKUPS_NOTIFY_URL")]
        notify_url: Option<String>,
    },
    #[command(flatten)]
    Archive(ArchiveCommand),
    #[command(flatten)]
    Cluster(ClusterCommand),
    #[command(flatten)]
    Protection(ProtectionCommand),
    #[command(flatten)]
    Database(DatabaseCommand),
    #[command(flatten)]
    Backup(BackupCommand),
    #[command(flatten)]
    Schedule(ScheduleCommand),
    #[command(flatten)]
    Transfer(TransferCommand),
}

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

/// Registered databases.
#[derive(Subcommand, Debug)]
pub enum DatabaseCommand {
    /// List registered databases.
    Databases {
        #[arg(long)]
        json: bool,
    },
    /// Register a database under a short name. Its URL is encrypted at rest and only shown
    /// redacted. Leave URL out (or pass `-`) to read it from standard input, which keeps the
    /// password out of the process list.
    #[command(name = "databases:add")]
    DatabasesAdd { name: String, url: Option<String> },
    /// Forget a registered database (its backups are kept).
    #[command(name = "databases:remove")]
    DatabasesRemove { name: String },
}

/// Backups: capture, inspect, fetch, verify, delete, pin.
#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// List backups, restores and copies (the newest 10 restores and copies, as Heroku).
    Backups {
        #[arg(long)]
        json: bool,
        /// Every restore and copy, not only the newest 10.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        heroku: HerokuListFlags,
    },
    /// Capture a new backup of DATABASE (a registered name or a postgres:// URL; `-` reads
    /// the URL from PGBACKUPS_SOURCE_URL or standard input, out of sight of `ps`).
    #[command(name = "backups:capture")]
    Capture {
        database: Option<String>,
        /// Print the new backup's ID and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Show pg_dump's log lines while watching.
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        wait_interval: WaitIntervalArg,
    },
    /// Cancel a running capture or restore (the newest running one without ID).
    #[command(name = "backups:cancel")]
    Cancel { id: Option<String> },
    /// Show a backup or restore with its log (the newest backup without ID).
    #[command(name = "backups:info")]
    Info {
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download a backup as a custom-format dump for pg_restore (the newest without ID).
    #[command(name = "backups:download")]
    Download {
        id: Option<String>,
        /// File to write.
        #[arg(long, short, default_value = "latest.dump")]
        output: PathBuf,
    },
    /// Print a URL that fetches a backup (the newest without ID) with any HTTP client, no
    /// token, until it expires. On S3-compatible stores it is a presigned link to the stored
    /// object: the dump compressed with zstd (`curl -s URL | zstd -d > b001.dump`, or give the
    /// URL to `backups:restore`). Otherwise, or with --plain, it is a signed link to this
    /// service that streams the plain custom-format dump (the service must be reachable).
    #[command(name = "backups:url")]
    Url {
        id: Option<String>,
        /// How long the link works: such as 60m, 12h, 7d (at most 7 days).
        #[arg(long, default_value = "60m")]
        expires: String,
        /// A link to the plain dump through the service, even where a presigned one is possible.
        #[arg(long)]
        plain: bool,
    },
    /// Verify a backup (the newest without ID): re-read the whole stored object, check its
    /// SHA-256, and have pg_restore --list read it. With --restore, also restore it into a
    /// scratch database, check it and drop it.
    #[command(name = "backups:verify")]
    Verify {
        id: Option<String>,
        /// Also restore into a scratch database (pgbackups_verify_<id>), check and drop it.
        #[arg(long)]
        restore: bool,
        /// Server for the scratch database (a registered name or URL; the role needs
        /// CREATEDB; `-` reads the URL from PGBACKUPS_TARGET_URL or standard input). Default:
        /// the server of the backup's database.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, short)]
        verbose: bool,
    },
    /// Recreate the catalog of backups from the manifests in the store, after the service's
    /// own disk was lost. Databases, schedules, retention and protections must be set up again
    /// (archives of protected databases stay in the store; `protect` resumes them).
    #[command(name = "catalog:rebuild")]
    CatalogRebuild,
    /// Delete a backup: its stored object and its record.
    #[command(name = "backups:delete")]
    Delete {
        id: String,
        /// The backup's database name, to confirm (asked for on a terminal when not given).
        #[arg(long, short)]
        confirm: Option<String>,
    },
    /// Pin a backup: retention never expires it.
    #[command(name = "backups:pin")]
    Pin { id: String },
    /// Unpin a backup: retention may expire it again.
    #[command(name = "backups:unpin")]
    Unpin { id: String },
}

/// Daily captures and how many backups are kept.
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Capture DATABASE every day at a local time: --at 'HH:MM ZONE' (an IANA zone such as
    /// America/Los_Angeles, or PST, EST, UTC, ...). Replaces the database's schedule.
    #[command(name = "backups:schedule")]
    Schedule {
        database: Option<String>,
        #[arg(long)]
        at: String,
        /// Verify each scheduled backup once captured: off, checksum, or restore (a restore
        /// test into a scratch database on the database's server).
        #[arg(long, default_value = "off")]
        verify: String,
    },
    /// Stop the daily captures of DATABASE.
    #[command(name = "backups:unschedule")]
    Unschedule { database: Option<String> },
    /// Show or set how many backups DATABASE keeps: the newest --manual N manual ones, and of
    /// the scheduled ones the newest of each of the last --daily N days, --weekly N weeks and
    /// --monthly N months. Pinned backups are always kept.
    #[command(name = "backups:retention")]
    Retention {
        database: String,
        #[arg(long)]
        daily: Option<u32>,
        #[arg(long)]
        weekly: Option<u32>,
        #[arg(long)]
        monthly: Option<u32>,
        #[arg(long)]
        manual: Option<u32>,
    },
    /// List daily schedules with their next run.
    #[command(name = "backups:schedules")]
    Schedules {
        #[arg(long)]
        json: bool,
    },
}

/// Transfers into a database: restores, copies, pulls and pushes.
#[derive(Subcommand, Debug)]
pub enum TransferCommand {
    /// Restore a backup (the newest without ID) into DATABASE, dropping its objects first.
    #[command(name = "backups:restore")]
    Restore {
        /// A backup ID (b001, a001) or an http(s) URL to restore from, or the target database
        /// when only one argument is given. `-`: read from PGBACKUPS_SOURCE_URL or standard
        /// input.
        first: Option<String>,
        /// The target database (a registered name or a postgres:// URL). `-`: read the URL
        /// from PGBACKUPS_TARGET_URL or standard input, out of sight of `ps`.
        second: Option<String>,
        /// The target database's name, to confirm that its contents may be replaced (asked
        /// for on a terminal when not given).
        #[arg(long, short)]
        confirm: Option<String>,
        /// Parallel pg_restore jobs.
        #[arg(long, short, default_value_t = 1)]
        jobs: u32,
        /// Restore into a fresh database and swap it in under DATABASE's name only if the
        /// restore succeeded; the previous contents are kept under a dated name.
        #[arg(long)]
        atomic: bool,
        /// With --atomic: drop the previous contents right after the swap.
        #[arg(long, requires = "atomic")]
        drop_old: bool,
        /// Extensions to create in the target (`hstore,pg_trgm`) after it is emptied and
        /// before pg_restore runs, as Heroku's --extensions; one that cannot be created fails
        /// the restore before any data loads. For a backup restore.
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "A,B",
            conflicts_with = "file"
        )]
        extensions: Vec<String>,
        /// Create first the roles the backup carries (kept without passwords) that the
        /// target's server lacks; existing roles are left as they are.
        #[arg(long, conflicts_with = "file")]
        roles: bool,
        /// Restore this local custom-format dump file (uploaded to the service) instead of a
        /// backup; the first argument is then the target database.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        wait_interval: WaitIntervalArg,
    },
    /// Copy SOURCE into TARGET (registered names or URLs), pg_dump streamed into pg_restore
    /// with nothing stored; TARGET's objects are dropped first. Pass `-` for a URL to read it
    /// from PGBACKUPS_SOURCE_URL / PGBACKUPS_TARGET_URL or standard input (source first),
    /// out of sight of `ps`.
    Copy {
        source: String,
        target: String,
        /// The target database's name, to confirm that its contents may be replaced (asked
        /// for on a terminal when not given).
        #[arg(long)]
        confirm: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        wait_interval: WaitIntervalArg,
    },
    /// Copy SOURCE into a new database on your own server (LOCAL_URL names it); refuses a
    /// database that exists. Pass `-` for a URL to read it from PGBACKUPS_SOURCE_URL /
    /// PGBACKUPS_TARGET_URL (LOCAL_URL) or standard input (source first), out of sight of `ps`.
    Pull {
        source: String,
        local_url: String,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Copy your LOCAL_URL database into TARGET; refuses a TARGET that has tables unless
    /// --confirm names it. Pass `-` for a URL to read it from PGBACKUPS_SOURCE_URL (LOCAL_URL)
    /// / PGBACKUPS_TARGET_URL or standard input (LOCAL_URL first), out of sight of `ps`.
    Push {
        local_url: String,
        target: String,
        /// The target's name, to confirm replacing a target that has tables (asked for on a
        /// terminal when not given).
        #[arg(long)]
        confirm: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

// Flags that scripts written for the Heroku CLI pass, and what each means here. From the
// Heroku CLI's source (`src/commands/pg/backups/*.ts`, `pg/copy.ts`): `pg:backups` (the
// listing) takes -v, -c, -o, --wait-interval, --at and -q, hidden and unused, left over from
// the time it ran the other subcommands; the other commands take them only where they mean
// something.
//
// | flag              | Heroku                                        | pgbackups                          |
// |-------------------|-----------------------------------------------|------------------------------------|
// | --wait-interval N | capture, restore, copy: seconds between polls | ignored with a note on capture,    |
// |                   | (at least 3); hidden on pg:backups            | restore, copy and backups: the     |
// |                   |                                               | service answers as a transfer ends |
// | -v, --verbose     | capture, restore: the transfer's log lines    | ours on capture, restore, copy,    |
// |                   | (copy: --verbose); hidden on pg:backups       | pull, push; ignored on backups     |
// | -c, --confirm     | restore, delete: the name to confirm          | -c is --confirm on backups:restore |
// |                   | (copy: --confirm); hidden on pg:backups       | and backups:delete; ignored on     |
// |                   |                                               | backups                            |
// | -o, --output      | download: the file; hidden on pg:backups      | ours on download; ignored on       |
// |                   |                                               | backups                            |
// | -q, --quiet       | hidden on pg:backups only                     | ignored on backups                 |
// | --at              | schedule: the time; hidden on pg:backups      | ours on schedule; ignored on       |
// |                   |                                               | backups                            |
//
// pull and push take none of them on Heroku, nor here. Ignored flags are accepted (never exit
// 2) and the command prints one line on stderr saying so, so the script keeps working and its
// author learns the flag does nothing.

/// `--wait-interval SECONDS` of Heroku's capture, restore and copy: accepted and ignored.
#[derive(Args, Debug, Default, Clone)]
pub struct WaitIntervalArg {
    /// Heroku's polling interval: ignored, as the service tells the CLI when a transfer ends.
    #[arg(long = "wait-interval", value_name = "SECONDS", hide = true)]
    pub wait_interval: Option<String>,
}

impl WaitIntervalArg {
    /// The line for stderr when the flag was given.
    pub fn note(&self) -> Option<String> {
        self.wait_interval
            .as_ref()
            .map(|_| ignored_note(&["--wait-interval"], WAIT_INTERVAL_WHY))
    }
}

/// Why `--wait-interval` does nothing here.
const WAIT_INTERVAL_WHY: &str = "the service reports a transfer's end as it happens, so there is no polling interval to set; drop the flag to silence this note";

/// The hidden flags of Heroku's `pg:backups` listing, which it accepts and ignores: accepted
/// and ignored by `backups` too.
#[derive(Args, Debug, Default, Clone)]
pub struct HerokuListFlags {
    #[arg(short = 'v', long = "verbose", hide = true)]
    pub verbose: bool,
    #[arg(short = 'c', long = "confirm", value_name = "NAME", hide = true)]
    pub confirm: Option<String>,
    #[arg(short = 'o', long = "output", value_name = "FILE", hide = true)]
    pub output: Option<String>,
    #[arg(long = "wait-interval", value_name = "SECONDS", hide = true)]
    pub wait_interval: Option<String>,
    #[arg(long = "at", value_name = "TIME", hide = true)]
    pub at: Option<String>,
    #[arg(short = 'q', long = "quiet", hide = true)]
    pub quiet: bool,
}

impl HerokuListFlags {
    /// The line for stderr naming the flags given, when any was.
    pub fn note(&self) -> Option<String> {
        let given: Vec<&str> = [
            (self.verbose, "--verbose"),
            (self.confirm.is_some(), "--confirm"),
            (self.output.is_some(), "--output"),
            (self.wait_interval.is_some(), "--wait-interval"),
            (self.at.is_some(), "--at"),
            (self.quiet, "--quiet"),
        ]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect();
        let it = if given.len() == 1 { "it" } else { "them" };
        (!given.is_empty()).then(|| {
            ignored_note(
                &given,
                &format!(
                    "`heroku pg:backups` accepts {it} and does nothing with {it} either; drop {it} to silence this note"
                ),
            )
        })
    }
}

/// `note: --at and --quiet are ignored: WHY`.
fn ignored_note(flags: &[&str], why: &str) -> String {
    let names = match flags {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    let verb = if flags.len() == 1 { "is" } else { "are" };
    format!("note: {names} {verb} ignored: {why}")
}

/// Where the configuration, store and keys are: shared by `serve` and the commands that use
/// the store directly (`wal-push`, `wal-fetch`, `base-backup`, `rollback`, `fork`).
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Configuration file (TOML; see docs/CONFIG.md). Default: pgbackups.toml in the data
    /// directory, when it exists. Flags override it.
    #[arg(long, env = "PGBACKUPS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where backups are stored: s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix or file:///dir (default: the data directory). Credentials come
    /// from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
    #[arg(long, env = "PGBACKUPS_STORAGE")]
    pub storage: Option<String>,
    /// The S3 endpoint of a store that is not AWS (MinIO, SeaweedFS, R2, ...); path-style
    /// addressing is then the default.
    #[arg(long, env = "PGBACKUPS_STORAGE_ENDPOINT")]
    pub storage_endpoint: Option<String>,
    /// The store's region (default AWS_REGION, else us-east-1).
    #[arg(long, env = "PGBACKUPS_STORAGE_REGION")]
    pub storage_region: Option<String>,
    /// Encrypt new backups to this age recipient (age1...); repeatable.
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// age identity file to decrypt encrypted backups with (as `age -i`).
    #[arg(long, env = "PGBACKUPS_AGE_IDENTITY_FILE")]
    pub identity_file: Option<PathBuf>,
    /// Encrypt and decrypt with the passphrase in this file (age's scrypt mode).
    #[arg(long, env = "PGBACKUPS_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{
        BackupCommand, Cli, ClusterCommand, Command, DATA_DIR_DEPRECATED, TargetDir,
        TransferCommand,
    };

    fn target_dir(args: &[&str]) -> TargetDir {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Cluster(ClusterCommand::Rollback { target_dir, .. })
            | Command::Cluster(ClusterCommand::Fork { target_dir, .. }) => target_dir,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn target_dir_and_the_old_data_dir_name_the_same_directory() {
        for command in [
            &["pgbackups", "rollback", "main", "--lsn", "0/3000000"][..],
            &["pgbackups", "fork", "main"][..],
        ] {
            let new = target_dir(&[command, &["--target-dir", "/tmp/new"]].concat());
            let old = target_dir(&[command, &["--data-dir", "/tmp/new"]].concat());
            assert_eq!(new.dir(), ("/tmp/new".into(), None));
            assert_eq!(old.dir(), ("/tmp/new".into(), Some(DATA_DIR_DEPRECATED)));
            assert_eq!(
                DATA_DIR_DEPRECATED,
                "--data-dir for rollback/fork is deprecated; use --target-dir"
            );
            // One of them is needed, and not both.
            assert!(Cli::try_parse_from(command).is_err());
            assert!(
                Cli::try_parse_from(
                    [command, &["--target-dir", "/a", "--data-dir", "/b"]].concat()
                )
                .is_err()
            );
        }
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    /// Heroku's capture, restore and copy take `--wait-interval N` (seconds between polls):
    /// a script that passes it runs here too, told on stderr that the flag does nothing.
    #[test]
    fn wait_interval_is_accepted_on_capture_restore_and_copy_as_on_heroku() {
        let note = "note: --wait-interval is ignored: the service reports a transfer's end as it happens, so there is no polling interval to set; drop the flag to silence this note";
        let capture = parse(&[
            "pgbackups",
            "backups:capture",
            "main",
            "--wait-interval",
            "3",
        ]);
        let Command::Backup(BackupCommand::Capture { wait_interval, .. }) = capture else {
            panic!("{capture:?}");
        };
        assert_eq!(wait_interval.note().as_deref(), Some(note));
        let restore = parse(&[
            "pgbackups",
            "backups:restore",
            "b001",
            "main",
            "--wait-interval=5",
        ]);
        let Command::Transfer(TransferCommand::Restore { wait_interval, .. }) = restore else {
            panic!("{restore:?}");
        };
        assert_eq!(wait_interval.note().as_deref(), Some(note));
        let copy = parse(&["pgbackups", "copy", "a", "b", "--wait-interval", "10"]);
        let Command::Transfer(TransferCommand::Copy { wait_interval, .. }) = copy else {
            panic!("{copy:?}");
        };
        assert_eq!(wait_interval.note().as_deref(), Some(note));
        // Without it, no note.
        let plain = parse(&["pgbackups", "backups:capture", "main"]);
        let Command::Backup(BackupCommand::Capture { wait_interval, .. }) = plain else {
            panic!("{plain:?}");
        };
        assert_eq!(wait_interval.note(), None);
        // Heroku's pull and push have no --wait-interval; neither do ours.
        assert!(
            Cli::try_parse_from(["pgbackups", "pull", "a", "b", "--wait-interval", "3"]).is_err()
        );
    }

    /// Heroku's `pg:backups` accepts hidden -v, -c, -o, --wait-interval, --at and -q and
    /// ignores them; `backups` does the same and says so.
    #[test]
    fn the_listing_accepts_and_ignores_heroku_pg_backups_hidden_flags() {
        let note = |args: &[&str]| {
            let all = [&["pgbackups", "backups"][..], args].concat();
            match parse(&all) {
                Command::Backup(BackupCommand::Backups { heroku, .. }) => heroku.note(),
                other => panic!("{all:?} parsed as {other:?}"),
            }
        };
        assert_eq!(note(&[]), None);
        assert_eq!(note(&["--json"]), None);
        assert_eq!(
            note(&["-v"]).as_deref(),
            Some(
                "note: --verbose is ignored: `heroku pg:backups` accepts it and does nothing with it either; drop it to silence this note"
            )
        );
        assert_eq!(
            note(&[
                "-v",
                "-c",
                "myapp",
                "-o",
                "x.dump",
                "--wait-interval",
                "3",
                "--at",
                "02:00 UTC",
                "-q",
                "--json"
            ])
            .as_deref(),
            Some(
                "note: --verbose, --confirm, --output, --wait-interval, --at and --quiet are ignored: `heroku pg:backups` accepts them and does nothing with them either; drop them to silence this note"
            )
        );
        assert!(
            note(&["--quiet", "--at", "x"])
                .is_some_and(|n| n.starts_with("note: --at and --quiet are ignored: "))
        );
        // Hidden: `backups --help` does not offer them.
        let help = {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            cmd.find_subcommand_mut("backups")
                .map(|c| c.render_help().to_string())
                .unwrap_or_default()
        };
        assert!(help.contains("--json"), "{help}");
        for flag in [
            "--verbose",
            "--quiet",
            "--at",
            "--wait-interval",
            "--output",
            "--confirm",
        ] {
            assert!(!help.contains(flag), "{flag} shown: {help}");
        }
    }

    /// Heroku's `pg:backups:restore` and `pg:backups:delete` take `-c` for `--confirm`; so do
    /// ours, and where we give -v and -o a meaning, it stays.
    #[test]
    fn dash_c_confirms_restore_and_delete_and_our_own_short_flags_keep_their_meaning() {
        let restore = parse(&["pgbackups", "backups:restore", "b001", "main", "-c", "main"]);
        let Command::Transfer(TransferCommand::Restore { confirm, .. }) = restore else {
            panic!("{restore:?}");
        };
        assert_eq!(confirm.as_deref(), Some("main"));
        let delete = parse(&["pgbackups", "backups:delete", "b001", "-c", "main"]);
        let Command::Backup(BackupCommand::Delete { confirm, .. }) = delete else {
            panic!("{delete:?}");
        };
        assert_eq!(confirm.as_deref(), Some("main"));
        let capture = parse(&["pgbackups", "backups:capture", "main", "-v"]);
        let Command::Backup(BackupCommand::Capture { verbose, .. }) = capture else {
            panic!("{capture:?}");
        };
        assert!(verbose);
        let download = parse(&["pgbackups", "backups:download", "-o", "x.dump"]);
        let Command::Backup(BackupCommand::Download { output, .. }) = download else {
            panic!("{download:?}");
        };
        assert_eq!(output, std::path::PathBuf::from("x.dump"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
