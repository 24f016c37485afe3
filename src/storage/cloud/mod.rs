//! The object-store driver: S3-compatible stores (and GCS, Azure) through the `object_store`
//! crate.
//!
//! The [`Storage`] interface is blocking; this driver runs its own small tokio runtime and
//! waits for it with a channel, so that it can be called from any thread, including a
//! runtime's worker, without the "runtime within a runtime" panic.
//!
//! Writes are multipart uploads through the low-level [`MultipartStore`] API, so that the
//! driver knows the upload ID: it is written to a journal in the data directory before the
//! first part, and removed once the upload is completed or aborted. An abort that fails (the
//! store is down) stays in the journal and is retried by [`Storage::collect_partial`], which
//! the service runs at start and every minute, so no orphan parts outlive an outage.
//!
//! Memory: one part being filled plus at most [`PARTS_IN_FLIGHT`] parts uploading. Parts start
//! at the configured size (default 8 MiB) and double every 1,000 parts (up to S3's 5 GiB), so
//! that the store's 10,000-part limit is not reached below about 8 TB; as parts double, fewer
//! upload at once (4, 2, then 1), so memory stays at 40–64 MiB up to ~55 GB stored and then
//! grows with the part size (two parts).
//!
//! Here: the store, its runtime, the journal and the [`Storage`] methods; reading in
//! `read.rs`, uploading in `write.rs`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{ObjectWriter, Storage, StorageError};

mod read;
mod write;

use read::{CloudReader, GetError, past_the_end, start_get};
use write::CloudWriter;

/// Parts uploading at once for one object.
pub const PARTS_IN_FLIGHT: usize = 4;

/// The smallest part S3 accepts (except the last).
const MIN_PART: usize = 5 << 20;

/// The largest part S3 accepts.
const MAX_PART: usize = 5 << 30;

/// How long a failed upload waits for its abort before leaving it to the journal.
const ABORT_WAIT: Duration = Duration::from_secs(10);

/// How many times a broken download is resumed from where it stopped before giving up.
const READ_RESUMES: u32 = 3;

/// A connected object store with everything the driver needs from it.
pub struct CloudStore {
    /// `s3://bucket/prefix` and the like, for messages.
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub multipart: Arc<dyn MultipartStore>,
    /// Presigns GETs; `None` for stores that cannot.
    pub signer: Option<Arc<dyn Signer>>,
    /// Key prefix inside the bucket (no leading or trailing slash; may be empty).
    pub prefix: String,
    /// Size of the first parts of a multipart upload.
    pub part_size: usize,
    /// How long a failing operation is retried before it fails (`retry_timeout_secs`).
    pub retry_window: Duration,
}

/// Whether a store error may pass if the request is tried again (the store or the network
/// is down, a server error) rather than being the answer (not found, forbidden, ...).
pub(super) fn transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

