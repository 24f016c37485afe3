//! Archive-command mode: `pgbackups wal-push` as a real server's archive_command, and
//! `pgbackups wal-fetch` as a restore_command would call it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Cluster, archive_dirs, binary, text};

fn run(args: &[&str]) -> Output {
    Command::new(binary()).args(args).output().unwrap()
}

#[test]
fn archived_wal_is_durable_idempotent_and_fetch_tells_missing_from_broken() {
    let (dir, store, cli_dir) = archive_dirs();
    let cli = cli_dir.as_str();
    let storage = format!("file://{}", store.display());
    let archive_command = format!(
        "archive_command = '{} wal-push --name main --storage {storage} --data-dir {cli_dir} %p'",
        binary()
    );
    let pg = Cluster::start_with(&["archive_mode = on", &archive_command]);
    pg.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100000) g",
    );
    // The server archives through wal-push; the segment is in the store once it says so.
    let segment = pg.switch_wal_and_wait_archived();
    let object = store.join(format!("wal/main/{segment}.zst"));
    assert!(object.exists(), "no {}", object.display());
    assert!(std::fs::metadata(&object).unwrap().len() < 16 << 20);

    let flags = ["--name", "main", "--storage", &storage, "--data-dir"];

    // wal-fetch: the segment as PostgreSQL wrote it.
    let fetched = dir.path().join("RECOVERYXLOG");
    let out = run(&[
        &["wal-fetch", &segment, fetched.to_str().unwrap()][..],
        &flags,
        &[cli],
    ]
    .concat());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 16 << 20);

    // Not in the archive: exit 1, the normal end of recovery.
    let missing = "0000000100000000000000FF";
    let out = run(&[
        &["wal-fetch", missing, fetched.to_str().unwrap()][..],
        &flags,
        &[cli],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(&[
        &["wal-fetch", "00000009.history", "/tmp/x"][..],
        &flags,
        &[cli],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Pushing the same content again succeeds; different content under the name fails.
    let again = dir.path().join(&segment);
    std::fs::copy(&fetched, &again).unwrap();
    let out = run(&[&["wal-push", again.to_str().unwrap()][..], &flags, &[cli]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already archived"), "{}", text(&out));
    let mut bytes = std::fs::read(&again).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&again, &bytes).unwrap();
    let out = run(&[&["wal-push", again.to_str().unwrap()][..], &flags, &[cli]].concat());
    assert!(!out.status.success());
    assert!(text(&out).contains("different content"), "{}", text(&out));
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        {
            let out = run(&[
                &["wal-fetch", &segment, fetched.to_str().unwrap()][..],
                &flags,
                &[cli],
            ]
            .concat());
            assert!(out.status.success());
            std::fs::read(&fetched).unwrap()
        },
        "the archived segment changed"
    );

    // Not a WAL name.
    let out = run(&[&["wal-push", "/etc/passwd"][..], &flags, &[cli]].concat());
    assert!(!out.status.success() && text(&out).contains("not a WAL file name"));

    // A store that cannot be reached: exit 126, so that PostgreSQL stops recovery rather
    // than ending it early.
    let conf = dir.path().join("broken.toml");
    std::fs::write(
        &conf,
        "[storage]\nurl = \"s3://nowhere/wal\"\nendpoint = \"http://127.0.0.1:9\"\nretry_timeout_secs = 1\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args([
            "wal-fetch",
            &segment,
            fetched.to_str().unwrap(),
            "--name",
            "main",
        ])
        .args(["--config", conf.to_str().unwrap(), "--data-dir", cli])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", text(&out));
    assert!(text(&out).contains("stops recovery"), "{}", text(&out));
    assert!(!Path::new(&format!("{}.pgbackups-partial", fetched.display())).exists());
}
