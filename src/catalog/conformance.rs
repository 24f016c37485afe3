//! The catalog's behaviour, written once and run against every backend: the SQLite catalog in
//! its unit tests (`sqlite/tests.rs`), the PostgreSQL catalog in `tests/pg_catalog.rs` against
//! a real server. Each behaviour takes a fresh, empty catalog and panics when the catalog
//! does something else. Test support only: nothing in the service calls it.

use std::sync::Arc;

use jiff::Timestamp;

use super::{
    Catalog, CatalogError, Origin, ProtectionRecord, RESTORE_TEST_DETAIL, RetentionPolicy,
    ScheduleRecord, TransferId, TransferKind, TransferRecord, TransferState, VerifyMode,
};

/// A behaviour: what a fresh catalog must do.
pub type Behaviour = fn(&dyn Catalog);

mod migrate;
mod team;
pub use migrate::a_sqlite_catalog_is_copied_whole;
pub use team::{
    a_new_password_ends_the_users_sessions, removing_a_user_removes_their_sessions_and_tokens,
    the_audit_log_pages_back_newest_first,
};

/// Every behaviour, by name.
pub const ALL: &[(&str, Behaviour)] = &[
    (
        "ids_per_prefix_and_transfers_round_trip",
        ids_per_prefix_and_transfers_round_trip,
    ),
    (
        "every_field_and_time_round_trips_exactly",
        every_field_and_time_round_trips_exactly,
    ),
    (
        "a_rebuilt_backup_is_added_whole_or_not_at_all",
        a_rebuilt_backup_is_added_whole_or_not_at_all,
    ),
    (
        "refuses_a_second_database_of_the_same_name",
        refuses_a_second_database_of_the_same_name,
    ),
    (
        "a_protection_never_outlives_its_database",
        a_protection_never_outlives_its_database,
    ),
    (
        "a_tail_is_the_last_lines_oldest_first",
        a_tail_is_the_last_lines_oldest_first,
    ),
    (
        "a_databases_transfers_come_newest_first",
        a_databases_transfers_come_newest_first,
    ),
    (
        "a_summary_has_the_newest_of_each_and_what_is_going",
        a_summary_has_the_newest_of_each_and_what_is_going,
    ),
    (
        "removing_a_user_removes_their_sessions_and_tokens",
        removing_a_user_removes_their_sessions_and_tokens,
    ),
    (
        "a_new_password_ends_the_users_sessions",
        a_new_password_ends_the_users_sessions,
    ),
    (
        "the_audit_log_pages_back_newest_first",
        the_audit_log_pages_back_newest_first,
    ),
    (
        "a_scheduled_run_is_claimed_once",
        a_scheduled_run_is_claimed_once,
    ),
    (
        "schedules_retention_and_pins_are_kept",
        schedules_retention_and_pins_are_kept,
    ),
    (
        "a_sqlite_catalog_is_copied_whole",
        a_sqlite_catalog_is_copied_whole,
    ),
];

/// Now, to the microsecond: both catalogs keep times to the microsecond.
fn now() -> Timestamp {
    Timestamp::from_microsecond(Timestamp::now().as_microsecond()).unwrap()
}

/// A time with microseconds, as the service's clock gives them.
pub(super) fn at(minute: i64) -> Timestamp {
    Timestamp::from_microsecond(1_800_000_000_000_000 + minute * 60_000_000 + 123_457).unwrap()
}

fn record(
    id: &str,
    kind: TransferKind,
    database: &str,
    state: TransferState,
    minute: i64,
) -> TransferRecord {
    let mut t = TransferRecord::new(
        id.parse::<TransferId>().unwrap(),
        kind,
        Origin::Manual,
        database.into(),
        at(minute),
    );
    t.state = state;
    t
}

