//! A fault-injecting store for in-process engine tests: wraps any [`Storage`] and, on the
//! objects a test picks, fails the create, the Nth write, the commit, the Nth read or the Nth delete, or
//! ends reads early (a short read: end-of-file before the object's end), so that tests show what the engine
//! does when its store breaks at a chosen point.
//!
//! Faults are set and cleared while the engine runs ([`FaultyStorage::set`]); what was
//! written and read is counted, and every fault that fired is recorded with its message, so
//! that a test can tell that its fault was really hit.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgbackups::storage::{ObjectWriter, Storage, StorageError};

/// Which faults to inject. Counts are 1-based and run over every reader or writer of the
/// objects the faults apply to, from the moment the faults are set.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Only objects whose key contains this (all objects when `None`).
    pub key_contains: Option<String>,
    /// Creating an object fails (the store refuses before anything is written).
    pub fail_create: bool,
    /// The Nth `write` call fails.
    pub fail_write: Option<u64>,
    /// The Nth commit fails (after the inner writer was aborted: nothing is left behind).
    pub fail_commit: Option<u64>,
    /// The Nth `read` call (of the readers read faults apply to) fails.
    pub fail_read: Option<u64>,
    /// Every reader reports end-of-file after this many bytes from where it was opened.
    pub short_read: Option<u64>,
    /// Read faults apply only to readers opened at or after the Nth open (1 = all).
    pub from_open: u64,
    /// The Nth `delete` call fails (the object stays).
    pub fail_delete: Option<u64>,
}

/// What went through the store since the faults were last set.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub writes: u64,
    pub reads: u64,
    pub opens: u64,
    pub commits: u64,
    pub deletes: u64,
    /// The message of every fault that fired, in order.
    pub fired: Vec<String>,
}

#[derive(Default)]
struct State {
    faults: Faults,
    counts: Counts,
    /// Reads by readers that read faults apply to (what [`Faults::fail_read`] counts).
    armed_reads: u64,
}

/// A store that breaks where it is told to; see the module's documentation.
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    state: Arc<Mutex<State>>,
}

impl FaultyStorage {
    /// `inner` without faults until [`FaultyStorage::set`].
    pub fn new(inner: Arc<dyn Storage>) -> Arc<FaultyStorage> {
        Arc::new(FaultyStorage {
            inner,
            state: Arc::default(),
        })
    }

    /// The store underneath, to look at what is really there.
    pub fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    /// Replaces the faults and resets the counts.
    pub fn set(&self, faults: Faults) {
        let mut s = lock(&self.state);
        s.faults = faults;
        s.counts = Counts::default();
        s.armed_reads = 0;
    }

    /// No more faults (the counts go on).
    pub fn clear(&self) {
        lock(&self.state).faults = Faults::default();
    }

    /// What went through the store since the faults were last set.
    pub fn counts(&self) -> Counts {
        lock(&self.state).counts.clone()
    }

