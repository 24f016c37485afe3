//! Reading a stored backup back as the plain custom-format dump that `pg_restore` reads:
//! storage → SHA-256 check → zstd decompression. Used by downloads and restores.

use std::io::{self, BufReader, Read};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::{Engine, TransferError};
use crate::catalog::{TransferId, TransferRecord};
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

/// A stored backup, read as a plain dump. Reading it to the end and then calling
/// [`PlainDump::verify`] proves that the stored object was the one recorded.
pub struct PlainDump {
    id: TransferId,
    expected_sha256: String,
    expected_size: Option<u64>,
    decoder: zstd::stream::read::Decoder<'static, BufReader<Stored>>,
}

impl PlainDump {
    /// Opens the object of a completed backup.
    pub fn open(
        storage: &dyn Storage,
        backup: &TransferRecord,
    ) -> Result<PlainDump, TransferError> {
        let (Some(key), Some(sha)) = (&backup.object_key, &backup.sha256) else {
            return Err(TransferError::NotCompleted {
                id: backup.id,
                state: backup.state.as_str().to_string(),
            });
        };
        let reader = StoreReader::open(storage, key)?;
        let decoder = zstd::stream::read::Decoder::new(HashingReader::new(reader))
            .map_err(|e| TransferError::Internal(format!("zstd: {e}")))?;
        Ok(PlainDump {
            id: backup.id,
            expected_sha256: sha.clone(),
            expected_size: backup.object_size,
            decoder,
        })
    }

    /// Checks the SHA-256 and size of everything read from storage against the catalog.
    pub fn verify(self) -> io::Result<()> {
        let hashing = self.decoder.finish().into_inner();
        let (sha, size) = hashing.finish()?;
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

impl Engine {
    /// Streams a completed backup (the newest when `id` is `None`) as a plain dump. The
    /// stream ends with an error instead of its last chunk when the object turns out damaged,
    /// so that a client never takes a bad download for a good one.
    pub fn download(
        &self,
        id: Option<TransferId>,
    ) -> Result<
        (
            TransferRecord,
            impl Stream<Item = io::Result<Bytes>> + use<>,
        ),
        TransferError,
    > {
        let backup = match id {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        // Held until the stream ends: the backup cannot be deleted while it is downloaded.
        let read = self.claims.read_backup(backup.id, "a download")?;
        // A delete that ended between the lookup and the claim has removed it.
        let backup = self.completed_backup(backup.id)?;
        let mut plain = PlainDump::open(self.storage.as_ref(), &backup)?;
        // pg_dump could not write the data offsets to its pipe; the recorded layout knows them,
        // so the file a user downloads is as fast for `pg_restore --jobs` as pg_dump's own.
        let patches = self
            .catalog
            .layout(backup.id)?
            .and_then(|json| serde_json::from_str::<StoredLayout>(&json).ok())
            .filter(|l| l.is_consistent(backup.dump_size))
            .and_then(|l| l.archive)
            .map(|a| a.patches())
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let _read = read;
            let mut buf = vec![0u8; CHUNK];
            let mut at = 0u64;
            loop {
                match plain.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        apply_patches(&mut buf[..n], at, &patches);
                        at += n as u64;
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return; // the client went away
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if let Err(e) = plain.verify() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok((backup, stream))
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
