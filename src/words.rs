//! How a transfer is described to a person, in the same words wherever it is shown: the CLI's
//! listings and the dashboard's pages (Heroku's words: `Completed`, `Failed`, sizes in binary
//! units).

use crate::catalog::{TransferKind, TransferRecord, TransferState};
use crate::format;

/// `Completed 2026-11-24 02:00:13 +0000`, `Running (12.3MB processed)`, ... as the listing
/// shows a transfer. Every kind that succeeded is `Completed` (Heroku says so of backups,
/// restores and copies alike), and a cancelled transfer is `Failed`, as in Heroku's list;
/// `backups:info` tells the two apart. A restore or copy that completed with objects the
/// target refused says `Completed with 2 warnings`, as Heroku's list does (without a time).
pub fn status_text(t: &TransferRecord) -> String {
    let at = t.finished_at.map(format::time).unwrap_or_default();
    match t.state {
        TransferState::Pending => "Pending".into(),
        TransferState::Running => {
            format!("Running ({} processed)", format::bytes(t.bytes_processed))
        }
        TransferState::Succeeded if t.warnings > 0 => completed_with(t.warnings),
        TransferState::Succeeded => format!("Completed {at}"),
        TransferState::Failed | TransferState::Cancelled => format!("Failed {at}"),
    }
}

/// `Completed with 1 warning`, `Completed with 3 warnings`.
pub fn completed_with(n: u32) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("Completed with {n} warning{s}")
}

/// The size a listing shows: the stored object of a backup, the dump of a restore, copy or
/// verification, or what was processed so far while it runs.
pub fn size_text(t: &TransferRecord) -> String {
    let size = match t.kind {
        TransferKind::Capture => t.object_size,
        TransferKind::Restore | TransferKind::Copy | TransferKind::Verify => t.dump_size,
    };
    size.map(format::bytes).unwrap_or_else(|| {
        if t.state == TransferState::Running {
            format::bytes(t.bytes_processed)
        } else {
            String::new()
        }
    })
}
