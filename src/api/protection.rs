//! The API's Continuous Protection: protecting a database, its live state and archive, and
//! the WAL tokens with which a recovering server fetches its WAL through the service.

use crate::pg::wal_names::Lsn;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /api/protections`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProtectRequest {
    /// A registered name.
    pub database: String,
    /// Seconds between base backups (default a day).
    pub base_every_secs: Option<u64>,
    /// Base backups kept (default 7).
    pub keep: Option<u32>,
}

/// One database's protection, as `protection:info` and the dashboard show it (`GET
/// /api/protections[/{database}]`, and the answer to `POST /api/protections`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProtectionView {
    pub database: String,
    /// Streamed by this service (`protect`), or only archived (`wal-push`) under this name.
    pub protected: bool,
    pub slot: Option<String>,
    pub base_every_secs: Option<u64>,
    pub keep_base: Option<u32>,
    pub since: Option<Timestamp>,
    /// The stream's state now; none for a name that is only archived.
    pub live: Option<LiveView>,
    /// The archive in the store (read for one database at a time).
    pub archive: Option<ArchiveView>,
    /// Everything wrong, one line each: never silent.
    pub problems: Vec<String>,
}

/// What the WAL receiver is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverState {
    #[default]
    Starting,
    Streaming,
    /// It exited with an error and is restarted with a growing delay.
    Failing,
    Stopped,
}

/// A stream's state as the service sees it now: the live half of a protection.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LiveView {
    pub receiver: ReceiverState,
    /// Why the receiver last failed (pg_receivewal's error).
    pub receiver_error: Option<String>,
    pub receiver_restarts: u64,
    /// The server's current WAL position, its slot's, what the receiver has, and what the
    /// store has, as PostgreSQL prints LSNs (`16/B374D848`).
    pub server_lsn: Option<String>,
    pub slot_lsn: Option<String>,
    pub received_lsn: Option<String>,
    pub stored_lsn: Option<String>,
    /// When WAL last went into the store.
    pub stored_at: Option<Timestamp>,
    /// WAL the server has written that is not in the store yet, in bytes and in seconds.
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<u64>,
    /// WAL the slot holds on the server.
    pub slot_retained_bytes: Option<u64>,
    /// The slot's `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub slot_wal_status: Option<String>,
    /// A store failure of the last tick (WAL is kept in the spool and retried).
    pub store_error: Option<String>,
    /// When the slot was found missing and created again.
    pub slot_recreated_at: Option<Timestamp>,
    pub base_backup_running: bool,
    pub base_backup_error: Option<String>,
    pub next_base_backup_at: Option<Timestamp>,
    /// The earliest moment a rollback can reach.
    pub earliest: Option<Timestamp>,
    pub base_backups: usize,
    pub last_base_backup: Option<BaseBackupView>,
    /// Runs of missing WAL segments, as (first missing, last missing).
    pub gaps: Vec<(String, String)>,
    /// The average WAL the server writes per day, since the oldest kept base backup.
    pub wal_bytes_per_day: Option<u64>,
    /// The lag in seconds over the last day, the worst of each five minutes, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lag_history: Vec<(Timestamp, u64)>,
}

/// The archive of one cluster in the store, summed up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArchiveView {
    pub name: String,
    pub base_backups: Vec<BaseBackupView>,
    /// The earliest moment a rollback can reach: the end of the oldest base backup.
    pub earliest: Option<Timestamp>,
    /// The newest archived segment (the window reaches to the end of it).
    pub latest_segment: Option<String>,
    /// Archived segments (whole ones) and timeline histories.
    pub segments: usize,
    pub histories: usize,
    /// Runs of segments missing between the oldest base backup's start and the newest
    /// segment, as (first missing, last missing). A rollback cannot cross a gap.
    pub gaps: Vec<(String, String)>,
}

/// A base backup of a protected cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupView {
    /// The cluster's name (as for `wal-push --name`).
    pub name: String,
    /// `20261125T052400Z`: when it started, which orders base backups.
    pub id: String,
    pub started_at: Timestamp,
    /// When its WAL was stored: the backup is consistent from no later than this.
    pub finished_at: Timestamp,
    /// WAL start and end points (`0/2000028`).
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub timeline: u32,
    /// The cluster's WAL segment size.
    pub wal_segment_size: u64,
    /// Bytes of the tar, and of the stored (compressed) object, and its SHA-256.
    pub tar_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
    /// Where each zstd frame starts, as (tar offset, stored offset); left out when the base
    /// backup is one frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<(u64, u64)>,
}

