//! The spool: the directory `pg_receivewal` writes a protected database's WAL into, and the
//! pass that moves it into the store (whole segments and histories in order, then removed;
//! the segment still filling uploaded as `….partial` when due).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::pg::wal_names::{Lsn, WalFileName};
use crate::pitr::segment_file;
use crate::storage::Storage;
use crate::wal::WalError;

/// Why the spool could not be prepared or swept (the WAL stays in it and the sweep is retried).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done: `create the WAL spool`, `read`, `remove`, ...
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] WalError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { what, path, source }
}

/// Makes `pg_receivewal` start at the slot's position when the spool has no WAL: it resumes
/// at the start of the newest `.partial` file it finds, so a zero-filled, full-size one is put
/// for the segment holding `slot` (pg_receivewal then writes the real WAL over it).
pub(super) fn resume_at(
    spool: &Path,
    slot: Lsn,
    segment_size: u64,
    timeline: u32,
) -> Result<(), SpoolError> {
    std::fs::create_dir_all(spool).map_err(io("create the WAL spool", spool))?;
    let has_wal = list_spool(spool, segment_size)?
        .iter()
        .any(|f| matches!(f.kind, Kind::Segment | Kind::Partial));
    if has_wal {
        return Ok(());
    }
    let name = WalFileName::Partial(slot.segment(timeline, segment_size)).to_string();
    let path = spool.join(&name);
    let file = std::fs::File::create(&path).map_err(io("create", &path))?;
    file.set_len(segment_size).map_err(io("size", &path))?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Segment,
    Partial,
    History,
}

/// A WAL file in the spool.
#[derive(Clone, Debug)]
struct Spooled {
    name: String,
    kind: Kind,
    timeline: u32,
    /// The segment's position (segments count from 0; unused for histories).
    segno: u64,
}

fn list_spool(spool: &Path, segment_size: u64) -> Result<Vec<Spooled>, SpoolError> {
    let entries = std::fs::read_dir(spool).map_err(io("read the WAL spool", spool))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let (kind, timeline, segno) = match name.parse::<WalFileName>() {
            Ok(WalFileName::Segment(s)) => (Kind::Segment, s.timeline, s.number(segment_size)),
            Ok(WalFileName::Partial(s)) => (Kind::Partial, s.timeline, s.number(segment_size)),
            Ok(WalFileName::History(tli)) => (Kind::History, tli, 0),
            Ok(WalFileName::Backup(..)) | Err(_) => continue,
        };
        out.push(Spooled {
            timeline,
            segno,
            kind,
            name,
        });
    }
    Ok(out)
}

/// The segment still filling, as last uploaded.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PartialMark {
    name: String,
    modified: SystemTime,
    len: u64,
}

/// One pass over the spool: histories and completed segments into the store in order, then
/// closed partial segments, then (when due) the one still filling.
pub(super) struct Sweep {
    pub spool: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub name: String,
    /// Everything before it is in the store already.
    pub stored_lsn: Lsn,
    pub segment_size: u64,
    /// `Some(last upload)` when the filling segment is due for upload.
    pub partial: Option<Option<PartialMark>>,
}

#[derive(Default)]
pub(super) struct Swept {
    /// The end of the newest whole segment stored (everything before it is in the store).
    pub stored_end: Option<Lsn>,
    pub partial_stored: bool,
    /// The filling segment was checked and is as last uploaded.
    pub partial_current: bool,
    pub partial: Option<PartialMark>,
    pub error: Option<SpoolError>,
}

impl Sweep {
    pub fn run(self) -> Swept {
        let mut out = Swept::default();
        if let Err(e) = self.store(&mut out) {
            out.error = Some(e);
        }
        out
    }

