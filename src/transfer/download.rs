//! Reading a stored backup back: as the plain custom-format dump that `pg_restore` reads
//! (storage → SHA-256 check → zstd decompression; used by restores too), as the stored object,
//! or rewritten gzip-compressed as `pg_dump -Fc` writes it (downloads, links, exports).

use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::{Engine, TransferError};
use crate::catalog::{TransferId, TransferRecord};
use crate::pg::archive::gzip;
use crate::pg::dump_stream::{ChannelWriter, into_stream};
use crate::storage::{Storage, StorageError};
use crate::stream::framed::StoredLayout;
use crate::stream::{CHUNK, HashingReader};

type Stored = HashingReader<StoreReader>;

/// A stored object's reader whose failures say they are the store's ("storage: could not
/// read KEY: ..."): a read that failed must not be taken for a damaged backup, or a user
/// could delete a good backup over a passing outage.
pub(super) struct StoreReader {
    inner: Box<dyn Read + Send>,
    key: String,
}

impl StoreReader {
    pub(super) fn open(storage: &dyn Storage, key: &str) -> Result<StoreReader, StorageError> {
        Ok(StoreReader {
            inner: storage.open(key)?,
            key: key.to_string(),
        })
    }
}

impl Read for StoreReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|source| {
            let kind = source.kind();
            // Bytes that are wrong or cut off (an encrypted object that does not decrypt)
            // are the object's fault, and a retry is the caller's.
            if matches!(
                kind,
                io::ErrorKind::Interrupted
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::UnexpectedEof
            ) {
                return source;
            }
            let err = StorageError::Io {
                op: "read",
                key: self.key.clone(),
                source,
            };
            io::Error::new(kind, err)
        })
    }
}

/// Whether `e` is a failure of the store (from a [`StoreReader`]) rather than of the data.
fn is_store_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<StorageError>())
}

/// A backup's stored object, read as it is (decrypted, when the store encrypts). Reading it to
/// the end and then calling [`StoredObject::verify`] proves that it was the one recorded.
pub struct StoredObject {
    id: TransferId,
    expected_sha256: String,
    expected_size: Option<u64>,
    reader: Stored,
}

impl StoredObject {
    /// Opens the object of a completed backup.
    pub fn open(
        storage: &dyn Storage,
        backup: &TransferRecord,
    ) -> Result<StoredObject, TransferError> {
        let (Some(key), Some(sha)) = (&backup.object_key, &backup.sha256) else {
            return Err(TransferError::NotCompleted {
                id: backup.id,
                state: backup.state.as_str().to_string(),
            });
        };
        Ok(StoredObject {
            id: backup.id,
            expected_sha256: sha.clone(),
            expected_size: backup.object_size,
            reader: HashingReader::new(StoreReader::open(storage, key)?),
        })
    }

    /// Checks the SHA-256 and size of everything read from storage against the catalog.
    pub fn verify(self) -> io::Result<()> {
        let (sha, size) = self.reader.finish()?;
        if sha != self.expected_sha256 || self.expected_size.is_some_and(|s| s != size) {
            return Err(damaged(
                self.id,
                &format!(
                    "its SHA-256 is {sha} ({size} bytes) but {} was recorded",
                    self.expected_sha256
                ),
            ));
        }
        Ok(())
    }
}

impl Read for StoredObject {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// A stored backup, read as a plain dump. Reading it to the end and then calling
/// [`PlainDump::verify`] proves that the stored object was the one recorded.
pub struct PlainDump {
    id: TransferId,
    decoder: zstd::stream::read::Decoder<'static, BufReader<StoredObject>>,
}

impl PlainDump {
    /// Opens the object of a completed backup.
    pub fn open(
        storage: &dyn Storage,
        backup: &TransferRecord,
    ) -> Result<PlainDump, TransferError> {
        let object = StoredObject::open(storage, backup)?;
        let decoder = zstd::stream::read::Decoder::new(object)
            .map_err(|e| TransferError::Internal(format!("zstd: {e}")))?;
        Ok(PlainDump {
            id: backup.id,
            decoder,
        })
    }

    /// Checks the SHA-256 and size of everything read from storage against the catalog.
    pub fn verify(self) -> io::Result<()> {
        self.decoder.finish().into_inner().verify()
    }
}

impl Read for PlainDump {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decoder.read(buf).map_err(|e| {
            if is_store_error(&e) {
                e
            } else {
                damaged(self.id, &format!("it cannot be decompressed ({e})"))
            }
        })
    }
}

