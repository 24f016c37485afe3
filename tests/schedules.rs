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

    // 2026-03-08 01:55 PST, one test minute per real second. 02:30 does not exist that
    // day in Los Angeles (02:00 → 03:00): the run happens at 03:00 PDT (10:00Z). The five
    // test minutes before it leave five real seconds to register the database and set the
    // schedule, however loaded the machine is.
    let mut svc = Service::start_in_with(
        data.clone(),
        &[("PGBACKUPS_TEST_CLOCK", "2026-03-08T09:55:00Z,60")],
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
    assert!(
        listing.contains("7 daily, 4 weekly, 0 monthly, 25 manual"),
        "{listing}"
    );
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

#[test]
fn retention_expires_the_oldest_manual_backups_after_a_success_and_never_a_pinned_one() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));
    let shown = svc.ok(&["backups:retention", "main"]);
    assert!(
        shown.contains("25 manual") && shown.contains("7 daily, 4 weekly"),
        "{shown}"
    );
    assert!(shown.contains("the default"), "{shown}");
    let shown = svc.ok(&["backups:retention", "main", "--manual", "2"]);
    assert!(shown.contains("2 manual"), "{shown}");

    let capture = |svc: &Service| {
        let out = svc.cli(&["backups:capture", "main"]);
        assert!(out.status.success(), "{}", text(&out));
    };
    let ids = |svc: &Service| -> Vec<String> {
        captures(svc)
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    capture(&svc);
    capture(&svc);
    svc.ok(&["backups:pin", "b001"]);
    assert!(svc.ok(&["backups:info", "b001"]).contains("Pinned:"));
    capture(&svc); // b003: pinned b001 + newest two (b003, b002)
    assert_eq!(ids(&svc), ["b001", "b002", "b003"]);

    // A failed capture expires nothing.
    pg.psql("postgres", "ALTER DATABASE app RENAME TO app_away");
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(!out.status.success());
    pg.psql("postgres", "ALTER DATABASE app_away RENAME TO app");
    assert_eq!(ids(&svc), ["b001", "b002", "b003", "b004"]);

    capture(&svc); // b005: keeps b001 (pinned), b005, b003; expires b002
    assert_eq!(ids(&svc), ["b001", "b003", "b004", "b005"]);
    let log = svc.info("b005")["logs"].to_string();
    assert!(log.contains("Expired backup b002"), "{log}");
    svc.ok(&["backups:unpin", "b001"]);
    capture(&svc); // b006: keeps b006, b005; expires b001 and b003 (b004 failed, kept as a record)
    assert_eq!(ids(&svc), ["b004", "b005", "b006"]);
    // Two backups, each with its manifest and its roles.
    assert_eq!(svc.stored_files().len(), 6, "{:?}", svc.stored_files());
}

