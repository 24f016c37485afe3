//! One writer per database, one truth about it: what a user sees when two transfers reach for
//! the same target, when a cancel meets the drop that empties a target, and when a delete
//! meets a restore of the same backup. Every race here is forced with the service's test
//! holds (`PGBACKUPS_TEST_HOLD`), never left to timing, and each is run several times.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Service, text, transfer_id};

/// How many times each forced interleaving runs.
const ROUNDS: usize = 3;

fn register(svc: &Service, name: &str, url: &str) {
    let out = svc.cli_with_stdin(&["databases:add", name], url);
    assert!(out.status.success(), "{}", text(&out));
}

/// Waits until the transfer's log has `line`.
fn wait_for_log(svc: &Service, id: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !svc.info(id)["logs"].to_string().contains(line) {
        assert!(
            Instant::now() < deadline,
            "{id} never logged {line:?}: {}",
            svc.info(id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cluster with `app` (table t: 1..1000) captured as b001, then t grown to 1..2000 and
/// captured as b002, and `target` holding one precious row.
fn two_backups() -> Cluster {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)",
    );
    pg.create_db("target");
    pg.psql(
        "target",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
    );
    pg
}

fn capture(svc: &Service) {
    let out = svc.cli(&["backups:capture", "app"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A service (its data directory with it) that holds transfers at `holds`, with `app` and
/// `target` registered and `app` captured as b001.
fn service_with_b001(pg: &Cluster, holds: &str) -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_in_with(dir.path().to_path_buf(), &[("PGBACKUPS_TEST_HOLD", holds)]);
    register(&svc, "app", &pg.url("app"));
    register(&svc, "target", &pg.url("target"));
    capture(&svc);
    (dir, svc)
}

fn start_restore(svc: &Service, backup: &str, target: &str) -> std::process::Output {
    svc.cli(&[
        "backups:restore",
        backup,
        target,
        "--confirm",
        "target",
        "--no-wait",
    ])
}

fn api(svc: &Service, method: &str, path: &str, body: &str) -> (u16, String) {
    svc.raw_http(&format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        svc.token(),
        body.len()
    ))
}

#[test]
fn a_second_transfer_into_a_database_being_restored_is_refused_at_once_naming_the_first() {
    let pg = two_backups();
    let (dir, svc) = service_with_b001(&pg, "before-empty");
    pg.psql("app", "INSERT INTO t SELECT generate_series(1001, 2000)");
    capture(&svc);

    for round in 0..ROUNDS {
        // The first restore holds the target; it waits just before emptying it.
        let out = start_restore(&svc, "b001", "target");
        assert!(out.status.success(), "{}", text(&out));
        let first = transfer_id(&out);
        wait_for_log(&svc, &first, "Test hold: before-empty");

        // Every way of naming the same database is refused, with the first one named.
        let localhost = pg.url("target").replace("127.0.0.1", "localhost");
        let spelled = pg
            .url("target")
            .replace("/target", "/target?sslmode=disable");
        for (what, out) in [
            (
                "the same backup again",
                start_restore(&svc, "b001", "target"),
            ),
            ("another backup", start_restore(&svc, "b002", "target")),
            ("a URL", start_restore(&svc, "b002", &pg.url("target"))),
            ("localhost", start_restore(&svc, "b002", &localhost)),
            (
                "a URL with parameters",
                start_restore(&svc, "b002", &spelled),
            ),
            (
                "a copy",
                svc.cli(&["copy", "app", "target", "--confirm", "target", "--no-wait"]),
            ),
            (
                "a push",
                svc.cli(&[
                    "push",
                    &pg.url("app"),
                    "target",
                    "--confirm",
                    "target",
                    "--no-wait",
                ]),
            ),
            (
                "an atomic restore",
                svc.cli(&[
                    "backups:restore",
                    "b002",
                    "target",
                    "--confirm",
                    "target",
                    "--atomic",
                    "--no-wait",
                ]),
            ),
        ] {
            let said = text(&out);
            assert!(!out.status.success(), "round {round}, {what}: {said}");
            assert!(
                said.contains(&first) && said.contains("already being written"),
                "round {round}, {what}: {said}"
            );
        }
        // The API answers 409 with the same message.
        let (status, body) = api(
            &svc,
            "POST",
            "/api/restores",
            r#"{"backup": "b002", "database": "target", "confirm": "target", "jobs": 1}"#,
        );
        assert_eq!(status, 409, "{body}");
        assert!(body.contains(&first), "{body}");

        // Once the first has ended, the target is free again.
        svc.ok(&["backups:cancel", &first]);
        let info = svc.wait_state(&first, &["cancelled"]);
        assert!(
            info["error"].as_str().unwrap().contains("not changed"),
            "{info}"
        );
        assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
    }

    // Without the hold, the restore of b002 runs alone and leaves exactly b002's rows.
    drop(svc);
    let svc = Service::start_in(dir.path().to_path_buf());
    let out = svc.cli(&["backups:restore", "b002", "target", "--confirm", "target"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        pg.psql("target", "SELECT count(*), count(DISTINCT id) FROM t")
            .trim(),
        "2000|2000"
    );
}

/// The service's own connection that empties the target, as seen in pg_stat_activity.
fn emptying_waits_on_a_lock(pg: &Cluster, id: &str) -> bool {
    pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgbackups-{id}-empty-%' AND wait_event_type = 'Lock'"
        ),
    )
    .trim()
        == "1"
}

#[test]
fn a_cancel_while_the_target_is_being_emptied_says_exactly_what_happened_to_it() {
    let pg = two_backups();
    let (_dir, svc) = service_with_b001(&pg, "");
    let precious = |pg: &Cluster| {
        pg.psql(
            "target",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'precious'",
        )
        .trim()
        .to_string()
    };

    // 1. The cancel reaches the drop while it runs (it waits for a lock an application
    //    holds): the server rolls the drop back, and the message says nothing changed.
    for round in 0..ROUNDS {
        for copy in [false, true] {
            let mut holder = pg.hold("target", "BEGIN; LOCK TABLE precious IN ACCESS SHARE MODE;");
            let out = if copy {
                svc.cli(&["copy", "app", "target", "--confirm", "target", "--no-wait"])
            } else {
                start_restore(&svc, "b001", "target")
            };
            assert!(out.status.success(), "{}", text(&out));
            let id = transfer_id(&out);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !emptying_waits_on_a_lock(&pg, &id) {
                assert!(Instant::now() < deadline, "{}", svc.info(&id));
                std::thread::sleep(Duration::from_millis(50));
            }
            svc.ok(&["backups:cancel", &id]);
            let info = svc.wait_state(&id, &["cancelled"]);
            let error = info["error"].as_str().unwrap();
            assert!(error.contains("not changed"), "round {round}: {info}");
            holder.release();
            assert_eq!(precious(&pg), "1", "round {round}: {info}");
            assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
        }
    }

    // 2. The cancel comes just after the drop committed: the message says the target was
    //    emptied, which is true.
    drop(svc);
    let (_dir, svc) = service_with_b001(&pg, "after-empty");
    for round in 0..ROUNDS {
        pg.psql(
            "target",
            "CREATE TABLE IF NOT EXISTS precious (x int); INSERT INTO precious VALUES (42)",
        );
        let out = start_restore(&svc, "b001", "target");
        let id = transfer_id(&out);
        wait_for_log(&svc, &id, "Test hold: after-empty");
        assert_eq!(precious(&pg), "0", "the drop had committed");
        svc.ok(&["backups:cancel", &id]);
        let info = svc.wait_state(&id, &["cancelled"]);
        let error = info["error"].as_str().unwrap();
        assert!(
            error.contains("emptied") && !error.contains("not changed"),
            "round {round}: {info}"
        );
    }

    // 3. The cancel comes just before the drop: nothing changed, and it says so.
    drop(svc);
    let (_dir, svc) = service_with_b001(&pg, "before-empty");
    for round in 0..ROUNDS {
        pg.psql(
            "target",
            "CREATE TABLE IF NOT EXISTS precious (x int); TRUNCATE precious; INSERT INTO precious VALUES (42)",
        );
        let out = start_restore(&svc, "b001", "target");
        let id = transfer_id(&out);
        wait_for_log(&svc, &id, "Test hold: before-empty");
        svc.ok(&["backups:cancel", &id]);
        let info = svc.wait_state(&id, &["cancelled"]);
        assert!(
            info["error"].as_str().unwrap().contains("not changed"),
            "round {round}: {info}"
        );
        assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
    }
}

#[test]
fn a_backup_being_restored_cannot_be_deleted_and_two_deletes_do_not_both_succeed() {
    let pg = two_backups();
    let (_dir, svc) = service_with_b001(&pg, "before-empty,delete");
    for _ in 0..ROUNDS {
        capture(&svc);
    }

    // A restore reads b001: deleting it is refused (CLI and API), naming the restore.
    let out = start_restore(&svc, "b001", "target");
    let restore = transfer_id(&out);
    wait_for_log(&svc, &restore, "Test hold: before-empty");
    let out = svc.cli(&["backups:delete", "b001", "--confirm", "app"]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&restore), "{}", text(&out));
    let (status, body) = api(&svc, "DELETE", "/api/backups/b001?confirm=app", "");
    assert_eq!(status, 409, "{body}");
    svc.ok(&["backups:cancel", &restore]);
    svc.wait_state(&restore, &["cancelled"]);

    // Two deletes of one backup: while the first is in the middle of it, the second and a
    // restore are refused; afterwards the backup is gone.
    for round in 0..ROUNDS {
        let id = format!("b00{}", round + 2);
        let first = {
            let (url, token, id) = (svc.url.clone(), svc.token(), id.clone());
            std::thread::spawn(move || {
                common::cli(
                    &["backups:delete", &id, "--confirm", "app"],
                    &[("PGBACKUPS_URL", &url), ("PGBACKUPS_TOKEN", &token)],
                )
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while svc.log().matches("Test hold: delete").count() < round + 1 {
            assert!(Instant::now() < deadline, "{}", svc.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = svc.cli(&["backups:delete", &id, "--confirm", "app"]);
        assert!(!second.status.success(), "round {round}: {}", text(&second));
        assert!(text(&second).contains("being deleted"), "{}", text(&second));
        let restore = start_restore(&svc, &id, "target");
        assert!(!restore.status.success(), "{}", text(&restore));
        assert!(
            text(&restore).contains("being deleted"),
            "{}",
            text(&restore)
        );
        let first = first.join().unwrap();
        assert!(first.status.success(), "round {round}: {}", text(&first));
        let again = svc.cli(&["backups:delete", &id, "--confirm", "app"]);
        assert!(!again.status.success());
        assert!(text(&again).contains("no backup"), "{}", text(&again));
    }
}
