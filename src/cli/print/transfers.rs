//! What `backups`, `backups:info` and `catalog:rebuild` print: pure functions from the
//! service's answers to text.

use crate::api::RebuildReport;
use crate::catalog::{LogLine, Origin, TransferId, TransferKind, TransferRecord, TransferState};
use crate::format;
use crate::words::completed_with;
pub use crate::words::{size_text, status_text};

use super::super::table::render;

/// What `backups:restore --set` prints once every restore of the set has ended: one line per
/// database (`r004 into shop: Completed ...`, or why it failed), then whether all succeeded.
pub fn set_restore_results(
    ended: &[TransferRecord],
    refused: &[crate::api::RefusedRestore],
) -> String {
    let mut out = String::new();
    let mut failed = Vec::new();
    for t in ended {
        let db = crate::registry::confirm_word(&t.database);
        let from = t.backup_id.map(|b| b.to_string()).unwrap_or_default();
        match t.state {
            TransferState::Succeeded => {
                out.push_str(&format!("{} {from} → {db}: {}\n", t.id, status_text(t)));
            }
            _ => {
                let why = t.error.clone().unwrap_or_else(|| status_text(t));
                out.push_str(&format!("{} {from} → {db}: Failed: {why}\n", t.id));
                failed.push(db);
            }
        }
    }
    for r in refused {
        out.push_str(&format!("{}: not started: {}\n", r.database, r.error));
        failed.push(r.database.clone());
    }
    let total = ended.len() + refused.len();
    if failed.is_empty() {
        out.push_str(&format!("All {total} databases of the set restored.\n"));
    } else {
        out.push_str(&format!(
            "{} of {total} databases not restored: {}; see `pgbackups backups:info ID` for each, fix the cause and restore those backups one by one with `pgbackups backups:restore ID DATABASE_URL`.\n",
            failed.len(),
            failed.join(", ")
        ));
    }
    out
}

/// How many restores and how many copies `backups` shows without `--all`, as Heroku's list.
pub const LISTED: usize = 10;

/// The `pgbackups backups` listing: backups, restores, copies (always, as Heroku prints them)
/// and verifications, newest first. Restores and copies are capped at [`LISTED`] rows unless
/// `all`, with a line saying how many were left out.
pub fn backups_listing(all: &[TransferRecord], show_all: bool) -> String {
    let of_kind = |kind: TransferKind| {
        let mut v: Vec<&TransferRecord> = all.iter().filter(|t| t.kind == kind).collect();
        v.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        v
    };
    let from_to = |from: String, t: &TransferRecord| format!("{from} → {}", t.database);
    let mut out = String::from("=== Backups\n");
    let captures = of_kind(TransferKind::Capture);
    if captures.is_empty() {
        out.push_str("No backups. Capture one with `pgbackups backups:capture`.\n");
    } else {
        // The Set column (whole-server captures) only when some backup belongs to one.
        let sets = captures.iter().any(|t| t.set.is_some());
        let rows = captures
            .iter()
            .map(|t| {
                let mut row = vec![
                    t.id.to_string(),
                    format::time(t.created_at),
                    status_text(t),
                    size_text(t),
                    t.database.clone(),
                ];
                if sets {
                    row.push(t.set.clone().unwrap_or_default());
                }
                row
            })
            .collect::<Vec<_>>();
        let mut header = vec!["ID", "Created at", "Status", "Size", "Database"];
        if sets {
            header.push("Set");
        }
        out.push_str(&render(&header, &rows));
    }
    out.push_str("\n=== Restores\n");
    let restores = of_kind(TransferKind::Restore);
    if restores.is_empty() {
        out.push_str("No restores found. Use `pgbackups backups:restore` to restore a backup.\n");
    } else {
        let (shown, left_out) = capped(&restores, show_all);
        let rows = shown
            .iter()
            .map(|t| {
                let from = t
                    .backup_id
                    .map(|b| b.to_string())
                    .or(t.source.clone())
                    .unwrap_or_default();
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    size_text(t),
                    from_to(from, t),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Size", "From → To"],
            &rows,
        ));
        out.push_str(&left_out_line(left_out, "restore", "restores"));
    }
    out.push_str("\n=== Copies\n");
    let copies = of_kind(TransferKind::Copy);
    if copies.is_empty() {
        out.push_str("No copies found. Use `pgbackups copy` to copy a database to another.\n");
    } else {
        let (shown, left_out) = capped(&copies, show_all);
        let rows = shown
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    size_text(t),
                    from_to(t.source.clone().unwrap_or_default(), t),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Size", "From → To"],
            &rows,
        ));
        out.push_str(&left_out_line(left_out, "copy", "copies"));
    }
    let checks = of_kind(TransferKind::Verify);
    if !checks.is_empty() {
        out.push_str("\n=== Verifications\n");
        let rows = checks
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    t.backup_id.map(|b| b.to_string()).unwrap_or_default(),
                    t.detail.clone().or(t.error.clone()).unwrap_or_default(),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Backup", "Result"],
            &rows,
        ));
    }
    out
}

