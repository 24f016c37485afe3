//! How both catalogs encode the records' fields: times as UTC microseconds, kinds, origins
//! and states as their lower-case names. One encoding, so that `catalog:migrate` copies values
//! as they are.

use jiff::Timestamp;

use super::CatalogError;
use super::model::{Origin, TransferKind, TransferState};

/// A time as UTC microseconds.
pub(super) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// UTC microseconds as a time (out of range: the epoch).
pub(super) fn from_micros(v: i64) -> Timestamp {
    Timestamp::from_microsecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(super) fn kind_str(k: TransferKind) -> &'static str {
    match k {
        TransferKind::Capture => "capture",
        TransferKind::Restore => "restore",
        TransferKind::Copy => "copy",
        TransferKind::Verify => "verify",
    }
}

pub(super) fn parse_kind(s: &str) -> Result<TransferKind, CatalogError> {
    match s {
        "capture" => Ok(TransferKind::Capture),
        "restore" => Ok(TransferKind::Restore),
        "copy" => Ok(TransferKind::Copy),
        "verify" => Ok(TransferKind::Verify),
        _ => Err(CatalogError::Corrupt(format!("transfer kind {s}"))),
    }
}

pub(super) fn origin_str(o: Origin) -> &'static str {
    match o {
        Origin::Manual => "manual",
        Origin::Scheduled => "scheduled",
    }
}

pub(super) fn parse_origin(s: &str) -> Result<Origin, CatalogError> {
    match s {
        "manual" => Ok(Origin::Manual),
        "scheduled" => Ok(Origin::Scheduled),
        _ => Err(CatalogError::Corrupt(format!("transfer origin {s}"))),
    }
}

pub(super) fn parse_state(s: &str) -> Result<TransferState, CatalogError> {
    Ok(match s {
        "pending" => TransferState::Pending,
        "running" => TransferState::Running,
        "succeeded" => TransferState::Succeeded,
        "failed" => TransferState::Failed,
        "cancelled" => TransferState::Cancelled,
        _ => return Err(CatalogError::Corrupt(format!("transfer state {s}"))),
    })
}
