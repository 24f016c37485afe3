//! Where the archive of a cluster ends, read from its newest WAL with `pg_waldump`, so that a
//! rollback to a target recovery can never reach is refused before anything is unpacked:
//! - an LSN target is reached at the first record that starts at or after it, so one after
//!   the start of the last archived record never is;
//! - a time target is reached only when recovery meets a transaction that ended (committed or
//!   aborted) after it, so one at or after the last transaction end in the archive never is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::base_backups;
use super::window::{archived, segments};
use crate::storage::{Storage, StorageError};
use crate::wal::WalError;

/// Why the end of an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveEndError {
    #[error("cannot list the archive: {0}")]
    List(#[from] StorageError),
    #[error("cannot fetch WAL from the archive: {0}")]
    Fetch(#[from] WalError),
    #[error("cannot create a scratch directory {}: {source}", dir.display())]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot name a scratch directory: {0}")]
    Random(#[source] std::io::Error),
}

/// How many segments, newest first, are read looking for the last transaction end (an archive
/// whose newest WAL holds none for longer is not checked in advance: recovery tells).
const SEGMENTS_SEARCHED: usize = 8;

/// The end of an archive along one timeline's history.
#[derive(Clone, Debug)]
pub struct ArchiveEnd {
    /// The newest segment that holds a record.
    pub segment: String,
    /// Where the last record starts.
    pub last_lsn: String,
    /// When the last transaction ended, and its record's LSN; `None` when the newest segments
    /// hold none.
    pub last_xact: Option<(Timestamp, String)>,
}

/// The timeline whose history recovery follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeline {
    /// The newest in the archive (PostgreSQL's default, `latest`).
    Latest,
    /// This one (`current` is the base backup's: the caller resolves it).
    Id(u32),
}

/// The end of the archive of `name` along `timeline`, or `None` when it cannot be read in
/// advance (no WAL, or no `pg_waldump` that reads it: the WAL of another major version).
pub fn archive_end(
    storage: &dyn Storage,
    name: &str,
    timeline: Timeline,
    waldumps: &[PathBuf],
) -> Result<Option<ArchiveEnd>, ArchiveEndError> {
    if waldumps.is_empty() {
        return Ok(None);
    }
    let bases = base_backups(storage, name)?;
    let seg = segments(&bases);
    let files = archived(storage, name)?;
    let newest_tli = files
        .iter()
        .filter_map(|(_, f)| {
            let tli = f.strip_suffix(".history")?;
            u32::from_str_radix(tli, 16).ok()
        })
        .chain(
            files
                .iter()
                .filter_map(|(_, f)| seg.of(&f[..f.len().min(24)]).map(|s| s.0)),
        )
        .max();
    let Some(tli) = (match timeline {
        Timeline::Latest => newest_tli,
        Timeline::Id(t) => Some(t),
    }) else {
        return Ok(None);
    };
    let scratch = Scratch::new()?;
    let history = ancestors(storage, name, tli, &scratch.0)?;
    // Each position's segments, on the timelines of that history.
    let mut by_pos: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for (_, file) in &files {
        let whole = file.strip_suffix(".partial").unwrap_or(file);
        if let Some((t, pos)) = seg.of(whole)
            && history.contains(&t)
        {
            by_pos.entry(pos).or_default().insert(t);
        }
    }
    let mut end: Option<(String, String)> = None;
    let mut reader: Option<PathBuf> = None;
    let mut current = tli;
    for (pos, tlis) in by_pos.iter().rev().take(SEGMENTS_SEARCHED) {
        // Going back in the WAL, a history only ever steps down to its parent timelines.
        let Some(&t) = tlis.range(..=current).next_back() else {
            continue;
        };
        current = t;
        let file = seg.name(t, *pos);
        let path = scratch.0.join(&file);
        if !crate::wal::fetch(storage, name, &file, &path)? {
            continue;
        }
        let records = read_records(waldumps, &mut reader, &path);
        let _ = std::fs::remove_file(&path);
        if end.is_none()
            && let Some(last) = records.last()
        {
            end = Some((file.clone(), last.lsn.clone()));
        }
        if let Some(x) = records
            .iter()
            .rev()
            .find_map(|r| r.xact_end.map(|t| (t, r.lsn.clone())))
        {
            return Ok(end.map(|(segment, last_lsn)| ArchiveEnd {
                segment,
                last_lsn,
                last_xact: Some(x),
            }));
        }
    }
    Ok(end.map(|(segment, last_lsn)| ArchiveEnd {
        segment,
        last_lsn,
        last_xact: None,
    }))
}

/// `tli` and the timelines it descends from, as its history file lists them (`1\t0/3000000\t…`).
fn ancestors(
    storage: &dyn Storage,
    name: &str,
    tli: u32,
    scratch: &Path,
) -> Result<BTreeSet<u32>, ArchiveEndError> {
    let mut out = BTreeSet::from([tli]);
    if tli == 1 {
        return Ok(out);
    }
    let file = crate::pg::wal_names::WalFileName::History(tli).to_string();
    let path = scratch.join(&file);
    if crate::wal::fetch(storage, name, &file, &path)? {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        out.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok()),
        );
    } else {
        // No history: every lower timeline may be an ancestor (an upper bound of the end).
        out.extend(1..tli);
    }
    Ok(out)
}

