//! What the commands print: pure functions from the service's answers to text, one module
//! per command group where there is much of it. The commands write the text out.

pub mod protection;
pub mod team;
pub mod transfers;

use crate::api::{RetentionView, ScheduleView};
use crate::catalog::{DatabaseRecord, VerifyMode};
use crate::format;

use super::table::render;

/// The `databases` listing.
pub fn databases_listing(dbs: &[DatabaseRecord]) -> String {
    if dbs.is_empty() {
        return "No databases registered. Add one with `pgbackups databases:add NAME postgres://...`.\n".into();
    }
    let rows = dbs
        .iter()
        .map(|d| vec![d.name.clone(), d.url.clone(), format::time(d.created_at)])
        .collect::<Vec<_>>();
    format!(
        "=== Databases\n{}",
        render(&["Name", "URL", "Added at"], &rows)
    )
}

/// The `backups:schedules` listing.
pub fn schedules_listing(all: &[ScheduleView]) -> String {
    if all.is_empty() {
        return "No backup schedules. Add one with `pgbackups backups:schedule DATABASE --at '02:00 UTC'`.\n".into();
    }
    let rows = all
        .iter()
        .map(|s| {
            let r = &s.retention;
            vec![
                s.database.clone(),
                format!("daily at {}", s.at),
                s.next_run_local.clone(),
                format::time(s.next_run_at),
                format!(
                    "{} daily, {} weekly, {} monthly, {} manual",
                    r.daily, r.weekly, r.monthly, r.manual
                ),
                match s.verify {
                    VerifyMode::Checksum => "checksum".to_string(),
                    VerifyMode::Restore => "restore test".to_string(),
                    VerifyMode::Off => "no".to_string(),
                },
            ]
        })
        .collect::<Vec<_>>();
    format!(
        "=== Backup Schedules\n{}",
        render(
            &[
                "Database",
                "Schedule",
                "Next run",
                "Next run (UTC)",
                "Keeps",
                "Verify"
            ],
            &rows
        )
    )
}

/// What `backups:schedule` prints of the new schedule.
pub fn scheduled_text(s: &ScheduleView) -> String {
    format!(
        "Scheduled automatic daily backups of {} at {}; next: {} ({} UTC)\n",
        s.database, s.at, s.next_run_local, s.next_run_at
    )
}

/// What `backups:retention` prints of a database's retention.
pub fn retention_text(v: &RetentionView) -> String {
    let p = &v.policy;
    format!(
        "{} keeps: {} manual; scheduled: {} daily, {} weekly, {} monthly{} (pinned backups are always kept)\n",
        v.database,
        p.manual,
        p.daily,
        p.weekly,
        p.monthly,
        if v.default { " (the default)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn databases() {
        assert!(databases_listing(&[]).starts_with("No databases registered."));
        let dbs = [DatabaseRecord {
            name: "main".into(),
            url: "postgres://app:xxxxx@db/main".into(),
            created_at: "2026-11-24T02:00:00Z".parse().unwrap_or_default(),
        }];
        assert_eq!(
            databases_listing(&dbs),
            "=== Databases\n\
             Name  URL                           Added at\n\
             ────  ────────────────────────────  ─────────────────────────\n\
             main  postgres://app:xxxxx@db/main  2026-11-24 02:00:00 +0000\n"
        );
    }

    #[test]
    fn schedules() {
        assert!(schedules_listing(&[]).starts_with("No backup schedules."));
        let s: ScheduleView = parse(
            r#"{"database": "main", "at": "02:00 UTC", "zone": "UTC", "created_at": "2026-11-24T00:00:00Z",
                "next_run_local": "2026-11-25 02:00 UTC",
                "next_run_at": "2026-11-25T02:00:00Z", "verify": "restore",
                "retention": {"daily": 7, "weekly": 4, "monthly": 12, "manual": 5}}"#,
        );
        let text = schedules_listing(std::slice::from_ref(&s));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "=== Backup Schedules");
        assert_eq!(
            lines[3],
            "main      daily at 02:00 UTC  2026-11-25 02:00 UTC  2026-11-25 02:00:00 +0000  7 daily, 4 weekly, 12 monthly, 5 manual  restore test"
        );
        assert_eq!(
            scheduled_text(&s),
            "Scheduled automatic daily backups of main at 02:00 UTC; next: 2026-11-25 02:00 UTC (2026-11-25T02:00:00Z UTC)\n"
        );
    }

    #[test]
    fn retention() {
        let v: RetentionView = parse(
            r#"{"database": "main", "daily": 7, "weekly": 4, "monthly": 0, "manual": 5, "default": true}"#,
        );
        assert_eq!(
            retention_text(&v),
            "main keeps: 5 manual; scheduled: 7 daily, 4 weekly, 0 monthly (the default) (pinned backups are always kept)\n"
        );
    }
}