/// The error for a stored object that is not what the catalog recorded.
pub fn damaged(id: TransferId, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the stored object of backup {id} is damaged: {why}; it cannot be used"),
    )
}

/// Overwrites the bytes of `chunk` (which starts at plain offset `at`) that `patches` cover.
fn apply_patches(chunk: &mut [u8], at: u64, patches: &[(u64, Vec<u8>)]) {
    let end = at + chunk.len() as u64;
    for (pos, bytes) in patches {
        if *pos >= end || pos + bytes.len() as u64 <= at {
            continue;
        }
        for (i, b) in bytes.iter().enumerate() {
            let q = pos + i as u64;
            if (at..end).contains(&q) {
                chunk[(q - at) as usize] = *b;
            }
        }
    }
}

/// Rewrites of a dump (gzip) running at once on the service, each on up to
/// [`REWRITE_WORKERS`] cores: a link works for whoever holds it, and the service's cores are
/// shared with captures and restores. Others wait their turn.
pub(super) const MAX_REWRITES: usize = 2;
const REWRITE_WORKERS: usize = 2;

/// Waits for a rewrite's turn (from a blocking thread of the runtime).
fn rewrite_turn(
    rewrites: &Arc<tokio::sync::Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    handle.block_on(rewrites.clone().acquire_owned()).ok()
}

/// What a download streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpForm {
    /// The dump compressed as `pg_dump -Fc` compresses it (gzip, block by block): what the
    /// stock `pg_restore` reads, no larger than `pg_dump -Fc`'s own file. Its data offsets
    /// are not set; a writer that can seek fills them in ([`crate::pg::archive::gzip`]).
    Compressed,
    /// The dump uncompressed, with its data offsets filled in.
    Plain,
    /// The stored object: the plain dump compressed with zstd (decrypted, when the store
    /// encrypts), checked against its recorded SHA-256 as it streams.
    Zstd,
}

