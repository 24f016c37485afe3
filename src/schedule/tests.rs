//! Tests of daily schedules: parsing, the run of a local date across DST, and properties of the clock arithmetic.

use jiff::Timestamp;
use jiff::civil::date;
use proptest::prelude::*;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn parses_times_zones_and_abbreviations() {
    let s = DailyAt::parse("02:00 America/Los_Angeles").unwrap();
    assert_eq!(
        (s.hour, s.minute, s.zone.as_str()),
        (2, 0, "America/Los_Angeles")
    );
    assert_eq!(
        DailyAt::parse("2:30 pst").unwrap().spec(),
        "02:30 America/Los_Angeles"
    );
    assert_eq!(DailyAt::parse("14:05").unwrap().spec(), "14:05 UTC");
    assert_eq!(
        DailyAt::parse("  23:59   UTC ").unwrap().spec(),
        "23:59 UTC"
    );
    for bad in [
        "",
        "2",
        "24:00 UTC",
        "12:60 UTC",
        "1:5 UTC",
        "aa:bb",
        "12:00 UTC extra",
        "-1:00",
        "123:00",
    ] {
        let err = DailyAt::parse(bad).unwrap_err();
        assert!(matches!(err, ScheduleError::BadTime(_)), "{bad}: {err}");
        assert!(err.to_string().contains("HH:MM ZONE"));
    }
    for zone in [
        "localtime",
        "posixrules",
        "Factory",
        "posix/Europe/Paris",
        "right/UTC",
        "EST5EDT",
        "america/los_angeles",
        "Europe/",
        "/etc/localtime",
        "../zoneinfo/UTC",
    ] {
        let err = DailyAt::parse(&format!("02:00 {zone}")).unwrap_err();
        assert!(
            matches!(err, ScheduleError::UnknownZone(_)),
            "{zone}: {err}"
        );
        assert!(err.to_string().contains("Area/Location"), "{zone}: {err}");
    }
    for zone in [
        "Etc/UTC",
        "America/Argentina/Buenos_Aires",
        "Europe/London",
        "utc",
        "Z",
    ] {
        assert!(DailyAt::parse(&format!("02:00 {zone}")).is_ok(), "{zone}");
    }
    let err = DailyAt::parse("02:00 Mars/Olympus").unwrap_err();
    assert_eq!(err, ScheduleError::UnknownZone("Mars/Olympus".into()));
    assert!(err.to_string().contains("America/Los_Angeles") && err.to_string().contains("PST"));
}

#[test]
fn los_angeles_spring_forward_runs_at_the_end_of_the_gap_and_fall_back_runs_once() {
    let s = DailyAt::parse("02:30 America/Los_Angeles").unwrap();
    // 2026-03-08: 02:00 PST jumps to 03:00 PDT; 02:30 does not exist → 03:00 PDT = 10:00Z.
    assert_eq!(s.instant_on(date(2026, 3, 8)), ts("2026-03-08T10:00:00Z"));
    assert_eq!(s.instant_on(date(2026, 3, 7)), ts("2026-03-07T10:30:00Z"));
    assert_eq!(s.instant_on(date(2026, 3, 9)), ts("2026-03-09T09:30:00Z"));
    let f = DailyAt::parse("01:30 America/Los_Angeles").unwrap();
    // 2026-11-01: 01:30 happens at -07 and again at -08; the first one.
    assert_eq!(f.instant_on(date(2026, 11, 1)), ts("2026-11-01T08:30:00Z"));
    // ... and once: right after the first, the next run is the next day's.
    assert_eq!(
        f.next_after(ts("2026-11-01T08:30:00Z")),
        (date(2026, 11, 2), ts("2026-11-02T09:30:00Z"))
    );
}

#[test]
fn london_and_lord_howe_with_its_half_hour_shift() {
    let l = DailyAt::parse("01:15 Europe/London").unwrap();
    // 2026-03-29: 01:00 GMT → 02:00 BST.
    assert_eq!(l.instant_on(date(2026, 3, 29)), ts("2026-03-29T01:00:00Z"));
    // 2026-10-25: 01:15 happens twice (BST then GMT): the first.
    assert_eq!(l.instant_on(date(2026, 10, 25)), ts("2026-10-25T00:15:00Z"));
    let h = DailyAt::parse("02:10 Australia/Lord_Howe").unwrap();
    // 2026-10-04: 02:00 +10:30 → 02:30 +11; 02:10 does not exist → 02:30 +11 = 15:30Z on the 3rd.
    assert_eq!(h.instant_on(date(2026, 10, 4)), ts("2026-10-03T15:30:00Z"));
    // 2027-04-04: 02:00 +11 → 01:30 +10:30; 01:45 happens twice: the first (+11).
    let h2 = DailyAt::parse("01:45 Australia/Lord_Howe").unwrap();
    assert_eq!(h2.instant_on(date(2027, 4, 4)), ts("2027-04-03T14:45:00Z"));
}

