//! What `backups` and `backups:info` print after real captures, restores and copies, read as a
//! `heroku pg:backups` user reads them: sizes in binary units with two decimals (`1.40KB`),
//! "Completed" for every transfer that succeeded, a cancelled transfer "Failed" in the list,
//! the Copies section always there, and the compression against the original database size.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Service, text, transfer_id};
use pgbackups::format;

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

/// The listing's row of transfer `id`.
fn row<'a>(listing: &'a str, id: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{listing}"))
}

/// The value of `field:` in `backups:info`'s text.
fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in:\n{info}"))
}

fn size_of(svc: &Service, id: &str, key: &str) -> u64 {
    svc.info(id)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{id} has no {key}: {}", svc.info(id)))
}

#[test]
fn backups_lists_captures_restores_and_copies_in_herokus_words_and_units() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 20000) g",
    );
    pg.create_db("staging");
    pg.create_db("dev");

    // First a service that holds restores just before emptying their target, so that one can
    // be cancelled there for certain.
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_in_with(
        dir.path().to_path_buf(),
        &[("PGBACKUPS_TEST_HOLD", "before-empty")],
    );
    for name in ["app", "staging", "dev"] {
        register(&svc, name, &pg.url(name));
    }
    // Heroku prints the Copies section even before there is any copy.
    let empty = svc.ok(&["backups"]);
    assert!(
        empty.ends_with(
            "\n=== Copies\nNo copies found. Use `pgbackups copy` to copy a database to another.\n"
        ),
        "{empty}"
    );
    let out = svc.cli(&["backups:capture", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(transfer_id(&out), "b001");
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "staging",
        "--confirm",
        "staging",
        "--no-wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let cancelled = transfer_id(&out);
    wait_for_log(&svc, &cancelled, "Test hold: before-empty");
    svc.ok(&["backups:cancel", &cancelled]);
    svc.wait_state(&cancelled, &["cancelled"]);
    drop(svc);

    // The same data directory without the hold: a restore and a copy that succeed.
    let svc = Service::start_in(dir.path().to_path_buf());
    let out = svc.cli(&["backups:restore", "b001", "staging", "--confirm", "staging"]);
    assert!(out.status.success(), "{}", text(&out));
    let restored = transfer_id(&out);
    let out = svc.cli(&["copy", "app", "dev", "--confirm", "dev"]);
    assert!(out.status.success(), "{}", text(&out));
    let copied = transfer_id(&out);
    assert_eq!(copied, "c001");

    let listing = svc.ok(&["backups"]);
    // Heroku's sizes: binary units, two decimals (never the old decimal `kB`).
    let backup = row(&listing, "b001");
    assert!(backup.contains("  Completed 20"), "{listing}");
    let stored = format::bytes(size_of(&svc, "b001", "object_size"));
    assert!(stored.ends_with("KB") || stored.ends_with("MB"), "{stored}");
    assert!(backup.contains(&format!("  {stored}  ")), "{listing}");
    // A restore and a copy that succeeded are Completed, as Heroku says, never Finished.
    let restore = row(&listing, &restored);
    assert!(restore.contains("  Completed 20"), "{listing}");
    let dump = format::bytes(size_of(&svc, &restored, "dump_size"));
    assert!(restore.contains(&format!("  {dump}  ")), "{listing}");
    assert!(restore.ends_with("b001 → staging"), "{listing}");
    let copy = row(&listing, &copied);
    assert!(copy.contains("  Completed 20"), "{listing}");
    let dump = format::bytes(size_of(&svc, &copied, "dump_size"));
    assert!(copy.contains(&format!("  {dump}  ")), "{listing}");
    assert!(copy.ends_with(" → dev"), "{listing}");
    // Heroku's list shows a cancelled transfer as Failed; backups:info says it was cancelled.
    assert!(
        row(&listing, &cancelled).contains("  Failed 20"),
        "{listing}"
    );
    for never in ["Finished", "Cancelled", "kB", "not shown"] {
        assert!(!listing.contains(never), "{never} in:\n{listing}");
    }
    assert_eq!(
        field(&svc.ok(&["backups:info", &cancelled]), "Status"),
        "Cancelled"
    );
    assert_eq!(
        field(&svc.ok(&["backups:info", &restored]), "Status"),
        "Completed"
    );
    // Under ten restores and copies, --all lists the same.
    assert_eq!(svc.ok(&["backups", "--all"]), listing);

    // backups:info: Heroku's "Backup Size: X (N% compression)", N against the database size.
    let info = svc.ok(&["backups:info", "b001"]);
    let database_size = size_of(&svc, "b001", "database_size");
    let object_size = size_of(&svc, "b001", "object_size");
    assert_eq!(
        field(&info, "Original DB Size"),
        format::bytes(database_size)
    );
    let pct = ((database_size - object_size) as f64 / database_size as f64 * 100.0).round() as u64;
    assert!(
        pct > 50,
        "a small dump of a database is most of it saved: {pct}"
    );
    assert_eq!(
        field(&info, "Backup Size"),
        format!("{stored} ({pct}% compression)")
    );
    assert_eq!(
        field(&info, "Dump Size"),
        format::bytes(size_of(&svc, "b001", "dump_size"))
    );
}