/// Copies `from` to `to` in chunks, applying `patches` (offsets in `from`) on the way.
fn copy_patched(
    from: &mut impl Read,
    to: &mut impl Write,
    patches: &[(u64, Vec<u8>)],
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                apply_patches(&mut buf[..n], at, patches);
                at += n as u64;
                to.write_all(&buf[..n])?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What a download reads.
enum Source {
    Plain(PlainDump),
    Stored(StoredObject),
}

impl Source {
    fn verify(self) -> io::Result<()> {
        match self {
            Source::Plain(p) => p.verify(),
            Source::Stored(s) => s.verify(),
        }
    }
}

/// A started download: the backup, and its bytes as they come.
pub struct Download<S> {
    pub backup: TransferRecord,
    /// The size of the stream, when known before it starts (the plain and stored forms).
    pub size: Option<u64>,
    pub stream: S,
}

impl Engine {
    /// Streams a completed backup (the newest when `id` is `None`) in `form`. The stream ends
    /// with an error instead of its last chunk when the object turns out damaged, so that a
    /// client never takes a bad download for a good one.
    pub fn download(
        &self,
        id: Option<TransferId>,
        form: DumpForm,
    ) -> Result<Download<impl Stream<Item = io::Result<Bytes>> + use<>>, TransferError> {
        let backup = match id {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        // Held until the stream ends: the backup cannot be deleted while it is downloaded.
        let read = self.claims.read_backup(backup.id, "a download")?;
        // A delete that ended between the lookup and the claim has removed it.
        let backup = self.completed_backup(backup.id)?;
        let mut source = match form {
            DumpForm::Zstd => Source::Stored(StoredObject::open(self.storage.as_ref(), &backup)?),
            _ => Source::Plain(PlainDump::open(self.storage.as_ref(), &backup)?),
        };
        // pg_dump could not write the data offsets to its pipe; the recorded layout knows them,
        // so a plain download is as fast for `pg_restore --jobs` as pg_dump's own file.
        let patches = match form {
            DumpForm::Plain => self
                .catalog
                .layout(backup.id)?
                .and_then(|json| serde_json::from_str::<StoredLayout>(&json).ok())
                .filter(|l| l.is_consistent(backup.dump_size))
                .and_then(|l| l.archive)
                .map(|a| a.patches())
                .unwrap_or_default(),
            DumpForm::Compressed | DumpForm::Zstd => Vec::new(),
        };
        let size = match form {
            DumpForm::Plain => backup.dump_size,
            DumpForm::Zstd => backup.object_size,
            DumpForm::Compressed => None,
        };
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let rewrites = self.rewrites.clone();
        tokio::task::spawn_blocking(move || {
            let _read = read;
            let _turn = (form == DumpForm::Compressed).then(|| rewrite_turn(&rewrites));
            let mut out = ChannelWriter::new(tx.clone());
            let sent = match (form, &mut source) {
                (DumpForm::Compressed, Source::Plain(plain)) => {
                    let input = BufReader::with_capacity(CHUNK, plain);
                    // A link's rewrite shares the service's cores with captures and restores.
                    let workers = gzip::workers(REWRITE_WORKERS);
                    gzip::gzip(input, &mut out, gzip::DEFAULT_LEVEL, workers).map(drop)
                }
                (_, Source::Plain(plain)) => copy_patched(plain, &mut out, &patches),
                (_, Source::Stored(stored)) => copy_patched(stored, &mut out, &[]),
            };
            // A dump that would not parse may be a damaged object: if so, say that.
            let sent = match sent {
                Ok(()) => source.verify(),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    Err(source.verify().err().unwrap_or(e))
                }
                Err(e) => Err(e),
            }
            // The last chunk goes only once the whole object is known good.
            .and_then(|()| out.flush());
            if let Err(e) = sent
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let stream = into_stream(rx);
        Ok(Download {
            backup,
            size,
            stream,
        })
    }
}

impl Engine {
    /// The key of `id`'s export (see [`super::manifest::export_key_for`]): the dump the stock
    /// pg_restore reads, stored beside the backup so that a store can presign a link to it.
    /// Made now, compressed on up to four cores, when it is not there yet; the backup cannot
    /// be deleted meanwhile, and the export is committed only once the backup's SHA-256 is
    /// proven.
    pub fn export(&self, id: TransferId) -> Result<String, TransferError> {
        // One writer per export: a second request meanwhile gets the service's link.
        let _one = Exporting::start(self, id).ok_or_else(|| {
            TransferError::Source(format!(
                "the dump of backup {id} for a link is being written by another request"
            ))
        })?;
        let _read = self.claims.read_backup(id, "a link being prepared")?;
        super::hold::pause("export");
        let backup = self.completed_backup(id)?;
        let Some(object_key) = &backup.object_key else {
            return Err(TransferError::NotCompleted {
                id,
                state: backup.state.as_str().to_string(),
            });
        };
        let key = super::manifest::export_key_for(object_key);
        if self.storage.size(&key)?.is_some() {
            return Ok(key);
        }
        let _turn = rewrite_turn(&self.rewrites);
        let mut plain = PlainDump::open(self.storage.as_ref(), &backup)?;
        let mut out = self.storage.create(&key)?;
        let input = BufReader::with_capacity(CHUNK, &mut plain);
        let workers = gzip::workers(REWRITE_WORKERS);
        let written =
            gzip::gzip(input, &mut out, gzip::DEFAULT_LEVEL, workers).and_then(|_| plain.verify());
        match written {
            Ok(()) => {
                out.commit()?;
                Ok(key)
            }
            Err(e) => {
                out.abort();
                Err(TransferError::Source(format!(
                    "could not write the dump of backup {id} for a link: {e}"
                )))
            }
        }
    }
}

/// A backup's export being written; removed from the engine's set when dropped.
struct Exporting<'e> {
    engine: &'e Engine,
    id: TransferId,
}

impl<'e> Exporting<'e> {
    fn start(engine: &'e Engine, id: TransferId) -> Option<Exporting<'e>> {
        let mut set = engine.exporting.lock().unwrap_or_else(|p| p.into_inner());
        // Built only when inserted: a guard made and dropped here would remove the other
        // request's entry (and take the lock this function holds).
        set.insert(id).then(|| Exporting { engine, id })
    }
}

impl Drop for Exporting<'_> {
    fn drop(&mut self) {
        let mut set = self
            .engine
            .exporting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn patches_land_across_chunk_boundaries() {
        let mut data = [0u8; 20];
        let patches = vec![(3u64, vec![1, 2, 3]), (9, vec![7, 8])];
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            super::apply_patches(chunk, i as u64 * 4, &patches);
        }
        assert_eq!(&data[..12], &[0, 0, 0, 1, 2, 3, 0, 0, 0, 7, 8, 0]);
    }
}
