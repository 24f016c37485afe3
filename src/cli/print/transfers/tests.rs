//! Unit tests of transfers.rs.
use super::*;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn record(id: &str, kind: TransferKind, database: &str, created: &str) -> TransferRecord {
    let id = id.parse().unwrap_or_else(|e| panic!("{id}: {e}"));
    TransferRecord::new(id, kind, Origin::Manual, database.into(), at(created))
}

fn done(mut t: TransferRecord, started: &str, finished: &str) -> TransferRecord {
    t.state = TransferState::Succeeded;
    t.started_at = Some(at(started));
    t.finished_at = Some(at(finished));
    t
}

#[test]
fn listing_of_nothing_prints_every_heroku_section() {
    // Heroku prints Backups, Restores and Copies even when they are empty.
    assert_eq!(
        backups_listing(&[], false),
        "=== Backups\n\
         No backups. Capture one with `pgbackups backups:capture`.\n\
         \n\
         === Restores\n\
         No restores found. Use `pgbackups backups:restore` to restore a backup.\n\
         \n\
         === Copies\n\
         No copies found. Use `pgbackups copy` to copy a database to another.\n"
    );
}

#[test]
fn listing_says_completed_for_every_kind_and_failed_for_a_cancel_as_heroku_does() {
    let mut b1 = done(
        record(
            "b001",
            TransferKind::Capture,
            "main",
            "2026-11-24T02:00:00Z",
        ),
        "2026-11-24T02:00:00Z",
        "2026-11-24T02:00:13Z",
    );
    b1.object_size = Some(1_433);
    let mut b2 = record(
        "b002",
        TransferKind::Capture,
        "main",
        "2026-11-25T02:00:00Z",
    );
    b2.state = TransferState::Running;
    b2.started_at = Some(at("2026-11-25T02:00:00Z"));
    b2.bytes_processed = 100_000;
    let mut r1 = done(
        record(
            "r001",
            TransferKind::Restore,
            "staging",
            "2026-11-24T03:00:00Z",
        ),
        "2026-11-24T03:00:01Z",
        "2026-11-24T03:00:09Z",
    );
    r1.backup_id = b1.id.into();
    r1.dump_size = Some(1_121_976);
    let mut r2 = done(
        record(
            "r002",
            TransferKind::Restore,
            "staging",
            "2026-11-24T05:00:00Z",
        ),
        "2026-11-24T05:00:01Z",
        "2026-11-24T05:00:03Z",
    );
    r2.state = TransferState::Cancelled;
    r2.backup_id = b1.id.into();
    let mut c1 = done(
        record("c001", TransferKind::Copy, "dev", "2026-11-24T04:00:00Z"),
        "2026-11-24T04:00:00Z",
        "2026-11-24T04:00:02Z",
    );
    c1.source = Some("main".into());
    c1.dump_size = Some(980);
    let mut c2 = c1.clone();
    c2.id = "c002".parse().unwrap_or_else(|e| panic!("{e}"));
    c2.created_at = at("2026-11-24T06:00:00Z");
    c2.started_at = Some(at("2026-11-24T06:00:00Z"));
    c2.finished_at = Some(at("2026-11-24T06:00:05Z"));
    c2.state = TransferState::Failed;
    c2.dump_size = None;
    assert_eq!(
        backups_listing(&[b1, r1, c1, b2, r2, c2], false),
        "=== Backups\n\
         ID    Created at                 Status                               Size     Database\n\
         ────  ─────────────────────────  ───────────────────────────────────  ───────  ────────\n\
         b002  2026-11-25 02:00:00 +0000  Running (97.66KB processed)          97.66KB  main\n\
         b001  2026-11-24 02:00:00 +0000  Completed 2026-11-24 02:00:13 +0000  1.40KB   main\n\
         \n\
         === Restores\n\
         ID    Started at                 Status                               Size    From → To\n\
         ────  ─────────────────────────  ───────────────────────────────────  ──────  ──────────────\n\
         r002  2026-11-24 05:00:01 +0000  Failed 2026-11-24 05:00:03 +0000             b001 → staging\n\
         r001  2026-11-24 03:00:01 +0000  Completed 2026-11-24 03:00:09 +0000  1.07MB  b001 → staging\n\
         \n\
         === Copies\n\
         ID    Started at                 Status                               Size  From → To\n\
         ────  ─────────────────────────  ───────────────────────────────────  ────  ──────────\n\
         c002  2026-11-24 06:00:00 +0000  Failed 2026-11-24 06:00:05 +0000           main → dev\n\
         c001  2026-11-24 04:00:00 +0000  Completed 2026-11-24 04:00:02 +0000  980B  main → dev\n"
    );
}