#[test]
fn a_failed_scheduled_capture_shows_and_the_next_day_still_runs() {
    let pg = Cluster::start();
    pg.create_db("app");
    let dir = tempfile::tempdir().unwrap();
    // A day passes in four real seconds.
    let svc = Service::start_in_with(
        dir.path().join("data"),
        &[("PGBACKUPS_TEST_CLOCK", "2026-01-01T00:00:00Z,21600")],
    );
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));
    pg.psql("postgres", "ALTER DATABASE app RENAME TO app_away");
    let out = svc.cli(&[
        "backups:schedule",
        "main",
        "--at",
        "06:00 UTC",
        "--verify",
        "restore",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let first = wait_for_captures(&svc, 1);
    assert_eq!(first[0]["id"], "a001");
    assert_eq!(first[0]["state"], "failed");
    assert!(svc.ok(&["backups"]).contains("Failed"));
    assert!(svc.ok(&["backups:info", "a001"]).contains("does not exist"));
    pg.psql("postgres", "ALTER DATABASE app_away RENAME TO app");
    let both = wait_for_captures(&svc, 2);
    assert_eq!(both[1]["id"], "a002");
    assert_eq!(both[1]["state"], "succeeded", "{both:#?}");

    // The schedule asked for restore tests: a002 is verified by one, a001 (failed) is not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let check = loop {
        let all: Vec<Value> = serde_json::from_str(&svc.ok(&["backups", "--json"])).unwrap();
        let found = all.into_iter().find(|t| {
            t["kind"] == "verify"
                && t["backup_id"] == "a002"
                && t["state"] != "pending"
                && t["state"] != "running"
        });
        if let Some(v) = found {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no verification of a002:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(check["state"], "succeeded", "{check:#}");
    assert_eq!(check["origin"], "scheduled");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("restored into a scratch database"),
        "{check:#}"
    );
    assert!(svc.ok(&["backups:info", "a002"]).contains("Verified"));
    let listing = svc.ok(&["backups"]);
    assert!(listing.contains("=== Verifications"), "{listing}");
}

/// A script written for the Heroku CLI runs unchanged. Heroku's capture, restore and copy take
/// `--wait-interval N` and its `pg:backups` listing takes hidden `-v -c -o -q --at`: here they
/// are accepted and ignored, with a note on stderr, not refused with exit 2; `-c` confirms a
/// restore as on Heroku. And Heroku's `--at '02:00 GMT'` means 02:00 on London's clocks
/// (Europe/London), which in July (BST) is 01:00 UTC.
#[test]
fn a_heroku_script_with_wait_interval_and_at_02_00_gmt_runs_as_it_does_on_heroku() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    let dir = tempfile::tempdir().unwrap();
    // 2026-07-01 00:30 UTC (01:30 BST), at real speed: the 02:00 run is half an hour away.
    let svc = Service::start_in_with(
        dir.path().join("data"),
        &[("PGBACKUPS_TEST_CLOCK", "2026-07-01T00:30:00Z,1")],
    );
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));

    let wait_note = "note: --wait-interval is ignored: the service reports a transfer's end as it happens, so there is no polling interval to set; drop the flag to silence this note";
    let out = svc.cli(&["backups:capture", "main", "--wait-interval", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(wait_note), "{stderr}");
    assert_eq!(stderr.matches("note:").count(), 1, "{stderr}");
    assert_eq!(common::transfer_id(&out), "b001");
    assert_eq!(svc.info("b001")["state"], "succeeded");

    // pg:backups' hidden flags: the listing as usual, and one note naming them.
    let out = svc.cli(&[
        "backups",
        "-v",
        "-q",
        "--at",
        "02:00 UTC",
        "--wait-interval",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("b001"),
        "{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "note: --verbose, --wait-interval, --at and --quiet are ignored: `heroku pg:backups` accepts them and does nothing with them either; drop them to silence this note\n"
    );

    // Heroku's restore: -c confirms, --wait-interval is ignored.
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "main",
        "-c",
        "main",
        "--wait-interval",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(wait_note),
        "{}",
        text(&out)
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM t").trim(), "100");

    // --at '02:00 GMT': London time, as on Heroku; shown resolved, next run 01:00 UTC.
    let out = svc.cli(&["backups:schedule", "main", "--at", "02:00 GMT"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("at 02:00 Europe/London"), "{said}");
    assert!(said.contains("2026-07-01 02:00 BST"), "{said}");
    let listing = svc.ok(&["backups:schedules"]);
    assert!(
        listing.contains("daily at 02:00 Europe/London"),
        "{listing}"
    );
    assert!(listing.contains("2026-07-01 02:00 BST"), "{listing}");
    assert!(listing.contains("2026-07-01 01:00:00 +0000"), "{listing}");

    // UTC stays UTC.
    svc.ok(&["backups:schedule", "main", "--at", "02:00 UTC"]);
    let listing = svc.ok(&["backups:schedules"]);
    assert!(listing.contains("daily at 02:00 UTC"), "{listing}");
    assert!(listing.contains("2026-07-01 02:00:00 +0000"), "{listing}");
}
