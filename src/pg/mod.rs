//! Everything that faces the PostgreSQL servers being backed up: connection URLs, the stock
//! client tools (`pg_dump`, `pg_restore`, `psql`) and the facts we ask a server for.
//!
//! We talk to the servers only through the stock tools, so that every libpq feature a user's
//! URL may rely on (TLS modes, multiple hosts, service files, passfiles) behaves exactly as it
//! does for `pg_dump` itself.

pub mod archive;
pub mod dump_stream;
mod filter;
pub mod globals;
pub mod kept;
mod name;
pub mod restore_errors;
mod tools;
mod url;
pub mod wal_names;

pub use filter::{DumpFilter, FilterError};
pub use name::{BadDbName, DbName, DbRef, DbRefError};
pub use tools::{PgTool, PgTools, ToolError, Version};
pub use url::{PgUrl, PgUrlError, redact};

pub mod client;