/// `n` restores into staging, an hour apart, r001 the oldest.
fn restores(n: usize) -> Vec<TransferRecord> {
    (1..=n)
        .map(|i| {
            let created = format!("2026-11-24T{:02}:00:00Z", i);
            let finished = format!("2026-11-24T{:02}:00:05Z", i);
            let mut r = done(
                record(
                    &format!("r{i:03}"),
                    TransferKind::Restore,
                    "staging",
                    &created,
                ),
                &created,
                &finished,
            );
            r.source = Some("app.dump".into());
            r
        })
        .collect()
}

#[test]
fn restores_and_copies_stop_at_ten_and_say_how_many_more_there_are_as_heroku_caps_them() {
    let mut all = restores(12);
    for r in &mut all[..11] {
        r.kind = TransferKind::Copy;
        r.id =
            r.id.to_string()
                .replace('r', "c")
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
    }
    let text = backups_listing(&all, false);
    let restores_part =
        &text[text.find("=== Restores").unwrap_or(0)..text.find("=== Copies").unwrap_or(0)];
    assert!(restores_part.contains("r012"), "{text}");
    assert!(!restores_part.contains("not shown"), "{text}");
    let copies_part = &text[text.find("=== Copies").unwrap_or(0)..];
    let ids: Vec<&str> = copies_part
        .lines()
        .skip(3)
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        ids,
        [
            "c011", "c010", "c009", "c008", "c007", "c006", "c005", "c004", "c003", "c002", "1"
        ],
        "{text}"
    );
    assert!(
        copies_part
            .ends_with("\n1 older copy not shown: `pgbackups backups --all` lists every one.\n"),
        "{text}"
    );

    let many = restores(13);
    let text = backups_listing(&many, false);
    assert!(text.contains("r013") && text.contains("r004"), "{text}");
    assert!(!text.contains("r003"), "{text}");
    assert!(
        text.contains(
            "r004  2026-11-24 04:00:00 +0000  Completed 2026-11-24 04:00:05 +0000        app.dump → staging\n\
             3 older restores not shown: `pgbackups backups --all` lists every one.\n\
             \n\
             === Copies\n"
        ),
        "{text}"
    );
    // --all: every row, nothing said to be left out.
    let text = backups_listing(&many, true);
    assert!(text.contains("r003") && text.contains("r001"), "{text}");
    assert!(!text.contains("not shown"), "{text}");
}

#[test]
fn info_of_a_backup_with_its_log() {
    let mut b = done(
        record(
            "b001",
            TransferKind::Capture,
            "main",
            "2026-11-24T02:00:00Z",
        ),
        "2026-11-24T02:00:00Z",
        "2026-11-24T02:00:13Z",
    );
    b.sha256 = Some("ab12".into());
    b.tool_version = Some("15.4".into());
    let logs = [LogLine {
        seq: 1,
        at: at("2026-11-24T02:00:01Z"),
        line: "pg_dump: dumping contents of table \"public.t\"".into(),
    }];
    let text = info_text(&b, &logs);
    assert_eq!(
        text,
        "=== Backup b001\n\
         Database:    main\n\
         Started at:  2026-11-24 02:00:00 +0000\n\
         Finished at: 2026-11-24 02:00:13 +0000\n\
         Status:      Completed\n\
         Type:        Manual\n\
         SHA-256:     ab12\n\
         Verified:    never (check it with `pgbackups backups:verify`)\n\
         Tool:        pg_dump 15.4\n\
         === Backup Logs\n\
         2026-11-24 02:00:01 +0000 pg_dump: dumping contents of table \"public.t\"\n"
    );
}

#[test]
fn info_lists_the_roles_a_backup_carries() {
    let mut b = done(
        record(
            "b001",
            TransferKind::Capture,
            "main",
            "2026-11-24T02:00:00Z",
        ),
        "2026-11-24T02:00:00Z",
        "2026-11-24T02:00:13Z",
    );
    b.roles = Some(vec!["app_owner".into(), "reader".into()]);
    assert_eq!(
        info_text(&b, &[]),
        "=== Backup b001\n\
         Database:    main\n\
         Started at:  2026-11-24 02:00:00 +0000\n\
         Finished at: 2026-11-24 02:00:13 +0000\n\
         Status:      Completed\n\
         Type:        Manual\n\
         Roles:       app_owner, reader\n\
         Verified:    never (check it with `pgbackups backups:verify`)\n\
         === Backup Logs\n"
    );
    b.roles = Some(vec![]);
    assert!(info_text(&b, &[]).contains("Roles:       none besides the bootstrap superuser\n"));
}

