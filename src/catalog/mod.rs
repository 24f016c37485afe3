//! The catalog: what the service knows and must not forget — registered databases (URLs
//! sealed), transfers with their state and logs, and the backups they made.
//!
//! SQLite is the embedded default. A PostgreSQL catalog for several service nodes will sit
//! behind the same methods (see ARCHITECTURE.md).

mod model;
mod sqlite;

pub use model::{
    DatabaseRecord, LogLine, Origin, ProtectionRecord, ScheduleRecord, TransferId, TransferIdError,
    TransferKind, TransferRecord, TransferState, VerifyMode,
};
pub use sqlite::{Catalog, CatalogError};
