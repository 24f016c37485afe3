//! Writing objects to an object store: multipart uploads recorded in the journal, parts in
//! flight, completion, and the abort of an upload that failed.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{
    ABORT_WAIT, CloudStore, JournalEntry, MAX_PART, PARTS_IN_FLIGHT, explain, io_err, journal_file,
    obj_err, remove_journal, retried, run_on,
};
use crate::storage::{ObjectWriter, StorageError};

type PartResult = object_store::Result<PartId>;

/// An object being uploaded in parts. Nothing is visible under its key until the upload is
/// completed; dropped or aborted, the upload is aborted (or left in the journal for later).
pub(super) struct CloudWriter {
    pub(super) key: String,
    pub(super) path: Path,
    pub(super) store: Arc<CloudStore>,
    pub(super) rt: Option<tokio::runtime::Handle>,
    pub(super) journal: PathBuf,
    /// The multipart upload's ID and journal file, once the first part is sent.
    pub(super) upload: Option<(String, PathBuf)>,
    pub(super) buf: Vec<u8>,
    pub(super) part_size: usize,
    pub(super) in_flight: VecDeque<tokio::task::JoinHandle<PartResult>>,
    pub(super) parts: Vec<PartId>,
    pub(super) failed: Option<String>,
    pub(super) finished: bool,
}

impl CloudWriter {
    fn wait<F, T>(&self, fut: F) -> io::Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        run_on(self.rt.as_ref(), fut)
    }

    fn fail(&mut self, e: impl std::fmt::Display) -> io::Error {
        let msg = format!("upload of {} failed: {e}", self.key);
        self.failed = Some(msg.clone());
        io::Error::other(msg)
    }

    /// Starts the multipart upload and records it in the journal.
    fn begin(&mut self) -> io::Result<()> {
        let (mp, path) = (self.store.multipart.clone(), self.path.clone());
        let (window, what) = (
            self.store.retry_window,
            format!("start the upload of {}", self.key),
        );
        let id = match self
            .wait(async move { retried(window, &what, || mp.create_multipart(&path)).await })?
        {
            Ok(id) => id,
            Err(e) => return Err(self.fail(explain(&e))),
        };
        let file = journal_file(&self.journal, &id);
        let entry = JournalEntry {
            store: self.store.url.clone(),
            key: self.key.clone(),
            upload_id: id.clone(),
            abandoned: false,
        };
        let json = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        crate::durable::write_file(&file, &json, 0o600)?;
        self.upload = Some((id, file));
        Ok(())
    }

    /// The size of part number `n` (0-based): doubles every thousand parts, up to S3's
    /// limit of 5 GiB per part.
    fn size_of_part(&self, n: usize) -> usize {
        self.part_size
            .saturating_mul(1 << (n / 1000).min(10))
            .min(MAX_PART)
    }

    /// How many parts may be uploading at once while part `n` fills: fewer as parts grow,
    /// so that memory stays near `PARTS_IN_FLIGHT` first-size parts until parts are 4× it.
    fn parts_in_flight(n: usize) -> usize {
        (PARTS_IN_FLIGHT >> (n / 1000).min(8)).max(1)
    }

    /// Sends the buffer as the next part, waiting first when too many are in flight.
    fn send_part(&mut self) -> io::Result<()> {
        if self.upload.is_none() {
            self.begin()?;
        }
        let n = self.parts.len() + self.in_flight.len();
        while self.in_flight.len() >= Self::parts_in_flight(n) {
            self.reap_one()?;
        }
        let Some((id, _)) = &self.upload else {
            return Err(io::Error::other("no upload"));
        };
        let n = self.parts.len() + self.in_flight.len();
        if n >= 10_000 {
            return Err(self.fail("the object needs more than 10,000 parts; raise part_size"));
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let (mp, path, id) = (self.store.multipart.clone(), self.path.clone(), id.clone());
        let (window, what) = (
            self.store.retry_window,
            format!("upload part {} of {}", n + 1, self.key),
        );
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| io::Error::other("the storage driver is shut down"))?;
        self.in_flight.push_back(rt.spawn(async move {
            retried(window, &what, || {
                mp.put_part(&path, &id, n, PutPayload::from(data.clone()))
            })
            .await
        }));
        self.buf = Vec::with_capacity(self.size_of_part(n + 1));
        Ok(())
    }

    fn reap_one(&mut self) -> io::Result<()> {
        let Some(handle) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.wait(handle)? {
            Ok(Ok(part)) => {
                self.parts.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail(explain(&e))),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Stops the upload and removes its parts from the store.
    fn abandon(&mut self) {
        self.finished = true;
        // A part request still running could land after the abort and leave a part behind
        // (a dropped request may already be in the server's hands): let the running ones
        // finish (bounded), then abort the upload, which removes every part it has.
        let handles: Vec<_> = self.in_flight.drain(..).collect();
        let _ = self.wait(async move {
            let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
            if tokio::time::timeout(ABORT_WAIT, futures_util::future::join_all(handles))
                .await
                .is_err()
            {
                for a in aborts {
                    a.abort();
                }
            }
        });
        self.buf = Vec::new();
        if let Some((id, file)) = self.upload.take() {
            let (mp, path, key) = (
                self.store.multipart.clone(),
                self.path.clone(),
                self.key.clone(),
            );
            let id2 = id.clone();
            // Bounded: when the store is down, the retry from the journal takes over.
            let abort = async move {
                match tokio::time::timeout(ABORT_WAIT, mp.abort_multipart(&path, &id2)).await {
                    Ok(r) => r,
                    Err(_) => Err(object_store::Error::Generic {
                        store: "S3",
                        source: "no answer to the abort request".into(),
                    }),
                }
            };
            match self.wait(abort) {
                Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => remove_journal(&file),
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => explain(&e),
                        Err(e) => e.to_string(),
                        Ok(Ok(())) => String::new(),
                    };
                    tracing::warn!(
                        "could not abort the upload of {key} yet; it is retried every minute: {why}"
                    );
                    let entry = JournalEntry {
                        store: self.store.url.clone(),
                        key,
                        upload_id: id,
                        abandoned: true,
                    };
                    if let Ok(json) = serde_json::to_vec(&entry) {
                        let _ = crate::durable::write_file(&file, &json, 0o600);
                    }
                }
            }
        }
    }
}