#[test]
fn info_compresses_against_the_original_database_size_as_heroku_does() {
    let mut b = done(
        record(
            "b001",
            TransferKind::Capture,
            "main",
            "2026-11-24T02:00:00Z",
        ),
        "2026-11-24T02:00:00Z",
        "2026-11-24T02:00:13Z",
    );
    b.database_size = Some(4_000_000);
    b.dump_size = Some(3_355_443);
    b.object_size = Some(1_121_976);
    assert_eq!(
        info_text(&b, &[]),
        "=== Backup b001\n\
         Database:         main\n\
         Started at:       2026-11-24 02:00:00 +0000\n\
         Finished at:      2026-11-24 02:00:13 +0000\n\
         Status:           Completed\n\
         Type:             Manual\n\
         Original DB Size: 3.81MB\n\
         Backup Size:      1.07MB (72% compression)\n\
         Dump Size:        3.20MB\n\
         Verified:         never (check it with `pgbackups backups:verify`)\n\
         === Backup Logs\n"
    );
    // A catalog rebuilt from the store may not know the database's size: no percentage.
    b.database_size = None;
    assert!(
        info_text(&b, &[]).contains("\nBackup Size: 1.07MB\n"),
        "{}",
        info_text(&b, &[])
    );
}

#[test]
fn a_restore_whose_target_refused_an_extension_says_completed_with_1_warning_as_heroku_does() {
    let mut r = done(
        record(
            "r001",
            TransferKind::Restore,
            "staging",
            "2026-11-24T03:00:00Z",
        ),
        "2026-11-24T03:00:01Z",
        "2026-11-24T03:00:09Z",
    );
    r.warnings = 1;
    assert_eq!(status_text(&r), "Completed with 1 warning");
    r.warnings = 2;
    assert_eq!(status_text(&r), "Completed with 2 warnings");
    r.warnings = 1;
    let logs = [
        LogLine {
            seq: 1,
            at: at("2026-11-24T03:00:02Z"),
            line: "pg_restore: creating EXTENSION \"pgrowlocks\"".into(),
        },
        LogLine {
            seq: 2,
            at: at("2026-11-24T03:00:08Z"),
            line: "WARNING: extension pgrowlocks was not restored: permission denied to create extension \"pgrowlocks\"".into(),
        },
    ];
    assert_eq!(
        info_text(&r, &logs),
        "=== Restore r001\n\
         Database:    staging\n\
         Started at:  2026-11-24 03:00:01 +0000\n\
         Finished at: 2026-11-24 03:00:09 +0000\n\
         Status:      Completed with 1 warning\n\
         Type:        Manual\n\
         === Warnings\n\
         extension pgrowlocks was not restored: permission denied to create extension \"pgrowlocks\"\n\
         === Restore Logs\n\
         2026-11-24 03:00:02 +0000 pg_restore: creating EXTENSION \"pgrowlocks\"\n\
         2026-11-24 03:00:08 +0000 WARNING: extension pgrowlocks was not restored: permission denied to create extension \"pgrowlocks\"\n"
    );
}

#[test]
fn info_of_a_restore_says_completed_and_of_a_cancel_says_cancelled() {
    let mut r = done(
        record(
            "r001",
            TransferKind::Restore,
            "staging",
            "2026-11-24T03:00:00Z",
        ),
        "2026-11-24T03:00:01Z",
        "2026-11-24T03:00:09Z",
    );
    r.dump_size = Some(100_000);
    let text = info_text(&r, &[]);
    assert!(text.contains("\nStatus:      Completed\n"), "{text}");
    assert!(text.contains("\nDump Size:   97.66KB\n"), "{text}");
    r.state = TransferState::Cancelled;
    r.error = Some("cancelled by request".into());
    let text = info_text(&r, &[]);
    assert!(text.contains("\nStatus:      Cancelled\n"), "{text}");
    // The listing calls it Failed, as Heroku's does.
    assert_eq!(status_text(&r), "Failed 2026-11-24 03:00:09 +0000");
}