pub(super) fn save(
    c: &dyn Catalog,
    id: &str,
    kind: TransferKind,
    database: &str,
    state: TransferState,
    minute: i64,
) -> TransferRecord {
    let t = record(id, kind, database, state, minute);
    c.save_transfer(&t).unwrap();
    t
}

fn ids(ts: &[TransferRecord]) -> Vec<String> {
    ts.iter().map(|t| t.id.to_string()).collect()
}

pub fn ids_per_prefix_and_transfers_round_trip(c: &dyn Catalog) {
    assert_eq!(c.claim_transfer_id('b').unwrap().to_string(), "b001");
    assert_eq!(c.claim_transfer_id('b').unwrap().to_string(), "b002");
    assert_eq!(c.claim_transfer_id('r').unwrap().to_string(), "r001");
    // After a rebuild found b010, the next is b011; bumping backwards changes nothing.
    c.bump_id_counter("b010".parse().unwrap()).unwrap();
    c.bump_id_counter("b004".parse().unwrap()).unwrap();
    assert_eq!(c.claim_transfer_id('b').unwrap().to_string(), "b011");
    c.bump_id_counter("c005".parse().unwrap()).unwrap();
    assert_eq!(c.claim_transfer_id('c').unwrap().to_string(), "c006");
    let now = now();
    let mut t = TransferRecord::new(
        "b002".parse().unwrap(),
        TransferKind::Capture,
        Origin::Manual,
        "main".into(),
        now,
    );
    t.sha256 = Some("ab".into());
    c.save_transfer(&t).unwrap();
    c.set_layout(t.id, "{}").unwrap();
    t.state = TransferState::Running;
    c.save_transfer(&t).unwrap();
    // An update leaves the layout alone.
    assert_eq!(c.layout(t.id).unwrap().as_deref(), Some("{}"));
    c.set_progress(t.id, 42).unwrap();
    let back = c.transfer(t.id).unwrap().unwrap();
    assert_eq!(back.state, TransferState::Running);
    assert_eq!(back.bytes_processed, 42);
    assert_eq!(back.sha256.as_deref(), Some("ab"));
    assert_eq!(c.unfinished_transfers().unwrap().len(), 1);
    c.append_logs(t.id, &[(now, "one".into()), (now, "two".into())])
        .unwrap();
    c.append_logs(t.id, &[(now, "three".into())]).unwrap();
    c.append_logs(t.id, &[]).unwrap();
    let logs = c.logs(t.id, 1).unwrap();
    assert_eq!(
        logs.iter()
            .map(|l| (l.seq, l.line.as_str()))
            .collect::<Vec<_>>(),
        [(2, "two"), (3, "three")]
    );
    c.delete_transfer(t.id).unwrap();
    assert!(c.transfer(t.id).unwrap().is_none());
    assert!(c.logs(t.id, 0).unwrap().is_empty());
    assert!(c.layout(t.id).unwrap().is_none());
}

