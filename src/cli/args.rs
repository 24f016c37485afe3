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
        /// A proxy in front of the service (an address, or a network as ADDRESS/PREFIX;
        /// repeat it, or separate with commas) whose X-Forwarded-For names the client: the
        /// dashboard's login limit then counts per client, not per proxy.
        #[arg(
            long = "trusted-proxy",
            env = "PGBACKUPS_TRUSTED_PROXIES",
            value_delimiter = ','
        )]
        trusted_proxy: Vec<String>,
        /// How many transfers run at once (more wait as Pending; default 4).
        #[arg(long, env = "PGBACKUPS_MAX_RUNNING")]
        max_running: Option<usize>,
        /// A webhook (http or https) that gets a JSON POST when a transfer fails and when a
        /// protected database gets a problem or is rid of it.
        #[arg(long, env = "PGBACKUPS_NOTIFY_URL")]
        notify_url: Option<String>,
        /// A PostgreSQL catalog that several nodes share (postgres://user@host/database),
        /// instead of the SQLite file in the data directory. Also PGBACKUPS_CATALOG or
        /// `catalog` in the configuration file. Never a password here: PGPASSWORD, a
        /// passfile (~/.pgpass, PGPASSFILE) or the configuration file's URL.
        #[arg(long)]
        catalog: Option<String>,
    },
    /// Copy a one-node SQLite catalog (databases, schedules, transfers and logs, users,
    /// tokens, the audit log) into an empty PostgreSQL catalog, named as for `serve`
    /// (--catalog, PGBACKUPS_CATALOG or the configuration file). Stop the service first; then
    /// start it with the same data directory (its key opens the sealed URLs) and --catalog.
    #[command(name = "catalog:migrate")]
    CatalogMigrate {
        /// The SQLite catalog to copy (`catalog.db` in the data directory); only read.
        #[arg(long, value_name = "PATH")]
        from_sqlite: PathBuf,
        /// The PostgreSQL catalog to copy into (never with a password: PGPASSWORD, a
        /// passfile, or the configuration file).
        #[arg(long)]
        catalog: Option<String>,
        /// Directory of the configuration file and secrets.
        #[arg(long, env = "PGBACKUPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
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
    #[command(flatten)]
    Team(TeamCommand),
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
        /// Capture every database of DATABASE's server (any database on it serves as the
        /// SERVER), one backup each in one set; `postgres` only if it has tables of its own.
        #[arg(long)]
        all: bool,
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
    /// Download a backup (the newest without ID) as a compressed custom-format dump, as
    /// `pg_dump -Fc` writes it, for the stock pg_restore (`--jobs` included). An existing file
    /// is never replaced: the download becomes latest.dump.1, latest.dump.2, ...
    #[command(name = "backups:download")]
    Download {
        id: Option<String>,
        /// File to write.
        #[arg(long, short, default_value = "latest.dump")]
        output: PathBuf,
    },
    /// Print a URL that fetches a backup (the newest without ID) with any HTTP client, no
    /// token, until it expires: a compressed custom-format dump the stock pg_restore reads
    /// (`curl -o latest.dump URL && pg_restore -d DATABASE latest.dump`). On an S3-compatible
    /// store it is presigned (the service need not be reachable; the first link writes the
    /// dump beside the backup); otherwise it goes through this service. With --raw, the
    /// stored object instead (the dump compressed with zstd).
    #[command(name = "backups:url")]
    Url {
        id: Option<String>,
        /// How long the link works: such as 60m, 12h, 7d (at most 7 days).
        #[arg(long, default_value = "60m")]
        expires: String,
        /// A link to the stored object as it is (zstd), presigned where the store allows it.
        #[arg(long)]
        raw: bool,
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
        /// Restore every backup of this set (from `backups:capture --all`) into the database
        /// of the same name on the server of the one argument, created if missing; the roles
        /// are created too, as with --roles. --confirm takes the argument's database name.
        #[arg(long, value_name = "SET", conflicts_with_all = ["file", "atomic", "extensions"])]
        set: Option<String>,
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
    /// Copy the registered database SOURCE into a new database on this machine, as Heroku's
    /// pg:pull: the service streams the dump, pg_restore runs here. LOCAL is a bare name (a
    /// database of the local server reached with PGHOST/PGPORT/PGUSER/PGPASSWORD, the unix
    /// socket when unset), created and refused if it exists; or a postgres:// URL, created if
    /// missing and refused if it has tables; or `-` to read the URL from PGBACKUPS_TARGET_URL
    /// or standard input, out of sight of `ps`.
    Pull {
        source: String,
        local_url: String,
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Copy a database of this machine into the registered database TARGET, as Heroku's
    /// pg:push: pg_dump runs here and its dump is streamed to the service, which restores it
    /// once it has arrived whole. LOCAL is a bare name (the local server, libpq's defaults), a
    /// postgres:// URL, or `-` (PGBACKUPS_SOURCE_URL or standard input). Refuses a TARGET that
    /// has tables unless --confirm names it.
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

mod team;
mod wal;
pub use team::TeamCommand;
pub use wal::{
    ArchiveCommand, ArchiveName, ClusterCommand, ProtectionCommand, TargetDir, TimelineArg,
};

#[cfg(test)]
mod tests;