/// The answer to `DELETE /api/protections/{database}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unprotected {
    /// The database no longer protected.
    pub unprotected: String,
    /// How to drop the slot by hand, when the server was unreachable.
    pub warning: Option<String>,
}

/// The answer to `POST /api/wal/{name}/token`: a token that opens the WAL of archive `name`
/// and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalToken {
    pub name: String,
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::{assert_json, at, json_of};

    fn base() -> BaseBackupView {
        BaseBackupView {
            name: "main".into(),
            id: "20261125T052400Z".into(),
            started_at: at(),
            finished_at: at(),
            start_lsn: Lsn(0x2000028),
            stop_lsn: Lsn(0x2000100),
            timeline: 1,
            wal_segment_size: 16 << 20,
            tar_bytes: 1000,
            stored_bytes: 100,
            sha256: "ab".into(),
            frames: Vec::new(),
        }
    }

    #[test]
    fn protection_json_is_stable() {
        let view = ProtectionView {
            database: "main".into(),
            protected: true,
            slot: Some("pgbackups_main".into()),
            base_every_secs: Some(86_400),
            keep_base: Some(7),
            since: Some(at()),
            live: Some(LiveView {
                receiver: ReceiverState::Streaming,
                stored_lsn: Some("0/3000000".into()),
                base_backups: 1,
                last_base_backup: Some(base()),
                gaps: vec![(
                    "000000010000000000000004".into(),
                    "000000010000000000000005".into(),
                )],
                ..LiveView::default()
            }),
            archive: Some(ArchiveView {
                name: "main".into(),
                base_backups: vec![base()],
                earliest: Some(at()),
                latest_segment: Some("000000010000000000000006".into()),
                segments: 5,
                histories: 0,
                gaps: Vec::new(),
            }),
            problems: vec!["WAL receiver failing: x".into()],
        };
        let base = r#"{"name":"main","id":"20261125T052400Z","started_at":"2026-11-25T05:24:00Z","finished_at":"2026-11-25T05:24:00Z","start_lsn":"0/2000028","stop_lsn":"0/2000100","timeline":1,"wal_segment_size":16777216,"tar_bytes":1000,"stored_bytes":100,"sha256":"ab"}"#;
        let expected = format!(
            r#"{{"database":"main","protected":true,"slot":"pgbackups_main","base_every_secs":86400,"keep_base":7,"since":"2026-11-25T05:24:00Z","live":{{"receiver":"streaming","receiver_error":null,"receiver_restarts":0,"server_lsn":null,"slot_lsn":null,"received_lsn":null,"stored_lsn":"0/3000000","stored_at":null,"lag_bytes":null,"lag_seconds":null,"slot_retained_bytes":null,"slot_wal_status":null,"store_error":null,"slot_recreated_at":null,"base_backup_running":false,"base_backup_error":null,"next_base_backup_at":null,"earliest":null,"base_backups":1,"last_base_backup":{base},"gaps":[["000000010000000000000004","000000010000000000000005"]],"wal_bytes_per_day":null}},"archive":{{"name":"main","base_backups":[{base}],"earliest":"2026-11-25T05:24:00Z","latest_segment":"000000010000000000000006","segments":5,"histories":0,"gaps":[]}},"problems":["WAL receiver failing: x"]}}"#
        );
        assert_eq!(json_of(&view), expected);
        let back: ProtectionView = serde_json::from_str(&expected).expect("reads its own JSON");
        assert_eq!(json_of(&back), expected);
    }

    #[test]
    fn archived_only_names_have_no_live_state() {
        let view = ProtectionView {
            database: "old".into(),
            protected: false,
            slot: None,
            base_every_secs: None,
            keep_base: None,
            since: None,
            live: None,
            archive: None,
            problems: Vec::new(),
        };
        assert_json(
            &view,
            r#"{"database":"old","protected":false,"slot":null,"base_every_secs":null,"keep_base":null,"since":null,"live":null,"archive":null,"problems":[]}"#,
        );
    }

    #[test]
    fn small_protection_bodies_are_stable() {
        assert_json(
            &ProtectRequest {
                database: "main".into(),
                base_every_secs: None,
                keep: Some(3),
            },
            r#"{"database":"main","base_every_secs":null,"keep":3}"#,
        );
        assert_json(
            &Unprotected {
                unprotected: "main".into(),
                warning: None,
            },
            r#"{"unprotected":"main","warning":null}"#,
        );
        assert_json(
            &WalToken {
                name: "main".into(),
                token: "ab12".into(),
            },
            r#"{"name":"main","token":"ab12"}"#,
        );
    }
}
