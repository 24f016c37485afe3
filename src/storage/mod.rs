//! Where backups live: one interface, one driver per kind of store.
//!
//! The interface is blocking on purpose: every caller is a streaming pipeline that already runs
//! on a blocking thread (compression and hashing are CPU work), so a blocking `Write`/`Read`
//! is the simplest contract. Drivers for async object stores bridge with
//! `tokio::runtime::Handle::block_on` inside their methods.

mod local;

use std::io::{Read, Write};

pub use local::LocalStorage;

/// A storage failure, naming the object and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage: could not {op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
    #[error("storage: object {0} does not exist (was it deleted outside pgbackups?)")]
    NotFound(String),
    #[error("storage: `{0}` is not a valid object key")]
    BadKey(String),
}

/// A store of immutable objects addressed by slash-separated keys.
pub trait Storage: Send + Sync {
    /// A short description for logs and `serve`'s banner, such as `local directory /var/lib/x`.
    fn describe(&self) -> String;

    /// Starts writing a new object. Nothing is visible under `key` until
    /// [`ObjectWriter::commit`] returns.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError>;

    /// Reads an object from the start.
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.open_at(key, 0)
    }

    /// Reads an object from byte `offset` on (restores read parts of a dump in parallel).
    fn open_at(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, StorageError>;

    /// The size of an object, or `None` when it does not exist.
    fn size(&self, key: &str) -> Result<Option<u64>, StorageError>;

    /// Deletes an object; deleting a missing object succeeds.
    fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Removes what interrupted writes left behind (after a crash). Returns how many.
    fn collect_partial(&self) -> Result<usize, StorageError>;
}

/// An object being written. Dropping it without [`commit`](ObjectWriter::commit) discards it.
pub trait ObjectWriter: Write + Send {
    /// Makes the object durable and visible under its key. Returns its size.
    fn commit(self: Box<Self>) -> Result<u64, StorageError>;

    /// Discards everything written.
    fn abort(self: Box<Self>);
}