impl Write for CloudWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::other(msg.clone()));
        }
        if self.finished {
            return Err(io::Error::other("object already finished"));
        }
        let part = self.size_of_part(self.parts.len() + self.in_flight.len());
        let room = part.saturating_sub(self.buf.len());
        let n = room.min(data.len());
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(part);
        }
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= part {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for CloudWriter {
    fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        let key = self.key.clone();
        let result = (|| -> io::Result<()> {
            if let Some(msg) = &self.failed {
                return Err(io::Error::other(msg.clone()));
            }
            if self.upload.is_none() {
                // Small enough for one request.
                let data = Bytes::from(std::mem::take(&mut self.buf));
                let (store, path) = (self.store.store.clone(), self.path.clone());
                let (window, what) = (self.store.retry_window, format!("store {}", self.key));
                return match self.wait(async move {
                    retried(window, &what, || store.put(&path, data.clone().into())).await
                })? {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.fail(explain(&e))),
                };
            }
            if !self.buf.is_empty() {
                self.send_part()?;
            }
            while !self.in_flight.is_empty() {
                self.reap_one()?;
            }
            let Some((id, _)) = &self.upload else {
                return Err(io::Error::other("no upload"));
            };
            let (mp, path, id, parts) = (
                self.store.multipart.clone(),
                self.path.clone(),
                id.clone(),
                std::mem::take(&mut self.parts),
            );
            let (window, what) = (
                self.store.retry_window,
                format!("complete the upload of {}", self.key),
            );
            match self.wait(async move {
                retried(window, &what, || {
                    mp.complete_multipart(&path, &id, parts.clone())
                })
                .await
            })? {
                Ok(_) => Ok(()),
                // A retry of a completion whose answer was lost finds the upload gone: the
                // object's size, checked below, says whether it completed.
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.fail(explain(&e))),
            }
        })();
        if let Err(source) = result {
            self.abandon();
            return Err(StorageError::Io {
                op: "upload",
                key,
                source,
            });
        }
        self.finished = true;
        if let Some((_, file)) = self.upload.take() {
            remove_journal(&file);
        }
        // The store's word on the size, not ours: a short object must never pass as complete.
        let (store, path) = (self.store.store.clone(), self.path.clone());
        let (window, what) = (self.store.retry_window, format!("inspect {key}"));
        let meta = self
            .wait(async move { retried(window, &what, || store.head(&path)).await })
            .map_err(io_err("inspect", &key))?
            .map_err(obj_err("inspect", &key))?;
        Ok(meta.size)
    }

    fn abort(mut self: Box<Self>) {
        self.abandon();
    }
}

impl Drop for CloudWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.abandon();
        }
    }
}