pub fn every_field_and_time_round_trips_exactly(c: &dyn Catalog) {
    let mut t = record(
        "r042",
        TransferKind::Restore,
        "main",
        TransferState::Succeeded,
        1,
    );
    t.origin = Origin::Scheduled;
    t.backup_id = Some("b007".parse().unwrap());
    t.source = Some("other".into());
    t.started_at = Some(at(2));
    t.finished_at = Some(Timestamp::from_microsecond(1_800_000_999_999_999).unwrap());
    t.bytes_processed = 5_000_000_000_000;
    t.database_size = Some(1);
    t.dump_size = Some(u32::MAX as u64 + 7);
    t.object_size = Some(0);
    t.sha256 = Some("0f".repeat(32));
    t.object_key = Some("backups/main/b007.dump.zst".into());
    t.compression = Some("zstd".into());
    t.server_version = Some("15.4".into());
    t.tool_version = Some("16.1".into());
    t.error = Some("it's \"quoted\"; ünïcode ✓".into());
    t.encryption = Some("age".into());
    t.detail = Some("2 tables".into());
    t.warnings = 3;
    t.roles = Some(vec!["app".into(), "reader".into()]);
    t.set = Some("s001".into());
    c.save_transfer(&t).unwrap();
    assert!(c.set_pinned(t.id, true).unwrap());
    t.pinned = true;
    let back = c.transfer(t.id).unwrap().unwrap();
    assert_eq!(format!("{back:?}"), format!("{t:?}"));
    assert_eq!(back.finished_at, t.finished_at);
    assert_eq!(c.transfers(Some(TransferKind::Restore)).unwrap().len(), 1);
    assert!(c.transfers(Some(TransferKind::Capture)).unwrap().is_empty());
    assert_eq!(c.transfers(None).unwrap().len(), 1);
    assert!(!c.set_pinned("b999".parse().unwrap(), true).unwrap());
    let sealed: Vec<u8> = (0..=255).collect();
    c.add_database("main", &sealed, "postgres://u:***@h/db", at(3))
        .unwrap();
    assert_eq!(c.database_url_sealed("main").unwrap().unwrap(), sealed);
    assert!(c.database_url_sealed("nobody").unwrap().is_none());
    let dbs = c.list_databases().unwrap();
    assert_eq!(
        (dbs[0].name.as_str(), dbs[0].url.as_str(), dbs[0].created_at),
        ("main", "postgres://u:***@h/db", at(3))
    );
}

pub fn a_rebuilt_backup_is_added_whole_or_not_at_all(c: &dyn Catalog) {
    let now = now();
    let t = TransferRecord::new(
        "b007".parse().unwrap(),
        TransferKind::Capture,
        Origin::Manual,
        "main".into(),
        now,
    );
    assert!(
        c.insert_rebuilt_backup(&t, Some("{}"), (now, "rebuilt".into()))
            .unwrap()
    );
    assert_eq!(c.layout(t.id).unwrap().as_deref(), Some("{}"));
    assert_eq!(c.logs(t.id, 0).unwrap().len(), 1);
    // A second time (another node got there first): nothing changes.
    let other = TransferRecord {
        database: "other".into(),
        ..t.clone()
    };
    assert!(
        !c.insert_rebuilt_backup(&other, None, (now, "again".into()))
            .unwrap()
    );
    assert_eq!(c.logs(t.id, 0).unwrap().len(), 1);
    assert_eq!(c.transfer(t.id).unwrap().unwrap().database, "main");
    assert_eq!(c.layout(t.id).unwrap().as_deref(), Some("{}"));
}

pub fn refuses_a_second_database_of_the_same_name(c: &dyn Catalog) {
    c.add_database("main", b"x", "postgres://u:***@h/db", now())
        .unwrap();
    let err = c.add_database("main", b"y", "r", now()).unwrap_err();
    assert!(matches!(err, CatalogError::DatabaseExists(_)));
    assert_eq!(
        err.to_string(),
        "a database named `main` is already registered; remove it first or pick another name"
    );
    c.add_database("Zed", b"z", "r", now()).unwrap();
    c.add_database("alpha", b"z", "r", now()).unwrap();
    // By name, byte order (as SQLite compares), whatever the server's collation.
    let names: Vec<String> = c
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["Zed", "alpha", "main"]);
    c.set_schedule(&ScheduleRecord {
        database: "main".into(),
        hour: 3,
        minute: 0,
        zone: "UTC".into(),
        created_at: at(0),
        verify: VerifyMode::default(),
    })
    .unwrap();
    assert!(c.remove_database("main").unwrap());
    assert!(!c.remove_database("main").unwrap());
    // Its schedule went with it.
    assert!(c.schedules().unwrap().is_empty());
}