#[test]
fn the_newest_verification_is_the_verified_line() {
    let b = record(
        "b001",
        TransferKind::Capture,
        "main",
        "2026-11-24T02:00:00Z",
    );
    let mut v1 = done(
        record("v001", TransferKind::Verify, "main", "2026-11-24T03:00:00Z"),
        "2026-11-24T03:00:00Z",
        "2026-11-24T03:00:05Z",
    );
    v1.backup_id = Some(b.id);
    v1.detail = Some("checksum OK".into());
    let mut v2 = v1.clone();
    v2.id = "v002".parse().unwrap_or_else(|e| panic!("{e}"));
    v2.created_at = at("2026-11-25T03:00:00Z");
    v2.state = TransferState::Failed;
    v2.error = Some("sha mismatch".into());
    assert_eq!(verified_detail(std::slice::from_ref(&b), b.id), None);
    assert_eq!(
        verified_detail(&[b.clone(), v1.clone()], b.id).as_deref(),
        Some("OK 2026-11-24 03:00:05 +0000 (v001: checksum OK)")
    );
    assert_eq!(
        verified_detail(&[v2, b.clone(), v1], b.id).as_deref(),
        Some("FAILED 2026-11-24 03:00:05 +0000 (v002: sha mismatch)")
    );
}

#[test]
fn rebuild_report() {
    let id = |s: &str| s.parse::<TransferId>().unwrap_or_else(|e| panic!("{e}"));
    let r = RebuildReport {
        added: vec![id("b001"), id("b002")],
        present: vec![id("b003")],
        unreadable: vec![("backups/x.manifest".into(), "not JSON".into())],
        orphaned: vec![],
        conflicts: vec![],
    };
    assert_eq!(
        rebuild_text(&r),
        "Recreated 2 backup(s) from the store: b001, b002\n\
         Already in the catalog: b003\n\
         Skipped backups/x.manifest: not JSON\n\
         Databases, schedules and retention are not in the store: add them again with databases:add and backups:schedule.\n"
    );
}

/// `backups:capture --all`: the listing gains a Set column only when some backup has a set.
#[test]
fn listing_shows_the_set_of_whole_server_backups() {
    let mut b1 = record(
        "b001",
        TransferKind::Capture,
        "postgres://h:5432/blog",
        "2026-11-24T02:00:00Z",
    );
    b1.set = Some("b001".into());
    let b2 = record(
        "b002",
        TransferKind::Capture,
        "main",
        "2026-11-25T02:00:00Z",
    );
    let text = backups_listing(&[b1, b2], false);
    let backups = text.split("\n\n").next().unwrap_or_default();
    assert_eq!(
        backups,
        "=== Backups\n\
         ID    Created at                 Status   Size  Database                Set\n\
         ────  ─────────────────────────  ───────  ────  ──────────────────────  ────\n\
         b002  2026-11-25 02:00:00 +0000  Pending        main\n\
         b001  2026-11-24 02:00:00 +0000  Pending        postgres://h:5432/blog  b001"
    );
}

/// `backups:restore --set`: one line per database, then whether all were restored.
#[test]
fn set_restore_results_name_each_database_and_those_not_restored() {
    let mut ok = done(
        record(
            "r001",
            TransferKind::Restore,
            "postgres://h:5432/shop",
            "2026-11-24T02:00:00Z",
        ),
        "2026-11-24T02:00:00Z",
        "2026-11-24T02:00:13Z",
    );
    ok.backup_id = Some("b001".parse().unwrap_or_else(|e| panic!("{e}")));
    let mut bad = record(
        "r002",
        TransferKind::Restore,
        "postgres://h:5432/blog",
        "2026-11-24T02:00:00Z",
    );
    bad.backup_id = Some("b002".parse().unwrap_or_else(|e| panic!("{e}")));
    bad.state = TransferState::Failed;
    bad.error = Some("cannot connect".into());
    let refused = [crate::api::RefusedRestore {
        database: "crm".into(),
        error: "could not create database `crm`: denied".into(),
    }];
    assert_eq!(
        set_restore_results(&[ok.clone(), bad], &refused),
        "r001 b001 → shop: Completed 2026-11-24 02:00:13 +0000\n\
         r002 b002 → blog: Failed: cannot connect\n\
         crm: not started: could not create database `crm`: denied\n\
         2 of 3 databases not restored: blog, crm; see `pgbackups backups:info ID` for each, fix the cause and restore those backups one by one with `pgbackups backups:restore ID DATABASE_URL`.\n"
    );
    assert_eq!(
        set_restore_results(&[ok], &[]),
        "r001 b001 → shop: Completed 2026-11-24 02:00:13 +0000\n\
         All 1 databases of the set restored.\n"
    );
}
