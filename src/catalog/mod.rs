//! The catalog: what the service knows and must not forget — registered databases (URLs
//! sealed), transfers with their state and logs, and the backups they made.
//!
//! Everything else holds an `Arc<dyn Catalog>`: the [`Catalog`] trait is the one boundary,
//! SQLite (`sqlite/`) the embedded implementation, PostgreSQL (`postgres/`) the catalog that
//! several service nodes can share. The trait is shaped for the shared one:
//! - every change that must be atomic is one method (removing a database with its schedule,
//!   refused while it is protected; a protection only of a registered database; appending a
//!   batch of log lines; deleting a transfer with its log);
//! - what two nodes could race for is claimed explicitly, and only one claim wins: transfer
//!   IDs ([`Catalog::claim_transfer_id`]) and scheduled runs by database and local date
//!   ([`Catalog::claim_runs`]);
//! - the methods block (a file or a network round trip): async code calls them through
//!   `tokio::task::spawn_blocking`, never on a runtime thread.
//!
//! This module depends on nothing above it (no transfer, schedule, protect or server): the
//! plain records it keeps are in `model.rs`.

#[doc(hidden)]
pub mod conformance;
mod encode;
mod migrate;
mod model;
mod postgres;
mod sqlite;
mod team;

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;

pub use migrate::{Copied, copy_catalog};
pub use model::{
    DatabaseRecord, DatabaseSummary, LogLine, Origin, ProtectionRecord, RESTORE_TEST_DETAIL,
    RetentionPolicy, ScheduleRecord, TransferId, TransferIdError, TransferKind, TransferRecord,
    TransferState, VerifyMode,
};
pub use postgres::{PgCatalog, PgTarget};
pub use sqlite::SqliteCatalog;
/// A claimed scheduled run: database, local date, when it was due, the transfer it started.
pub type ScheduledRun = (String, String, Timestamp, Option<TransferId>);

pub use team::{AuditRecord, SessionRecord, TokenRecord, UserRecord};

/// A catalog failure. These are the service's own problems (disk, network, corruption), not
/// the user's. No variant names a backend: callers decide on what went wrong, whichever
/// catalog it happened in.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog's database failed a statement (a full disk, a lost connection, a
    /// constraint): the backend's own words follow.
    #[error("catalog database error: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    /// The catalog's server could not be reached or refused the login.
    #[error(
        "cannot connect to the catalog {catalog}: {source}; check that the server is up, that the user, the database and the password (PGPASSWORD, the passfile or the configuration file) are right, and with TLS the URL's sslmode and sslrootcert"
    )]
    Unreachable {
        /// Where the catalog is, without its password.
        catalog: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every connection to the catalog stayed busy for this long.
    #[error(
        "all {0} connections to the catalog stayed busy for {1:?}; is a statement stuck on a lock?"
    )]
    Busy(usize, std::time::Duration),
    /// The catalog's schema was written by a newer pgbackups than this one.
    #[error(
        "the catalog's schema is version {found}, newer than this pgbackups knows ({known}); run the newer pgbackups (every node sharing a catalog must run the same version)"
    )]
    Newer { found: i64, known: i64 },
    #[error("catalog holds a value it cannot read ({0}); was it written by a newer pgbackups?")]
    Corrupt(String),
    #[error("a database named `{0}` is already registered; remove it first or pick another name")]
    DatabaseExists(String),
    /// Removing a protected database would orphan its replication slot (WAL kept on the
    /// server forever) and its stream.
    #[error("{0} is protected: stop that first with `pgbackups unprotect {0}`")]
    Protected(String),
    /// A protection for a database that is not (or no longer) registered.
    #[error(
        "no database named `{0}` is registered (was it removed meanwhile?); add it with `pgbackups databases:add {0} postgres://...`"
    )]
    NotRegistered(String),
    /// `catalog:migrate` into a catalog that holds records already.
    #[error(
        "the catalog to migrate into already holds {0}; migrate into an empty database (drop and create it again after a failed migration)"
    )]
    NotEmpty(String),
    #[error(
        "a user named `{0}` exists already; pick another name, or change theirs with `pgbackups users:password` and `users:role`"
    )]
    UserExists(String),
    /// A token or session for a user who is not (or no longer) there.
    #[error("no user named `{0}`; `pgbackups users` lists them")]
    NoSuchUser(String),
}

/// An ID counter's row (`prefix`, `last`) as the last ID claimed.
fn counter(prefix: &str, last: i64) -> Result<TransferId, CatalogError> {
    let bad = || CatalogError::Corrupt(format!("id counter {prefix} {last}"));
    let mut chars = prefix.chars();
    let (Some(p), None) = (chars.next(), chars.next()) else {
        return Err(bad());
    };
    Ok(TransferId::new(p, u32::try_from(last).map_err(|_| bad())?))
}

/// Opens (creating and migrating) the SQLite catalog at `path`.
pub fn open(path: &Path) -> Result<Arc<dyn Catalog>, CatalogError> {
    Ok(Arc::new(SqliteCatalog::open(path)?))
}

