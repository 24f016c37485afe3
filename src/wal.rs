//! WAL archiving in archive-command mode: `pgbackups wal-push %p` as PostgreSQL's
//! `archive_command` and `pgbackups wal-fetch %f %p` as its `restore_command`.
//!
//! Each WAL file becomes one object, `wal/<name>/<file>.zst`: zstd with its content checksum,
//! through the configured store (so encrypted when encryption is on, and written durably:
//! temp → fsync → rename → fsync dir locally, a completed upload on object stores).
//!
//! The rules PostgreSQL's documentation asks of these commands, and that tools learned the
//! hard way:
//! - `wal-push` succeeds only once the file is durable in the store. Pushing a file that is
//!   already archived succeeds if the content is the same (a retry after a crash between the
//!   upload and PostgreSQL's bookkeeping) and fails if it differs (two clusters archiving
//!   into one name, say): never overwrite.
//! - `wal-fetch` tells "not in the archive" (exit 1: the normal end of recovery) from "the
//!   store failed" (retried, then exit 126, which PostgreSQL treats as fatal), so that a
//!   network blip never makes a recovering server believe the archive ended and promote
//!   itself early.
//! - `.partial` and `.history` files keep their own names and are never served as segments.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pg::wal_names::{NotAWalName, SegmentName, WalFileName};
use crate::storage::{Storage, StorageError};
use crate::stream::HashingReader;

/// Why a WAL command failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Bad input or a conflict: retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// The store failed (unreachable, denied, missing object).
    #[error(transparent)]
    Store(#[from] StorageError),
    /// An archived file could not be read back or decompressed (damaged, or the connection
    /// broke off while reading it).
    #[error("cannot read the archived {file}: {source}")]
    Archived {
        file: String,
        #[source]
        source: io::Error,
    },
    /// The store holds nothing at all under this name: a wrong store, name or mount rather
    /// than the end of the WAL.
    #[error(
        "the store has no WAL at all for {0} (wrong --storage, --name or an unmounted directory?)"
    )]
    NoWal(String),
    /// A local file could not be read or written.
    #[error("cannot {op} {path}: {source}")]
    Local {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The command could not get as far as the store (its configuration, opening the store, a
    /// worker thread that died).
    #[error("{0}")]
    Setup(String),
}

impl From<NotAWalName> for WalError {
    fn from(e: NotAWalName) -> WalError {
        WalError::Refused(e.to_string())
    }
}

impl WalError {
    /// Whether trying again soon may succeed: a store that failed in a way that passes
    /// (network, throttling, a read that broke off). Decides `wal-fetch`'s retries.
    pub fn is_transient(&self) -> bool {
        match self {
            WalError::Store(e) => e.is_transient(),
            WalError::Archived { source, .. } => source.kind() != io::ErrorKind::InvalidData,
            _ => false,
        }
    }
}

/// The exit status `wal-fetch` gives PostgreSQL for what [`fetch_with_retries`] returned:
/// 0 fetched; 1 not archived (the normal end of recovery); 126 for every failure, which
/// PostgreSQL treats as fatal, so that a failing store is never taken for the end of the
/// archive (anything below 126 would end recovery and promote the server early).
pub fn fetch_exit_code(result: &Result<bool, WalError>) -> i32 {
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(_) => FETCH_FAILED,
    }
}

/// `wal-fetch`'s exit status for a failure: fatal to PostgreSQL's recovery.
pub const FETCH_FAILED: i32 = 126;

/// What `push` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Stored under this key.
    Stored(String),
    /// The archive already had this file with the same content.
    AlreadyThere,
}

/// Whether `file` is a name PostgreSQL gives WAL archive files: a segment
/// (`000000010000000000000001`), a partial segment (`….partial`), a timeline history
/// (`00000002.history`) or a backup history file (`….00000028.backup`).
pub fn is_wal_name(file: &str) -> bool {
    file.parse::<WalFileName>().is_ok()
}

