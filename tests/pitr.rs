//! Point-in-time recovery, proven with marker rows: a real cluster archives its WAL through
//! `pgbackups wal-push`, a base backup is taken with `pgbackups base-backup`, and each
//! `rollback` target (time, LSN, transaction) and `fork` brings back exactly the rows
//! committed up to it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Cluster, Service, archive_dirs, binary, cli, lsn, marks, restore, text};

/// Rolls back (or forks) into a new directory, starts it, waits for the end of recovery and
/// returns the marker rows it has.
fn restore_and_read(args: &[&str], store_flags: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    marks(&restore(args, store_flags, env, &[]))
}

/// The `archive_command` line that archives into `storage` under the name `main`.
fn archive_command(storage: &str, cli_dir: &str) -> String {
    format!(
        "archive_command = '{} wal-push --name main --storage {storage} --data-dir {cli_dir} %p'",
        binary()
    )
}

/// Takes a base backup of `pg` into `storage`, the URL (with its password) from the
/// environment; returns what the command printed.
fn base_backup(pg: &Cluster, storage: &str, cli_dir: &str) -> String {
    let out = Command::new(binary())
        .args(["base-backup", "--name", "main", "--storage", storage])
        .env("PGBACKUPS_DATABASE_URL", pg.url("postgres"))
        .env("PGBACKUPS_DATA_DIR", cli_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

#[test]
fn a_rollback_follows_a_promotion_onto_the_new_timeline() {
    let (_dir, store, cli_dir) = archive_dirs();
    let storage = format!("file://{}", store.display());
    let env = [("PGBACKUPS_DATA_DIR", cli_dir.as_str())];
    let archive_command = archive_command(&storage, &cli_dir);
    let primary = Cluster::start_with(&["archive_mode = on", &archive_command]);
    primary.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    base_backup(&primary, &storage, &cli_dir);
    primary.psql("postgres", "INSERT INTO marks VALUES ('a')");
    primary.switch_wal_and_wait_archived();
    drop(primary); // the old primary is gone

    // A standby that archives takes over: it replays the archive, then promotes (timeline 2).
    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    let promoted = restore(
        &["fork"],
        &store_flags,
        &env,
        &["archive_mode = on", &archive_command],
    );
    assert_eq!(marks(&promoted), ["a"]);
    assert_eq!(
        promoted
            .psql(
                "postgres",
                "SELECT timeline_id FROM pg_control_checkpoint()"
            )
            .trim(),
        "2"
    );
    promoted.psql("postgres", "INSERT INTO marks VALUES ('e')");
    std::thread::sleep(Duration::from_millis(1100));
    let t_e = promoted.psql(
        "postgres",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1100));
    promoted.psql("postgres", "INSERT INTO marks VALUES ('f')");
    promoted.switch_wal_and_wait_archived();
    assert!(store.join("wal/main/00000002.history.zst").exists());

    // From the timeline-1 base backup, through the switch, to a moment on timeline 2.
    assert_eq!(
        restore_and_read(&["rollback", "--to", t_e.trim()], &store_flags, &env),
        ["a", "e"]
    );
}

#[test]
fn rollback_to_a_time_an_lsn_a_transaction_and_fork_bring_back_exactly_the_committed_rows() {
    let (dir, store, cli_dir_s) = archive_dirs();
    let storage = format!("file://{}", store.display());
    let env = [("PGBACKUPS_DATA_DIR", cli_dir_s.as_str())];
    let archive_command = archive_command(&storage, &cli_dir_s);
    let pg = Cluster::start_with(&["archive_mode = on", &archive_command]);
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");

    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    // Before any base backup: a clear error.
    let out = cli(
        &[
            "rollback",
            "--to",
            "2026-01-01T00:00:00Z",
            "--target-dir",
            "/tmp/nowhere-pitr",
        ]
        .iter()
        .chain(&store_flags)
        .copied()
        .collect::<Vec<_>>(),
        &env,
    );
    assert!(
        !out.status.success() && text(&out).contains("no base backups"),
        "{}",
        text(&out)
    );

    // A base backup; the URL (with its password) comes from the environment.
    let said = base_backup(&pg, &storage, &cli_dir_s);
    assert!(!said.contains(common::PASSWORD));
    let now = |pg: &Cluster| {
        pg.psql(
            "postgres",
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .trim()
        .to_string()
    };
    // The insert position: the test clusters commit asynchronously, so the write position
    // (pg_current_wal_lsn) may still be before the last commit record.
    let lsn = |pg: &Cluster| {
        pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()")
            .trim()
            .to_string()
    };
    let pause = || std::thread::sleep(Duration::from_millis(1100));

    pg.psql("postgres", "INSERT INTO marks VALUES ('a')");
    pause();
    let t_a = now(&pg);
    pause();
    pg.psql("postgres", "INSERT INTO marks VALUES ('b')");
    let lsn_b = lsn(&pg);
    pause();
    let xid_c = pg.psql(
        "postgres",
        "BEGIN; INSERT INTO marks VALUES ('c'); SELECT txid_current(); COMMIT;",
    );
    let xid_c = xid_c
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_string();
    pause();
    pg.psql("postgres", "INSERT INTO marks VALUES ('d')");
    // Everything up to here archived.
    pg.switch_wal_and_wait_archived();

    assert_eq!(
        restore_and_read(&["rollback", "--to", &t_a], &store_flags, &env),
        ["a"]
    );
    assert_eq!(
        restore_and_read(&["rollback", "--lsn", &lsn_b], &store_flags, &env),
        ["a", "b"]
    );
    assert_eq!(
        restore_and_read(&["rollback", "--xid", &xid_c], &store_flags, &env),
        ["a", "b", "c"]
    );
    assert_eq!(
        restore_and_read(&["fork"], &store_flags, &env),
        ["a", "b", "c", "d"]
    );

    // Outside the window: a clear error naming it; the directory stays empty.
    let empty = dir.path().join("empty");
    let out = cli(
        &[
            "rollback",
            "--to",
            "2001-01-01T00:00:00Z",
            "--data-dir",
            empty.to_str().unwrap(),
        ]
        .iter()
        .chain(&store_flags)
        .copied()
        .collect::<Vec<_>>(),
        &env,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("outside the window"), "{}", text(&out));
    // The old spelling of --target-dir still works, and says so.
    assert!(
        text(&out).contains("--data-dir for rollback/fork is deprecated; use --target-dir"),
        "{}",
        text(&out)
    );
    assert!(!empty.exists() || std::fs::read_dir(&empty).unwrap().next().is_none());
    // The archive summed up; then a segment goes missing and the gap is reported loudly.
    let out = cli(&[&["protection:info"][..], &store_flags].concat(), &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Restorable window") && text(&out).contains("none"),
        "{}",
        text(&out)
    );
    let out = cli(
        &[&["protection:expire", "--keep", "1"][..], &store_flags].concat(),
        &env,
    );
    assert!(
        text(&out).contains("Expired 0 base backup(s)"),
        "{}",
        text(&out)
    );
    let mut segments: Vec<_> = std::fs::read_dir(store.join("wal/main"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 28 && n.ends_with(".zst"))
        .collect();
    segments.sort();
    std::fs::remove_file(store.join("wal/main").join(&segments[segments.len() - 2])).unwrap();
    let out = cli(&[&["protection:info"][..], &store_flags].concat(), &env);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("WAL GAP"), "{}", text(&out));
    // A rollback across the gap is refused instead of ending early.
    let gapped = dir.path().join("gapped");
    let out = cli(
        &[
            &["fork", "--target-dir", gapped.to_str().unwrap()][..],
            &store_flags,
        ]
        .concat(),
        &env,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("has a gap"), "{}", text(&out));

    let out = cli(
        &["rollback", "--data-dir", "/tmp/x"]
            .iter()
            .chain(&store_flags)
            .copied()
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(
        !out.status.success() && text(&out).contains("give one of"),
        "{}",
        text(&out)
    );
}

#[test]
fn protect_streams_wal_through_a_killed_service_and_forks_at_the_latest_moment() {
    let (dir, store, cli_dir) = archive_dirs();
    let storage = format!("file://{}", store.display());
    // No archive_command: the service streams the WAL itself.
    let pg = Cluster::start();
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    let svc_dir = dir.path().join("service");
    let mut hook = common::Webhook::start();
    let serve_args = [
        "--storage",
        storage.as_str(),
        "--notify-url",
        hook.url.as_str(),
    ];
    let serve_env = [("PGBACKUPS_PARTIAL_SECS", "1")];
    let start = || Service::try_start(svc_dir.clone(), &serve_args, &serve_env).unwrap();
    let mut svc = start();
    svc.cli_with_stdin(&["databases:add", "main"], &pg.url("postgres"));

    // A role without REPLICATION, then without a pg_hba.conf line: each error says what to do.
    pg.psql(
        "postgres",
        "CREATE ROLE plain LOGIN PASSWORD 'plain-pw-123'",
    );
    let plain = pg.url("postgres").replace(
        &format!("postgres:{}@", common::PASSWORD),
        "plain:plain-pw-123@",
    );
    svc.cli_with_stdin(&["databases:add", "plain"], &plain);
    let out = svc.cli(&["protect", "plain"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("ALTER ROLE plain REPLICATION"),
        "{}",
        text(&out)
    );
    // Only registered names: a URL (even with a space in front) is refused.
    let out = svc.cli(&["protect", " postgres://x@127.0.0.1/y?a=/../../z"]);
    assert!(
        !out.status.success() && text(&out).contains("register the URL first"),
        "{}",
        text(&out)
    );
    pg.psql("postgres", "ALTER ROLE plain REPLICATION");
    let hba = pg.data_dir().join("pg_hba.conf");
    let kept: String = std::fs::read_to_string(&hba)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("replication"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&hba, kept).unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let out = svc.cli(&["protect", "plain"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("host replication plain 127.0.0.1/32"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("plain-pw-123"));

    // The superuser may (initdb's pg_hba.conf had a replication line; put it back).
    std::fs::write(
        &hba,
        std::fs::read_to_string(&hba).unwrap()
            + "host replication all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let said = svc.ok(&["protect", "main"]);
    assert!(said.contains("pgbackups_main"), "{said}");
    let slots = || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgbackups_main'",
        )
        .trim()
        .to_string()
    };
    assert_eq!(slots(), "1");
    let info = |svc: &Service| -> serde_json::Value {
        let out = svc.cli(&["protection:info", "main", "--json"]);
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    // The first base backup, taken as soon as the WAL streams.
    common::wait_until(
        60,
        || info(&svc)["live"]["base_backups"].as_u64() == Some(1),
        || format!("no base backup: {}\n{}", info(&svc), svc.log()),
    );

    // Rows around a crash of the service, with segments filled and switched meanwhile.
    let fill = "INSERT INTO filler SELECT md5(g::text) FROM generate_series(1, 200000) g";
    pg.psql("postgres", "CREATE TABLE filler (t text)");
    pg.psql("postgres", "INSERT INTO marks VALUES ('a')");
    pg.psql("postgres", fill);
    pg.psql("postgres", "INSERT INTO marks VALUES ('b')");
    svc.kill9();
    pg.psql("postgres", "INSERT INTO marks VALUES ('c')");
    pg.psql("postgres", fill);
    pg.psql("postgres", fill);
    pg.psql("postgres", "INSERT INTO marks VALUES ('d')");
    // While the service is down, the slot keeps the WAL it has not stored.
    let held = pg.psql(
        "postgres",
        "SELECT pg_current_wal_lsn() - restart_lsn > 16 * 1024 * 1024 FROM pg_replication_slots WHERE slot_name = 'pgbackups_main'",
    );
    assert_eq!(held.trim(), "t");
    let svc = start();
    pg.psql("postgres", "INSERT INTO marks VALUES ('e')");
    let end = lsn(&pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()"));
    // Stored within seconds, the segment still filling included.
    common::wait_until(
        60,
        || {
            info(&svc)["live"]["stored_lsn"]
                .as_str()
                .is_some_and(|l| lsn(l) >= end)
        },
        || format!("WAL not stored up to {end:X}: {}", info(&svc)),
    );
    // The server restarts: the receiver reconnects and the stream goes on. Its failure, and
    // its recovery, are notified.
    pg.restart();
    let problem = hook.wait_for(60, |e| e["event"] == "protection.problem");
    assert_eq!(problem["database"], "main", "{problem}");
    assert!(
        problem["message"]
            .as_str()
            .is_some_and(|m| m.contains("WAL receiver failing")),
        "{problem}"
    );
    hook.wait_for(60, |e| e["event"] == "protection.recovered");
    pg.psql("postgres", "INSERT INTO marks VALUES ('f')");
    pg.psql("postgres", fill);
    let end = lsn(&pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()"));
    common::wait_until(
        90,
        || {
            info(&svc)["live"]["stored_lsn"]
                .as_str()
                .is_some_and(|l| lsn(l) >= end)
        },
        || {
            format!(
                "WAL not stored up to {end:X} after a server restart: {}",
                info(&svc)
            )
        },
    );
    common::wait_until(
        30,
        || info(&svc)["live"]["receiver"] == "streaming",
        || format!("the receiver did not come back: {}", info(&svc)),
    );
    let now = info(&svc);
    assert_eq!(now["problems"], serde_json::json!([]), "{now}");
    assert_eq!(now["live"]["receiver"], "streaming", "{now}");
    assert!(now["live"]["lag_bytes"].is_u64(), "{now}");
    assert!(now["live"]["lag_seconds"].is_u64(), "{now}");
    assert_eq!(now["archive"]["gaps"], serde_json::json!([]), "{now}");
    let shown = svc.ok(&["protection:info"]);
    for part in ["main: protected", "WAL lag", "Last base backup", "Gaps"] {
        assert!(shown.contains(part), "{part}: {shown}");
    }
    let metrics = svc.ok_http("/api/metrics");
    assert!(
        metrics.contains("pgbackups_wal_lag_bytes{database=\"main\"}"),
        "{metrics}"
    );

    // A fork at the latest moment has every row, the ones written while the service was
    // down included. The restore_command runs as the server's user, which cannot read the
    // service's store (whose `.partial` it rewrites every second): it fetches through the
    // service.
    let store_flags = ["--storage", storage.as_str(), "--through-service"];
    let token = svc.token();
    let env = [
        ("PGBACKUPS_DATA_DIR", cli_dir.as_str()),
        ("PGBACKUPS_URL", svc.url.as_str()),
        ("PGBACKUPS_TOKEN", token.as_str()),
    ];
    assert_eq!(
        restore_and_read(&["fork", "main"], &store_flags, &env),
        ["a", "b", "c", "d", "e", "f"]
    );

    // unprotect drops the slot (and the database can then be removed).
    let out = svc.cli(&["databases:remove", "main"]);
    assert!(!out.status.success() && text(&out).contains("unprotect"));
    svc.ok(&["unprotect", "main"]);
    assert_eq!(slots(), "0");

    // A fork becomes the new primary, on timeline 2, under the same name: its stream goes on
    // into the same archive, timeline history included, and a fork of it has every row.
    let promoted = restore(&["fork", "main"], &store_flags, &env, &[]);
    svc.ok(&["databases:remove", "main"]);
    svc.cli_with_stdin(&["databases:add", "main"], &promoted.url("postgres"));
    promoted.psql("postgres", "INSERT INTO marks VALUES ('g')");
    svc.ok(&["protect", "main"]);
    common::wait_until(
        60,
        || info(&svc)["live"]["base_backups"].as_u64() == Some(2),
        || {
            format!(
                "no base backup on timeline 2: {}\n{}",
                info(&svc),
                svc.log()
            )
        },
    );
    promoted.psql("postgres", "INSERT INTO marks VALUES ('h')");
    let end = lsn(&promoted.psql("postgres", "SELECT pg_current_wal_insert_lsn()"));
    common::wait_until(
        60,
        || {
            info(&svc)["live"]["stored_lsn"]
                .as_str()
                .is_some_and(|l| lsn(l) >= end)
        },
        || format!("WAL of timeline 2 not stored up to {end:X}: {}", info(&svc)),
    );
    assert!(store.join("wal/main/00000002.history.zst").exists());
    assert_eq!(
        restore_and_read(&["fork", "main"], &store_flags, &env),
        ["a", "b", "c", "d", "e", "f", "g", "h"]
    );
    svc.ok(&["unprotect", "main"]);
}

/// The current time of `pg` in UTC, as `--to` takes it.
fn server_now(pg: &Cluster) -> String {
    pg.psql(
        "postgres",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .trim()
    .to_string()
}

/// The transaction ID of a statement run in its own transaction.
fn xid_of(pg: &Cluster, statement: &str) -> String {
    pg.psql(
        "postgres",
        &format!("BEGIN; {statement}; SELECT txid_current(); COMMIT;"),
    )
    .lines()
    .map(str::trim)
    .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    .unwrap()
    .to_string()
}

#[test]
fn rollback_to_a_moment_or_lsn_past_the_end_of_the_archive_is_refused_before_anything_is_unpacked()
{
    let (dir, store, cli_dir) = archive_dirs();
    let storage = format!("file://{}", store.display());
    let env = [("PGBACKUPS_DATA_DIR", cli_dir.as_str())];
    let pg = Cluster::start_with(&["archive_mode = on", &archive_command(&storage, &cli_dir)]);
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    base_backup(&pg, &storage, &cli_dir);
    pg.psql("postgres", "INSERT INTO marks VALUES ('a')");
    let last_commit = server_now(&pg);
    std::thread::sleep(Duration::from_millis(1100));
    pg.switch_wal_and_wait_archived();
    let end = lsn(&pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()"));
    std::thread::sleep(Duration::from_millis(1100));

    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    let refused = |target: &[&str], expect: &[&str]| {
        let data = dir.path().join("never");
        let args = [
            &["rollback"][..],
            target,
            &["--data-dir", data.to_str().unwrap()],
            &store_flags,
        ]
        .concat();
        let out = cli(&args, &env);
        assert!(!out.status.success(), "{target:?}: {}", text(&out));
        for part in expect {
            assert!(
                text(&out).contains(part),
                "{target:?}, {part}: {}",
                text(&out)
            );
        }
        assert!(!data.exists(), "{target:?} unpacked something");
    };
    // A future moment, "now" and a moment after the last commit: recovery would never meet
    // a transaction that ended after them.
    let future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string();
    let past_the_end = [
        "past the end of the archive of main",
        "its last transaction ended at",
        "its last WAL record starts at LSN",
    ];
    refused(&["--to", &future], &past_the_end);
    refused(
        &["--to", &jiff::Timestamp::now().to_string()],
        &past_the_end,
    );
    refused(&["--by", "1s"], &past_the_end);
    // The last transaction's time is the one the cluster committed 'a' at.
    let out = cli(
        &[
            &["rollback", "--by", "1s", "--data-dir", "/tmp/never-pitr"][..],
            &store_flags,
        ]
        .concat(),
        &env,
    );
    let said = text(&out);
    let stated: jiff::Timestamp = said
        .split("its last transaction ended at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let committed: jiff::Timestamp = last_commit.parse().unwrap();
    assert!(
        stated <= committed && committed.duration_since(stated).as_secs_f64() < 1.0,
        "{stated} vs {committed}: {said}"
    );
    // An LSN past the last archived record.
    let beyond = format!(
        "{:X}/{:X}",
        (end + (64 << 20)) >> 32,
        (end + (64 << 20)) as u32
    );
    refused(
        &["--lsn", &beyond],
        &[
            &format!("LSN {beyond} is past the end of the archive of main"),
            "its last WAL record starts at LSN",
        ],
    );
}

#[test]
fn rollback_with_start_returns_once_the_server_accepts_writes_or_fails_with_the_servers_own_error()
{
    let (_dir, store, cli_dir) = archive_dirs();
    let storage = format!("file://{}", store.display());
    let env = [("PGBACKUPS_DATA_DIR", cli_dir.as_str())];
    // The recovered server's sockets go where the backed-up configuration says: not a
    // directory the package may not have made.
    let pg = Cluster::start_with(&[
        "archive_mode = on",
        &archive_command(&storage, &cli_dir),
        "unix_socket_directories = '/tmp'",
    ]);
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    // 'a' commits before the base backup: recovery from it never meets that transaction.
    let xid_a = xid_of(&pg, "INSERT INTO marks VALUES ('a')");
    base_backup(&pg, &storage, &cli_dir);
    pg.psql("postgres", "INSERT INTO marks VALUES ('b')");
    let lsn_b = pg
        .psql("postgres", "SELECT pg_current_wal_insert_lsn()")
        .trim()
        .to_string();
    pg.psql("postgres", "INSERT INTO marks VALUES ('c')");
    pg.switch_wal_and_wait_archived();
    // The rollback runs as the server's OS user, which reads the store.
    common::give_to_server_user_recursively(&store);
    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    let start = |target: &[&str]| {
        let root = common::server_user_dir();
        let port = common::free_port();
        let data = root.path().join("data");
        let port_s = port.to_string();
        let args = [
            &["rollback"][..],
            target,
            &["--start", "--port", &port_s],
            &["--data-dir", data.to_str().unwrap()],
            &store_flags,
        ]
        .concat();
        let out = common::cli_as_server_user(&args, &env);
        (out, Cluster::adopt(root, port))
    };

    let (out, pg_b) = start(&["--lsn", &lsn_b]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("accepts writes"), "{}", text(&out));
    // At once, no wait: it accepts writes and has exactly the rows up to b.
    pg_b.psql("postgres", "INSERT INTO marks VALUES ('z')");
    assert_eq!(marks(&pg_b), ["a", "b", "z"]);

    // A transaction before the base backup, and a restore point never made: only recovery
    // can tell, and the command says what the server said.
    for target in [&["--xid", &xid_a][..], &["--restore-point", "never-made"]] {
        let (out, _stopped) = start(target);
        assert!(!out.status.success(), "{target:?}: {}", text(&out));
        for part in [
            "the server stopped before recovery reached the target",
            "FATAL:  recovery ended before configured recovery target was reached",
        ] {
            assert!(
                text(&out).contains(part),
                "{target:?}, {part}: {}",
                text(&out)
            );
        }
    }
    // As root, --start runs the server as the data directory's owner; root is never that
    // owner (PostgreSQL refuses to run as root): refused before anything is unpacked.
    if nix::unistd::Uid::effective().is_root() {
        let root_owned = tempfile::tempdir().unwrap();
        let data = root_owned.path().join("data");
        let out = cli(
            &[
                &["rollback", "--lsn", &lsn_b, "--start", "--data-dir"][..],
                &[data.to_str().unwrap()],
                &store_flags,
            ]
            .concat(),
            &env,
        );
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("but root owns"), "{}", text(&out));
        assert!(!data.exists());
    }
}

#[test]
fn rollback_to_a_restore_point_or_to_the_end_of_a_base_backup_brings_back_exactly_their_rows() {
    let (dir, store, cli_dir) = archive_dirs();
    let storage = format!("file://{}", store.display());
    let env = [("PGBACKUPS_DATA_DIR", cli_dir.as_str())];
    let pg = Cluster::start_with(&["archive_mode = on", &archive_command(&storage, &cli_dir)]);
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    pg.psql("postgres", "INSERT INTO marks VALUES ('a')");
    let first = base_backup(&pg, &storage, &cli_dir);
    let first_id = first.lines().next().unwrap().trim().to_string();
    pg.psql("postgres", "INSERT INTO marks VALUES ('b')");
    pg.psql("postgres", "SELECT pg_create_restore_point('before-c')");
    pg.psql("postgres", "INSERT INTO marks VALUES ('c')");
    // A second base backup after the restore point: recovery to it must not start there.
    base_backup(&pg, &storage, &cli_dir);
    pg.psql("postgres", "INSERT INTO marks VALUES ('d')");
    pg.psql("postgres", "SELECT pg_create_restore_point('before-e')");
    pg.psql("postgres", "INSERT INTO marks VALUES ('e')");
    pg.switch_wal_and_wait_archived();

    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    assert_eq!(
        restore_and_read(
            &["rollback", "--restore-point", "before-c"],
            &store_flags,
            &env
        ),
        ["a", "b"]
    );
    assert_eq!(
        restore_and_read(
            &["rollback", "--restore-point", "before-e"],
            &store_flags,
            &env
        ),
        ["a", "b", "c", "d"]
    );
    // The newest base backup as it was, and a chosen one.
    assert_eq!(
        restore_and_read(&["rollback", "--immediate"], &store_flags, &env),
        ["a", "b", "c"]
    );
    assert_eq!(
        restore_and_read(
            &["rollback", "--immediate", "--base-backup", &first_id],
            &store_flags,
            &env
        ),
        ["a"]
    );
    let nowhere = dir.path().join("nowhere");
    let out = cli(
        &[
            &[
                "rollback",
                "--immediate",
                "--base-backup",
                "20010101T000000Z",
            ][..],
            &["--data-dir", nowhere.to_str().unwrap()],
            &store_flags,
        ]
        .concat(),
        &env,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("has no base backup 20010101T000000Z")
            && text(&out).contains(&first_id),
        "{}",
        text(&out)
    );
    assert!(!nowhere.exists());
}

#[test]
fn a_rollback_follows_the_timeline_it_is_given() {
    let (_dir, store, cli_dir) = archive_dirs();
    let storage = format!("file://{}", store.display());
    let env = [("PGBACKUPS_DATA_DIR", cli_dir.as_str())];
    let archive_command = archive_command(&storage, &cli_dir);
    let primary = Cluster::start_with(&["archive_mode = on", &archive_command]);
    primary.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    base_backup(&primary, &storage, &cli_dir);
    primary.psql("postgres", "INSERT INTO marks VALUES ('a')");
    primary.switch_wal_and_wait_archived();

    // A fork is promoted onto timeline 2 and writes 'e'; the old primary goes on writing 'x'
    // on timeline 1: two histories after 'a'.
    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    let promoted = restore(
        &["fork"],
        &store_flags,
        &env,
        &["archive_mode = on", &archive_command],
    );
    promoted.psql("postgres", "INSERT INTO marks VALUES ('e')");
    promoted.switch_wal_and_wait_archived();
    primary.psql("postgres", "INSERT INTO marks VALUES ('x')");
    primary.switch_wal_and_wait_archived();
    assert!(store.join("wal/main/00000002.history.zst").exists());

    for (timeline, rows) in [
        (None, ["a", "e"]),
        (Some("latest"), ["a", "e"]),
        (Some("2"), ["a", "e"]),
        (Some("1"), ["a", "x"]),
        (Some("current"), ["a", "x"]),
    ] {
        let mut args = vec!["fork"];
        if let Some(t) = timeline {
            args.extend(["--timeline", t]);
        }
        assert_eq!(
            restore_and_read(&args, &store_flags, &env),
            rows,
            "{timeline:?}"
        );
    }
    let out = cli(
        &[
            &["fork", "--timeline", "two", "--data-dir", "/tmp/never-pitr"][..],
            &store_flags,
        ]
        .concat(),
        &env,
    );
    assert!(
        !out.status.success() && text(&out).contains("--timeline `two` is not a timeline"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_fork_started_by_root_runs_as_the_data_directorys_owner_and_fetches_its_wal_through_the_service()
 {
    if !nix::unistd::Uid::effective().is_root() {
        return; // the point is a store the server's OS user cannot read
    }
    let dir = tempfile::tempdir().unwrap();
    // The service's store is private to root: the server's OS user cannot read it.
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let storage = format!("file://{}", store.display());
    let pg = Cluster::start_with(&["unix_socket_directories = '/tmp'"]);
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    let svc = Service::try_start(
        dir.path().join("service"),
        &["--storage", storage.as_str()],
        &[("PGBACKUPS_PARTIAL_SECS", "1")],
    )
    .unwrap();
    svc.cli_with_stdin(&["databases:add", "main"], &pg.url("postgres"));
    svc.ok(&["protect", "main"]);
    let info = || -> serde_json::Value {
        serde_json::from_str(&svc.ok(&["protection:info", "main", "--json"])).unwrap()
    };
    common::wait_until(
        60,
        || info()["live"]["base_backups"].as_u64() == Some(1),
        || format!("no base backup: {}\n{}", info(), svc.log()),
    );
    pg.psql("postgres", "INSERT INTO marks VALUES ('a')");
    pg.psql("postgres", "INSERT INTO marks VALUES ('b')");
    let end = lsn(&pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()"));
    common::wait_until(
        60,
        || {
            info()["live"]["stored_lsn"]
                .as_str()
                .is_some_and(|l| lsn(l) >= end)
        },
        || format!("WAL not stored up to {end:X}: {}", info()),
    );

    // Root forks into a directory the server's OS user owns, and starts it. Reading the store
    // itself, the server cannot: the command says so, and what to do.
    let denied = common::server_user_dir();
    let denied_data = denied.path().join("data");
    let port_d = common::free_port().to_string();
    let out = cli(
        &[
            "fork",
            "main",
            "--start",
            "--port",
            &port_d,
            "--data-dir",
            denied_data.to_str().unwrap(),
            "--storage",
            storage.as_str(),
        ],
        &[(
            "PGBACKUPS_DATA_DIR",
            dir.path().join("cli").to_str().unwrap(),
        )],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("was denied what its restore_command reads")
            && text(&out).contains("--through-service"),
        "{}",
        text(&out)
    );
    let root = common::server_user_dir();
    let data = root.path().join("data");
    let port = common::free_port();
    let port_s = port.to_string();
    let token = svc.token();
    let out = cli(
        &[
            "fork",
            "main",
            "--through-service",
            "--start",
            "--port",
            &port_s,
            "--data-dir",
            data.to_str().unwrap(),
            "--storage",
            storage.as_str(),
        ],
        &[
            ("PGBACKUPS_URL", svc.url.as_str()),
            ("PGBACKUPS_TOKEN", token.as_str()),
            (
                "PGBACKUPS_DATA_DIR",
                dir.path().join("cli").to_str().unwrap(),
            ),
        ],
    );
    let forked = Cluster::adopt(root, port);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        forked.server_log()
    );
    assert_eq!(marks(&forked), ["a", "b"]);
    // The API token is in neither the restore_command nor the data directory; the WAL token
    // there opens this archive's WAL and nothing else.
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains(&token), "{auto}");
    let wal_token = std::fs::read_to_string(data.join("pgbackups-wal-token")).unwrap();
    assert!(!auto.contains(wal_token.trim()), "{auto}");
    let (status, _) = svc.raw_http(&format!(
        "GET /api/transfers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        wal_token.trim()
    ));
    assert_eq!(status, 401);
    let (status, _) = svc.raw_http(&format!(
        "GET /wal/other/000000010000000000000001 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        wal_token.trim()
    ));
    assert_eq!(status, 403);
    // The server runs as the data directory's owner, not root.
    let pid: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert_ne!(uid.split_whitespace().nth(1), Some("0"), "{uid}");
    svc.ok(&["unprotect", "main"]);
}