/// Opens (creating or migrating the schema under a lock) the PostgreSQL catalog at `target`,
/// one that several service nodes may share.
pub fn open_postgres(target: &PgTarget) -> Result<Arc<dyn Catalog>, CatalogError> {
    Ok(Arc::new(PgCatalog::open(target)?))
}

/// An empty in-memory catalog (SQLite `:memory:`), for tests.
pub fn open_in_memory() -> Result<Arc<dyn Catalog>, CatalogError> {
    Ok(Arc::new(SqliteCatalog::open_in_memory()?))
}

/// What the service records, whatever keeps it. Every method blocks: call it from async code
/// through `spawn_blocking`.
pub trait Catalog: Send + Sync {
    // ---- databases ----

    /// Registers a database. Fails when the name is taken.
    fn add_database(
        &self,
        name: &str,
        url_sealed: &[u8],
        url_redacted: &str,
        now: Timestamp,
    ) -> Result<(), CatalogError>;

    /// All registered databases, by name.
    fn list_databases(&self) -> Result<Vec<DatabaseRecord>, CatalogError>;

    /// The sealed URL of a registered database.
    fn database_url_sealed(&self, name: &str) -> Result<Option<Vec<u8>>, CatalogError>;

    /// Forgets a database and its schedule; its backups stay. Returns whether it was
    /// registered. Refuses ([`CatalogError::Protected`]) while the database is protected, in
    /// the same transaction, so that no protection outlives its database whatever races it.
    fn remove_database(&self, name: &str) -> Result<bool, CatalogError>;

    // ---- Continuous Protection ----

    /// Records (or updates) a database's protection. Refuses
    /// ([`CatalogError::NotRegistered`]) a database that is not registered (removed while
    /// `protect` was setting up), in the same statement.
    fn set_protection(&self, p: &ProtectionRecord) -> Result<(), CatalogError>;

    /// Forgets a database's protection; returns whether it had one.
    fn remove_protection(&self, database: &str) -> Result<bool, CatalogError>;

    /// All protections, by database.
    fn protections(&self) -> Result<Vec<ProtectionRecord>, CatalogError>;

    // ---- schedules ----

