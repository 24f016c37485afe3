//! The records the catalog keeps, and the types that give their fields meaning.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::pg::DumpFilter;

/// A transfer's ID as users type it: a letter for its kind and a number, as Heroku does
/// (`b001` manual capture, `a001` scheduled capture, `r001` restore, `c001` copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId {
    prefix: char,
    number: u32,
}

/// Why a string is not a transfer ID (the text shown with its passwords redacted: a mistyped
/// URL lands here too).
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a backup or transfer ID: IDs look like b001 (manual backup), a001 (scheduled backup), r001 (restore), c001 (copy) or v001 (verification), written as `pgbackups backups` lists them: a lowercase letter and at least three digits (b1000 after b999)"
)]
pub struct TransferIdError(pub String);

impl TransferId {
    /// The ID with this prefix and number.
    pub fn new(prefix: char, number: u32) -> TransferId {
        TransferId { prefix, number }
    }

    /// The kind letter: `b`, `a`, `r` or `c`.
    pub fn prefix(&self) -> char {
        self.prefix
    }

    /// Whether the ID names a capture (a backup), manual or scheduled.
    pub fn is_backup(&self) -> bool {
        matches!(self.prefix, 'b' | 'a')
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:03}", self.prefix, self.number)
    }
}

impl FromStr for TransferId {
    type Err = TransferIdError;

    /// Exactly the form [`Display`](fmt::Display) gives, so that one ID has one spelling:
    /// `b001`, `b1000`; not `B001`, `b1`, `b0001` or `b001 `.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TransferIdError(crate::pg::redact(s));
        let mut chars = s.chars();
        let prefix = chars
            .next()
            .filter(|c| matches!(c, 'a' | 'b' | 'c' | 'r' | 'v'))
            .ok_or_else(bad)?;
        let digits = chars.as_str();
        if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let number: u32 = digits.parse().map_err(|_| bad())?;
        let id = TransferId { prefix, number };
        // Leading zeros beyond the three printed ones (`b0001`) are another spelling.
        if id.to_string() != s {
            return Err(bad());
        }
        Ok(id)
    }
}

impl Serialize for TransferId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TransferId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a transfer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// Database → storage: makes a backup.
    Capture,
    /// Backup → database.
    Restore,
    /// Database → database, nothing stored (pg_dump piped into pg_restore).
    Copy,
    /// Re-reads a backup: checksum, `pg_restore --list`, and optionally a restore into a
    /// scratch database.
    Verify,
}

/// Who started a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Manual,
    Scheduled,
}

/// Where a transfer is in its life: pending → running → succeeded | failed | cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TransferState {
    /// Whether the transfer has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TransferState::Succeeded | TransferState::Failed | TransferState::Cancelled
        )
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TransferState::Pending => "pending",
            TransferState::Running => "running",
            TransferState::Succeeded => "succeeded",
            TransferState::Failed => "failed",
            TransferState::Cancelled => "cancelled",
        }
    }
}

/// A registered database as listed: the URL only in its redacted form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatabaseRecord {
    pub name: String,
    pub url: String,
    pub created_at: Timestamp,
}

/// One transfer: a capture (whose success makes it a backup) or a restore.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransferRecord {
    pub id: TransferId,
    pub kind: TransferKind,
    pub origin: Origin,
    /// The database captured from or restored into: its registered name, or the redacted URL.
    pub database: String,
    /// For a restore: the backup it restores.
    pub backup_id: Option<TransferId>,
    /// For a copy: the source database (its registered name, or the redacted URL).
    #[serde(default)]
    pub source: Option<String>,
    /// For a partial capture or copy: the pg_dump selection options.
    #[serde(default, skip_serializing_if = "DumpFilter::is_empty")]
    pub filter: DumpFilter,
    pub state: TransferState,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Dump bytes processed so far (read from pg_dump, or fed to pg_restore).
    pub bytes_processed: u64,
    /// `pg_database_size` of the source (capture) or target (restore) when the transfer started.
    pub database_size: Option<u64>,
    /// Size of the dump as pg_restore reads it (uncompressed custom format).
    pub dump_size: Option<u64>,
    /// Size of the stored object (compressed).
    pub object_size: Option<u64>,
    /// SHA-256 of the stored object, hex.
    pub sha256: Option<String>,
    /// Where the object lives in storage.
    pub object_key: Option<String>,
    /// The compression of the stored object, such as `zstd`.
    pub compression: Option<String>,
    pub server_version: Option<String>,
    pub tool_version: Option<String>,
    /// Why the transfer failed or was cancelled, in words a user can act on.
    pub error: Option<String>,
    /// For a backup: how the stored object is encrypted (`age`), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// For a verification: what it proved, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a restore or copy that completed: how many objects the target refused without any
    /// data lost (an extension, its comment, privileges, ownership), each logged as a
    /// `WARNING: ` line; Heroku's "Completed with N warnings". Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warnings: u32,
    /// A pinned backup is never expired by retention. Set with `backups:pin`, not by saving
    /// the record.
    #[serde(default)]
    pub pinned: bool,
    /// For a backup: the roles whose definitions (`pg_dumpall --globals-only`, without
    /// passwords) are stored beside it, for `backups:restore --roles`; `None` when the roles
    /// were not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// For a backup taken by `backups:capture --all SERVER`: the set it belongs to (the ID of
    /// the set's first backup), shared by the backups of every database of that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
}

