//! What `backups`, `backups:info` and `catalog:rebuild` print: pure functions from the
//! service's answers to text.

use crate::api::RebuildReport;
use crate::catalog::{LogLine, Origin, TransferId, TransferKind, TransferRecord, TransferState};
use crate::format;

use super::super::table::render;

/// `Completed 2026-11-24 02:00:13 +0000`, `Running (12.3MB processed)`, ...
pub fn status_text(t: &TransferRecord) -> String {
    let at = t.finished_at.map(format::time).unwrap_or_default();
    match t.state {
        TransferState::Pending => "Pending".into(),
        TransferState::Running => {
            format!("Running ({} processed)", format::bytes(t.bytes_processed))
        }
        TransferState::Succeeded if t.kind == TransferKind::Capture => format!("Completed {at}"),
        TransferState::Succeeded => format!("Finished {at}"),
        TransferState::Failed => format!("Failed {at}"),
        TransferState::Cancelled => format!("Cancelled {at}"),
    }
}

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

/// The `pgbackups backups` listing: backups, then restores, newest first.
pub fn backups_listing(all: &[TransferRecord]) -> String {
    let mut out = String::from("=== Backups\n");
    let mut captures: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Capture)
        .collect();
    captures.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    if captures.is_empty() {
        out.push_str("No backups. Capture one with `pgbackups backups:capture`.\n");
    } else {
        let rows = captures
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    format::time(t.created_at),
                    status_text(t),
                    size_text(t),
                    t.database.clone(),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Created at", "Status", "Size", "Database"],
            &rows,
        ));
    }
    out.push_str("\n=== Restores\n");
    let mut restores: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Restore)
        .collect();
    restores.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    if restores.is_empty() {
        out.push_str("No restores found. Use `pgbackups backups:restore` to restore a backup.\n");
    } else {
        let rows = restores
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    size_text(t),
                    format!(
                        "{} → {}",
                        t.backup_id
                            .map(|b| b.to_string())
                            .or(t.source.clone())
                            .unwrap_or_default(),
                        t.database
                    ),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Size", "From → To"],
            &rows,
        ));
    }
    let mut checks: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Verify)
        .collect();
    if !checks.is_empty() {
        out.push_str("\n=== Verifications\n");
        checks.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
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
    let mut copies: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Copy)
        .collect();
    if !copies.is_empty() {
        out.push_str("\n=== Copies\n");
        copies.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let rows = copies
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    size_text(t),
                    format!("{} → {}", t.source.clone().unwrap_or_default(), t.database),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Size", "From → To"],
            &rows,
        ));
    }
    out
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
        TransferState::Succeeded if t.kind == TransferKind::Restore => "Finished".into(),
        TransferState::Succeeded => "Completed".into(),
        TransferState::Failed => "Failed".into(),
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
            if let (Some(stored), Some(dump)) = (t.object_size, t.dump_size) {
                fields.push((
                    "Backup Size",
                    format!(
                        "{} ({}; dump {})",
                        format::bytes(stored),
                        format::ratio(dump, stored),
                        format::bytes(dump)
                    ),
                ));
            }
            if let Some(sha) = &t.sha256 {
                fields.push(("SHA-256", sha.clone()));
            }
            if let Some(enc) = &t.encryption {
                fields.push(("Encryption", enc.clone()));
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
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn record(id: &str, kind: TransferKind, database: &str, created: &str) -> TransferRecord {
        let id = id.parse().unwrap_or_else(|e| panic!("{id}: {e}"));
        TransferRecord::new(id, kind, Origin::Manual, database.into(), at(created))
    }

    fn done(mut t: TransferRecord, started: &str, finished: &str) -> TransferRecord {
        t.state = TransferState::Succeeded;
        t.started_at = Some(at(started));
        t.finished_at = Some(at(finished));
        t
    }

    #[test]
    fn listing_of_nothing() {
        assert_eq!(
            backups_listing(&[]),
            "=== Backups\nNo backups. Capture one with `pgbackups backups:capture`.\n\n=== Restores\nNo restores found. Use `pgbackups backups:restore` to restore a backup.\n"
        );
    }

    #[test]
    fn listing_newest_first_with_restores_and_copies() {
        let mut b1 = done(
            record(
                "b001",
                TransferKind::Capture,
                "main",
                "2026-11-24T02:00:00Z",
            ),
            "2026-11-24T02:00:00Z",
            "2026-11-24T02:00:13Z",
        );
        b1.object_size = Some(1_500_000);
        let mut b2 = record(
            "b002",
            TransferKind::Capture,
            "main",
            "2026-11-25T02:00:00Z",
        );
        b2.state = TransferState::Running;
        b2.bytes_processed = 2_000_000;
        let mut r1 = done(
            record(
                "r001",
                TransferKind::Restore,
                "staging",
                "2026-11-24T03:00:00Z",
            ),
            "2026-11-24T03:00:01Z",
            "2026-11-24T03:00:09Z",
        );
        r1.backup_id = b1.id.into();
        r1.dump_size = Some(3_000_000);
        let mut c1 = record("c001", TransferKind::Copy, "dev", "2026-11-24T04:00:00Z");
        c1.state = TransferState::Failed;
        c1.source = Some("main".into());
        c1.started_at = Some(at("2026-11-24T04:00:00Z"));
        c1.finished_at = Some(at("2026-11-24T04:00:02Z"));
        let text = backups_listing(&[b1, r1, c1, b2]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "=== Backups");
        assert!(lines[1].starts_with("ID    Created at"), "{text}");
        assert!(
            lines[3].starts_with("b002  2026-11-25 02:00:00 +0000  Running (2"),
            "{text}"
        );
        assert!(
            lines[4].starts_with(
                "b001  2026-11-24 02:00:00 +0000  Completed 2026-11-24 02:00:13 +0000"
            ),
            "{text}"
        );
        assert!(lines[4].ends_with("main"), "{text}");
        assert_eq!(lines[6], "=== Restores");
        assert!(
            lines[9]
                .starts_with("r001  2026-11-24 03:00:01 +0000  Finished 2026-11-24 03:00:09 +0000"),
            "{text}"
        );
        assert!(lines[9].ends_with("b001 → staging"), "{text}");
        assert!(!text.contains("=== Verifications"), "{text}");
        assert!(text.contains("\n=== Copies\n"), "{text}");
        assert!(text.trim_end().ends_with("main → dev"), "{text}");
        assert!(
            text.contains("c001  2026-11-24 04:00:00 +0000  Failed 2026-11-24 04:00:02 +0000"),
            "{text}"
        );
    }

    #[test]
    fn info_of_a_backup_with_its_log() {
        let mut b = done(
            record(
                "b001",
                TransferKind::Capture,
                "main",
                "2026-11-24T02:00:00Z",
            ),
            "2026-11-24T02:00:00Z",
            "2026-11-24T02:00:13Z",
        );
        b.sha256 = Some("ab12".into());
        b.tool_version = Some("15.4".into());
        let logs = [LogLine {
            seq: 1,
            at: at("2026-11-24T02:00:01Z"),
            line: "pg_dump: dumping contents of table \"public.t\"".into(),
        }];
        let text = info_text(&b, &logs);
        assert_eq!(
            text,
            "=== Backup b001\n\
             Database:    main\n\
             Started at:  2026-11-24 02:00:00 +0000\n\
             Finished at: 2026-11-24 02:00:13 +0000\n\
             Status:      Completed\n\
             Type:        Manual\n\
             SHA-256:     ab12\n\
             Verified:    never (check it with `pgbackups backups:verify`)\n\
             Tool:        pg_dump 15.4\n\
             === Backup Logs\n\
             2026-11-24 02:00:01 +0000 pg_dump: dumping contents of table \"public.t\"\n"
        );
    }

    #[test]
    fn the_newest_verification_is_the_verified_line() {
        let b = record(
            "b001",
            TransferKind::Capture,
            "main",
            "2026-11-24T02:00:00Z",
        );
        let mut v1 = done(
            record("v001", TransferKind::Verify, "main", "2026-11-24T03:00:00Z"),
            "2026-11-24T03:00:00Z",
            "2026-11-24T03:00:05Z",
        );
        v1.backup_id = Some(b.id);
        v1.detail = Some("checksum OK".into());
        let mut v2 = v1.clone();
        v2.id = "v002".parse().unwrap_or_else(|e| panic!("{e}"));
        v2.created_at = at("2026-11-25T03:00:00Z");
        v2.state = TransferState::Failed;
        v2.error = Some("sha mismatch".into());
        assert_eq!(verified_detail(std::slice::from_ref(&b), b.id), None);
        assert_eq!(
            verified_detail(&[b.clone(), v1.clone()], b.id).as_deref(),
            Some("OK 2026-11-24 03:00:05 +0000 (v001: checksum OK)")
        );
        assert_eq!(
            verified_detail(&[v2, b.clone(), v1], b.id).as_deref(),
            Some("FAILED 2026-11-24 03:00:05 +0000 (v002: sha mismatch)")
        );
    }

    #[test]
    fn rebuild_report() {
        let id = |s: &str| s.parse::<TransferId>().unwrap_or_else(|e| panic!("{e}"));
        let r = RebuildReport {
            added: vec![id("b001"), id("b002")],
            present: vec![id("b003")],
            unreadable: vec![("backups/x.manifest".into(), "not JSON".into())],
            orphaned: vec![],
            conflicts: vec![],
        };
        assert_eq!(
            rebuild_text(&r),
            "Recreated 2 backup(s) from the store: b001, b002\n\
             Already in the catalog: b003\n\
             Skipped backups/x.manifest: not JSON\n\
             Databases, schedules and retention are not in the store: add them again with databases:add and backups:schedule.\n"
        );
    }
}
