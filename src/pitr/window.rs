//! What the archive of a cluster allows, and what it may forget: the restorable window,
//! gaps in the WAL, and retention of base backups with the WAL they need.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use super::{BaseBackup, base_backups};
use crate::pg::wal_names::{Lsn, WalFileName, parse_segment_name, segment_name};
use crate::storage::{Storage, StorageError};

/// How segment files map to positions: `size` bytes per segment, so 4 GiB / size segments per
/// "log" (the middle eight digits of a file name).
#[derive(Clone, Copy)]
pub(super) struct Segments {
    pub(super) size: u64,
}

impl Segments {
    /// A segment file name split into its timeline and its position.
    pub(super) fn of(self, file: &str) -> Option<(u32, u64)> {
        parse_segment_name(file, self.size)
    }

    /// The position of the segment holding `lsn`.
    fn at(self, lsn: Lsn) -> u64 {
        lsn.0 / self.size
    }

    pub(super) fn name(self, tli: u32, pos: u64) -> String {
        segment_name(tli, pos, self.size)
    }
}

/// The segment size the base backups recorded (they agree: it is fixed at initdb).
pub(super) fn segments(bases: &[BaseBackup]) -> Segments {
    Segments {
        size: bases
            .first()
            .map(|b| b.wal_segment_size)
            .unwrap_or(16 << 20),
    }
}

/// The WAL files archived for `name`: each object's key and the WAL file it holds
/// (`000000010000000000000003`, `00000002.history`, `….partial`).
pub(super) fn archived(
    storage: &dyn Storage,
    name: &str,
) -> Result<Vec<(String, String)>, StorageError> {
    Ok(storage
        .list(&format!("wal/{name}/"))?
        .into_iter()
        .map(|key| {
            let file = key
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".zst")
                .to_string();
            (key, file)
        })
        .collect())
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
    archive_info_from(storage, name, None)
}

/// The gaps in the WAL after `base`'s start: a rollback from `base` cannot cross them.
pub fn gaps_after(
    storage: &dyn Storage,
    base: &BaseBackup,
) -> Result<Vec<(String, String)>, StorageError> {
    Ok(archive_info_from(storage, &base.name, Some(base))?.gaps)
}

/// [`archive_info`], with the gaps counted from `from`'s start instead of the lowest start of
/// any base backup.
fn archive_info_from(
    storage: &dyn Storage,
    name: &str,
    from: Option<&BaseBackup>,
) -> Result<ArchiveInfo, StorageError> {
    let bases = base_backups(storage, name)?;
    let seg = segments(&bases);
    let mut present: BTreeSet<u64> = BTreeSet::new();
    let mut latest: Option<(u64, u32)> = None;
    let mut histories = 0;
    for (_, file) in archived(storage, name)? {
        match file.parse::<WalFileName>() {
            Ok(WalFileName::History(_)) => histories += 1,
            Ok(WalFileName::Segment(s)) => {
                let (tli, pos) = (s.timeline, s.number(seg.size));
                present.insert(pos);
                if latest.is_none_or(|(p, t)| (pos, tli) > (p, t)) {
                    latest = Some((pos, tli));
                }
            }
            _ => {}
        }
    }
    let mut gaps = Vec::new();
    // From the lowest start of any base backup (not the oldest by time: a newer one may
    // start earlier in the WAL, on another timeline or with another machine's clock).
    let first = match from {
        Some(b) => Some(seg.at(b.start_lsn)),
        None => bases.iter().map(|b| seg.at(b.start_lsn)).min(),
    };
    if let (Some(first), Some((last, tli))) = (first, latest) {
        let mut missing_from: Option<u64> = None;
        for pos in first..=last {
            match (present.contains(&pos), missing_from) {
                (false, None) => missing_from = Some(pos),
                (true, Some(from)) => {
                    gaps.push((seg.name(tli, from), seg.name(tli, pos - 1)));
                    missing_from = None;
                }
                _ => {}
            }
        }
    }
    Ok(ArchiveInfo {
        name: name.to_string(),
        earliest: bases.first().map(|b| b.finished_at),
        latest_segment: latest.map(|(pos, tli)| seg.name(tli, pos)),
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
    let seg = segments(&bases);
    let (old, kept) = bases.split_at(bases.len() - keep);
    // The lowest start of any kept base backup (see `archive_info`).
    let Some(floor) = kept.iter().map(|b| seg.at(b.start_lsn)).min() else {
        return Ok(out);
    };
    for b in old {
        // The description first: a base backup without it does not exist.
        storage.delete(&format!("base/{}/{}.json", b.name, b.id))?;
        storage.delete(&b.tar_key())?;
        out.base_backups.push(b.id.clone());
    }
    for (key, file) in archived(storage, name)? {
        // Segments, their partial uploads and backup history files go with their segment;
        // timeline histories are always kept.
        let segment = match file.parse::<WalFileName>() {
            Ok(WalFileName::Segment(s) | WalFileName::Partial(s) | WalFileName::Backup(s, _)) => s,
            Ok(WalFileName::History(_)) | Err(_) => continue,
        };
        if segment.number(seg.size) < floor {
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
            start_lsn: start.parse().unwrap(),
            stop_lsn: start.parse().unwrap(),
            timeline: 1,
            wal_segment_size: 16 << 20,
            tar_bytes: 0,
            stored_bytes: 0,
            sha256: String::new(),
            frames: Vec::new(),
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
        let sixteen = Segments { size: 16 << 20 };
        for seg in [1, 2, 3, 5, 6, 7] {
            s.write_small(&format!("wal/main/{}.zst", sixteen.name(1, seg)), b"x")
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
        assert!(left.iter().any(|k| k.contains(&sixteen.name(1, 5))));
        assert_eq!(archive_info(&s, "main").unwrap().gaps, []);
    }
}
