//! Point-in-time recovery, proven with marker rows: a real cluster archives its WAL through
//! `pgbackups wal-push`, a base backup is taken with `pgbackups base-backup`, and each
//! `rollback` target (time, LSN, transaction) and `fork` brings back exactly the rows
//! committed up to it.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, archive_dirs, binary, free_port, text};

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Rolls back (or forks) into a new directory, starts it, waits for the end of recovery and
/// returns the marker rows it has.
fn restore_and_read(args: &[&str], store_flags: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    marks(&restore(args, store_flags, env, &[]))
}

fn marks(pg: &Cluster) -> Vec<String> {
    pg.psql(
        "postgres",
        "SELECT string_agg(v, ',' ORDER BY v) FROM marks",
    )
    .trim()
    .split(',')
    .filter(|s| !s.is_empty())
    .map(str::to_string)
    .collect()
}

/// Rolls back (or forks) into a new directory with `extra` configuration lines, starts it
/// and waits for the end of recovery.
fn restore(args: &[&str], store_flags: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Cluster {
    let root = tempfile::Builder::new()
        .prefix("pgbackups-test-pitr-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = root.path().join("data");
    let port = free_port();
    let port_s = port.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--data-dir", data.to_str().unwrap(), "--port", &port_s]);
    all.extend_from_slice(store_flags);
    let out = cli(&all, env);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    if !extra.is_empty() {
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap();
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(&auto, conf).unwrap();
    }
    let pg = Cluster::start_existing(root, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("postgres", "SELECT pg_is_in_recovery()").trim() != "f" {
        assert!(
            Instant::now() < deadline,
            "recovery did not end:\n{}",
            pg.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pg
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
    let archive_command = format!(
        "archive_command = '{} wal-push --name main --storage {storage} --data-dir {cli_dir} %p'",
        binary()
    );
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
    let archive_command = format!(
        "archive_command = '{} wal-push --name main --storage {storage} --data-dir {cli_dir_s} %p'",
        binary()
    );
    let pg = Cluster::start_with(&["archive_mode = on", &archive_command]);
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");

    let store_flags = ["--name", "main", "--storage", storage.as_str()];
    // Before any base backup: a clear error.
    let out = cli(
        &[
            "rollback",
            "--to",
            "2026-01-01T00:00:00Z",
            "--data-dir",
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
            &["fork", "--data-dir", gapped.to_str().unwrap()][..],
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
