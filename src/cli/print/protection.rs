//! What `protect` and `protection:info` print: pure functions from the service's answers (or
//! an archive read from the store) to text.

use crate::api::{BaseBackupView, ProtectionView, ReceiverState};
use crate::format;

use super::super::table::render;

/// The `protection:info` text.
pub fn protection_text(info: &crate::pitr::ArchiveInfo) -> String {
    let mut out = format!("=== Protection of {}\n", info.name);
    let window = match (&info.earliest, &info.latest_segment) {
        (Some(e), Some(l)) => format!("{} .. the end of WAL segment {l}", format::time(*e)),
        (None, _) => "none: no base backup yet (pgbackups base-backup)".into(),
        (Some(e), None) => format!("{} .. (no WAL archived yet)", format::time(*e)),
    };
    let last = info
        .base_backups
        .last()
        .map(|b| format!("{} (finished {})", b.id, format::time(b.finished_at)))
        .unwrap_or_else(|| "none".into());
    let rows = vec![
        vec!["Restorable window".to_string(), window],
        vec!["Last base backup".to_string(), last],
        vec![
            "Base backups".to_string(),
            info.base_backups.len().to_string(),
        ],
        vec![
            "WAL segments".to_string(),
            format!(
                "{} ({} of WAL), {} timeline histories",
                info.segments,
                format::bytes(info.segments as u64 * (16 << 20)),
                info.histories
            ),
        ],
        vec![
            "Gaps".to_string(),
            if info.gaps.is_empty() {
                "none".into()
            } else {
                format!("{} (see the warning below)", info.gaps.len())
            },
        ],
    ];
    out.push_str(&render(&["", ""], &rows));
    out
}

/// The text of one database's protection, as the service reports it.
pub fn protection_view_text(v: &ProtectionView) -> String {
    let time = |t: &Option<jiff::Timestamp>| t.map(format::time);
    let database = &v.database;
    let mut out = String::new();
    let live = v.live.as_ref();
    let archive = v.archive.as_ref();
    if v.protected {
        out.push_str(&format!(
            "=== {database}: protected (slot {}, since {})\n",
            v.slot.as_deref().unwrap_or_default(),
            time(&v.since).unwrap_or_default()
        ));
    } else {
        out.push_str(&format!(
            "=== {database}: not protected by this service (an archive-command archive)\n"
        ));
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |k: &str, val: String| rows.push(vec![k.to_string(), val]);
    if let Some(live) = live {
        row("Status", receiver_word(live.receiver).to_string());
    }
    let earliest = live
        .and_then(|l| time(&l.earliest))
        .or_else(|| archive.and_then(|a| time(&a.earliest)));
    let stored = match live.and_then(|l| Some((time(&l.stored_at)?, l.stored_lsn.as_deref()?))) {
        Some((at, lsn)) => format!("WAL stored up to {lsn} at {at}"),
        None => match archive.and_then(|a| a.latest_segment.as_deref()) {
            Some(seg) => format!("the end of WAL segment {seg}"),
            None => "no WAL stored yet".into(),
        },
    };
    row(
        "Restorable window",
        match earliest {
            Some(e) => format!("{e} .. {stored}"),
            None => "none yet: no base backup".into(),
        },
    );
    if let Some((b, s, retained)) =
        live.and_then(|l| Some((l.lag_bytes?, l.lag_seconds?, l.slot_retained_bytes)))
    {
        let retained = retained
            .map(|r| format!(" (the slot keeps {} on the server)", format::bytes(r)))
            .unwrap_or_default();
        row("WAL lag", format!("{}, {s} s{retained}", format::bytes(b)));
    }
    let last: Option<&BaseBackupView> = live
        .and_then(|l| l.last_base_backup.as_ref())
        .or_else(|| archive.and_then(|a| a.base_backups.last()));
    let mut base = last
        .map(|b| {
            format!(
                "{} (finished {}, {} stored)",
                b.id,
                format::time(b.finished_at),
                format::bytes(b.stored_bytes)
            )
        })
        .unwrap_or_else(|| "none yet".into());
    if live.is_some_and(|l| l.base_backup_running) {
        base.push_str("; one is running");
    } else if let Some(next) = live.and_then(|l| time(&l.next_base_backup_at)) {
        base.push_str(&format!("; next at {next}"));
    }
    row("Last base backup", base);
    let count = live
        .map(|l| l.base_backups)
        .or_else(|| archive.map(|a| a.base_backups.len()))
        .unwrap_or(0);
    let policy = match (v.base_every_secs, v.keep_base) {
        (Some(e), Some(k)) => format!(" (one every {}, the newest {k} kept)", format_duration(e)),
        _ => String::new(),
    };
    row("Base backups", format!("{count}{policy}"));
    if let Some(d) = live.and_then(|l| l.wal_bytes_per_day) {
        row("WAL per day", format!("about {}", format::bytes(d)));
    }
    let gaps = live
        .map(|l| l.gaps.len())
        .or_else(|| archive.map(|a| a.gaps.len()))
        .unwrap_or(0);
    row(
        "Gaps",
        if gaps == 0 {
            "none".into()
        } else {
            format!("{gaps} (see the warnings)")
        },
    );
    out.push_str(&render(&["", ""], &rows));
    out
}

/// The receiver's state as the API spells it.
fn receiver_word(r: ReceiverState) -> &'static str {
    match r {
        ReceiverState::Starting => "starting",
        ReceiverState::Streaming => "streaming",
        ReceiverState::Failing => "failing",
        ReceiverState::Stopped => "stopped",
    }
}

