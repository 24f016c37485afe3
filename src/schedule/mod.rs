//! Daily schedules: "a capture every day at HH:MM in a time zone", correct across daylight
//! saving time changes.
//!
//! A run is identified by its database and its *local date* in the schedule's zone, so that
//! a restart (or later several nodes) never starts the same day's run twice. On the day the
//! local time does not exist (clocks jump over it) the run happens at the first moment after
//! the jump; on the day it exists twice (clocks fall back) it happens once, at the first.

pub mod retention;
mod scheduler;

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};

pub use crate::clock::{Clock, SystemClock, TestClock};
pub use scheduler::{Scheduler, StartError, Starter, spec_of};

/// A parsed `--at` value: a local time of day and the zone it is in.
#[derive(Clone, Debug)]
pub struct DailyAt {
    pub hour: i8,
    pub minute: i8,
    /// The IANA name of the zone (abbreviations are resolved to one).
    pub zone: String,
    tz: TimeZone,
}

/// Why an `--at` value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "`{0}` is not a time of day; use HH:MM ZONE, for example --at '02:00 America/Los_Angeles' or --at '14:30 UTC'"
    )]
    BadTime(String),
    #[error(
        "unknown time zone `{0}`; use an IANA name in Area/Location form as the tz database spells it, such as America/Los_Angeles, Europe/London or Etc/UTC, or one of the abbreviations {abbreviations}",
        abbreviations = ABBREVIATIONS.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
    )]
    UnknownZone(String),
}

