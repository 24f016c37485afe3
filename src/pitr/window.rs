//! What the archive of a cluster allows, and what it may forget: the restorable window,
//! gaps in the WAL, and retention of base backups with the WAL they need.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use super::{BaseBackup, base_backups, parse_lsn};
use crate::storage::{Storage, StorageError};

/// Segments per 4 GiB "log" for the default 16 MiB WAL segments.
const SEGMENTS_PER_LOG: u64 = 0x100;

/// A WAL segment file name split into its timeline and its position (log × 256 + segment).
fn segment_of(file: &str) -> Option<(u32, u64)> {
    if file.len() != 24 || !file.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&file[..8], 16).ok()?;
    let log = u64::from_str_radix(&file[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&file[16..24], 16).ok()?;
    Some((tli, log * SEGMENTS_PER_LOG + seg))
}

/// The segment holding `lsn`.
fn segment_at(lsn: &str) -> Option<u64> {
    parse_lsn(lsn).map(|l| l / (16 << 20))
}

fn segment_name(tli: u32, pos: u64) -> String {
    format!(
        "{tli:08X}{:08X}{:08X}",
        pos / SEGMENTS_PER_LOG,
        pos % SEGMENTS_PER_LOG
    )
}

/// The archive of one cluster, summed up.
#[derive(Debug, Serialize)]
pub struct ArchiveInfo {
    pub name: String,
    pub base_backups: Vec<BaseBackup>,
    /// The earliest moment a rollback can reach: the end of the oldest base backup.
    pub earliest: Option<Timestamp>,
    /// The newest archived segment (the window reaches to the end of it).
    pub latest_segment: Option<String>,
    /// Archived segments (complete ones; `.partial` excluded) and timeline histories.
    pub segments: usize,
    pub histories: usize,
    /// Runs of segments missing between the oldest base backup's start and the newest
    /// segment, as (first missing, last missing). A rollback cannot cross a gap.
    pub gaps: Vec<(String, String)>,
}

/// Reads the archive of `name` (16 MiB segments assumed).
pub fn archive_info(storage: &dyn Storage, name: &str) -> Result<ArchiveInfo, StorageError> {
    let bases = base_backups(storage, name)?;
    let mut present: BTreeSet<u64> = BTreeSet::new();
    let mut latest: Option<(u64, u32)> = None;
    let mut histories = 0;
    for key in storage.list(&format!("wal/{name}/"))? {
        let file = key
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".zst");
        if file.ends_with(".history") {
            histories += 1;
        }
        if let Some((tli, pos)) = segment_of(file) {
            present.insert(pos);
            if latest.is_none_or(|(p, t)| (pos, tli) > (p, t)) {
                latest = Some((pos, tli));
            }
        }
    }
    let mut gaps = Vec::new();
    if let (Some(first), Some((last, tli))) =
        (bases.first().and_then(|b| segment_at(&b.start_lsn)), latest)
    {
        let mut missing_from: Option<u64> = None;
        for pos in first..=last {
            match (present.contains(&pos), missing_from) {
                (false, None) => missing_from = Some(pos),
                (true, Some(from)) => {
                    gaps.push((segment_name(tli, from), segment_name(tli, pos - 1)));
                    missing_from = None;
                }
                _ => {}
            }
        }
    }
    Ok(ArchiveInfo {
        name: name.to_string(),
        earliest: bases.first().map(|b| b.finished_at),
        latest_segment: latest.map(|(pos, tli)| segment_name(tli, pos)),
        segments: present.len(),
        histories,
        gaps,
        base_backups: bases,
    })
}

/// What [`expire`] removed.
#[derive(Debug, Default, Serialize)]
pub struct Expired {
    pub base_backups: Vec<String>,
    pub wal_files: usize,
}

/// Keeps the newest `keep` base backups (by start time, never by name) and the WAL from the
/// oldest kept one's start on; deletes the rest. Timeline histories are always kept.
pub fn expire(storage: &dyn Storage, name: &str, keep: usize) -> Result<Expired, StorageError> {
    let keep = keep.max(1);
    let bases = base_backups(storage, name)?;
    let mut out = Expired::default();
    if bases.len() <= keep {
        return Ok(out);
    }
    let (old, kept) = bases.split_at(bases.len() - keep);
    let Some(floor) = kept.first().and_then(|b| segment_at(&b.start_lsn)) else {
        return Ok(out);
    };
    for b in old {
        // The description first: a base backup without it does not exist.
        storage.delete(&format!("base/{}/{}.json", b.name, b.id))?;
        storage.delete(&b.tar_key())?;
        out.base_backups.push(b.id.clone());
    }
    for key in storage.list(&format!("wal/{name}/"))? {
        let file = key
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".zst");
        let seg = file.split('.').next().unwrap_or("");
        if file.ends_with(".history") {
            continue;
        }
        if let Some((_, pos)) = segment_of(seg)
            && pos < floor
        {
            storage.delete(&key)?;
            out.wal_files += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    fn base(id: &str, start: &str, started: &str) -> BaseBackup {
        BaseBackup {
            name: "main".into(),
            id: id.into(),
            started_at: started.parse().unwrap(),
            finished_at: started.parse().unwrap(),
            start_lsn: start.into(),
            stop_lsn: start.into(),
            timeline: 1,
            tar_bytes: 0,
            stored_bytes: 0,
            sha256: String::new(),
        }
    }

    #[test]
    fn finds_gaps_and_expires_only_what_no_kept_base_backup_needs() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().to_path_buf()).unwrap();
        // Base backups started in segments 2 and 5; ids in reverse name order on purpose.
        for b in [
            base("b", "0/2000028", "2026-01-01T00:00:00Z"),
            base("a", "0/5000028", "2026-01-02T00:00:00Z"),
        ] {
            s.write_small(
                &format!("base/main/{}.json", b.id),
                &serde_json::to_vec(&b).unwrap(),
            )
            .unwrap();
            s.write_small(&b.tar_key(), b"tar").unwrap();
        }
        for seg in [1, 2, 3, 5, 6, 7] {
            s.write_small(&format!("wal/main/{}.zst", segment_name(1, seg)), b"x")
                .unwrap();
        }
        s.write_small("wal/main/00000002.history.zst", b"x")
            .unwrap();
        s.write_small(
            "wal/main/000000010000000000000002.00000028.backup.zst",
            b"x",
        )
        .unwrap();

        let info = archive_info(&s, "main").unwrap();
        assert_eq!(info.segments, 6);
        assert_eq!(
            info.latest_segment.as_deref(),
            Some("000000010000000000000007")
        );
        assert_eq!(
            info.gaps,
            [(
                "000000010000000000000004".to_string(),
                "000000010000000000000004".to_string()
            )]
        );
        assert_eq!(info.base_backups[0].id, "b");

        let gone = expire(&s, "main", 1).unwrap();
        assert_eq!(gone.base_backups, ["b"]);
        // Segments 1, 2, 3 and the backup history file of b; never the timeline history.
        assert_eq!(gone.wal_files, 4);
        let left = s.list("wal/main/").unwrap();
        assert!(left.iter().any(|k| k.ends_with("00000002.history.zst")));
        assert!(left.iter().any(|k| k.contains(&segment_name(1, 5))));
        assert_eq!(archive_info(&s, "main").unwrap().gaps, []);
    }
}