/// `1d`, `6h`, `90m`, `45s` for a number of seconds.
pub fn format_duration(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What `protect` prints of the service's answer.
pub fn protected_text(database: &str, v: &ProtectionView) -> String {
    format!(
        "Protecting {database}: its WAL streams into the store through replication slot {}; base backups every {}, the newest {} kept. The first base backup starts once the WAL streams; watch with `pgbackups protection:info {database}`.\n",
        v.slot.as_deref().unwrap_or("?"),
        format_duration(v.base_every_secs.unwrap_or(0)),
        v.keep_base.unwrap_or(0)
    )
}

/// The problems of the views, one `database: problem` line each, as the warnings say them.
pub fn problems(views: &[ProtectionView]) -> Vec<String> {
    views
        .iter()
        .flat_map(|v| v.problems.iter().map(|p| format!("{}: {p}", v.database)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ProtectionView {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(86_400), "1d");
        assert_eq!(format_duration(6 * 3600), "6h");
        assert_eq!(format_duration(90 * 60), "90m");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(0), "0s");
    }

    #[test]
    fn protect_answer() {
        let v = parse(
            r#"{"database": "main", "protected": true, "slot": "pgbackups_main", "base_every_secs": 21600, "keep_base": 7, "problems": []}"#,
        );
        assert_eq!(
            protected_text("main", &v),
            "Protecting main: its WAL streams into the store through replication slot pgbackups_main; base backups every 6h, the newest 7 kept. The first base backup starts once the WAL streams; watch with `pgbackups protection:info main`.\n"
        );
    }

    #[test]
    fn a_protected_database() {
        let v = parse(
            r#"{
              "database": "main", "protected": true, "slot": "pgbackups_main",
              "since": "2026-11-24T02:00:00Z", "base_every_secs": 86400, "keep_base": 7,
              "problems": ["WAL gap", "slot lost"],
              "live": {
                "receiver": "streaming", "earliest": "2026-11-24T02:01:00Z",
                "stored_at": "2026-11-25T02:00:00Z", "stored_lsn": "0/5000060",
                "lag_bytes": 2048, "lag_seconds": 3, "base_backups": 2,
                "receiver_restarts": 0, "base_backup_running": false,
                "last_base_backup": {"name": "main", "id": "base-2", "started_at": "2026-11-25T00:59:00Z",
                  "finished_at": "2026-11-25T01:00:00Z", "start_lsn": "0/2000028", "stop_lsn": "0/2000100",
                  "timeline": 1, "wal_segment_size": 16777216, "tar_bytes": 2097152, "stored_bytes": 1048576,
                  "sha256": "ab"},
                "next_base_backup_at": "2026-11-26T01:00:00Z", "gaps": []
              },
              "archive": null
            }"#,
        );
        let text = protection_view_text(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "=== main: protected (slot pgbackups_main, since 2026-11-24 02:00:00 +0000)"
        );
        assert!(text.contains("Status             streaming\n"), "{text}");
        assert!(
            text.contains("Restorable window  2026-11-24 02:01:00 +0000 .. WAL stored up to 0/5000060 at 2026-11-25 02:00:00 +0000\n"),
            "{text}"
        );
        assert!(text.contains("WAL lag            2"), "{text}");
        assert!(
            text.contains("Last base backup   base-2 (finished 2026-11-25 01:00:00 +0000, "),
            "{text}"
        );
        assert!(
            text.contains("; next at 2026-11-26 01:00:00 +0000\n"),
            "{text}"
        );
        assert!(
            text.contains("Base backups       2 (one every 1d, the newest 7 kept)\n"),
            "{text}"
        );
        assert!(text.ends_with("Gaps               none\n"), "{text}");
        assert_eq!(problems(&[v]), ["main: WAL gap", "main: slot lost"]);
    }

    #[test]
    fn an_archive_without_base_backups() {
        let v = parse(
            r#"{"database": "old", "protected": false, "problems": [],
                "archive": {"name": "old", "base_backups": [], "segments": 0, "histories": 0, "gaps": []}}"#,
        );
        let text = protection_view_text(&v);
        assert!(
            text.starts_with(
                "=== old: not protected by this service (an archive-command archive)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Restorable window  none yet: no base backup\n"),
            "{text}"
        );
        assert!(text.contains("Last base backup   none yet\n"), "{text}");
        assert!(problems(&[v]).is_empty());
    }

    #[test]
    fn an_archive_read_from_the_store() {
        let info = crate::pitr::ArchiveInfo {
            name: "main".into(),
            base_backups: vec![],
            earliest: None,
            latest_segment: Some("000000010000000000000003".into()),
            segments: 2,
            histories: 0,
            gaps: vec![("a".into(), "b".into())],
        };
        assert_eq!(
            protection_text(&info),
            "=== Protection of main\n\
             \n\
             ─────────────────  ────────────────────────────────────────────────\n\
             Restorable window  none: no base backup yet (pgbackups base-backup)\n\
             Last base backup   none\n\
             Base backups       0\n\
             WAL segments       2 (32.00MB of WAL), 0 timeline histories\n\
             Gaps               1 (see the warning below)\n"
        );
    }
}