/// Runs a store operation, retrying transient failures with a growing pause (up to 5 s)
/// until `window` has passed. The log says when the store starts failing and when it
/// answers again, so that an outage a transfer rode out is visible afterwards.
async fn retried<T, F, Fut>(window: Duration, what: &str, mut op: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut failing = false;
    loop {
        match op().await {
            Ok(v) => {
                if failing {
                    tracing::info!(
                        "the object store answers again: {what} succeeded after {:.1} s of retries",
                        start.elapsed().as_secs_f64()
                    );
                }
                return Ok(v);
            }
            Err(e) if transient(&e) && start.elapsed() + pause <= window => {
                if !failing {
                    tracing::warn!(
                        "the object store failed to {what}: {}; retrying for up to {} s (storage retry_timeout_secs)",
                        explain(&e),
                        window.as_secs()
                    );
                    failing = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                if failing {
                    tracing::error!(
                        "the object store still fails to {what} after {:.1} s of retries; giving up",
                        start.elapsed().as_secs_f64()
                    );
                }
                return Err(e);
            }
        }
    }
}

/// Objects in an S3-compatible (or GCS, Azure) bucket.
pub struct CloudStorage {
    inner: Arc<CloudStore>,
    rt: Option<tokio::runtime::Runtime>,
    journal: PathBuf,
}

/// One multipart upload in flight, as the journal records it.
#[derive(Serialize, Deserialize)]
struct JournalEntry {
    /// The store (`s3://bucket/prefix`) the upload belongs to.
    #[serde(default)]
    store: String,
    key: String,
    upload_id: String,
    /// Set when the writer gave up and its abort failed: only such uploads are aborted while
    /// the service runs (the others belong to uploads in progress).
    #[serde(default)]
    abandoned: bool,
}

impl CloudStorage {
    /// A driver over `store`, keeping its journal of open uploads in `journal` (created if
    /// missing). Proves that the bucket exists and that the credentials can write, read and
    /// delete, so that a wrong bucket or key fails at start, not at the first backup.
    pub fn open(
        store: CloudStore,
        journal: PathBuf,
        probe: bool,
    ) -> Result<CloudStorage, StorageError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&journal)
            .map_err(|source| StorageError::Io {
                op: "create journal directory",
                key: journal.display().to_string(),
                source,
            })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pgbackups-storage")
            .enable_all()
            .build()
            .map_err(|source| StorageError::Io {
                op: "start the I/O threads for",
                key: store.url.clone(),
                source,
            })?;
        let storage = CloudStorage {
            inner: Arc::new(store),
            rt: Some(rt),
            journal,
        };
        if probe {
            storage.probe()?;
        }
        Ok(storage)
    }

    fn path(&self, key: &str) -> Result<Path, StorageError> {
        let ok = !key.is_empty()
            && !key.starts_with('/')
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !ok {
            return Err(StorageError::BadKey(key.to_string()));
        }
        let full = if self.inner.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.inner.prefix)
        };
        Path::parse(&full).map_err(|_| StorageError::BadKey(key.to_string()))
    }

    /// Runs `fut` on the driver's runtime and waits for it.
    fn block<F, T>(&self, fut: F) -> io::Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        run_on(self.rt.as_ref().map(|rt| rt.handle()), fut)
    }

    fn probe(&self) -> Result<(), StorageError> {
        let key = format!(
            ".pgbackups-probe-{}",
            crate::secret::random_hex(6).unwrap_or_else(|_| "0".into())
        );
        let path = self.path(&key)?;
        let store = self.inner.store.clone();
        let result = self
            .block(async move {
                store
                    .put(
                        &path,
                        PutPayload::from_static(b"pgbackups can write here\n"),
                    )
                    .await?;
                let back = store.get(&path).await?.bytes().await?;
                store.delete(&path).await?;
                Ok::<_, object_store::Error>(back.len())
            })
            .map_err(|e| io_err("reach", &self.inner.url)(e))?;
        result.map_err(|source| StorageError::Remote {
            op: "write, read and delete a test object in",
            key: self.inner.url.clone(),
            hint: hint(&source),
            source: Box::new(source),
        })?;
        Ok(())
    }

    fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let (mp, id) = (self.inner.multipart.clone(), upload_id.to_string());
        self.block(async move { mp.abort_multipart(&path, &id).await })
            .map_err(io_err("abort upload of", key))?
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e => Err(e),
            })
            .map_err(obj_err("abort upload of", key))?;
        remove_journal(&journal_file(&self.journal, upload_id));
        Ok(())
    }
}

impl Drop for CloudStorage {
    fn drop(&mut self) {
        // Dropping a runtime blocks; inside another runtime that panics. Nothing waits on it
        // any more, so let its threads go in the background.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` on the driver's runtime and waits for it from any thread (a runtime worker
/// included: this blocks on a channel, not on the runtime).
fn run_on<F, T>(rt: Option<&tokio::runtime::Handle>, fut: F) -> io::Result<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = rt.ok_or_else(|| io::Error::other("the storage driver is shut down"))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("the storage driver stopped mid-request"))
}

/// The journal entry of an upload: named by a hash of its ID, which may hold any character.
fn journal_file(journal: &FsPath, upload_id: &str) -> PathBuf {
    use sha2::Digest;
    let name = hex::encode(&sha2::Sha256::digest(upload_id.as_bytes())[..12]);
    journal.join(format!("{name}.json"))
}

fn remove_journal(path: &FsPath) {
    if std::fs::remove_file(path).is_ok()
        && let Some(dir) = path.parent()
    {
        let _ = crate::durable::fsync_dir(dir);
    }
}

fn io_err<'a>(op: &'static str, key: &'a str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        key: key.to_string(),
        source,
    }
}

fn obj_err<'a>(
    op: &'static str,
    key: &'a str,
) -> impl FnOnce(object_store::Error) -> StorageError + 'a {
    move |e| match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_string()),
        source => StorageError::Remote {
            op,
            key: key.to_string(),
            hint: hint(&source),
            source: Box::new(source),
        },
    }
}

/// The store's error, with a hint for the mistakes people make most.
fn explain(e: &object_store::Error) -> String {
    format!("{e}{}", hint(e))
}

/// A hint for the mistakes people make most, from the store's error; empty when none fits.
fn hint(e: &object_store::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("NoSuchBucket") {
        " (the bucket does not exist: create it, or fix the bucket name)"
    } else if text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("403 Forbidden")
    {
        " (the store refused the credentials: check the access key ID and secret, e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    } else if text.contains("error sending request") || text.contains("onnection refused") {
        " (the store is unreachable: check the endpoint and that the server is up)"
    } else {
        ""
    }
}