/// Checks an archive name (`--name`): letters, digits, `_`, `-` or `.`, not starting with
/// `.`, at most 63 bytes.
fn check_archive_name(name: &str) -> Result<(), WalError> {
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if name_ok {
        Ok(())
    } else {
        Err(WalError::Refused(format!(
            "--name `{name}` must be letters, digits, `_`, `-` or `.` (such as the registered database name)"
        )))
    }
}

/// The object key of WAL file `file` of `name`.
pub fn key(name: &str, file: &str) -> Result<String, WalError> {
    check_archive_name(name)?;
    key_of(name, file.parse::<WalFileName>()?)
}

/// The object key of WAL file `file` of `name`, its name already parsed.
pub fn key_of(name: &str, file: WalFileName) -> Result<String, WalError> {
    check_archive_name(name)?;
    Ok(format!("wal/{name}/{file}.zst"))
}

/// Archives the WAL file at `path` for `name`.
pub fn push(storage: &dyn Storage, name: &str, path: &Path) -> Result<Pushed, WalError> {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| WalError::Refused(format!("{} names no file", path.display())))?;
    let key = key(name, file)?;
    let local = |source| WalError::Local {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    if storage.size(&key)?.is_some() {
        let (mine, _) = HashingReader::new(File::open(path).map_err(local)?)
            .finish()
            .map_err(local)?;
        let (theirs, _) = HashingReader::new(decoder(storage.open(&key)?, file)?)
            .finish()
            .map_err(|source| WalError::Archived {
                file: file.to_string(),
                source,
            })?;
        return if mine == theirs {
            Ok(Pushed::AlreadyThere)
        } else {
            Err(WalError::Refused(format!(
                "{file} is already archived for {name} with different content; refusing to overwrite it (is another cluster archiving under the name {name}?)"
            )))
        };
    }
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(local)?);
    store_compressed(storage, &key, &mut input)?;
    Ok(Pushed::Stored(key))
}

/// Restores WAL file `file` of `name` to `dest`. `Ok(false)` when the archive has no such
/// file. `dest` appears only complete: the file is written beside it and renamed.
pub fn fetch(storage: &dyn Storage, name: &str, file: &str, dest: &Path) -> Result<bool, WalError> {
    fetch_file(storage, name, file, dest, true, false)
}

/// [`fetch`]; with `partial_ok` false, only a whole archived file counts (prefetching never
/// takes a `.partial`: it may grow, or be replaced by the whole segment, before it is used).
fn fetch_file(
    storage: &dyn Storage,
    name: &str,
    file: &str,
    dest: &Path,
    partial_ok: bool,
    sync: bool,
) -> Result<bool, WalError> {
    check_archive_name(name)?;
    let wal: WalFileName = file.parse()?;
    let key = key_of(name, wal)?;
    let opened = if partial_ok {
        open_segment(storage, name, wal, &key)
    } else {
        storage.open(&key)
    };
    let reader = match opened {
        Ok(r) => r,
        // "Not archived" ends recovery, so it must mean that: an archive with nothing at all
        // under this name is a wrong store, name or mount, not the end of the WAL.
        Err(StorageError::NotFound(_)) => {
            return if storage.list(&format!("wal/{name}/"))?.is_empty() {
                Err(WalError::NoWal(name.to_string()))
            } else {
                Ok(false)
            };
        }
        Err(e) => return Err(e.into()),
    };
    write_stored(reader, file, dest, sync).map(|()| true)
}

