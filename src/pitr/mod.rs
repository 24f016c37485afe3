//! Point-in-time recovery over the WAL archive (`wal.rs`): base backups of a cluster, and
//! rolling one forward to a moment into a new data directory.
//!
//! Store layout, beside the WAL of the same name (`wal/<name>/`):
//! - `base/<name>/<id>.tar.zst`: the cluster as `pg_basebackup -Ft -X none` writes it (one
//!   tar of the data directory, `backup_label` included), compressed with zstd;
//! - `base/<name>/<id>.json`: what the base backup is ([`BaseBackup`]), written after the
//!   tar is durable; a base backup without it does not exist.
//!
//! `-X none` makes the server wait until the WAL the backup needs is archived before the
//! backup ends (`BASE_BACKUP`'s WAIT), so a base backup that exists can always be made
//! consistent from the archive.

mod base;
pub mod cluster;
mod end;
pub mod prefetch;
mod rollback;
pub mod start;
mod unpack;
mod window;

pub use base::{BaseBackupError, take_base_backup, take_base_backup_until};
pub use rollback::{
    Recovery, RecoveryTarget, RollbackError, RollbackPlan, TimelineChoice, rollback,
};
pub use unpack::UnpackError;
pub use window::{ArchiveInfo, Expired, archive_info, expire, gaps_after};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::pg::wal_names::{Lsn, SegmentName};
use crate::storage::{Storage, StorageError};

/// A base backup, as its `.json` object records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseBackup {
    /// The cluster's name (as for `wal-push --name`).
    pub name: String,
    /// `20261125T052400Z`: when it started, which orders base backups.
    pub id: String,
    pub started_at: Timestamp,
    /// When its WAL was stored, by the server's clock (which recovery targets are compared
    /// with): the backup is consistent from no later than this.
    pub finished_at: Timestamp,
    /// WAL start and end points (stored as PostgreSQL prints LSNs, `0/2000028`).
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub timeline: u32,
    /// The cluster's WAL segment size (`initdb --wal-segsize`), which maps LSNs to segment
    /// files; 16 MiB unless the history file said otherwise.
    #[serde(default = "default_segment_size")]
    pub wal_segment_size: u64,
    /// Bytes of the tar, and of the stored (compressed) object, and its SHA-256.
    pub tar_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
    /// Where each zstd frame starts, (tar offset, stored offset): frames decompress in
    /// parallel at restore. Empty for base backups written as one frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<(u64, u64)>,
}

impl BaseBackup {
    pub fn tar_key(&self) -> String {
        format!("base/{}/{}.tar.zst", self.name, self.id)
    }
}

/// The base backups of `name`, oldest first.
pub fn base_backups(storage: &dyn Storage, name: &str) -> Result<Vec<BaseBackup>, StorageError> {
    crate::wal::key(name, "00000001.history").map_err(|e| StorageError::BadKey(e.to_string()))?;
    let mut out = Vec::new();
    for key in storage.list(&format!("base/{name}/"))? {
        if !key.ends_with(".json") {
            continue;
        }
        let bytes = storage.read_small(&key, 1 << 20)?;
        match serde_json::from_slice::<BaseBackup>(&bytes) {
            Ok(b) => out.push(b),
            Err(e) => tracing::warn!("skipping {key}: {e}"),
        }
    }
    out.sort_by_key(|b| b.started_at);
    Ok(out)
}

fn default_segment_size() -> u64 {
    16 << 20
}

/// The WAL segment size that puts `lsn` in segment file `file` (a power of two from 1 MiB to
/// 1 GiB, as initdb allows).
pub fn segment_size_of(lsn: &str, file: &str) -> Option<u64> {
    let lsn: Lsn = lsn.parse().ok()?;
    let file: SegmentName = file.parse().ok()?;
    (20..=30)
        .map(|bits| 1u64 << bits)
        .find(|&size| lsn.segment(file.timeline, size) == file)
}

/// The name of the segment file on timeline `tli` that holds byte `lsn`.
pub fn segment_file(tli: u32, lsn: u64, segment_size: u64) -> String {
    Lsn(lsn).segment(tli, segment_size).to_string()
}

/// An LSN as PostgreSQL prints it (`16/B374D848`): the inverse of [`parse_lsn`]. A thin
/// wrapper over [`Lsn`] for the callers that still hold positions as numbers.
pub fn format_lsn(lsn: u64) -> String {
    Lsn(lsn).to_string()
}

/// An LSN (`16/B374D848`) as a number, for comparisons: a thin wrapper over [`Lsn`]'s parsing.
pub fn parse_lsn(text: &str) -> Option<u64> {
    text.parse::<Lsn>().ok().map(|l| l.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_follow_from_an_lsn_and_its_file() {
        assert_eq!(
            segment_size_of("0/2000028", "000000010000000000000002"),
            Some(16 << 20)
        );
        assert_eq!(
            segment_size_of("0/10000028", "000000010000000000000004"),
            Some(64 << 20)
        );
        assert_eq!(
            segment_size_of("0/2000028", "000000010000000000000009"),
            None
        );
        assert_eq!(
            segment_file(2, 0x1_FF00_0000, 16 << 20),
            "0000000200000001000000FF"
        );
    }

    #[test]
    fn lsns_parse_and_order() {
        assert_eq!(parse_lsn("0/2000028"), Some(0x2000028));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        assert_eq!(format_lsn((0x16 << 32) | 0xB374D848), "16/B374D848");
        for bad in ["", "0", "x/1", "1/", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }
}