    /// Sets (or replaces) a database's daily schedule.
    fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), CatalogError>;

    /// Removes a database's schedule; returns whether it had one.
    fn remove_schedule(&self, database: &str) -> Result<bool, CatalogError>;

    /// All schedules, by database.
    fn schedules(&self) -> Result<Vec<ScheduleRecord>, CatalogError>;

    /// Claims runs, each `(database, local date, due at)`, in one transaction. Only the first
    /// claim of a run succeeds, so a run is started once however often the scheduler (or a
    /// second node) gets to it. Returns, for each run, whether this call claimed it.
    fn claim_runs(
        &self,
        runs: &[(String, String, Timestamp)],
        now: Timestamp,
    ) -> Result<Vec<bool>, CatalogError>;

    /// Whether the run of `database` on `local_date` was claimed.
    fn run_claimed(&self, database: &str, local_date: &str) -> Result<bool, CatalogError>;

    /// Gives up a claim whose capture could not start, so that the run is tried again.
    fn unclaim_run(&self, database: &str, local_date: &str) -> Result<(), CatalogError>;

    /// Notes which transfer each claimed run started: `(database, local date, transfer)`.
    fn set_run_transfers(&self, runs: &[(String, String, TransferId)]) -> Result<(), CatalogError>;

    /// Every claimed run, `(database, local date, due at, transfer started)`, by database and
    /// date (`catalog:migrate` copies them, so that no run is started twice).
    fn scheduled_runs(&self) -> Result<Vec<ScheduledRun>, CatalogError>;

    // ---- retention ----

    /// A database's retention policy, if one was set (else the default applies).
    fn retention(&self, database: &str) -> Result<Option<RetentionPolicy>, CatalogError>;

    /// Sets a database's retention policy.
    fn set_retention(&self, database: &str, p: &RetentionPolicy) -> Result<(), CatalogError>;

    /// Pins or unpins a backup: a pinned backup is never expired.
    fn set_pinned(&self, id: TransferId, pinned: bool) -> Result<bool, CatalogError>;

    // ---- transfers ----

    /// Claims the next transfer ID for a prefix (`b` → b001, b002, ...): atomic, so that no
    /// two callers (or nodes sharing the catalog) get the same one.
    fn claim_transfer_id(&self, prefix: char) -> Result<TransferId, CatalogError>;

    /// Makes sure the next ID with `id`'s prefix comes after it (after a catalog rebuild).
    fn bump_id_counter(&self, id: TransferId) -> Result<(), CatalogError>;

    /// The last ID claimed of each prefix, by prefix.
    fn id_counters(&self) -> Result<Vec<TransferId>, CatalogError>;

    /// Inserts a transfer record, or updates it (leaving its layout alone).
    fn save_transfer(&self, t: &TransferRecord) -> Result<(), CatalogError>;

    /// Adds a backup recreated from its manifest (`catalog:rebuild`) with its layout and a
    /// first log line, in one transaction — unless a transfer with its ID exists (another
    /// node, or a backup made before the rebuild, has it): then nothing changes and the
    /// answer is false.
    fn insert_rebuilt_backup(
        &self,
        t: &TransferRecord,
        layout: Option<&str>,
        line: (Timestamp, String),
    ) -> Result<bool, CatalogError>;

    /// Records progress of a running transfer without rewriting the rest of it.
    fn set_progress(&self, id: TransferId, bytes: u64) -> Result<(), CatalogError>;

    /// Records how a backup's stored object is laid out (JSON, see `transfer::layout`).
    fn set_layout(&self, id: TransferId, layout: &str) -> Result<(), CatalogError>;

    /// How a backup's stored object is laid out, if recorded.
    fn layout(&self, id: TransferId) -> Result<Option<String>, CatalogError>;

    /// One transfer.
    fn transfer(&self, id: TransferId) -> Result<Option<TransferRecord>, CatalogError>;

    /// All transfers of a kind (or all), oldest first.
    fn transfers(&self, kind: Option<TransferKind>) -> Result<Vec<TransferRecord>, CatalogError>;

    /// Transfers that are pending or running, oldest first.
    fn unfinished_transfers(&self) -> Result<Vec<TransferRecord>, CatalogError>;

    /// A database's transfers of `kind` (and in `state`, when given), newest first, at most
    /// `limit`: a page's list reads only the rows it shows, through an index.
    fn transfers_of(
        &self,
        database: &str,
        kind: TransferKind,
        state: Option<TransferState>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, CatalogError>;

    /// How many transfers of `kind` a database has (a page says how many it does not list).
    fn count_transfers_of(&self, database: &str, kind: TransferKind) -> Result<u64, CatalogError>;

    /// Every registered database's [`DatabaseSummary`], by name: a few indexed rows each,
    /// never the whole history.
    fn database_summaries(&self) -> Result<Vec<DatabaseSummary>, CatalogError>;

    /// Removes a transfer and its log.
    fn delete_transfer(&self, id: TransferId) -> Result<(), CatalogError>;

    // ---- logs ----

    /// Appends lines to a transfer's log in one transaction.
    fn append_logs(
        &self,
        id: TransferId,
        lines: &[(Timestamp, String)],
    ) -> Result<(), CatalogError>;

    /// A transfer's log lines after `after_seq` (0 for all).
    fn logs(&self, id: TransferId, after_seq: u64) -> Result<Vec<LogLine>, CatalogError>;

    /// A transfer's last `limit` log lines, oldest first: a page's tail of a long log reads
    /// only what it shows.
    fn log_tail(&self, id: TransferId, limit: usize) -> Result<Vec<LogLine>, CatalogError>;
    // ---- users, tokens, sessions, audit ----

    /// Adds a user. Fails ([`CatalogError::UserExists`]) when the name is taken.
    fn add_user(&self, u: &UserRecord) -> Result<(), CatalogError>;

    /// One user.
    fn user(&self, name: &str) -> Result<Option<UserRecord>, CatalogError>;

    /// All users, by name.
    fn users(&self) -> Result<Vec<UserRecord>, CatalogError>;

    /// Removes a user with their sessions and tokens, in one transaction (nothing they held
    /// keeps working). Returns whether they existed.
    fn remove_user(&self, name: &str) -> Result<bool, CatalogError>;

    /// Sets a user's password hash and ends their sessions, in one transaction (a reset
    /// password logs out whoever had it). Returns whether the user exists.
    fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool, CatalogError>;

    /// Sets a user's role (their tokens and sessions carry it from now on). Returns whether
    /// the user exists.
    fn set_user_role(&self, name: &str, role: &str) -> Result<bool, CatalogError>;

    /// Records a session, and forgets the sessions expired at `now`, in one transaction.
    /// Refused ([`CatalogError::NoSuchUser`]) for a user removed meanwhile.
    fn add_session(&self, s: &SessionRecord, now: Timestamp) -> Result<(), CatalogError>;

    /// The session with this hash and its user's current role, unless expired at `now`.
    fn session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(SessionRecord, String)>, CatalogError>;

    /// Ends a session; returns whether it existed.
    fn remove_session(&self, hash: &str) -> Result<bool, CatalogError>;

    /// Records a personal token. Returns false (nothing changed) when its ID is taken;
    /// refused ([`CatalogError::NoSuchUser`]) for a user removed meanwhile.
    fn add_token(&self, t: &TokenRecord) -> Result<bool, CatalogError>;

    /// One token, by ID.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, CatalogError>;

    /// The token with this hash and its user's current role.
    fn token_by_hash(&self, hash: &str) -> Result<Option<(TokenRecord, String)>, CatalogError>;

    /// A user's tokens (or everyone's), oldest first.
    fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, CatalogError>;

    /// Revokes a token; returns whether it existed.
    fn remove_token(&self, id: &str) -> Result<bool, CatalogError>;

    /// Appends a line to the audit log; returns its `seq`.
    fn append_audit(&self, e: &AuditRecord) -> Result<i64, CatalogError>;

    /// The newest `limit` audit lines, older than `before` when given, newest first.
    fn audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, CatalogError>;
}