/// Writes the stored (zstd) form of WAL file `file` to `dest`, decompressed: beside it, then
/// renamed, so that `dest` appears only complete.
pub fn write_stored(
    reader: Box<dyn Read + Send>,
    file: &str,
    dest: &Path,
    sync: bool,
) -> Result<(), WalError> {
    let tmp = dest.with_extension("pgbackups-partial");
    let written = (|| -> Result<(), WalError> {
        let local = |source| WalError::Local {
            op: "write",
            path: tmp.clone(),
            source,
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(local)?;
        let mut plain = decoder(reader, file)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match plain.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(WalError::Archived {
                        file: file.to_string(),
                        source,
                    });
                }
            };
            io::Write::write_all(&mut out, &buf[..n]).map_err(local)?;
        }
        // No fsync for PostgreSQL's own request: it reads the file at once and keeps nothing
        // of it after a crash (it asks again). A prefetched file outlives a crash: synced.
        if sync {
            out.sync_all().map_err(local)?;
        }
        std::fs::rename(&tmp, dest).map_err(local)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The stored (zstd) form of WAL file `file` of `name`, a `.partial` standing in for a segment
/// not archived whole (as [`fetch`] serves it); `None` when the archive has no such file. For
/// the service's WAL route.
pub fn open_stored(
    storage: &dyn Storage,
    name: &str,
    file: &str,
) -> Result<Option<Box<dyn Read + Send>>, WalError> {
    check_archive_name(name)?;
    let wal: WalFileName = file.parse()?;
    let key = key_of(name, wal)?;
    match open_segment(storage, name, wal, &key) {
        Ok(r) => Ok(Some(r)),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the archived `file`, or, for a segment that is not archived whole, the newest
/// stored part of it (`….partial`, uploaded by the WAL receiver while the segment fills, or
/// archived by PostgreSQL at a promotion). PostgreSQL replays such a segment up to where its
/// records end, which is the latest moment the archive holds.
fn open_segment(
    storage: &dyn Storage,
    name: &str,
    file: WalFileName,
    key: &str,
) -> Result<Box<dyn Read + Send>, StorageError> {
    match (storage.open(key), file) {
        (Err(StorageError::NotFound(e)), WalFileName::Segment(segment)) => {
            let partial = format!("wal/{name}/{}.zst", WalFileName::Partial(segment));
            match storage.open(&partial) {
                Err(StorageError::NotFound(_)) => Err(StorageError::NotFound(e)),
                other => other,
            }
        }
        (other, _) => other,
    }
}

/// Stores what the WAL receiver has of segment `path` (a `….partial` file, still filling)
/// under its `.partial` name, replacing the previous upload of it: unlike whole segments, a
/// partial one grows. Durable when this returns.
pub fn push_partial(storage: &dyn Storage, name: &str, path: &Path) -> Result<String, WalError> {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .filter(|f| f.ends_with(".partial"))
        .ok_or_else(|| WalError::Refused(format!("{} is not a .partial file", path.display())))?;
    let key = key(name, file)?;
    let local = |source| WalError::Local {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(local)?);
    store_compressed(storage, &key, &mut input)?;
    Ok(key)
}

/// Writes `input` compressed (zstd with its checksum) to `key`, durably.
fn store_compressed(
    storage: &dyn Storage,
    key: &str,
    input: &mut impl Read,
) -> Result<(), WalError> {
    let writer = storage.create(key)?;
    let stream = |source| {
        WalError::Store(StorageError::Io {
            op: "write",
            key: key.to_string(),
            source,
        })
    };
    let mut encoder = zstd::stream::write::Encoder::new(writer, 1).map_err(stream)?;
    encoder.include_checksum(true).map_err(stream)?;
    io::copy(input, &mut encoder).map_err(stream)?;
    let writer = encoder.finish().map_err(stream)?;
    // Durable (fsynced locally, a completed upload on object stores) when this returns.
    writer.commit()?;
    Ok(())
}

/// Where prefetched segments wait: `pg_wal/pgbackups_prefetch` when PostgreSQL asks for
/// `pg_wal/RECOVERYXLOG`. The rollback's `recovery_end_command` removes it.
pub const PREFETCH_DIR: &str = "pgbackups_prefetch";

pub fn prefetch_dir(dest: &Path) -> std::path::PathBuf {
    dest.parent().unwrap_or(Path::new(".")).join(PREFETCH_DIR)
}

/// Moves a prefetched copy of segment `file` to `dest`; whether there was a whole one. Older
/// prefetched segments of the timeline (fetched too late to be used) are removed.
pub fn take_prefetched(file: &str, dest: &Path, segment_size: u64) -> bool {
    let Ok(WalFileName::Segment(wanted)) = file.parse() else {
        return false;
    };
    let dir = prefetch_dir(dest);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Some(Ok(WalFileName::Segment(older))) = e.file_name().to_str().map(str::parse)
                && older.timeline == wanted.timeline
                && older < wanted
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let path = dir.join(wanted.to_string());
    let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == segment_size);
    whole && std::fs::rename(&path, dest).is_ok()
}

/// Makes the prefetch directory beside `dest`, before a prefetcher is started. The
/// prefetcher never creates it, so that one still running after recovery ended cannot bring
/// back what `recovery_end_command` removed.
pub fn make_prefetch_dir(dest: &Path) -> bool {
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .create(prefetch_dir(dest))
    {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::AlreadyExists,
    }
}

/// The names of the `count` segments after segment `file` on its timeline.
pub fn next_segments(file: &str, segment_size: u64, count: usize) -> Vec<String> {
    if !segment_size.is_power_of_two() || segment_size < 1 << 20 {
        return Vec::new();
    }
    let Ok(WalFileName::Segment(first)) = file.parse::<WalFileName>() else {
        return Vec::new();
    };
    let pos = first.number(segment_size);
    (1..=count as u64)
        .map(|i| SegmentName::new(first.timeline, pos + i, segment_size).to_string())
        .collect()
}

/// Fetches `files` (whole segments, in order) into `dir` ahead of recovery, stopping at the
/// first that is not archived or fails (the real fetch then reports it). One prefetcher per
/// directory at a time; a second one returns at once.
pub fn prefetch(storage: &dyn Storage, name: &str, files: &[String], dir: &Path) {
    let Ok(lock) = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(".lock"))
    else {
        return;
    };
    if lock.try_lock().is_err() {
        return;
    }
    // `pg_wal/pgbackups_prefetch` → the data directory, whose recovery.signal says that
    // recovery goes on.
    let recovering = || {
        dir.parent().and_then(Path::parent).is_some_and(|d| {
            d.join("recovery.signal").exists() || d.join("standby.signal").exists()
        })
    };
    for file in files {
        let dest = dir.join(file);
        if dest.exists() {
            continue;
        }
        if !recovering()
            || !matches!(
                fetch_file(storage, name, file, &dest, false, true),
                Ok(true)
            )
        {
            break;
        }
    }
}

/// [`fetch`], retrying store failures a few times (1, 2, 4 s apart) before giving up.
pub fn fetch_with_retries(
    storage: &dyn Storage,
    name: &str,
    file: &str,
    dest: &Path,
) -> Result<bool, WalError> {
    let mut wait = Duration::from_secs(1);
    for _ in 0..3 {
        match fetch(storage, name, file, dest) {
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    "fetching {file} failed ({e}); retrying in {} s",
                    wait.as_secs()
                );
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    fetch(storage, name, file, dest)
}

/// Decompresses the stored form of WAL file `file`.
fn decoder(stored: Box<dyn Read + Send>, file: &str) -> Result<impl Read, WalError> {
    zstd::stream::read::Decoder::new(stored).map_err(|source| WalError::Archived {
        file: file.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[test]
    fn names_are_checked() {
        for ok in [
            "000000010000000000000001",
            "000000010000000000000001.partial",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
        ] {
            assert!(is_wal_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../000000010000000000000001",
            "00000001000000000000001",
            "0000000100000000000000zz",
            "00000002.history.x",
            "x.partial",
        ] {
            assert!(!is_wal_name(bad), "{bad}");
        }
        assert_eq!(
            key("main", "00000002.history").unwrap(),
            "wal/main/00000002.history.zst"
        );
        let err = key("main", "x").unwrap_err();
        assert!(matches!(err, WalError::Refused(_)));
        assert!(
            err.to_string().contains("`x` is not a WAL file name"),
            "{err}"
        );
        assert!(key("../x", "00000002.history").is_err());
        assert!(key("a/b", "00000002.history").is_err());
    }

    #[test]
    fn the_segments_after_one_follow_the_segment_size() {
        assert_eq!(
            next_segments("0000000200000001000000FE", 16 << 20, 3),
            [
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        assert_eq!(
            next_segments("000000010000000000000003", 1 << 30, 1),
            ["000000010000000100000000"]
        );
        assert!(next_segments("00000002.history", 16 << 20, 2).is_empty());
    }

    #[test]
    fn push_is_durable_idempotent_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::new(dir.path().join("store")).unwrap();
        let seg = dir.path().join("000000010000000000000003");
        std::fs::write(&seg, vec![7u8; 1 << 20]).unwrap();
        assert!(matches!(push(&store, "main", &seg), Ok(Pushed::Stored(_))));
        assert_eq!(push(&store, "main", &seg).unwrap(), Pushed::AlreadyThere);
        std::fs::write(&seg, vec![8u8; 1 << 20]).unwrap();
        assert!(matches!(
            push(&store, "main", &seg),
            Err(WalError::Refused(_))
        ));

        let dest = dir.path().join("RECOVERYXLOG");
        let fetched = fetch(&store, "main", "000000010000000000000003", &dest);
        assert_eq!(fetch_exit_code(&fetched), 0);
        assert_eq!(std::fs::read(&dest).unwrap(), vec![7u8; 1 << 20]);
        let missing = fetch(&store, "main", "000000010000000000000004", &dest);
        assert_eq!(fetch_exit_code(&missing), 1);

        // A segment that is only partly stored is served from its newest part.
        let partial = dir.path().join("000000010000000000000004.partial");
        std::fs::write(&partial, vec![9u8; 1 << 20]).unwrap();
        push_partial(&store, "main", &partial).unwrap();
        std::fs::write(&partial, vec![10u8; 1 << 20]).unwrap();
        push_partial(&store, "main", &partial).unwrap();
        assert!(fetch(&store, "main", "000000010000000000000004", &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), vec![10u8; 1 << 20]);
        assert!(!fetch(&store, "main", "000000010000000000000005", &dest).unwrap());

        // Prefetching takes whole segments only, and hands them over by rename.
        let pg_wal = dir.path().join("pg_wal");
        std::fs::create_dir(&pg_wal).unwrap();
        let wanted = pg_wal.join("RECOVERYXLOG");
        let names = next_segments("000000010000000000000002", 16 << 20, 3);
        // Not while no recovery.signal says that recovery goes on.
        assert!(make_prefetch_dir(&wanted));
        prefetch(&store, "main", &names, &prefetch_dir(&wanted));
        assert!(
            !prefetch_dir(&wanted)
                .join("000000010000000000000003")
                .exists()
        );
        std::fs::write(dir.path().join("recovery.signal"), b"").unwrap();
        prefetch(&store, "main", &names, &prefetch_dir(&wanted));
        assert!(
            prefetch_dir(&wanted)
                .join("000000010000000000000003")
                .exists()
        );
        assert!(
            !prefetch_dir(&wanted)
                .join("000000010000000000000004")
                .exists()
        );
        // Only a whole segment of the expected size is taken.
        assert!(!take_prefetched(
            "000000010000000000000003",
            &wanted,
            16 << 20
        ));
        assert!(take_prefetched(
            "000000010000000000000003",
            &wanted,
            1 << 20
        ));
        assert_eq!(std::fs::read(&wanted).unwrap(), vec![7u8; 1 << 20]);
        assert!(!take_prefetched(
            "000000010000000000000003",
            &wanted,
            1 << 20
        ));
        let err = fetch(&store, "other", "000000010000000000000003", &dest).unwrap_err();
        assert!(matches!(err, WalError::NoWal(_)), "{err}");
        assert_eq!(fetch_exit_code(&Err(err)), 126);
    }
}