pub fn a_protection_never_outlives_its_database(c: &dyn Catalog) {
    let p = ProtectionRecord {
        database: "main".into(),
        slot: "pgbackups_main".into(),
        base_every_secs: 86_400,
        keep_base: 7,
        created_at: now(),
    };
    // `protect` racing `databases:remove`: the database went first.
    assert!(matches!(
        c.set_protection(&p),
        Err(CatalogError::NotRegistered(_))
    ));
    assert!(c.protections().unwrap().is_empty());
    c.add_database("main", b"x", "postgres://u:***@h/db", now())
        .unwrap();
    c.set_protection(&p).unwrap();
    c.set_protection(&ProtectionRecord {
        keep_base: 3,
        ..p.clone()
    })
    .unwrap();
    assert_eq!(c.protections().unwrap()[0].keep_base, 3);
    assert_eq!(c.protections().unwrap()[0].slot, "pgbackups_main");
    // The protection went first: the removal is refused and nothing changes.
    let err = c.remove_database("main").unwrap_err();
    assert!(matches!(err, CatalogError::Protected(_)));
    assert_eq!(
        err.to_string(),
        "main is protected: stop that first with `pgbackups unprotect main`"
    );
    assert!(c.database_url_sealed("main").unwrap().is_some());
    assert_eq!(c.protections().unwrap().len(), 1);
    assert!(c.remove_protection("main").unwrap());
    assert!(!c.remove_protection("main").unwrap());
    assert!(c.remove_database("main").unwrap());
}

pub fn a_tail_is_the_last_lines_oldest_first(c: &dyn Catalog) {
    let id = TransferId::new('b', 1);
    let now = now();
    let lines: Vec<_> = (1..=5).map(|i| (now, format!("line {i}"))).collect();
    c.append_logs(id, &lines).unwrap();
    let tail = c.log_tail(id, 2).unwrap();
    let got: Vec<(u64, &str)> = tail.iter().map(|l| (l.seq, l.line.as_str())).collect();
    assert_eq!(got, [(4, "line 4"), (5, "line 5")]);
    assert_eq!(tail[0].at, now);
    assert_eq!(c.log_tail(id, 10).unwrap().len(), 5);
    assert_eq!(c.logs(id, 3).unwrap().len(), 2);
    // Another transfer's log is numbered on its own.
    c.append_logs(TransferId::new('b', 2), &lines[..1]).unwrap();
    assert_eq!(c.logs(TransferId::new('b', 2), 0).unwrap()[0].seq, 1);
}

