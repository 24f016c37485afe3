//! Unpacking a base backup into a data directory, as fast as the machine allows: the object
//! is read and hashed on one thread, its zstd frames are decompressed on two, and the tar is
//! written out here, each file's writeback started as soon as it is complete (so that the
//! fsync PostgreSQL does at start finds little left to write).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::BaseBackup;
use crate::storage::{Storage, StorageError};
use crate::stream::framed::FRAME_SIZE;
use crate::stream::{copy_chunked, hashed_read_ahead};

/// Threads decompressing frames.
const DECODERS: usize = 2;

/// Frames between the splitter and the reader at any time (queued, decoding, decoded).
const IN_FLIGHT: usize = 4;

/// Why a base backup could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot read base backup {id}: {source}")]
    Store {
        id: String,
        #[source]
        source: StorageError,
    },
    #[error("cannot read base backup {id}: {source}")]
    Read {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("base backup {0} has an inconsistent frame list")]
    Frames(String),
    #[error("reading base backup {0} failed")]
    ReaderDied(String),
    #[error("cannot unpack base backup {id}: {source}")]
    Extract {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "base backup {id} is damaged: {stored} bytes with SHA-256 {sha} unpacked to {tar_bytes} bytes of tar, where {recorded_stored} bytes with {recorded_sha} unpacking to {recorded_tar} were recorded"
    )]
    Damaged {
        id: String,
        stored: u64,
        sha: String,
        tar_bytes: u64,
        recorded_stored: u64,
        recorded_sha: String,
        recorded_tar: u64,
    },
}

/// Unpacks `base` into `dir` (which exists and is empty) and checks its SHA-256.
pub fn unpack(storage: &dyn Storage, base: &BaseBackup, dir: &Path) -> Result<(), UnpackError> {
    let id = || base.id.clone();
    let read_err = |source| UnpackError::Read { id: id(), source };
    let stored = storage
        .open(&base.tar_key())
        .map_err(|source| UnpackError::Store { id: id(), source })?;
    let sizes = if base.frames.len() > 1 {
        Some(frames(&base.frames, base.stored_bytes).ok_or_else(|| UnpackError::Frames(id()))?)
    } else {
        None
    };
    let (compressed, reader) = hashed_read_ahead(stored).map_err(read_err)?;
    let extracted = match sizes {
        Some(sizes) => extract(ParallelFrames::start(compressed, sizes), dir),
        None => match zstd::stream::read::Decoder::new(compressed) {
            Ok(plain) => extract(plain, dir),
            Err(e) => Err(e),
        },
    };
    let read = reader.join().map_err(|_| UnpackError::ReaderDied(id()))?;
    // A failed read shows downstream as a short stream: its own error says more.
    let ((sha, stored), tar_bytes) = match (read, extracted) {
        (Err(e), _) => return Err(read_err(e)),
        (Ok(_), Err(source)) => return Err(UnpackError::Extract { id: id(), source }),
        (Ok(read), Ok(tar_bytes)) => (read, tar_bytes),
    };
    if sha != base.sha256 || stored != base.stored_bytes || tar_bytes != base.tar_bytes {
        return Err(UnpackError::Damaged {
            id: id(),
            stored,
            sha,
            tar_bytes,
            recorded_stored: base.stored_bytes,
            recorded_sha: base.sha256.clone(),
            recorded_tar: base.tar_bytes,
        });
    }
    Ok(())
}

/// The stored size of each frame, from where each starts and the object's size.
fn frames(starts: &[(u64, u64)], total: u64) -> Option<Vec<usize>> {
    // A frame of FRAME_SIZE plain bytes never compresses to more than this: a larger one
    // means a damaged description, which must not make us allocate it.
    let largest = zstd::zstd_safe::compress_bound(FRAME_SIZE as usize) + (1 << 16);
    let mut out = Vec::with_capacity(starts.len());
    for (i, (plain, at)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map(|(_, s)| *s).unwrap_or(total);
        let size = usize::try_from(end.checked_sub(*at)?).ok()?;
        if size > largest || *plain != i as u64 * FRAME_SIZE {
            return None;
        }
        out.push(size);
    }
    (starts.first().map(|f| f.1) == Some(0)).then_some(out)
}

type Frame = io::Result<(usize, Vec<u8>)>;

/// The plain stream of a framed object, its frames decompressed on [`DECODERS`] threads and
/// handed out in order. Memory stays bounded: at most [`IN_FLIGHT`] frames are between the
/// splitter and the reader (queued, decoding or decoded), plus the one being read.
struct ParallelFrames {
    results: Receiver<Frame>,
    /// Given back as each frame is consumed: the splitter takes one per frame it hands out.
    tokens: SyncSender<()>,
    waiting: BTreeMap<usize, Vec<u8>>,
    next: usize,
    count: usize,
    current: io::Cursor<Vec<u8>>,
}