/// Heroku's `pg:backups:schedule` maps GMT and BST to Europe/London: `--at '02:00 GMT'` is
/// 02:00 on London's clocks all year, so in summer (BST, +01) the run is at 01:00 UTC.
#[test]
fn gmt_and_bst_mean_london_time_as_on_heroku_while_utc_and_z_stay_utc() {
    for at in ["02:00 GMT", "02:00 gmt", "02:00 BST"] {
        let s = DailyAt::parse(at).unwrap();
        assert_eq!(s.spec(), "02:00 Europe/London", "{at}");
        // 2026-07-01 is in BST: one hour before UTC's 02:00.
        assert_eq!(
            s.instant_on(date(2026, 7, 1)),
            ts("2026-07-01T01:00:00Z"),
            "{at}"
        );
        // 2026-12-01 is in GMT: London's clocks are UTC's.
        assert_eq!(
            s.instant_on(date(2026, 12, 1)),
            ts("2026-12-01T02:00:00Z"),
            "{at}"
        );
        assert_eq!(
            s.show_local(ts("2026-07-01T01:00:00Z")),
            "2026-07-01 02:00 BST"
        );
    }
    for at in ["02:00 UTC", "02:00 Z", "02:00 z", "02:00"] {
        let s = DailyAt::parse(at).unwrap();
        assert_eq!(s.spec(), "02:00 UTC", "{at}");
        assert_eq!(
            s.instant_on(date(2026, 7, 1)),
            ts("2026-07-01T02:00:00Z"),
            "{at}"
        );
    }
    // A schedule saved before GMT meant London was stored with its resolved zone, UTC, and
    // loads as UTC still.
    assert_eq!(DailyAt::new(2, 0, "UTC").unwrap().spec(), "02:00 UTC");
}

#[test]
fn latest_due_and_next_after_bracket_now() {
    let s = DailyAt::parse("02:00 UTC").unwrap();
    let now = ts("2026-11-25T01:00:00Z");
    assert_eq!(
        s.latest_due(now),
        (date(2026, 11, 24), ts("2026-11-24T02:00:00Z"))
    );
    assert_eq!(
        s.next_after(now),
        (date(2026, 11, 25), ts("2026-11-25T02:00:00Z"))
    );
    let at = ts("2026-11-25T02:00:00Z");
    assert_eq!(s.latest_due(at), (date(2026, 11, 25), at));
    assert_eq!(s.next_after(at).0, date(2026, 11, 26));
}

const ZONES: &[&str] = &[
    "UTC",
    "America/Los_Angeles",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Asia/Kolkata",
    "Pacific/Apia",
];

proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = DailyAt::parse(&s);
    }

    #[test]
    fn valid_specs_round_trip(h in 0i8..24, m in 0i8..60, z in 0usize..ZONES.len()) {
        let spec = format!("{h}:{m:02} {}", ZONES[z]);
        let s = DailyAt::parse(&spec).unwrap();
        prop_assert_eq!(DailyAt::parse(&s.spec()).unwrap().spec(), s.spec());
    }

    #[test]
    fn runs_bracket_now_and_happen_once_a_day(
        h in 0i8..24, m in 0i8..60, z in 0usize..ZONES.len(),
        secs in 1_700_000_000i64..1_900_000_000i64,
    ) {
        let s = DailyAt::new(h, m, ZONES[z]).unwrap();
        let now = Timestamp::from_second(secs).unwrap();
        let (due_date, due) = s.latest_due(now);
        let (next_date, next) = s.next_after(now);
        prop_assert!(due <= now && now < next);
        prop_assert!(due_date < next_date);
        // The run of a date is at the scheduled local time, or (in a gap) right after it.
        let local = s.tz.to_datetime(next);
        prop_assert!(local.date() == next_date);
        prop_assert!((local.hour(), local.minute()) >= (h, m));
        // Consecutive runs are at most a day and a few hours apart.
        let (_, after) = s.next_after(next);
        prop_assert!(after > next);
        prop_assert!(after.duration_since(next).as_secs() <= 26 * 3600);
    }
}

#[test]
fn the_preview_shows_the_next_runs_and_the_first_one_after_the_clocks_change() {
    let spec = DailyAt::parse("02:30 Europe/London").unwrap();
    let now: Timestamp = "2026-03-20T12:00:00Z".parse().unwrap();
    let shown: Vec<String> = spec
        .preview(now, 3)
        .into_iter()
        .map(|t| {
            format!(
                "{} = {}",
                spec.show_local(t),
                t.strftime("%Y-%m-%d %H:%M UTC")
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "2026-03-21 02:30 GMT = 2026-03-21 02:30 UTC",
            "2026-03-22 02:30 GMT = 2026-03-22 02:30 UTC",
            "2026-03-23 02:30 GMT = 2026-03-23 02:30 UTC",
            // 2026-03-29 01:00 UTC the clocks go forward: 02:30 BST is 01:30 UTC.
            "2026-03-29 02:30 BST = 2026-03-29 01:30 UTC",
        ]
    );
    // A run in the gap (02:30 does not exist in New York on 2027-03-14) is at the change.
    let ny = DailyAt::parse("02:30 America/New_York").unwrap();
    let runs = ny.preview("2026-12-01T12:00:00Z".parse().unwrap(), 3);
    assert_eq!(
        runs.last().map(|t| ny.show_local(*t)).as_deref(),
        Some("2027-03-14 03:00 EDT")
    );
    // UTC never changes: three runs, nothing more.
    assert_eq!(
        DailyAt::parse("02:00 UTC").unwrap().preview(now, 3).len(),
        3
    );
}
