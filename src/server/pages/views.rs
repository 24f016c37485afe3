//! What the dashboard's pages show, computed from the service's answers: pure functions from
//! records to the rows and cards the templates print, unit-tested without a server. The words
//! are the CLI's (`crate::words`), so a page and `pgbackups backups` never disagree.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::api::{ProtectionView, ReceiverState, Role, ScheduleView};
use crate::catalog::{
    DatabaseRecord, DatabaseSummary, TransferKind, TransferRecord, TransferState,
};
use crate::format;
use crate::words;

/// A backup older than this is a problem: Heroku's daily schedules make a day the promise.
const STALE_SECS: i64 = 24 * 3600;

/// What every page's frame shows: who is logged in, what they may do, the CSRF token its
/// forms carry, and an error to show above the content.
pub struct Layout {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub can_operate: bool,
    pub can_admin: bool,
    pub flash: Option<String>,
}

impl Layout {
    pub fn new(user: &str, role: Role, csrf: &str) -> Layout {
        Layout {
            user: user.to_string(),
            role,
            csrf: csrf.to_string(),
            can_operate: role >= Role::Operator,
            can_admin: role >= Role::Admin,
            flash: None,
        }
    }
}

/// The newest backup of a database, as the overview shows it.
pub struct BackupCell {
    pub id: String,
    pub status: String,
    pub class: &'static str,
    pub age: String,
    pub size: String,
}

/// One database on the overview.
pub struct OverviewRow {
    pub name: String,
    pub last_backup: Option<BackupCell>,
    pub next_run: Option<String>,
    pub restore_test: Option<String>,
    pub protection: Option<String>,
    pub problems: Vec<String>,
    pub running: usize,
}

/// Every registered database with what needs attention first: those with problems (the most
/// first), then those with something running, then by name. Each database's transfers are
/// its [`DatabaseSummary`] (the newest few the overview needs, not its history).
pub fn overview_rows(
    dbs: &[DatabaseRecord],
    summaries: &[DatabaseSummary],
    schedules: &[ScheduleView],
    protections: &[ProtectionView],
    now: Timestamp,
) -> Vec<OverviewRow> {
    let summaries: HashMap<&str, &DatabaseSummary> =
        summaries.iter().map(|s| (s.database.as_str(), s)).collect();
    let schedules: HashMap<&str, &ScheduleView> =
        schedules.iter().map(|s| (s.database.as_str(), s)).collect();
    let empty = DatabaseSummary::default();
    let mut rows: Vec<OverviewRow> = dbs
        .iter()
        .map(|db| {
            let summary = summaries.get(db.name.as_str()).copied().unwrap_or(&empty);
            let schedule = schedules.get(db.name.as_str()).copied();
            let protection = protections
                .iter()
                .find(|p| p.database == db.name && p.protected);
            overview_row(&db.name, summary, schedule, protection, now)
        })
        .collect();
    rows.sort_by(|a, b| {
        b.problems
            .len()
            .cmp(&a.problems.len())
            .then(b.running.cmp(&a.running))
            .then(a.name.cmp(&b.name))
    });
    rows
}

fn overview_row(
    name: &str,
    summary: &DatabaseSummary,
    schedule: Option<&ScheduleView>,
    protection: Option<&ProtectionView>,
    now: Timestamp,
) -> OverviewRow {
    let last = summary.last_capture.as_ref();
    let last_good = summary.last_backup.as_ref();
    let test = summary.last_restore_test.as_ref();
    let mut problems = Vec::new();
    if let Some(t) = last.filter(|t| is_failed(t)) {
        let why = t.error.as_deref().unwrap_or("no reason recorded");
        problems.push(format!("last capture {} failed: {why}", t.id));
    }
    match last_good {
        None => problems.push("no backup yet".to_string()),
        Some(t) if now.as_second() - t.created_at.as_second() > STALE_SECS => {
            problems.push(format!(
                "no backup in over a day (the newest is {})",
                ago(now, t.created_at)
            ));
        }
        Some(_) => {}
    }
    if let Some(p) = protection {
        problems.extend(p.problems.iter().cloned());
    }
    OverviewRow {
        name: name.to_string(),
        last_backup: last.map(|t| BackupCell {
            id: t.id.to_string(),
            status: state_word(t),
            class: state_class(t.state),
            age: ago(now, t.created_at),
            size: words::size_text(t),
        }),
        next_run: schedule.map(next_run_text),
        restore_test: test.map(|t| {
            let took = t
                .started_at
                .zip(t.finished_at)
                .map(|(s, f)| format!(", took {}", seconds_text(f.as_second() - s.as_second())))
                .unwrap_or_default();
            format!("{} ({}{took})", ago(now, t.created_at), t.id)
        }),
        protection: protection.map(|p| protection_text(p, now)),
        problems,
        running: summary.unfinished.iter().filter(|t| is_live(t)).count(),
    }
}

