//! Daily schedules end to end: a service on a fast test clock takes scheduled captures of a
//! real throwaway database, across a DST change, and makes up a missed run once.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Service, text};
use serde_json::Value;

fn captures(svc: &Service) -> Vec<Value> {
    let all: Vec<Value> = serde_json::from_str(&svc.ok(&["backups", "--json"])).unwrap();
    all.into_iter().filter(|t| t["kind"] == "capture").collect()
}

fn wait_for_captures(svc: &Service, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = captures(svc);
        if all.len() >= n
            && all
                .iter()
                .all(|t| t["state"] != "pending" && t["state"] != "running")
        {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} captures, have {all:#?}\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_schedule_captures_daily_across_dst_and_makes_up_a_missed_run_once() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // 2026-03-08 01:59:40 PST, one test minute per real second. 02:30 does not exist that
    // day in Los Angeles (02:00 → 03:00): the run happens at 03:00 PDT (10:00Z).
    let mut svc = Service::start_in_with(
        data.clone(),
        &[("PGBACKUPS_TEST_CLOCK", "2026-03-08T09:59:40Z,60")],
    );
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.cli(&["backups:schedule", "main", "--at", "02:30 PST"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("02:30 America/Los_Angeles"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("2026-03-08 03:00 PDT"),
        "{}",
        text(&out)
    );

    let all = wait_for_captures(&svc, 1);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["id"], "a001");
    assert_eq!(all[0]["origin"], "scheduled");
    assert_eq!(all[0]["state"], "succeeded");
    let info = svc.ok(&["backups:info", "a001"]);
    assert!(info.contains("Scheduled"), "{info}");
    let listing = svc.ok(&["backups:schedules"]);
    assert!(
        listing.contains("daily at 02:30 America/Los_Angeles"),
        "{listing}"
    );
    assert!(listing.contains("2026-03-09 02:30 PDT"), "{listing}");
    assert!(listing.contains("2026-03-09 09:30:00 +0000"), "{listing}");
    assert!(svc.terminate());

    // Down for four days: back on 2026-03-12 at 12:00Z (05:00 PDT). Only the latest missed
    // run (of 2026-03-12) is made up, once.
    let svc2 = Service::start_in_with(
        data.clone(),
        &[("PGBACKUPS_TEST_CLOCK", "2026-03-12T12:00:00Z,1")],
    );
    let all = wait_for_captures(&svc2, 2);
    std::thread::sleep(Duration::from_secs(2));
    let all_after = captures(&svc2);
    assert_eq!(all_after.len(), 2, "{all:#?}");
    assert_eq!(all_after[1]["id"], "a002");
    drop(svc2);

    // Started again the same day: that run is not started twice.
    let svc3 = Service::start_in_with(data, &[("PGBACKUPS_TEST_CLOCK", "2026-03-12T13:00:00Z,1")]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(captures(&svc3).len(), 2);

    // Bad input says what is expected.
    let out = svc3.cli(&["backups:schedule", "main", "--at", "25:00 UTC"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("HH:MM ZONE"), "{}", text(&out));
    let out = svc3.cli(&["backups:schedule", "main", "--at", "02:00 Mars/Base"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown time zone `Mars/Base`"),
        "{}",
        text(&out)
    );
    let out = svc3.cli(&["backups:unschedule", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        svc3.ok(&["backups:schedules"])
            .contains("No backup schedules")
    );
    let _ = &mut svc;
}