impl Storage for CloudStorage {
    fn describe(&self) -> String {
        format!("object store {}", self.inner.url)
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        let path = self.path(key)?;
        Ok(Box::new(CloudWriter {
            key: key.to_string(),
            path,
            store: self.inner.clone(),
            rt: self.rt.as_ref().map(|rt| rt.handle().clone()),
            journal: self.journal.clone(),
            upload: None,
            buf: Vec::new(),
            part_size: self.inner.part_size.max(MIN_PART),
            in_flight: VecDeque::new(),
            parts: Vec::new(),
            failed: None,
            finished: false,
        }))
    }

    fn open_at(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, StorageError> {
        let path = self.path(key)?;
        let stream = match start_get(self, &path, offset) {
            Ok(s) => s,
            // A read that starts at the end is empty, as a file's is.
            Err(GetError::Store(e)) if offset > 0 && past_the_end(&e) => {
                return Ok(Box::new(io::empty()));
            }
            Err(GetError::Store(e)) => return Err(obj_err("read", key)(e)),
            Err(GetError::Io(e)) => return Err(io_err("read", key)(e)),
        };
        Ok(Box::new(CloudReader {
            store: self.inner.clone(),
            rt: self.rt.as_ref().map(|rt| rt.handle().clone()),
            path,
            at: offset,
            stream: Some(stream),
            chunk: Bytes::new(),
            resumes: 0,
        }))
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let path = self.path(key)?;
        let store = self.inner.store.clone();
        let (window, what) = (self.inner.retry_window, format!("inspect {key}"));
        match self
            .block(async move { retried(window, &what, || store.head(&path)).await })
            .map_err(io_err("inspect", key))?
        {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(obj_err("inspect", key)(e)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let store = self.inner.store.clone();
        let (window, what) = (self.inner.retry_window, format!("delete {key}"));
        match self
            .block(async move { retried(window, &what, || store.delete(&path)).await })
            .map_err(io_err("delete", key))?
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(obj_err("delete", key)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let path = self.path(prefix.trim_end_matches('/'))?;
        let store = self.inner.store.clone();
        let strip = if self.inner.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.inner.prefix)
        };
        let (window, what) = (self.inner.retry_window, format!("list {prefix}"));
        let listed = self
            .block(async move {
                retried(window, &what, || async {
                    let mut keys = Vec::new();
                    let mut stream = store.list(Some(&path));
                    while let Some(meta) = stream.next().await {
                        keys.push(meta?.location.to_string());
                    }
                    Ok::<_, object_store::Error>(keys)
                })
                .await
            })
            .map_err(io_err("list", prefix))?
            .map_err(obj_err("list", prefix))?;
        let mut keys: Vec<String> = listed
            .into_iter()
            .filter_map(|k| k.strip_prefix(&strip).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn signed_url(&self, key: &str, expires: Duration) -> Result<Option<String>, StorageError> {
        let Some(signer) = self.inner.signer.clone() else {
            return Ok(None);
        };
        let path = self.path(key)?;
        let url = self
            .block(async move {
                signer
                    .signed_url(object_store::signer::Method::GET, &path, expires)
                    .await
            })
            .map_err(io_err("sign a URL for", key))?
            .map_err(obj_err("sign a URL for", key))?;
        Ok(Some(url.to_string()))
    }

    fn collect_partial(&self) -> Result<usize, StorageError> {
        self.sweep(false)
    }

    fn retry_aborts(&self) -> Result<usize, StorageError> {
        self.sweep(true)
    }
}

impl CloudStorage {
    /// Aborts the uploads in the journal: all of them at start, only the abandoned ones
    /// while the service runs.
    fn sweep(&self, abandoned_only: bool) -> Result<usize, StorageError> {
        let entries = std::fs::read_dir(&self.journal).map_err(io_err("read", "upload journal"))?;
        let mut aborted = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            // Only whole entries: `.name.tmp-*` files are entries being written.
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let Ok(open) = serde_json::from_slice::<JournalEntry>(&text) else {
                // Entries are written whole (temp, fsync, rename), so this is not ours to
                // interpret; removed at start only, never while uploads run.
                if !abandoned_only {
                    tracing::warn!(
                        "removing unreadable upload journal entry {}",
                        path.display()
                    );
                    remove_journal(&path);
                }
                continue;
            };
            if abandoned_only && !open.abandoned {
                continue;
            }
            if !open.store.is_empty() && open.store != self.inner.url {
                tracing::warn!(
                    "an interrupted upload of {} to {} (not the configured store) may have left parts there; abort it with the store's tools, then delete {}",
                    open.key,
                    open.store,
                    path.display()
                );
                continue;
            }
            match self.abort_upload(&open.key, &open.upload_id) {
                Ok(()) => aborted += 1,
                Err(e) => tracing::warn!(
                    "could not abort the interrupted upload of {} yet (will retry): {e}",
                    open.key
                ),
            }
        }
        Ok(aborted)
    }
}
