//! Why a transfer request is refused, in words the user can act on.

use crate::catalog::{CatalogError, TransferId};
use crate::pg::{FilterError, PgUrlError};
use crate::registry::RegistryError;
use crate::secret::UnsealError;
use crate::storage::StorageError;

use super::claims::ClaimError;

/// A request that cannot be carried out, in words the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("no backup or transfer {0}; list them with `pgbackups backups`")]
    NotFound(TransferId),
    #[error(
        "no database named `{0}` is registered; add it with `pgbackups databases:add {0} postgres://...`, or pass a postgres:// URL instead"
    )]
    UnknownDatabase(String),
    /// `pull` and `push` name the service's database by its registered name only (its
    /// credentials stay on the service), so no URL is offered instead.
    #[error(
        "no database named `{0}` is registered on the service; pull and push name it as `pgbackups databases` lists it: add it with `pgbackups databases:add {0} postgres://...`"
    )]
    UnknownForPullPush(String),
    #[error(
        "no database is registered; add one with `pgbackups databases:add NAME postgres://...`, or pass a postgres:// URL"
    )]
    NoDatabases,
    #[error("several databases are registered ({0}); name the one you mean")]
    WhichDatabase(String),
    #[error(transparent)]
    BadName(#[from] crate::pg::BadDbName),
    #[error(transparent)]
    BadUrl(#[from] PgUrlError),
    #[error("this is destructive: confirm it by passing --confirm {expected}{given}")]
    Confirm { expected: String, given: String },
    #[error(
        "{target} has {tables} table(s); push replaces everything in it: confirm by passing --confirm {expected}"
    )]
    NotEmpty {
        target: String,
        tables: u64,
        expected: String,
    },
    #[error(
        "{id} is not a completed backup (it is {state}); pick a completed one from `pgbackups backups`"
    )]
    NotCompleted { id: TransferId, state: String },
    #[error("{0} is a restore, not a backup")]
    NotABackup(TransferId),
    #[error("{0} is still running; cancel it first with `pgbackups backups:cancel {0}`")]
    StillRunning(TransferId),
    #[error(
        "backup {backup} is being restored by {restore}; wait for it to end or cancel it first"
    )]
    InUse {
        backup: TransferId,
        restore: TransferId,
    },
    #[error("{id} is not running (it is {state}); nothing to cancel")]
    NotRunning { id: TransferId, state: String },
    #[error("no capture or restore is running; nothing to cancel")]
    NothingRunning,
    #[error("there is no completed backup yet; take one with `pgbackups backups:capture`")]
    NoBackups,
    #[error(transparent)]
    BadFilter(#[from] FilterError),
    #[error("{0}")]
    Target(String),
    /// The source of a pull cannot be read (unreachable, no pg_dump for its version).
    #[error("{0}")]
    Source(String),
    #[error("a restore source must be a backup ID (b001) or an http(s) URL")]
    BadSourceUrl,
    #[error(
        "a restore test needs a server for its scratch database, and the backup's database {0} is not registered: pass --target DATABASE_OR_URL"
    )]
    VerifyTarget(String),
    #[error("{0}; the target database was not changed")]
    Upload(UploadError),
    #[error("the source and the target are the same database; a copy needs two")]
    SameDatabase,
    #[error("--jobs must be between 1 and 64, not {0}")]
    BadJobs(u32),
    #[error("the service is shutting down; try again once it is back")]
    ShuttingDown,
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(
        "{0} has ended, but the catalog has not yet taken how (see the service's log: a full disk?); try again once it has"
    )]
    Unrecorded(TransferId),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RegistryError> for TransferError {
    /// The registry's refusals keep their own variants here, so that each maps to the same
    /// answer wherever it comes from.
    fn from(e: RegistryError) -> TransferError {
        match e {
            RegistryError::UnknownDatabase(n) => TransferError::UnknownDatabase(n),
            RegistryError::NoDatabases => TransferError::NoDatabases,
            RegistryError::WhichDatabase(n) => TransferError::WhichDatabase(n),
            RegistryError::BadName(n) => TransferError::BadName(n),
            RegistryError::BadUrl(e) => TransferError::BadUrl(e),
            RegistryError::Seal(e) => TransferError::Internal(e.to_string()),
            RegistryError::Catalog(e) => TransferError::Catalog(e),
            RegistryError::Unseal(e) => TransferError::Unseal(e),
        }
    }
}

/// Why an uploaded dump was refused before anything was restored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot write the scratch file: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("the upload broke off: {0}")]
    BrokeOff(#[source] std::io::Error),
    #[error("this file is not a custom-format dump (pg_dump -Fc): it does not start with PGDMP")]
    NotADump,
    #[error("the file is over the limit of {0} bytes (PGBACKUPS_URL_MAX_BYTES)")]
    OverLimit(u64),
    #[error("the file is empty")]
    Empty,
    #[error("the upload is not valid zstd: {0}")]
    Zstd(#[source] std::io::Error),
}
