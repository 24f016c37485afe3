//! Which backups to keep: the newest N manual ones, and for scheduled ones the newest of each
//! of the last N days, N weeks and N months (grandfather-father-son). Pinned backups are
//! always kept. Ordering is by capture time, never by name.

use std::collections::HashSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::catalog::{Origin, TransferId};

/// How many backups of each kind a database keeps (a plain record of the catalog's).
pub use crate::catalog::RetentionPolicy as Policy;

/// What retention needs to know of a completed backup.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: TransferId,
    pub origin: Origin,
    /// When the capture started: the order retention goes by.
    pub captured_at: Timestamp,
    pub pinned: bool,
}

/// Maps a capture time to its day, week or month.
type BucketOf<'a> = &'a dyn Fn(Timestamp) -> (i32, i32);

/// The backups of one database that the policy no longer keeps, oldest first. `tz` decides
/// where days, weeks and months begin (the schedule's zone).
pub fn expired(backups: &[Candidate], policy: &Policy, tz: &TimeZone) -> Vec<TransferId> {
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by_key(|b| std::cmp::Reverse((b.captured_at, b.id)));
    let mut keep: HashSet<TransferId> = backups.iter().filter(|b| b.pinned).map(|b| b.id).collect();

    let manual: Vec<&&Candidate> = newest_first
        .iter()
        .filter(|b| b.origin == Origin::Manual)
        .collect();
    keep.extend(manual.iter().take(policy.manual as usize).map(|b| b.id));

    let scheduled: Vec<&Candidate> = newest_first
        .iter()
        .copied()
        .filter(|b| b.origin == Origin::Scheduled)
        .collect();
    let buckets: [(u32, BucketOf<'_>); 3] = [
        (policy.daily, &|t| {
            let d = tz.to_datetime(t).date();
            (i32::from(d.year()), i32::from(d.day_of_year()))
        }),
        (policy.weekly, &|t| {
            let w = tz.to_datetime(t).date().iso_week_date();
            (i32::from(w.year()), i32::from(w.week()))
        }),
        (policy.monthly, &|t| {
            let d = tz.to_datetime(t).date();
            (i32::from(d.year()), i32::from(d.month()))
        }),
    ];
    for (count, bucket_of) in buckets {
        let mut seen: Vec<(i32, i32)> = Vec::new();
        for b in &scheduled {
            if seen.len() >= count as usize {
                break;
            }
            let bucket = bucket_of(b.captured_at);
            if !seen.contains(&bucket) {
                seen.push(bucket);
                keep.insert(b.id); // the newest backup of this day, week or month
            }
        }
    }

    let mut out: Vec<&Candidate> = backups.iter().filter(|b| !keep.contains(&b.id)).collect();
    out.sort_by_key(|b| (b.captured_at, b.id));
    out.into_iter().map(|b| b.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn backup(id: &str, origin: Origin, when: &str) -> Candidate {
        Candidate {
            id: id.parse().unwrap(),
            origin,
            captured_at: at(when),
            pinned: false,
        }
    }

    fn ids(v: Vec<TransferId>) -> Vec<String> {
        v.into_iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_manual_backups_by_time_not_by_name() {
        let policy = Policy {
            manual: 2,
            ..Policy::default()
        };
        // b010 sorts before b009 by name, but is the newest.
        let backups = vec![
            backup("b009", Origin::Manual, "2026-01-02T00:00:00Z"),
            backup("b010", Origin::Manual, "2026-01-03T00:00:00Z"),
            backup("b008", Origin::Manual, "2026-01-01T00:00:00Z"),
            backup("b007", Origin::Manual, "2025-12-31T00:00:00Z"),
        ];
        assert_eq!(
            ids(expired(&backups, &policy, &TimeZone::UTC)),
            ["b007", "b008"]
        );
    }

    #[test]
    fn keeps_one_per_day_week_and_month_and_every_pinned_one() {
        // One scheduled backup a day for 90 days, plus a second one on the last day.
        let mut backups: Vec<Candidate> = (0..90)
            .map(|i| {
                let t = at("2026-01-01T02:00:00Z")
                    .checked_add(jiff::SignedDuration::from_hours(24 * i))
                    .unwrap();
                Candidate {
                    id: TransferId::new('a', i as u32 + 1),
                    origin: Origin::Scheduled,
                    captured_at: t,
                    pinned: i == 3,
                }
            })
            .collect();
        backups.push(backup("a091", Origin::Scheduled, "2026-03-31T20:00:00Z"));
        let policy = Policy {
            daily: 7,
            weekly: 4,
            monthly: 3,
            manual: 0,
        };
        let gone: HashSet<String> = ids(expired(&backups, &policy, &TimeZone::UTC))
            .into_iter()
            .collect();
        let kept: Vec<String> = backups
            .iter()
            .map(|b| b.id.to_string())
            .filter(|id| !gone.contains(id))
            .collect();
        // Daily: the newest of each of the last 7 days (2026-03-25 .. 2026-03-31; on the 31st
        // the later a091, not a090). Weekly: the newest of weeks 14 (a091), 13, 12, 11.
        // Monthly: newest of March (a091), February (a059), January (a031). Pinned: a004.
        for want in [
            "a084", "a085", "a086", "a087", "a088", "a089", "a091", "a059", "a031", "a004",
        ] {
            assert!(
                kept.contains(&want.to_string()),
                "{want} not kept: {kept:?}"
            );
        }
        assert!(!kept.contains(&"a090".to_string()), "{kept:?}");
        assert!(!kept.contains(&"a001".to_string()), "{kept:?}");
        assert!(kept.len() <= 7 + 4 + 3 + 1, "{kept:?}");
    }

    #[test]
    fn day_boundaries_follow_the_schedule_zone() {
        let tz = TimeZone::get("America/Los_Angeles").unwrap();
        // 2026-06-02T05:00Z is still June 1st in Los Angeles: same day as the 20:00Z backup.
        let backups = vec![
            backup("a001", Origin::Scheduled, "2026-06-01T20:00:00Z"),
            backup("a002", Origin::Scheduled, "2026-06-02T05:00:00Z"),
        ];
        let policy = Policy {
            daily: 2,
            weekly: 0,
            monthly: 0,
            manual: 0,
        };
        assert_eq!(ids(expired(&backups, &policy, &tz)), ["a001"]);
        assert!(expired(&backups, &policy, &TimeZone::UTC).is_empty());
    }
}