    fn store(&self, out: &mut Swept) -> Result<(), SpoolError> {
        let mut files = list_spool(&self.spool, self.segment_size)?;
        files.sort_by_key(|f| (f.segno, f.timeline, f.kind == Kind::Partial));
        let path = |f: &Spooled| self.spool.join(&f.name);
        for f in files.iter().filter(|f| f.kind == Kind::History) {
            crate::wal::push(self.storage.as_ref(), &self.name, &path(f))?;
            remove(&path(f))?;
        }
        let newest = files
            .iter()
            .filter(|f| f.kind != Kind::History)
            .map(|f| (f.segno, f.timeline))
            .max();
        let Some((newest_segno, newest_tli)) = newest else {
            return Ok(());
        };
        let stored_segno = self.stored_lsn.0 / self.segment_size;
        // Every completed segment is stored, in order, then removed: pg_receivewal resumes
        // from the filling one (or, with none, from the slot).
        for f in files.iter().filter(|f| f.kind == Kind::Segment) {
            if out.stored_end.is_none() && f.segno > stored_segno {
                // The stream skipped WAL between the store's end and this segment: the gap
                // check reports it; record it here too.
                tracing::error!(
                    "the WAL stream of {} resumed at {} but the store ends in the segment before {}: a gap",
                    self.name,
                    f.name,
                    segment_file(
                        f.timeline,
                        stored_segno * self.segment_size,
                        self.segment_size
                    )
                );
            }
            crate::wal::push(self.storage.as_ref(), &self.name, &path(f))?;
            out.stored_end = Some(Lsn((f.segno + 1) * self.segment_size));
            // Its partial uploads are superseded.
            if let Ok(key) = crate::wal::key(&self.name, &format!("{}.partial", f.name)) {
                let _ = self.storage.delete(&key);
            }
            remove(&path(f))?;
        }
        for f in files.iter().filter(|f| f.kind == Kind::Partial) {
            if (f.segno, f.timeline) != (newest_segno, newest_tli) {
                // Closed for good (the last segment of a timeline that ended): stored once.
                crate::wal::push_partial(self.storage.as_ref(), &self.name, &path(f))?;
                remove(&path(f))?;
                continue;
            }
            let Some(last) = &self.partial else { continue };
            let meta = std::fs::metadata(path(f)).map_err(io("read", &path(f)))?;
            let mark = PartialMark {
                name: f.name.clone(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                len: meta.len(),
            };
            if last.as_ref() == Some(&mark) {
                out.partial_current = true;
                continue;
            }
            crate::wal::push_partial(self.storage.as_ref(), &self.name, &path(f))?;
            out.partial_stored = true;
            out.partial = Some(mark);
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), SpoolError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    const SEG: u64 = 1 << 20;

    fn sweep(
        spool: &Path,
        store: &Arc<dyn Storage>,
        stored_lsn: u64,
        partial: Option<Option<PartialMark>>,
    ) -> Swept {
        Sweep {
            spool: spool.to_path_buf(),
            storage: store.clone(),
            name: "main".into(),
            stored_lsn: Lsn(stored_lsn),
            segment_size: SEG,
            partial,
        }
        .run()
    }

    #[test]
    fn a_pass_stores_segments_in_order_then_the_filling_one_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let store: Arc<dyn Storage> =
            Arc::new(LocalStorage::new(dir.path().join("store")).unwrap());
        // An empty spool resumes at the slot: a placeholder .partial of its segment.
        resume_at(&spool, Lsn(3 * SEG + 100), SEG, 1).unwrap();
        let placeholder = spool.join("000000010000000000000003.partial");
        assert_eq!(std::fs::metadata(&placeholder).unwrap().len(), SEG);
        resume_at(&spool, Lsn(9 * SEG), SEG, 1).unwrap(); // not twice
        assert!(!spool.join("000000010000000000000009.partial").exists());

        std::fs::remove_file(&placeholder).unwrap();
        std::fs::write(
            spool.join("000000010000000000000003"),
            vec![3u8; SEG as usize],
        )
        .unwrap();
        std::fs::write(
            spool.join("000000010000000000000004"),
            vec![4u8; SEG as usize],
        )
        .unwrap();
        std::fs::write(
            spool.join("000000010000000000000005.partial"),
            vec![5u8; SEG as usize],
        )
        .unwrap();
        std::fs::write(spool.join("00000002.history"), b"1\t0/5000000\tpromoted\n").unwrap();
        // Not due: whole segments and the history only, then removed from the spool.
        let done = sweep(&spool, &store, 3 * SEG + 100, None);
        assert!(done.error.is_none(), "{:?}", done.error);
        assert_eq!(done.stored_end, Some(Lsn(5 * SEG)));
        assert!(!done.partial_stored);
        let stored = store.list("wal/main/").unwrap();
        assert_eq!(
            stored,
            [
                "wal/main/000000010000000000000003.zst",
                "wal/main/000000010000000000000004.zst",
                "wal/main/00000002.history.zst",
            ]
        );
        assert!(!spool.join("000000010000000000000003").exists());
        assert!(spool.join("000000010000000000000005.partial").exists());
        // Due: the filling segment goes up as .partial; unchanged, it is not sent again.
        let done = sweep(&spool, &store, 5 * SEG, Some(None));
        assert!(done.partial_stored);
        let mark = done.partial;
        assert!(
            store
                .size("wal/main/000000010000000000000005.partial.zst")
                .unwrap()
                .is_some()
        );
        let again = sweep(&spool, &store, 5 * SEG, Some(mark));
        assert!(!again.partial_stored && again.partial_current);
        // Once whole, the segment replaces its partial upload.
        std::fs::rename(
            spool.join("000000010000000000000005.partial"),
            spool.join("000000010000000000000005"),
        )
        .unwrap();
        let done = sweep(&spool, &store, 5 * SEG, None);
        assert_eq!(done.stored_end, Some(Lsn(6 * SEG)));
        assert!(
            store
                .size("wal/main/000000010000000000000005.partial.zst")
                .unwrap()
                .is_none()
        );
    }
}