/// One WAL record, as much of it as the end needs.
#[derive(Debug, PartialEq)]
struct Record {
    lsn: String,
    xact_end: Option<Timestamp>,
}

/// The records of segment file `path`, read with the first of `waldumps` that reads it (the
/// one that read the previous segment is tried first). Empty if none does.
fn read_records(waldumps: &[PathBuf], reader: &mut Option<PathBuf>, path: &Path) -> Vec<Record> {
    let order: Vec<&PathBuf> = reader.iter().chain(waldumps.iter()).collect();
    for exe in order {
        // The last record of a segment may go on in the next one, which is not here:
        // pg_waldump then fails after printing every whole record, which is what counts.
        let Ok(out) = crate::pg::client::tool_command(exe, None)
            .arg(path)
            .env("TZ", "UTC")
            .output_blocking()
        else {
            continue;
        };
        let records: Vec<Record> = out.stdout_text().lines().filter_map(parse_record).collect();
        if !records.is_empty() {
            *reader = Some(exe.clone());
            return records;
        }
    }
    Vec::new()
}

/// A line of `pg_waldump`: `rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/03000108,
/// prev 0/030000D0, desc: COMMIT 2026-11-30 14:35:12.345678 UTC; …`.
fn parse_record(line: &str) -> Option<Record> {
    let rmgr = line.strip_prefix("rmgr: ")?.split_whitespace().next()?;
    let lsn = line.split_once("lsn: ")?.1.split(',').next()?.trim();
    let lsn = super::format_lsn(super::parse_lsn(lsn)?);
    let desc = line.split_once("desc: ").map(|(_, d)| d).unwrap_or("");
    let xact_end = if rmgr == "Transaction" {
        xact_end(desc)
    } else {
        None
    };
    Some(Record { lsn, xact_end })
}

/// The time of a commit or abort record, which recovery compares time targets with.
fn xact_end(desc: &str) -> Option<Timestamp> {
    let (kind, rest) = desc.split_once(' ')?;
    if !matches!(
        kind,
        "COMMIT" | "ABORT" | "COMMIT_PREPARED" | "ABORT_PREPARED"
    ) {
        return None;
    }
    // A prepared transaction's record names it first: `COMMIT_PREPARED 742: 2026-…`.
    let rest = match rest.split_once(": ") {
        Some((xid, t)) if xid.bytes().all(|b| b.is_ascii_digit()) => t,
        _ => rest,
    };
    let stamp = rest.split(';').next()?.trim().strip_suffix(" UTC")?;
    let civil: jiff::civil::DateTime = stamp.replacen(' ', "T", 1).parse().ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

/// A private scratch directory for the segments read, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, ArchiveEndError> {
        let random = crate::secret::random_hex(8).map_err(ArchiveEndError::Random)?;
        let dir = std::env::temp_dir().join(format!("pgbackups-end-{random}"));
        // Created new and private: never a directory someone else prepared.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)
            .map_err(|source| ArchiveEndError::Scratch {
                dir: dir.clone(),
                source,
            })?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_record_positions_and_transaction_ends_from_pg_waldump_lines() {
        let commit = "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/03000108, prev 0/030000D0, desc: COMMIT 2026-11-30 14:35:12.345678 UTC; inval msgs: catcache 1";
        assert_eq!(
            parse_record(commit),
            Some(Record {
                lsn: "0/3000108".into(),
                xact_end: Some("2026-11-30T14:35:12.345678Z".parse().unwrap()),
            })
        );
        let prepared = "rmgr: Transaction len (rec/tot): 50/50, tx: 0, lsn: 1/0000A0B0, prev 1/0000A000, desc: COMMIT_PREPARED 742: 2026-11-30 14:35:13.000001 UTC";
        assert_eq!(
            parse_record(prepared).unwrap().xact_end,
            Some("2026-11-30T14:35:13.000001Z".parse().unwrap())
        );
        let insert = "rmgr: Heap        len (rec/tot):     54/   254, tx:        736, lsn: 0/03000140, prev 0/03000108, desc: INSERT off 2 flags 0x00, blkref #0: rel 1663/5/16384 blk 0 FPW";
        assert_eq!(
            parse_record(insert),
            Some(Record {
                lsn: "0/3000140".into(),
                xact_end: None
            })
        );
        assert_eq!(
            parse_record("pg_waldump: error: error in WAL record at 0/3000140"),
            None
        );
    }
}
