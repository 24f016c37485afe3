//! A protected database's section of its page: the stream's state, the restorable window as a
//! timeline with its base backups, and the exact `pgbackups rollback` or `fork` command for a
//! moment picked in it.

use jiff::Timestamp;

use crate::api::ProtectionView;
use crate::pg::wal_names::Lsn;

use super::charts;
use super::views;

/// What the protection section shows.
pub struct ProtectionSection {
    pub summary: String,
    pub problems: Vec<String>,
    pub timeline: String,
    /// The window's ends as a `datetime-local` input takes them (UTC, to the second, the start
    /// rounded up so that picking it is inside the window): `2026-11-30T12:00:05`.
    pub earliest: String,
    pub latest: String,
    pub wal_per_day: Option<String>,
    /// The lag over the last day as a chart (empty before the first sample).
    pub lag_chart: String,
    /// WAL written per day between base backups (and since the newest), as a chart.
    pub wal_chart: String,
    /// The moment picked, as typed, and its command or why there is none.
    pub at: String,
    pub rollback: Option<Rollback>,
    pub fork: String,
}

/// What the page says for a moment picked: the command, or why there is none.
pub enum Rollback {
    Command(String),
    Refused(String),
}

/// The section for `name`'s protection `v`, with the command for `at` if one was picked.
pub fn section(
    name: &str,
    v: &ProtectionView,
    now: Timestamp,
    at: Option<&str>,
) -> ProtectionSection {
    let live = v.live.as_ref();
    let earliest = live.and_then(|l| l.earliest);
    // Every base backup when the archive was read, else the newest the stream knows.
    let bases: Vec<&crate::api::BaseBackupView> = match &v.archive {
        Some(a) if !a.base_backups.is_empty() => a.base_backups.iter().collect(),
        _ => live
            .and_then(|l| l.last_base_backup.as_ref())
            .into_iter()
            .collect(),
    };
    let ticks: Vec<(i64, String)> = bases
        .iter()
        .map(|b| (b.finished_at.as_second(), format!("base backup {}", b.id)))
        .collect();
    let server = live
        .and_then(|l| l.server_lsn.as_deref())
        .and_then(|s| s.parse::<Lsn>().ok());
    let local = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    ProtectionSection {
        summary: views::protection_text(v, now),
        problems: v.problems.clone(),
        timeline: earliest
            .map(|e| charts::timeline(e.as_second(), now.as_second(), &ticks))
            .unwrap_or_default(),
        earliest: earliest
            .map(|e| {
                let up = i64::from(e.subsec_nanosecond() > 0);
                local(Timestamp::from_second(e.as_second() + up).unwrap_or(e))
            })
            .unwrap_or_default(),
        latest: local(now),
        wal_per_day: live
            .and_then(|l| l.wal_bytes_per_day)
            .map(|n| format!("{} of WAL per day", crate::format::bytes(n))),
        lag_chart: live.map(|l| lag_chart(&l.lag_history)).unwrap_or_default(),
        wal_chart: wal_chart(&bases, server.map(|s| (now, s))),
        at: at.unwrap_or_default().to_string(),
        rollback: at
            .filter(|a| !a.trim().is_empty())
            .map(|a| rollback_command(name, a, earliest, now)),
        fork: format!("pgbackups fork {name} --target-dir /srv/pg/{name}-fork --port 5433 --start"),
    }
}

/// WAL the server wrote per day between consecutive base backups, and from the newest to
/// `now` (the server's position then): one bar per interval, from the backups' WAL positions.
fn wal_chart(bases: &[&crate::api::BaseBackupView], now: Option<(Timestamp, Lsn)>) -> String {
    let mut points: Vec<(Timestamp, u64)> = bases
        .iter()
        .map(|b| (b.started_at, b.start_lsn.0))
        .collect();
    points.sort();
    if let Some((t, lsn)) = now {
        points.push((t, lsn.0));
    }
    let bars: Vec<charts::Bar> = points
        .windows(2)
        .filter_map(|w| {
            let ((t0, l0), (t1, l1)) = (w[0], w[1]);
            let days = (t1.as_second() - t0.as_second()) as f64 / 86_400.0;
            (days > 0.0 && l1 >= l0).then(|| {
                let per_day = ((l1 - l0) as f64 / days) as u64;
                charts::Bar {
                    label: format!(
                        "{} to {}: {} per day",
                        t0.strftime("%m-%d %H:%M"),
                        t1.strftime("%m-%d %H:%M"),
                        crate::format::bytes(per_day)
                    ),
                    value: per_day as f64,
                }
            })
        })
        .collect();
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max) as u64;
    charts::bar_chart(
        "WAL written per day, between base backups",
        &bars,
        &format!("{}/day", crate::format::bytes(max)),
    )
}

/// The lag over the last day, one bar per five minutes (the worst lag in it).
fn lag_chart(history: &[(Timestamp, u64)]) -> String {
    let bars: Vec<charts::Bar> = history
        .iter()
        .map(|(t, secs)| charts::Bar {
            label: format!("{} UTC: {secs} s behind", t.strftime("%H:%M")),
            value: *secs as f64,
        })
        .collect();
    let max = history.iter().map(|(_, s)| *s).max().unwrap_or(0);
    charts::bar_chart(
        "WAL lag over the last day, every five minutes",
        &bars,
        &format!("{max} s"),
    )
}