/// Abbreviations people type, each mapped to the zone it usually means. A fixed offset would
/// be wrong half the year (PST in July is PDT), so each maps to a zone with its DST rules:
/// `PST` and `PDT` both mean America/Los_Angeles. MST means America/Denver (with DST); use
/// America/Phoenix for Arizona. IST means India. GMT means Europe/London, as in Heroku's
/// `pg:backups:schedule` (`--at '02:00 GMT'` is 02:00 on London's clocks all year, 01:00 UTC
/// during BST); UTC and Z are UTC.
pub const ABBREVIATIONS: &[(&str, &str)] = &[
    ("UTC", "UTC"),
    ("GMT", "Europe/London"),
    ("Z", "UTC"),
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("MST", "America/Denver"),
    ("MDT", "America/Denver"),
    ("CST", "America/Chicago"),
    ("CDT", "America/Chicago"),
    ("EST", "America/New_York"),
    ("EDT", "America/New_York"),
    ("AKST", "America/Anchorage"),
    ("AKDT", "America/Anchorage"),
    ("HST", "Pacific/Honolulu"),
    ("BST", "Europe/London"),
    ("WET", "Europe/Lisbon"),
    ("WEST", "Europe/Lisbon"),
    ("CET", "Europe/Paris"),
    ("CEST", "Europe/Paris"),
    ("EET", "Europe/Athens"),
    ("EEST", "Europe/Athens"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("KST", "Asia/Seoul"),
    ("AWST", "Australia/Perth"),
    ("ACST", "Australia/Adelaide"),
    ("ACDT", "Australia/Adelaide"),
    ("AEST", "Australia/Sydney"),
    ("AEDT", "Australia/Sydney"),
    ("NZST", "Pacific/Auckland"),
    ("NZDT", "Pacific/Auckland"),
];

impl DailyAt {
    /// Parses `HH:MM ZONE` (`02:00 America/Los_Angeles`, `2:30 PST`, `14:00`); the zone
    /// defaults to UTC.
    pub fn parse(spec: &str) -> Result<DailyAt, ScheduleError> {
        let bad = || ScheduleError::BadTime(crate::pg::redact(spec));
        let mut parts = spec.split_whitespace();
        let time = parts.next().ok_or_else(bad)?;
        let zone = parts.next().unwrap_or("UTC");
        if parts.next().is_some() {
            return Err(bad());
        }
        let (h, m) = time.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str, max_len| {
            !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
            return Err(bad());
        }
        let (hour, minute): (i8, i8) =
            (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
            return Err(bad());
        }
        if !is_listed_abbreviation(zone) && !is_area_location(zone) {
            return Err(ScheduleError::UnknownZone(crate::pg::redact(zone)));
        }
        Self::new(hour, minute, zone)
    }

    /// A schedule at `hour:minute` in `zone` (an IANA name or a listed abbreviation). Takes
    /// whatever zone the tz database knows, as a stored schedule's zone must still load;
    /// what a user types goes through [`DailyAt::parse`], which is strict.
    pub fn new(hour: i8, minute: i8, zone: &str) -> Result<DailyAt, ScheduleError> {
        let name = ABBREVIATIONS
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(zone))
            .map(|(_, z)| *z)
            .unwrap_or(zone);
        let tz = TimeZone::get(name).map_err(|_| ScheduleError::UnknownZone(zone.to_string()))?;
        let zone = tz.iana_name().unwrap_or(name).to_string();
        Ok(DailyAt {
            hour,
            minute,
            zone,
            tz,
        })
    }

    /// When the run of local date `date` happens.
    pub fn instant_on(&self, date: Date) -> Timestamp {
        let local = date.at(self.hour, self.minute, 0, 0);
        let ambiguous = self.tz.to_ambiguous_timestamp(local);
        let resolved = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => ambiguous.compatible(),
            // Twice on the clock: the first time, so the run happens once.
            AmbiguousOffset::Fold { .. } => ambiguous.earlier(),
            // Not on the clock: the first moment after the jump, which is the transition.
            AmbiguousOffset::Gap { .. } => ambiguous.earlier().map(|before| {
                self.tz
                    .following(before)
                    .next()
                    .map(|t| t.timestamp())
                    .unwrap_or(before)
            }),
        };
        // Resolution fails only outside jiff's supported years (-9999..=9999).
        resolved.unwrap_or(Timestamp::MAX)
    }

    /// The local date of an instant in this schedule's zone.
    pub fn local_date(&self, t: Timestamp) -> Date {
        self.tz.to_datetime(t).date()
    }

    /// The most recent run at or before `now`: its local date and instant.
    pub fn latest_due(&self, now: Timestamp) -> (Date, Timestamp) {
        let today = self.local_date(now);
        let t = self.instant_on(today);
        if t <= now {
            return (today, t);
        }
        match today.yesterday() {
            Ok(y) => (y, self.instant_on(y)),
            Err(_) => (today, t),
        }
    }

    /// The first run strictly after `now`: its local date and instant.
    pub fn next_after(&self, now: Timestamp) -> (Date, Timestamp) {
        let mut date = self.local_date(now);
        // At most two steps: today's run, else tomorrow's (a day after a gap can start in
        // the previous local date's evening only in zones that skip whole days).
        for _ in 0..3 {
            let t = self.instant_on(date);
            if t > now {
                return (date, t);
            }
            match date.tomorrow() {
                Ok(d) => date = d,
                Err(_) => break,
            }
        }
        (date, Timestamp::MAX)
    }

    /// What a person setting this schedule should see before saving it: the next `n` runs
    /// after `now`, and the first run after the zone's next clock change within a year (if it
    /// is not among them), so that the shift across DST is visible. In time order.
    pub fn preview(&self, now: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut runs = Vec::with_capacity(n + 1);
        let mut at = now;
        for _ in 0..n {
            let (_, t) = self.next_after(at);
            if t == Timestamp::MAX {
                break;
            }
            runs.push(t);
            at = t;
        }
        let year_later = now
            .saturating_add(jiff::SignedDuration::from_hours(24 * 366))
            .unwrap_or(Timestamp::MAX);
        let change = self
            .tz
            .following(now)
            .next()
            .map(|tr| tr.timestamp())
            .filter(|t| *t <= year_later);
        if let Some(change) = change {
            // A run that falls in the gap happens at the change itself: look from just before.
            let just_before = change
                .saturating_sub(jiff::SignedDuration::from_secs(1))
                .unwrap_or(change);
            let (_, t) = self.next_after(just_before);
            if t != Timestamp::MAX && runs.last().is_some_and(|last| t > *last) {
                runs.push(t);
            }
        }
        runs
    }

    /// The zone runs are computed in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// `02:00 America/Los_Angeles`.
    pub fn spec(&self) -> String {
        format!("{:02}:{:02} {}", self.hour, self.minute, self.zone)
    }

    /// An instant shown in this schedule's zone: `2026-11-25 02:00 PST`.
    pub fn show_local(&self, t: Timestamp) -> String {
        t.to_zoned_datetime(self.tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

/// One of [`ABBREVIATIONS`], in any case (`pst`, `UTC`).
fn is_listed_abbreviation(zone: &str) -> bool {
    ABBREVIATIONS
        .iter()
        .any(|(a, _)| a.eq_ignore_ascii_case(zone))
}

/// A zone of the tz database by its `Area/Location` name, spelled as the database spells it
/// (`America/Los_Angeles`, `America/Argentina/Buenos_Aires`, `Etc/UTC`). The system's zoneinfo
/// directory also holds files that are no zone a user means: `localtime` (this machine's
/// zone, which changes with it), `posixrules`, `Factory`, and the `posix/` and `right/` copies.
fn is_area_location(zone: &str) -> bool {
    let shaped = zone.contains('/')
        && zone.split('/').all(|part| {
            part.starts_with(|c: char| c.is_ascii_uppercase())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        });
    shaped
        && TimeZone::get(zone)
            .ok()
            .and_then(|tz| tz.iana_name().map(|n| n == zone))
            .unwrap_or(false)
}

impl fmt::Display for DailyAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

#[cfg(test)]
mod tests;