impl ParallelFrames {
    fn start(mut compressed: impl Read + Send + 'static, sizes: Vec<usize>) -> ParallelFrames {
        let count = sizes.len();
        let (jobs_tx, jobs_rx) = sync_channel::<(usize, Vec<u8>)>(IN_FLIGHT);
        let (results_tx, results) = sync_channel::<Frame>(IN_FLIGHT);
        let (tokens, tokens_rx) = sync_channel::<()>(IN_FLIGHT);
        for _ in 0..IN_FLIGHT {
            let _ = tokens.send(());
        }
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for _ in 0..DECODERS {
            let (jobs, out) = (jobs_rx.clone(), results_tx.clone());
            std::thread::spawn(move || decode_frames(&jobs, &out));
        }
        let splitter_out = results_tx;
        std::thread::spawn(move || {
            for (i, size) in sizes.into_iter().enumerate() {
                if tokens_rx.recv().is_err() {
                    return;
                }
                let mut buf = vec![0u8; size];
                if let Err(e) = compressed.read_exact(&mut buf) {
                    let _ = splitter_out.send(Err(e));
                    return;
                }
                if jobs_tx.send((i, buf)).is_err() {
                    return;
                }
            }
        });
        ParallelFrames {
            results,
            tokens,
            waiting: BTreeMap::new(),
            next: 0,
            count,
            current: io::Cursor::new(Vec::new()),
        }
    }
}

fn decode_frames(jobs: &Mutex<Receiver<(usize, Vec<u8>)>>, out: &SyncSender<Frame>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((i, compressed)) = job else { return };
        let plain = decode_frame(&compressed).map(|p| (i, p));
        if out.send(plain).is_err() {
            return;
        }
    }
}

/// One frame, refusing one that would decompress to more than [`FRAME_SIZE`] bytes (a damaged
/// or crafted object must not make us allocate gigabytes before its checksum is seen).
fn decode_frame(compressed: &[u8]) -> io::Result<Vec<u8>> {
    let mut plain = Vec::with_capacity(FRAME_SIZE as usize);
    zstd::stream::read::Decoder::new(compressed)?
        .take(FRAME_SIZE + 1)
        .read_to_end(&mut plain)?;
    if plain.len() as u64 > FRAME_SIZE {
        return Err(io::Error::other(
            "a frame of the base backup is larger than it may be",
        ));
    }
    Ok(plain)
}

impl Read for ParallelFrames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if self.next == self.count {
                return Ok(0);
            }
            while !self.waiting.contains_key(&self.next) {
                let (i, plain) = self
                    .results
                    .recv()
                    .map_err(|_| io::Error::other("a decompression thread stopped"))??;
                self.waiting.insert(i, plain);
            }
            if let Some(plain) = self.waiting.remove(&self.next) {
                self.current = io::Cursor::new(plain);
            }
            self.next += 1;
            // The frame is out of the pipeline: the splitter may hand out another.
            let _ = self.tokens.try_send(());
        }
    }
}

/// Writes the tar read from `plain` into `dir`: directories, regular files and symbolic links
/// (what pg_basebackup writes), with their modes. Paths that would leave `dir` are refused.
fn extract(plain: impl Read, dir: &Path) -> io::Result<u64> {
    let mut archive = tar::Archive::new(Counted {
        inner: plain,
        bytes: 0,
    });
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let dest = inside(dir, &path)?;
        // No symbolic links at all (base backups streamed to the store hold no tablespaces,
        // which are the only links pg_basebackup writes): an archive cannot make us write
        // outside `dir`.
        let mode = entry.header().mode().unwrap_or(0o600) & 0o7777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dest)?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode | 0o700))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)?;
                }
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&dest)?;
                copy_chunked(&mut entry, &mut file)?;
                file.flush()?;
                start_writeback(&file);
                // The mode the umask may have narrowed.
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            other => {
                return Err(io::Error::other(format!(
                    "unexpected entry {} of type {other:?} in the base backup",
                    dest.display()
                )));
            }
        }
    }
    // The end-of-archive blocks: read to the end, so that the whole object is hashed.
    let mut rest = archive.into_inner();
    copy_chunked(&mut rest, &mut io::sink())?;
    Ok(rest.bytes)
}

/// Counts what is read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// `dir` joined with a path from the archive, which must be relative and stay inside.
fn inside(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut out = dir.to_path_buf();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::other(format!(
                    "refusing the path {} in the base backup",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Asks the kernel to start writing `file` out now, without waiting for it.
fn start_writeback(file: &fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own; failure is harmless (PostgreSQL
    // fsyncs the data directory at start anyway).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::framed::FramedEncoder;

    #[test]
    fn frames_decompress_in_parallel_and_in_order() {
        // 40 MiB of varied bytes: three frames.
        let plain: Vec<u8> = (0..40u32 << 20)
            .map(|i| ((i % 251) ^ (i >> 13)) as u8)
            .collect();
        let mut enc = FramedEncoder::new(Vec::new(), 1, 0).unwrap();
        enc.write_all(&plain).unwrap();
        let done = enc.finish().unwrap();
        assert_eq!(done.frames.len(), 3);
        let sizes = frames(&done.frames, done.bytes).unwrap();
        let mut out = Vec::new();
        ParallelFrames::start(io::Cursor::new(done.inner), sizes)
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == plain);
        assert!(frames(&[(0, 5), (10, 2)], 9).is_none());
        assert!(frames(&[(0, 0), (FRAME_SIZE, 1 << 40)], 1 << 41).is_none());
    }

    #[test]
    fn archive_paths_stay_inside() {
        let d = Path::new("/x");
        assert_eq!(
            inside(d, Path::new("base/1/2")).unwrap(),
            d.join("base/1/2")
        );
        assert!(inside(d, Path::new("../etc/passwd")).is_err());
        assert!(inside(d, Path::new("/etc/passwd")).is_err());
    }
}
