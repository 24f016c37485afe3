//! Where backups live: one interface, one driver per kind of store.
//!
//! The interface is blocking on purpose: every caller is a streaming pipeline that already runs
//! on a blocking thread (compression and hashing are CPU work), so a blocking `Write`/`Read`
//! is the simplest contract. Drivers for async object stores bridge with
//! `tokio::runtime::Handle::block_on` inside their methods.

mod cloud;
mod local;
mod open;

use std::io::{Read, Write};
use std::time::Duration;

pub use cloud::{CloudStorage, CloudStore};
pub use local::LocalStorage;
pub use open::{StorageConfig, open_storage};

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
    #[error("storage configuration: {0}")]
    Config(String),
    /// The object-store client refused the configuration (`kind` is S3, GCS or Azure).
    #[error("storage configuration: {kind} storage: {source}")]
    Build {
        kind: &'static str,
        #[source]
        source: Box<object_store::Error>,
    },
    /// An object store's answer, kept whole (it says whether it may pass); `hint` names the
    /// usual mistake behind it, if any.
    #[error("storage: could not {op} {key}: {source}{hint}")]
    Remote {
        op: &'static str,
        key: String,
        hint: &'static str,
        #[source]
        source: Box<object_store::Error>,
    },
}

impl StorageError {
    /// Whether trying again soon may succeed: the store or the network was down, the object
    /// store answered with a server error, a read broke off. Not found, a bad key, a
    /// configuration mistake or a refusal (credentials, permissions) are the answer.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::Unsupported
            ),
            StorageError::Remote { source, .. } => cloud::transient(source),
            StorageError::NotFound(_)
            | StorageError::BadKey(_)
            | StorageError::Config(_)
            | StorageError::Build { .. } => false,
        }
    }
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

    /// Removes what interrupted writes left behind (after a crash, or an abort that failed
    /// while the store was down). Returns how many.
    fn collect_partial(&self) -> Result<usize, StorageError>;

    /// Retries the clean-up of writes that failed while the store was unreachable (an
    /// object store's multipart uploads whose abort failed). Safe while other writes run.
    fn retry_aborts(&self) -> Result<usize, StorageError> {
        Ok(0)
    }

    /// The keys of every object under `prefix` (a key prefix ending in `/`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// A URL that fetches the object without credentials until `expires` has passed, when the
    /// store can presign one (S3, GCS, Azure); `None` otherwise.
    fn signed_url(&self, _key: &str, _expires: Duration) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    /// Whether objects created from now on are encrypted (an encrypting layer says so).
    fn encrypts_new_objects(&self) -> bool {
        false
    }

    /// Reads a whole small object (a manifest) into memory.
    fn read_small(&self, key: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::new();
        self.open(key)?
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|source| StorageError::Io {
                op: "read",
                key: key.to_string(),
                source,
            })?;
        Ok(out)
    }

    /// Writes a whole small object (a manifest) durably.
    fn write_small(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        let mut w = self.create(key)?;
        w.write_all(data).map_err(|source| StorageError::Io {
            op: "write",
            key: key.to_string(),
            source,
        })?;
        w.commit().map(|_| ())
    }
}

/// An object being written. Dropping it without [`commit`](ObjectWriter::commit) discards it.
pub trait ObjectWriter: Write + Send {
    /// Makes the object durable and visible under its key. Returns its size.
    fn commit(self: Box<Self>) -> Result<u64, StorageError>;

    /// Discards everything written.
    fn abort(self: Box<Self>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn only_failures_that_may_pass_are_transient() {
        let io = |kind: ErrorKind| StorageError::Io {
            op: "read",
            key: "k".into(),
            source: kind.into(),
        };
        assert!(io(ErrorKind::ConnectionReset).is_transient());
        assert!(io(ErrorKind::Other).is_transient());
        assert!(!io(ErrorKind::PermissionDenied).is_transient());
        assert!(!StorageError::NotFound("k".into()).is_transient());
        assert!(!StorageError::BadKey("k".into()).is_transient());
        assert!(!StorageError::Config("x".into()).is_transient());
        let remote = |source| StorageError::Remote {
            op: "read",
            key: "k".into(),
            hint: " (a hint)",
            source: Box::new(source),
        };
        let down = remote(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        });
        assert!(down.is_transient());
        assert_eq!(
            down.to_string(),
            "storage: could not read k: Generic S3 error: connection refused (a hint)"
        );
        assert!(
            !remote(object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "403".into(),
            })
            .is_transient()
        );
    }
}