    fn applies(&self, key: &str) -> bool {
        lock(&self.state)
            .faults
            .key_contains
            .as_deref()
            .is_none_or(|k| key.contains(k))
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Storage for FaultyStorage {
    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        if !self.applies(key) {
            return self.inner.create(key);
        }
        {
            let mut s = lock(&self.state);
            if s.faults.fail_create {
                let msg = format!("injected fault: create of {key} failed");
                s.counts.fired.push(msg.clone());
                return Err(StorageError::Io {
                    op: "create",
                    key: key.to_string(),
                    source: io::Error::other(msg),
                });
            }
        }
        let inner = self.inner.create(key)?;
        Ok(Box::new(FaultyWriter {
            inner,
            key: key.to_string(),
            state: self.state.clone(),
        }))
    }

    fn open_at(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, StorageError> {
        let inner = self.inner.open_at(key, offset)?;
        if !self.applies(key) {
            return Ok(inner);
        }
        let armed = {
            let mut s = lock(&self.state);
            s.counts.opens += 1;
            s.counts.opens >= s.faults.from_open
        };
        Ok(Box::new(FaultyReader {
            inner,
            key: key.to_string(),
            offset,
            read: 0,
            armed,
            state: self.state.clone(),
        }))
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        self.inner.size(key)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        if self.applies(key) {
            let mut s = lock(&self.state);
            s.counts.deletes += 1;
            if s.faults.fail_delete == Some(s.counts.deletes) {
                let msg = format!(
                    "injected fault: delete #{} of {key} failed",
                    s.counts.deletes
                );
                s.counts.fired.push(msg.clone());
                return Err(StorageError::Io {
                    op: "delete",
                    key: key.to_string(),
                    source: io::Error::other(msg),
                });
            }
        }
        self.inner.delete(key)
    }

    fn collect_partial(&self) -> Result<usize, StorageError> {
        self.inner.collect_partial()
    }

    fn retry_aborts(&self) -> Result<usize, StorageError> {
        self.inner.retry_aborts()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }

    fn signed_url(&self, key: &str, expires: Duration) -> Result<Option<String>, StorageError> {
        self.inner.signed_url(key, expires)
    }
}

/// An object being written through the faults.
struct FaultyWriter {
    inner: Box<dyn ObjectWriter>,
    key: String,
    state: Arc<Mutex<State>>,
}

impl Write for FaultyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        {
            let mut s = lock(&self.state);
            s.counts.writes += 1;
            if s.faults.fail_write == Some(s.counts.writes) {
                let msg = format!(
                    "injected fault: write #{} to {} failed",
                    s.counts.writes, self.key
                );
                s.counts.fired.push(msg.clone());
                return Err(io::Error::other(msg));
            }
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ObjectWriter for FaultyWriter {
    fn commit(self: Box<Self>) -> Result<u64, StorageError> {
        let failed = {
            let mut s = lock(&self.state);
            s.counts.commits += 1;
            (s.faults.fail_commit == Some(s.counts.commits)).then(|| {
                let msg = format!(
                    "injected fault: commit #{} of {} failed",
                    s.counts.commits, self.key
                );
                s.counts.fired.push(msg.clone());
                msg
            })
        };
        match failed {
            Some(msg) => {
                let key = self.key.clone();
                self.inner.abort();
                Err(StorageError::Io {
                    op: "commit",
                    key,
                    source: io::Error::other(msg),
                })
            }
            None => self.inner.commit(),
        }
    }

    fn abort(self: Box<Self>) {
        self.inner.abort()
    }
}

/// An object being read through the faults.
struct FaultyReader {
    inner: Box<dyn Read + Send>,
    key: String,
    offset: u64,
    /// Bytes handed out so far.
    read: u64,
    /// Whether read faults apply to this reader (see [`Faults::from_open`]).
    armed: bool,
    state: Arc<Mutex<State>>,
}

impl Read for FaultyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut limit = buf.len();
        {
            let mut s = lock(&self.state);
            s.counts.reads += 1;
            if self.armed {
                s.armed_reads += 1;
                if s.faults.fail_read == Some(s.armed_reads) {
                    let msg = format!(
                        "injected fault: read #{} of {} (at byte {}) failed",
                        s.armed_reads,
                        self.key,
                        self.offset + self.read
                    );
                    s.counts.fired.push(msg.clone());
                    return Err(io::Error::other(msg));
                }
                if let Some(short) = s.faults.short_read {
                    let left = short.saturating_sub(self.read);
                    if left == 0 && !buf.is_empty() {
                        let msg = format!(
                            "injected fault: read of {} ended early at byte {}",
                            self.key,
                            self.offset + self.read
                        );
                        s.counts.fired.push(msg);
                        return Ok(0);
                    }
                    limit = limit.min(usize::try_from(left).unwrap_or(usize::MAX));
                }
            }
        }
        let n = self.inner.read(&mut buf[..limit])?;
        self.read += n as u64;
        Ok(n)
    }
}