/// The rollback command for the moment `at` (a `datetime-local` value, read as UTC, or an
/// RFC 3339 time), or why there is none: not a time, or outside the window.
pub fn rollback_command(
    name: &str,
    at: &str,
    earliest: Option<Timestamp>,
    now: Timestamp,
) -> Rollback {
    match command_for(name, at, earliest, now) {
        Ok(cmd) => Rollback::Command(cmd),
        Err(why) => Rollback::Refused(why.0),
    }
}

/// Why a moment has no rollback command, in words.
struct Refusal(String);

fn command_for(
    name: &str,
    at: &str,
    earliest: Option<Timestamp>,
    now: Timestamp,
) -> Result<String, Refusal> {
    let at = at.trim();
    let t: Timestamp = at
        .parse()
        .or_else(|_| {
            let with_seconds = if at.len() == 16 {
                format!("{at}:00")
            } else {
                at.to_string()
            };
            jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S", &with_seconds)
                .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC))
                .map(|z| z.timestamp())
        })
        .map_err(|_| {
            Refusal(format!(
                "`{at}` is not a moment: pick one as 2026-11-30T12:00 (UTC)"
            ))
        })?;
    let Some(earliest) = earliest else {
        return Err(Refusal(
            "there is no restorable window yet: the first base backup is not stored".into(),
        ));
    };
    if t < earliest || t > now {
        return Err(Refusal(format!(
            "{} is outside the restorable window, from {} to now",
            crate::format::time(t),
            crate::format::time(earliest)
        )));
    }
    let when = t.strftime("%Y-%m-%dT%H:%M:%SZ");
    let dir = t.strftime("%Y%m%dT%H%M%S");
    Ok(format!(
        "pgbackups rollback {name} --to {when} --target-dir /srv/pg/{name}-{dir} --port 5433 --start"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_in_the_window_gives_the_exact_rollback_command() {
        let earliest: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-11-30T18:00:00Z".parse().unwrap();
        let said = |at: &str, earliest: Option<Timestamp>| match rollback_command(
            "main", at, earliest, now,
        ) {
            Rollback::Command(c) => format!("command: {c}"),
            Rollback::Refused(why) => format!("refused: {why}"),
        };
        assert_eq!(
            said("2026-11-30T12:00", Some(earliest)),
            "command: pgbackups rollback main --to 2026-11-30T12:00:00Z --target-dir /srv/pg/main-20261130T120000 --port 5433 --start"
        );
        assert!(said("2026-11-28T12:00", Some(earliest)).contains("outside the restorable window"));
        assert!(
            said("yesterday", Some(earliest)).starts_with("refused: `yesterday` is not a moment")
        );
        assert!(said("2026-11-30T12:00", None).contains("no restorable window yet"));
    }

    #[test]
    fn a_protected_database_shows_its_lag_over_the_day_and_the_fork_command() {
        let now: Timestamp = "2026-11-30T18:00:00Z".parse().unwrap();
        let v = ProtectionView {
            database: "main".into(),
            protected: true,
            slot: Some("pgbackups_main".into()),
            base_every_secs: None,
            keep_base: None,
            since: None,
            live: Some(crate::api::LiveView {
                lag_seconds: Some(1),
                lag_bytes: Some(100),
                earliest: Some("2026-11-30T00:00:00Z".parse().unwrap()),
                lag_history: vec![
                    ("2026-11-30T17:50:00Z".parse().unwrap(), 3),
                    ("2026-11-30T17:55:00Z".parse().unwrap(), 1),
                ],
                ..crate::api::LiveView::default()
            }),
            archive: None,
            problems: Vec::new(),
        };
        let p = section("main", &v, now, None);
        assert!(
            p.lag_chart.contains("17:50 UTC: 3 s behind"),
            "{}",
            p.lag_chart
        );
        assert!(p.timeline.starts_with("<svg"));
        assert_eq!(p.earliest, "2026-11-30T00:00:00");
        assert!(p.fork.starts_with("pgbackups fork main --target-dir"));
        assert!(p.rollback.is_none());
    }

    #[test]
    fn wal_per_day_is_measured_between_base_backups_and_since_the_newest() {
        let base = |day: &str, lsn: u64| crate::api::BaseBackupView {
            name: "main".into(),
            id: day.into(),
            started_at: format!("2026-11-{day}T00:00:00Z").parse().unwrap(),
            finished_at: format!("2026-11-{day}T00:10:00Z").parse().unwrap(),
            start_lsn: Lsn(lsn),
            stop_lsn: Lsn(lsn + 100),
            timeline: 1,
            wal_segment_size: 16 << 20,
            tar_bytes: 1,
            stored_bytes: 1,
            sha256: String::new(),
            frames: Vec::new(),
        };
        let (a, b) = (base("28", 0), base("29", 1 << 30));
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let svg = wal_chart(&[&b, &a], Some((now, Lsn(3 << 29))));
        assert!(
            svg.contains("11-28 00:00 to 11-29 00:00: 1.00GB per day"),
            "{svg}"
        );
        assert!(
            svg.contains("11-29 00:00 to 11-29 12:00: 1.00GB per day"),
            "{svg}"
        );
        assert_eq!(wal_chart(&[&a], None), "");
    }
}
