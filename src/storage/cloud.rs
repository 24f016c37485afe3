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

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{ObjectWriter, Storage, StorageError};

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

/// Whether a ranged GET failed because it starts at (or after) the object's end.
fn past_the_end(e: &object_store::Error) -> bool {
    let text = e.to_string();
    text.contains("416") || text.contains("InvalidRange")
}

enum GetError {
    Store(object_store::Error),
    Io(io::Error),
}

fn start_get(
    storage: &CloudStorage,
    path: &Path,
    offset: u64,
) -> Result<BoxStream<'static, object_store::Result<Bytes>>, GetError> {
    let (store, path) = (storage.inner.store.clone(), path.clone());
    let (window, what) = (storage.inner.retry_window, format!("read {path}"));
    storage
        .block(async move {
            retried(window, &what, || {
                get_stream(store.clone(), path.clone(), offset)
            })
            .await
        })
        .map_err(GetError::Io)?
        .map_err(GetError::Store)
}

async fn get_stream(
    store: Arc<dyn ObjectStore>,
    path: Path,
    offset: u64,
) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
    let options = GetOptions {
        range: (offset > 0).then_some(GetRange::Offset(offset)),
        ..GetOptions::default()
    };
    Ok(store.get_opts(&path, options).await?.into_stream())
}

/// A blocking reader of an object's byte stream. A connection that breaks mid-way is resumed
/// from the byte where it broke (a ranged GET), a few times, before the error is reported.
struct CloudReader {
    store: Arc<CloudStore>,
    rt: Option<tokio::runtime::Handle>,
    path: Path,
    at: u64,
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
    resumes: u32,
}

impl CloudReader {
    fn wait<F, T>(&self, fut: F) -> io::Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        run_on(self.rt.as_ref(), fut)
    }
}

impl Read for CloudReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = out.len().min(self.chunk.len());
                out[..n].copy_from_slice(&self.chunk[..n]);
                self.chunk = self.chunk.slice(n..);
                self.at += n as u64;
                return Ok(n);
            }
            let Some(mut stream) = self.stream.take() else {
                let (store, path, at) = (self.store.store.clone(), self.path.clone(), self.at);
                let (window, what) = (self.store.retry_window, format!("read {path}"));
                let fresh = match self.wait(async move {
                    retried(window, &what, || {
                        get_stream(store.clone(), path.clone(), at)
                    })
                    .await
                })? {
                    Ok(f) => f,
                    // Resumed exactly at the end: nothing is left to read.
                    Err(e) if at > 0 && past_the_end(&e) => return Ok(0),
                    Err(e) => return Err(io::Error::other(explain(&e))),
                };
                self.stream = Some(fresh);
                continue;
            };
            let (next, stream) = self.wait(async move {
                let next = stream.next().await;
                (next, stream)
            })?;
            match next {
                None => {
                    // Keep the finished stream: reading again must not ask for a range past
                    // the end (a 416).
                    self.stream = Some(stream);
                    return Ok(0);
                }
                Some(Ok(bytes)) => {
                    self.chunk = bytes;
                    self.stream = Some(stream);
                    // Resumes are counted per stall, not per object: a long read may break
                    // more than a few times in all.
                    self.resumes = 0;
                }
                Some(Err(e)) if self.resumes < READ_RESUMES => {
                    self.resumes += 1;
                    tracing::warn!(
                        "reading {} broke at byte {} ({e}); resuming",
                        self.path,
                        self.at
                    );
                    std::thread::sleep(Duration::from_millis(200 << self.resumes));
                }
                Some(Err(e)) => return Err(io::Error::other(explain(&e))),
            }
        }
    }
}

type PartResult = object_store::Result<PartId>;

/// An object being uploaded in parts. Nothing is visible under its key until the upload is
/// completed; dropped or aborted, the upload is aborted (or left in the journal for later).
struct CloudWriter {
    key: String,
    path: Path,
    store: Arc<CloudStore>,
    rt: Option<tokio::runtime::Handle>,
    journal: PathBuf,
    /// The multipart upload's ID and journal file, once the first part is sent.
    upload: Option<(String, PathBuf)>,
    buf: Vec<u8>,
    part_size: usize,
    in_flight: VecDeque<tokio::task::JoinHandle<PartResult>>,
    parts: Vec<PartId>,
    failed: Option<String>,
    finished: bool,
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