pub fn a_databases_transfers_come_newest_first(c: &dyn Catalog) {
    use TransferKind::{Capture, Restore};
    use TransferState::{Failed, Succeeded};
    save(c, "b001", Capture, "main", Succeeded, 1);
    save(c, "b002", Capture, "other", Succeeded, 2);
    save(c, "b003", Capture, "main", Failed, 3);
    save(c, "r001", Restore, "main", Succeeded, 4);
    save(c, "b004", Capture, "main", Succeeded, 5);
    // Same time: the higher ID is the newer, as everywhere.
    save(c, "b005", Capture, "main", Succeeded, 5);
    assert_eq!(
        ids(&c.transfers_of("main", Capture, None, 10).unwrap()),
        ["b005", "b004", "b003", "b001"]
    );
    assert_eq!(
        ids(&c.transfers_of("main", Capture, None, 2).unwrap()),
        ["b005", "b004"]
    );
    assert_eq!(
        ids(&c
            .transfers_of("main", Capture, Some(Succeeded), 10)
            .unwrap()),
        ["b005", "b004", "b001"]
    );
    assert_eq!(
        ids(&c.transfers_of("main", Restore, None, 10).unwrap()),
        ["r001"]
    );
    assert!(
        c.transfers_of("nobody", Capture, None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(c.count_transfers_of("main", Capture).unwrap(), 4);
    assert_eq!(c.count_transfers_of("main", Restore).unwrap(), 1);
    assert_eq!(c.count_transfers_of("other", Restore).unwrap(), 0);
    // All of them, oldest first.
    assert_eq!(
        ids(&c.transfers(None).unwrap()),
        ["b001", "b002", "b003", "r001", "b004", "b005"]
    );
}

pub fn a_summary_has_the_newest_of_each_and_what_is_going(c: &dyn Catalog) {
    use TransferKind::{Capture, Verify};
    use TransferState::{Failed, Running, Succeeded};
    for name in ["main", "quiet", "unused"] {
        c.add_database(name, b"sealed", "postgres://x", at(0))
            .unwrap();
    }
    save(c, "b001", Capture, "main", Succeeded, 1);
    save(c, "b002", Capture, "main", Failed, 2);
    let mut test = save(c, "v001", Verify, "main", Succeeded, 3);
    test.detail = Some(format!("checksum ok; {RESTORE_TEST_DETAIL}: 2 tables"));
    c.save_transfer(&test).unwrap();
    let mut checksum = save(c, "v002", Verify, "main", Succeeded, 4);
    checksum.detail = Some("checksum ok".into());
    c.save_transfer(&checksum).unwrap();
    save(c, "v003", Verify, "main", Failed, 5);
    save(c, "b003", Capture, "main", Running, 6);
    save(c, "b004", Capture, "quiet", Failed, 7);
    // A removed database's history is not summarised.
    save(c, "b005", Capture, "gone", Succeeded, 8);

    let all = c.database_summaries().unwrap();
    let names: Vec<&str> = all.iter().map(|s| s.database.as_str()).collect();
    assert_eq!(names, ["main", "quiet", "unused"]);
    let main = &all[0];
    let id = |t: &Option<TransferRecord>| t.as_ref().map(|t| t.id.to_string());
    assert_eq!(id(&main.last_capture).as_deref(), Some("b003"));
    assert_eq!(id(&main.last_backup).as_deref(), Some("b001"));
    assert_eq!(id(&main.last_restore_test).as_deref(), Some("v001"));
    assert_eq!(ids(&main.unfinished), ["b003"]);
    let quiet = &all[1];
    assert_eq!(id(&quiet.last_capture).as_deref(), Some("b004"));
    assert!(quiet.last_backup.is_none() && quiet.last_restore_test.is_none());
    assert!(quiet.unfinished.is_empty());
    assert!(all[2].last_capture.is_none());
    assert_eq!(ids(&c.unfinished_transfers().unwrap()), ["b003"]);
}

pub fn a_scheduled_run_is_claimed_once(c: &dyn Catalog) {
    let run = |db: &str, date: &str| (db.to_string(), date.to_string(), at(0));
    assert_eq!(
        c.claim_runs(
            &[run("main", "2027-01-01"), run("other", "2027-01-01")],
            at(0)
        )
        .unwrap(),
        [true, true]
    );
    assert_eq!(
        c.claim_runs(
            &[run("main", "2027-01-02"), run("main", "2027-01-01")],
            at(1)
        )
        .unwrap(),
        [true, false]
    );
    assert!(c.run_claimed("main", "2027-01-01").unwrap());
    assert!(!c.run_claimed("main", "2027-01-03").unwrap());
    // A claim whose capture could not start is given up, and claimed again.
    c.unclaim_run("other", "2027-01-01").unwrap();
    assert!(!c.run_claimed("other", "2027-01-01").unwrap());
    assert_eq!(
        c.claim_runs(&[run("other", "2027-01-01")], at(2)).unwrap(),
        [true]
    );
    // One that started a transfer stays claimed.
    c.set_run_transfers(&[("main".into(), "2027-01-01".into(), "b001".parse().unwrap())])
        .unwrap();
    c.unclaim_run("main", "2027-01-01").unwrap();
    assert!(c.run_claimed("main", "2027-01-01").unwrap());
    assert!(c.claim_runs(&[], at(3)).unwrap().is_empty());
}

pub fn schedules_retention_and_pins_are_kept(c: &dyn Catalog) {
    let s = ScheduleRecord {
        database: "main".into(),
        hour: 23,
        minute: 59,
        zone: "America/Los_Angeles".into(),
        created_at: at(0),
        verify: "restore".parse().unwrap_or_default(),
    };
    c.set_schedule(&s).unwrap();
    c.set_schedule(&ScheduleRecord {
        database: "b".into(),
        hour: 0,
        minute: 5,
        ..s.clone()
    })
    .unwrap();
    let got = c.schedules().unwrap();
    assert_eq!(
        got.iter().map(|s| s.database.as_str()).collect::<Vec<_>>(),
        ["b", "main"]
    );
    assert_eq!(format!("{:?}", got[1]), format!("{s:?}"));
    c.set_schedule(&ScheduleRecord {
        hour: 1,
        ..s.clone()
    })
    .unwrap();
    assert_eq!(c.schedules().unwrap()[1].hour, 1);
    assert!(c.remove_schedule("main").unwrap());
    assert!(!c.remove_schedule("main").unwrap());

    assert!(c.retention("main").unwrap().is_none());
    let p = RetentionPolicy {
        daily: 7,
        weekly: 4,
        monthly: 12,
        manual: 0,
    };
    c.set_retention("main", &p).unwrap();
    c.set_retention("main", &RetentionPolicy { manual: 3, ..p })
        .unwrap();
    assert_eq!(
        c.retention("main").unwrap(),
        Some(RetentionPolicy { manual: 3, ..p })
    );

    let t = save(
        c,
        "b001",
        TransferKind::Capture,
        "main",
        TransferState::Succeeded,
        1,
    );
    assert!(c.set_pinned(t.id, true).unwrap());
    // Saving the record again leaves the pin alone.
    c.save_transfer(&t).unwrap();
    assert!(c.transfer(t.id).unwrap().unwrap().pinned);
    assert!(c.set_pinned(t.id, false).unwrap());
    assert!(!c.transfer(t.id).unwrap().unwrap().pinned);
}

/// `threads` threads claim transfer IDs and scheduled runs at once, thread `i` through
/// `catalogs[i % catalogs.len()]` (separate connections, or separate nodes): no ID is given
/// twice, and each run is claimed exactly once.
pub fn claims_are_race_free(catalogs: &[Arc<dyn Catalog>], threads: usize) {
    const EACH: usize = 25;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let c = Arc::clone(&catalogs[i % catalogs.len()]);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut ids = Vec::new();
                let mut runs = Vec::new();
                for n in 0..EACH {
                    ids.push(c.claim_transfer_id('b').unwrap().to_string());
                    // Every thread claims the same runs, in a different order.
                    let day = (n + i) % EACH;
                    let batch = [
                        (format!("db{day}"), "2027-01-01".to_string(), at(0)),
                        (
                            format!("db{}", EACH - 1 - day),
                            "2027-01-02".to_string(),
                            at(0),
                        ),
                    ];
                    let won = c.claim_runs(&batch, at(0)).unwrap();
                    for (r, w) in batch.into_iter().zip(won) {
                        if w {
                            runs.push((r.0, r.1));
                        }
                    }
                }
                (ids, runs)
            })
        })
        .collect();
    let mut all_ids = Vec::new();
    let mut all_runs = Vec::new();
    for h in handles {
        let (ids, runs) = h.join().unwrap();
        all_ids.extend(ids);
        all_runs.extend(runs);
    }
    let claimed = all_ids.len();
    all_ids.sort();
    all_ids.dedup();
    assert_eq!(all_ids.len(), claimed, "a transfer ID was given twice");
    assert_eq!(claimed, threads * EACH);
    let won = all_runs.len();
    all_runs.sort();
    all_runs.dedup();
    assert_eq!(all_runs.len(), won, "a run was claimed twice");
    assert_eq!(won, 2 * EACH, "every run is claimed once");
}
