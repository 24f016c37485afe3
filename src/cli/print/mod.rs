//! What the commands print: pure functions from the service's answers to text, one module
//! per command group where there is much of it. The commands write the text out.

pub mod protection;
pub mod transfers;

use crate::catalog::DatabaseRecord;
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
pub fn schedules_listing(all: &[serde_json::Value]) -> String {
    if all.is_empty() {
        return "No backup schedules. Add one with `pgbackups backups:schedule DATABASE --at '02:00 UTC'`.\n".into();
    }
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let rows = all
        .iter()
        .map(|s| {
            vec![
                text(s, "database"),
                format!("daily at {}", text(s, "at")),
                text(s, "next_run_local"),
                s["next_run_at"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(format::time)
                    .unwrap_or_default(),
                {
                    let r = &s["retention"];
                    let n = |k: &str| r[k].as_u64().unwrap_or(0);
                    format!(
                        "{} daily, {} weekly, {} monthly, {} manual",
                        n("daily"),
                        n("weekly"),
                        n("monthly"),
                        n("manual")
                    )
                },
                match text(s, "verify").as_str() {
                    "checksum" => "checksum".to_string(),
                    "restore" => "restore test".to_string(),
                    _ => "no".to_string(),
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
pub fn scheduled_text(s: &serde_json::Value) -> String {
    let field = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    format!(
        "Scheduled automatic daily backups of {} at {}; next: {} ({} UTC)\n",
        field("database"),
        field("at"),
        field("next_run_local"),
        field("next_run_at")
    )
}

/// What `backups:retention` prints of a database's retention (`database` when the answer
/// does not name it).
pub fn retention_text(database: &str, v: &serde_json::Value) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    format!(
        "{} keeps: {} manual; scheduled: {} daily, {} weekly, {} monthly{} (pinned backups are always kept)\n",
        v["database"].as_str().unwrap_or(database),
        n("manual"),
        n("daily"),
        n("weekly"),
        n("monthly"),
        if v["default"].as_bool() == Some(true) {
            " (the default)"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> serde_json::Value {
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
        let s = parse(
            r#"{"database": "main", "at": "02:00 UTC", "next_run_local": "2026-11-25 02:00 UTC",
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
        let v = parse(
            r#"{"database": "main", "daily": 7, "weekly": 4, "monthly": 0, "manual": 5, "default": true}"#,
        );
        assert_eq!(
            retention_text("x", &v),
            "main keeps: 5 manual; scheduled: 7 daily, 4 weekly, 0 monthly (the default) (pinned backups are always kept)\n"
        );
    }
}