/// `2026-12-01 02:00 GMT (02:00 UTC)`.
pub fn next_run_text(s: &ScheduleView) -> String {
    format!(
        "{} ({} UTC)",
        s.next_run_local,
        s.next_run_at.strftime("%H:%M")
    )
}

/// A protected database in one line: its receiver, how far the store is behind the server,
/// and how far back a rollback reaches.
pub fn protection_text(p: &ProtectionView, now: Timestamp) -> String {
    let Some(live) = &p.live else {
        return "archived by wal-push".to_string();
    };
    let receiver = match live.receiver {
        ReceiverState::Starting => "starting",
        ReceiverState::Streaming => "streaming",
        ReceiverState::Failing => "receiver failing",
        ReceiverState::Stopped => "stopped",
    };
    let mut out = receiver.to_string();
    if let Some(secs) = live.lag_seconds {
        let bytes = live.lag_bytes.map(format::bytes).unwrap_or_default();
        out.push_str(&format!(" · WAL lag {} {bytes}", seconds_text(secs as i64)));
    }
    if let Some(e) = live.earliest {
        out.push_str(&format!(" · restorable since {}", ago(now, e)));
    }
    out
}

/// `just now`, `12 min ago`, `3 h ago`, `2 d ago`.
pub fn ago(now: Timestamp, t: Timestamp) -> String {
    let s = (now.as_second() - t.as_second()).max(0);
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `45 s`, `3 min 5 s`, `2 h 10 min`.
pub fn seconds_text(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// A transfer's state in a word or two, for the overview's narrow column (the age is beside
/// it): `Completed`, `Completed with 2 warnings`, `Failed`, `Running`.
fn state_word(t: &TransferRecord) -> String {
    match t.state {
        TransferState::Succeeded if t.warnings > 0 => words::completed_with(t.warnings),
        TransferState::Succeeded => "Completed".into(),
        TransferState::Failed | TransferState::Cancelled => "Failed".into(),
        TransferState::Running => "Running".into(),
        TransferState::Pending => "Pending".into(),
    }
}

/// The class a state's words are coloured with.
pub fn state_class(s: TransferState) -> &'static str {
    match s {
        TransferState::Succeeded => "ok",
        TransferState::Failed | TransferState::Cancelled => "bad",
        TransferState::Pending | TransferState::Running => "busy",
    }
}

fn is_failed(t: &TransferRecord) -> bool {
    matches!(t.state, TransferState::Failed | TransferState::Cancelled)
}

fn is_live(t: &TransferRecord) -> bool {
    matches!(t.state, TransferState::Pending | TransferState::Running)
}

/// A transfer as its live card shows it: state, progress (bytes, rate, ETA), error.
pub struct TransferCard {
    pub id: String,
    pub kind: &'static str,
    pub kind_title: &'static str,
    pub database: String,
    pub state: &'static str,
    pub status: String,
    pub class: &'static str,
    pub live: bool,
    pub progress: Option<Progress>,
    pub error: Option<String>,
}

/// How far a running transfer is: a `<progress>` value out of `max` (0 when the total is not
/// known), and `12.00MB of about 40.00MB · 8.00MB/s · about 4 s left`.
pub struct Progress {
    pub value: u64,
    pub max: u64,
    pub text: String,
}

pub fn transfer_card(t: &TransferRecord, now: Timestamp) -> TransferCard {
    let (kind, kind_title) = match t.kind {
        TransferKind::Capture => ("capture", "Backup"),
        TransferKind::Restore => ("restore", "Restore"),
        TransferKind::Copy => ("copy", "Copy"),
        TransferKind::Verify => ("verification", "Verification"),
    };
    TransferCard {
        id: t.id.to_string(),
        kind,
        kind_title,
        database: t.database.clone(),
        state: t.state.as_str(),
        status: words::status_text(t),
        class: state_class(t.state),
        live: is_live(t),
        progress: (t.state == TransferState::Running).then(|| progress(t, now)),
        error: t.error.clone(),
    }
}

/// Progress of a running transfer. The total is the dump's size for a restore, and for a
/// capture the database's size, which the dump only approaches (hence "about").
pub fn progress(t: &TransferRecord, now: Timestamp) -> Progress {
    let done = t.bytes_processed;
    let total = match t.kind {
        TransferKind::Capture => t.database_size,
        _ => t.dump_size,
    }
    .filter(|&n| n > 0);
    let elapsed = t
        .started_at
        .map(|s| (now.as_millisecond() - s.as_millisecond()).max(1) as f64 / 1000.0);
    let rate = elapsed.map(|e| done as f64 / e).filter(|r| *r > 0.0);
    let mut text = format::bytes(done);
    if let Some(total) = total {
        text.push_str(&format!(" of about {}", format::bytes(total)));
    }
    if let Some(r) = rate {
        text.push_str(&format!(" · {}/s", format::bytes(r as u64)));
        if let Some(total) = total.filter(|&n| n > done) {
            let left = ((total - done) as f64 / r).ceil() as i64;
            text.push_str(&format!(" · about {} left", seconds_text(left)));
        }
    }
    Progress {
        value: done.min(total.unwrap_or(0)),
        max: total.unwrap_or(0),
        text,
    }
}

/// A backup in a database's list.
pub struct BackupRow {
    pub id: String,
    pub created: String,
    pub state: &'static str,
    pub status: String,
    pub class: &'static str,
    pub size: String,
    pub pinned: bool,
}

pub fn backup_row(t: &TransferRecord) -> BackupRow {
    BackupRow {
        id: t.id.to_string(),
        created: format::time(t.created_at),
        state: t.state.as_str(),
        status: words::status_text(t),
        class: state_class(t.state),
        size: words::size_text(t),
        pinned: t.pinned,
    }
}

/// A restore, copy or verification in a database's list.
pub struct OtherRow {
    pub id: String,
    pub what: String,
    pub created: String,
    pub state: &'static str,
    pub status: String,
    pub class: &'static str,
}

pub fn other_row(t: &TransferRecord) -> OtherRow {
    let from = t
        .backup_id
        .map(|b| b.to_string())
        .or_else(|| t.source.clone())
        .unwrap_or_default();
    let what = match t.kind {
        TransferKind::Restore => format!("restore of {from}"),
        TransferKind::Copy => format!("copy from {from}"),
        TransferKind::Verify => format!("verification of {from}"),
        TransferKind::Capture => "capture".to_string(),
    };
    OtherRow {
        id: t.id.to_string(),
        what,
        created: format::time(t.created_at),
        state: t.state.as_str(),
        status: words::status_text(t),
        class: state_class(t.state),
    }
}

/// A transfer's fields on its page, as `backups:info` lists them.
pub fn transfer_fields(t: &TransferRecord) -> Vec<(&'static str, String)> {
    let mut f = vec![("Database", t.database.clone())];
    if let Some(b) = t.backup_id {
        f.push(("Backup", b.to_string()));
    }
    if let Some(src) = &t.source {
        f.push(("Source", src.clone()));
    }
    f.push((
        "Origin",
        match t.origin {
            crate::catalog::Origin::Manual => "manual".to_string(),
            crate::catalog::Origin::Scheduled => "scheduled".to_string(),
        },
    ));
    f.push(("Created at", format::time(t.created_at)));
    if let Some(s) = t.started_at {
        f.push(("Started at", format::time(s)));
    }
    if let Some(e) = t.finished_at {
        f.push(("Finished at", format::time(e)));
    }
    if let (Some(s), Some(e)) = (t.started_at, t.finished_at) {
        f.push(("Took", seconds_text(e.as_second() - s.as_second())));
    }
    if let Some(n) = t.database_size {
        f.push(("Database size", format::bytes(n)));
    }
    if t.kind == TransferKind::Capture
        && let Some(n) = t.object_size
    {
        let ratio = format::ratio(t.database_size.unwrap_or(0), n);
        f.push(("Backup size", format!("{} ({ratio})", format::bytes(n))));
    }
    if let Some(v) = &t.server_version {
        f.push(("Server version", v.clone()));
    }
    if let Some(d) = &t.detail {
        f.push(("Verified", d.clone()));
    }
    if t.pinned {
        f.push(("Pinned", "yes: never expired".to_string()));
    }
    f
}

/// How an audited request ended, in words: `done` or why not.
pub fn status_words(status: u16) -> String {
    match status {
        200..=399 => "done".to_string(),
        401 => "refused: not logged in".to_string(),
        403 => "refused: not allowed".to_string(),
        400..=499 => format!("refused ({status})"),
        _ => format!("failed ({status})"),
    }
}

#[cfg(test)]
mod tests;