impl TransferRecord {
    /// A fresh pending transfer.
    pub fn new(
        id: TransferId,
        kind: TransferKind,
        origin: Origin,
        database: String,
        now: Timestamp,
    ) -> TransferRecord {
        TransferRecord {
            id,
            kind,
            origin,
            database,
            backup_id: None,
            source: None,
            filter: DumpFilter::default(),
            state: TransferState::Pending,
            created_at: now,
            started_at: None,
            finished_at: None,
            bytes_processed: 0,
            database_size: None,
            dump_size: None,
            object_size: None,
            sha256: None,
            object_key: None,
            compression: None,
            server_version: None,
            tool_version: None,
            error: None,
            encryption: None,
            detail: None,
            warnings: 0,
            pinned: false,
            roles: None,
            set: None,
        }
    }

    /// Whether this is a completed backup that can be downloaded or restored.
    pub fn is_completed_backup(&self) -> bool {
        self.kind == TransferKind::Capture && self.state == TransferState::Succeeded
    }

    /// Whether this is a succeeded restore test: a verification that restored the backup into
    /// a scratch database (its detail says so, in [`RESTORE_TEST_DETAIL`]'s words).
    pub fn is_restore_test(&self) -> bool {
        self.kind == TransferKind::Verify
            && self.state == TransferState::Succeeded
            && self
                .detail
                .as_deref()
                .is_some_and(|d| d.contains(RESTORE_TEST_DETAIL))
    }

    /// The order "newest" means everywhere: by creation time, then by ID.
    pub fn newness(&self) -> (Timestamp, TransferId) {
        (self.created_at, self.id)
    }
}

/// The words a verification's detail carries when it restored the backup into a scratch
/// database. The verification writes them (`transfer/verify.rs`) and the catalog finds the
/// newest restore test by them, so they are kept in this one place.
pub const RESTORE_TEST_DETAIL: &str = "restored into a scratch database";

/// What the overview shows of one database, read without its whole history: its newest
/// capture, newest succeeded capture, newest restore test, and the transfers still going.
#[derive(Clone, Debug, Default)]
pub struct DatabaseSummary {
    pub database: String,
    /// The newest capture, whatever its state.
    pub last_capture: Option<TransferRecord>,
    /// The newest succeeded capture.
    pub last_backup: Option<TransferRecord>,
    /// The newest succeeded restore test ([`TransferRecord::is_restore_test`]).
    pub last_restore_test: Option<TransferRecord>,
    /// Its pending and running transfers, oldest first.
    pub unfinished: Vec<TransferRecord>,
}

impl DatabaseSummary {
    /// An empty summary of `database` (nothing captured yet).
    pub fn new(database: &str) -> DatabaseSummary {
        DatabaseSummary {
            database: database.to_string(),
            ..DatabaseSummary::default()
        }
    }

    /// Takes `t` (one of this database's transfers) into account: it replaces what it is
    /// newer than (or the same transfer, fresher), and joins the unfinished ones if it is
    /// still going. Builds a summary from records the catalog did not have yet.
    pub fn consider(&mut self, t: &TransferRecord) {
        fn newer(slot: &mut Option<TransferRecord>, t: &TransferRecord) {
            if slot.as_ref().is_none_or(|s| t.newness() >= s.newness()) {
                *slot = Some(t.clone());
            }
        }
        if t.kind == TransferKind::Capture {
            newer(&mut self.last_capture, t);
            if t.state == TransferState::Succeeded {
                newer(&mut self.last_backup, t);
            }
        }
        if t.is_restore_test() {
            newer(&mut self.last_restore_test, t);
        }
        if !t.state.is_finished() && !self.unfinished.iter().any(|u| u.id == t.id) {
            self.unfinished.push(t.clone());
            self.unfinished.sort_by_key(TransferRecord::newness);
        }
    }
}

