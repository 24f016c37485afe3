use super::*;
use crate::catalog::{Origin, TransferId};

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn db(name: &str) -> DatabaseRecord {
    DatabaseRecord {
        name: name.into(),
        url: format!("postgres://app@db.internal/{name}"),
        created_at: at("2026-11-01T00:00:00Z"),
    }
}

fn capture(n: u32, database: &str, state: TransferState, created: &str) -> TransferRecord {
    let mut t = TransferRecord::new(
        TransferId::new('b', n),
        TransferKind::Capture,
        Origin::Manual,
        database.into(),
        at(created),
    );
    t.state = state;
    if state == TransferState::Succeeded {
        t.object_size = Some(1440);
        t.finished_at = Some(at(created));
    }
    if state == TransferState::Failed {
        t.error = Some("pg_dump: connection refused".into());
    }
    t
}

/// Each database's summary, as the catalog would read it from `transfers`.
fn summaries(dbs: &[DatabaseRecord], transfers: &[TransferRecord]) -> Vec<DatabaseSummary> {
    dbs.iter()
        .map(|db| {
            let mut s = DatabaseSummary::new(&db.name);
            for t in transfers.iter().filter(|t| t.database == db.name) {
                s.consider(t);
            }
            s
        })
        .collect()
}

#[test]
fn the_overview_puts_databases_with_problems_first_and_says_what_is_wrong() {
    let now = at("2026-11-30T12:00:00Z");
    let dbs = [db("calm"), db("broken"), db("stale"), db("empty")];
    let transfers = [
        capture(1, "calm", TransferState::Succeeded, "2026-11-30T02:00:00Z"),
        capture(
            2,
            "broken",
            TransferState::Succeeded,
            "2026-11-30T02:00:00Z",
        ),
        capture(3, "broken", TransferState::Failed, "2026-11-30T03:00:00Z"),
        capture(4, "stale", TransferState::Succeeded, "2026-11-27T02:00:00Z"),
    ];
    let rows = overview_rows(&dbs, &summaries(&dbs, &transfers), &[], &[], now);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["broken", "empty", "stale", "calm"]);
    assert_eq!(
        rows[0].problems,
        ["last capture b003 failed: pg_dump: connection refused"]
    );
    assert_eq!(rows[1].problems, ["no backup yet"]);
    assert_eq!(
        rows[2].problems,
        ["no backup in over a day (the newest is 3 d ago)"]
    );
    let calm = &rows[3];
    assert!(calm.problems.is_empty());
    let b = calm.last_backup.as_ref().unwrap();
    assert_eq!(
        (b.id.as_str(), b.size.as_str(), b.age.as_str()),
        ("b001", "1.41KB", "10 h ago")
    );
    assert_eq!(b.status, "Completed");
}

#[test]
fn a_running_capture_shows_bytes_rate_and_time_left() {
    let mut t = capture(7, "main", TransferState::Running, "2026-11-30T12:00:00Z");
    t.started_at = Some(at("2026-11-30T12:00:00Z"));
    t.database_size = Some(40 << 20);
    t.bytes_processed = 10 << 20;
    let p = progress(&t, at("2026-11-30T12:00:05Z"));
    assert_eq!((p.value, p.max), (10 << 20, 40 << 20));
    assert_eq!(
        p.text,
        "10.00MB of about 40.00MB · 2.00MB/s · about 15 s left"
    );
    let card = transfer_card(&t, at("2026-11-30T12:00:05Z"));
    assert!(card.live);
    assert_eq!(card.state, "running");
}

#[test]
fn times_read_as_a_person_says_them() {
    let now = at("2026-11-30T12:00:00Z");
    assert_eq!(ago(now, at("2026-11-30T11:59:30Z")), "just now");
    assert_eq!(ago(now, at("2026-11-30T11:48:00Z")), "12 min ago");
    assert_eq!(ago(now, at("2026-11-28T12:00:00Z")), "2 d ago");
    assert_eq!(seconds_text(185), "3 min 5 s");
    assert_eq!(status_words(201), "done");
    assert_eq!(status_words(403), "refused: not allowed");
}

#[test]
fn the_overview_shows_the_newest_restore_test_and_counts_what_is_running() {
    let now = at("2026-11-30T12:00:00Z");
    let verify = |n: u32, detail: &str, created: &str| {
        let mut t = capture(n, "main", TransferState::Succeeded, created);
        t.id = TransferId::new('v', n);
        t.kind = TransferKind::Verify;
        t.started_at = Some(at(created));
        t.finished_at = Some(at(created) + jiff::SignedDuration::from_secs(65));
        t.detail = Some(detail.into());
        t
    };
    let transfers = [
        capture(1, "main", TransferState::Succeeded, "2026-11-30T02:00:00Z"),
        verify(
            1,
            &format!(
                "checksum ok; {}: 2 tables",
                crate::catalog::RESTORE_TEST_DETAIL
            ),
            "2026-11-30T09:00:00Z",
        ),
        // Newer, but only a checksum: not a restore test.
        verify(2, "checksum ok", "2026-11-30T10:00:00Z"),
        capture(2, "main", TransferState::Running, "2026-11-30T11:59:00Z"),
    ];
    let dbs = [db("main")];
    let rows = overview_rows(&dbs, &summaries(&dbs, &transfers), &[], &[], now);
    let main = &rows[0];
    assert_eq!(
        main.restore_test.as_deref(),
        Some("3 h ago (v001, took 1 min 5 s)")
    );
    assert_eq!(main.running, 1);
    assert_eq!(main.last_backup.as_ref().unwrap().id, "b002");
    assert!(main.problems.is_empty(), "{:?}", main.problems);
}