/// The newest [`LISTED`] of `rows` (every one with `show_all`) and how many were left out.
fn capped<'a>(rows: &'a [&'a TransferRecord], show_all: bool) -> (&'a [&'a TransferRecord], usize) {
    if show_all || rows.len() <= LISTED {
        (rows, 0)
    } else {
        (&rows[..LISTED], rows.len() - LISTED)
    }
}

/// `3 older restores not shown: `pgbackups backups --all` lists every one.` (nothing for 0).
fn left_out_line(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => String::new(),
        1 => format!("1 older {one} not shown: `pgbackups backups --all` lists every one.\n"),
        n => format!("{n} older {many} not shown: `pgbackups backups --all` lists every one.\n"),
    }
}

/// The `pgbackups backups:info` text.
pub fn info_text(t: &TransferRecord, logs: &[LogLine]) -> String {
    let mut out = String::new();
    let what = match t.kind {
        TransferKind::Capture => "Backup",
        TransferKind::Restore => "Restore",
        TransferKind::Copy => "Copy",
        TransferKind::Verify => "Verification",
    };
    out.push_str(&format!("=== {what} {}\n", t.id));
    let mut fields: Vec<(&str, String)> = vec![("Database", t.database.clone())];
    if let Some(source) = &t.source {
        fields.push(("Source", source.clone()));
    }
    if !t.filter.is_empty() {
        fields.push(("Partial", t.filter.args().join(" ")));
    }
    if let Some(b) = t.backup_id {
        fields.push(("Backup", b.to_string()));
    }
    fields.push((
        "Started at",
        t.started_at
            .map(format::time)
            .unwrap_or_else(|| "not yet".into()),
    ));
    if let Some(f) = t.finished_at {
        fields.push(("Finished at", format::time(f)));
    }
    let status = match t.state {
        TransferState::Pending => "Pending".to_string(),
        TransferState::Running => {
            format!("Running ({} processed)", format::bytes(t.bytes_processed))
        }
        TransferState::Succeeded if t.warnings > 0 => completed_with(t.warnings),
        TransferState::Succeeded => "Completed".into(),
        TransferState::Failed => "Failed".into(),
        // Heroku's list says Failed of a cancelled transfer, but its `backups:info` says
        // Canceled: the detail tells a user that nothing went wrong, someone stopped it.
        TransferState::Cancelled => "Cancelled".into(),
    };
    fields.push(("Status", status));
    if let Some(e) = &t.error {
        fields.push(("Error", e.clone()));
    }
    if t.pinned {
        fields.push(("Pinned", "yes (retention never expires it)".into()));
    }
    fields.push((
        "Type",
        match t.origin {
            Origin::Manual => "Manual".into(),
            Origin::Scheduled => "Scheduled".into(),
        },
    ));
    if let Some(s) = t.database_size {
        fields.push(("Original DB Size", format::bytes(s)));
    }
    match t.kind {
        TransferKind::Capture => {
            if let Some(stored) = t.object_size {
                // As Heroku: the compression is against the original database's size, and
                // left out when that size is unknown.
                let compression = t
                    .database_size
                    .map(|db| format!(" ({})", format::ratio(db, stored)))
                    .unwrap_or_default();
                fields.push((
                    "Backup Size",
                    format!("{}{compression}", format::bytes(stored)),
                ));
            }
            if let Some(d) = t.dump_size {
                fields.push(("Dump Size", format::bytes(d)));
            }
            if let Some(sha) = &t.sha256 {
                fields.push(("SHA-256", sha.clone()));
            }
            if let Some(enc) = &t.encryption {
                fields.push(("Encryption", enc.clone()));
            }
            // The roles kept beside the dump, for `backups:restore --roles`.
            if let Some(roles) = &t.roles {
                fields.push((
                    "Roles",
                    if roles.is_empty() {
                        "none besides the bootstrap superuser".into()
                    } else {
                        roles.join(", ")
                    },
                ));
            }
            fields.push((
                "Verified",
                t.detail
                    .clone()
                    .unwrap_or_else(|| "never (check it with `pgbackups backups:verify`)".into()),
            ));
        }
        TransferKind::Verify => {
            if let Some(d) = &t.detail {
                fields.push(("Result", d.clone()));
            }
        }
        TransferKind::Restore | TransferKind::Copy => {
            if let Some(d) = t.dump_size {
                fields.push(("Dump Size", format::bytes(d)));
            }
        }
    }
    if let Some(v) = &t.server_version {
        fields.push(("PostgreSQL", v.clone()));
    }
    if let Some(v) = &t.tool_version {
        let tool = if t.kind == TransferKind::Restore {
            "pg_restore"
        } else {
            "pg_dump"
        };
        fields.push(("Tool", format!("{tool} {v}")));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in fields {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    // What the target refused, each with the server's reason, before the whole log.
    let warned: Vec<&LogLine> = logs.iter().filter(|l| l.is_warning()).collect();
    if !warned.is_empty() {
        out.push_str("=== Warnings\n");
        for l in warned {
            let w = l.line.strip_prefix(LogLine::WARNING).unwrap_or(&l.line);
            out.push_str(&format!("{w}\n"));
        }
    }
    out.push_str(&format!("=== {what} Logs\n"));
    for l in logs {
        out.push_str(&format!("{} {}\n", format::time(l.at), l.line));
    }
    out
}

/// The `Verified` line of a backup: its newest verification among `all`, if any.
pub fn verified_detail(all: &[TransferRecord], backup: TransferId) -> Option<String> {
    let v = all
        .iter()
        .filter(|t| t.kind == TransferKind::Verify && t.backup_id == Some(backup))
        .max_by_key(|t| (t.created_at, t.id))?;
    let at = v.finished_at.map(format::time).unwrap_or_default();
    Some(match v.state {
        TransferState::Succeeded => format!(
            "OK {at} ({}: {})",
            v.id,
            v.detail.clone().unwrap_or_default()
        ),
        TransferState::Failed => format!(
            "FAILED {at} ({}: {})",
            v.id,
            v.error.clone().unwrap_or_default()
        ),
        other => format!("{} ({})", other.as_str(), v.id),
    })
}

/// What `catalog:rebuild` prints of the service's report.
pub fn rebuild_text(r: &RebuildReport) -> String {
    let ids = |v: &[TransferId]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "Recreated {} backup(s) from the store{}\n",
        r.added.len(),
        if r.added.is_empty() {
            String::new()
        } else {
            format!(": {}", ids(&r.added))
        }
    );
    if !r.present.is_empty() {
        out.push_str(&format!("Already in the catalog: {}\n", ids(&r.present)));
    }
    for (id, key) in &r.conflicts {
        out.push_str(&format!(
            "Not recreated: {key} is backup {id}, but {id} is already another backup here (made before the rebuild); the object stays in the store\n"
        ));
    }
    for key in &r.orphaned {
        out.push_str(&format!("Skipped {key}: its backup object is missing\n"));
    }
    for (key, why) in &r.unreadable {
        out.push_str(&format!("Skipped {key}: {why}\n"));
    }
    if !r.added.is_empty() {
        out.push_str(
            "Databases, schedules and retention are not in the store: add them again with databases:add and backups:schedule.\n",
        );
    }
    out
}

#[cfg(test)]
mod tests;