/// A database's daily schedule as stored: the local time and the IANA zone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub database: String,
    pub hour: i8,
    pub minute: i8,
    pub zone: String,
    /// When it was set; runs due before this are not made up.
    pub created_at: Timestamp,
    /// Whether each scheduled backup is verified once captured.
    #[serde(default)]
    pub verify: VerifyMode,
}

/// A database under Continuous Protection: its WAL streams into the store through the
/// replication slot `slot`, and a base backup is taken every `base_every_secs`, the newest
/// `keep_base` kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProtectionRecord {
    pub database: String,
    pub slot: String,
    pub base_every_secs: u64,
    pub keep_base: u32,
    pub created_at: Timestamp,
}

/// How far a verification goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// No verification (schedules only).
    #[default]
    Off,
    /// Checksum of the whole object and `pg_restore --list`.
    Checksum,
    /// The above, then a restore into a scratch database, a sanity check, and a drop.
    Restore,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Off => "off",
            VerifyMode::Checksum => "checksum",
            VerifyMode::Restore => "restore",
        }
    }
}

impl FromStr for VerifyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "no" => Ok(VerifyMode::Off),
            "checksum" | "check" => Ok(VerifyMode::Checksum),
            "restore" => Ok(VerifyMode::Restore),
            other => Err(format!(
                "`{other}` is not a verification mode: use off, checksum or restore"
            )),
        }
    }
}

/// One line of a transfer's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub at: Timestamp,
    pub line: String,
}

impl LogLine {
    /// How a warning starts in a transfer's log: something the transfer did not do as asked,
    /// though it went on. The CLI repeats these lines when it has watched the transfer end.
    pub const WARNING: &str = crate::pg::restore_errors::WARNING;

    /// Whether the line is a warning the user should see without `--verbose`.
    pub fn is_warning(&self) -> bool {
        self.line.starts_with(Self::WARNING)
    }
}

/// How many backups of each kind a database keeps: the newest `manual` manual ones, and the
/// newest scheduled one of each of the last `daily` days, `weekly` weeks and `monthly` months
/// (`schedule::retention` applies it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub manual: u32,
}

impl Default for RetentionPolicy {
    /// Like Heroku Postgres' Standard tier: 7 daily and 4 weekly scheduled backups; and 25
    /// manual ones.
    fn default() -> RetentionPolicy {
        RetentionPolicy {
            daily: 7,
            weekly: 4,
            monthly: 0,
            manual: 25,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_takes_a_fresher_copy_of_a_transfer_and_drops_what_ended() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let mut running = TransferRecord::new(
            TransferId::new('b', 2),
            TransferKind::Capture,
            Origin::Manual,
            "main".into(),
            at,
        );
        running.state = TransferState::Running;
        let mut s = DatabaseSummary::new("main");
        s.consider(&running);
        assert_eq!(s.unfinished.len(), 1);
        assert!(s.last_backup.is_none());
        // The engine's copy of its end (not yet in the catalog) replaces the running one.
        let mut ended = running.clone();
        ended.state = TransferState::Succeeded;
        s.unfinished.clear();
        s.consider(&ended);
        let state = |t: &Option<TransferRecord>| t.as_ref().map(|t| t.state);
        assert_eq!(state(&s.last_capture), Some(TransferState::Succeeded));
        assert_eq!(state(&s.last_backup), Some(TransferState::Succeeded));
        assert!(s.unfinished.is_empty());
        // An older capture changes nothing.
        let mut older = ended.clone();
        older.id = TransferId::new('b', 1);
        older.state = TransferState::Failed;
        s.consider(&older);
        assert_eq!(s.last_capture.as_ref().map(|t| t.id), Some(ended.id));
    }

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id: TransferId = "b001".parse().unwrap();
        assert_eq!(id.to_string(), "b001");
        assert_eq!("a1234".parse::<TransferId>().unwrap().to_string(), "a1234");
        assert_eq!("b1000".parse::<TransferId>().unwrap().to_string(), "b1000");
        for bad in [
            "",
            "b",
            "x001",
            "b0x1",
            "001",
            "b-1",
            "B001",
            "b1",
            "b01",
            "b0001",
            "b0000001",
            "b001 ",
            " b001",
            "b+001",
            "b99999999999",
        ] {
            assert!(bad.parse::<TransferId>().is_err(), "{bad}");
        }
        assert!(id.is_backup());
        assert!(!"r001".parse::<TransferId>().unwrap().is_backup());
        let err = "postgress://u:pw@h/db".parse::<TransferId>().unwrap_err();
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert!(err.to_string().contains("b001"), "{err}");
    }
}
