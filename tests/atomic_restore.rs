//! Atomic restores: into a fresh database, swapped in under the target's name only when the
//! restore succeeded; the target untouched otherwise.

mod common;

use common::{Cluster, Service, text, transfer_id};

fn databases_like(pg: &Cluster, pattern: &str) -> String {
    pg.psql(
        "postgres",
        &format!("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '{pattern}'"),
    )
    .trim()
    .to_string()
}

#[test]
fn an_atomic_restore_swaps_only_on_success_and_keeps_the_old_contents() {
    let pg = Cluster::start();
    // A backup the target's owner cannot fully restore (an untrusted extension) ...
    pg.create_db("bad");
    pg.psql(
        "bad",
        "CREATE EXTENSION pg_buffercache; CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g",
    );
    // ... and one it can.
    pg.create_db("good");
    pg.psql(
        "good",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g",
    );
    pg.psql(
        "postgres",
        "CREATE ROLE owner_role LOGIN PASSWORD 'owner-pw' CREATEDB",
    );
    pg.psql(
        "postgres",
        "CREATE ROLE plain_role LOGIN PASSWORD 'plain-pw'",
    );
    pg.psql("postgres", "CREATE DATABASE target OWNER owner_role");
    pg.psql("target", "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42); GRANT ALL ON precious TO owner_role");
    let svc = Service::start();
    for db in ["bad", "good"] {
        let out = svc.cli(&["backups:capture", &pg.url(db)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let target = format!(
        "postgres://owner_role:owner-pw@127.0.0.1:{}/target",
        pg.port
    );

    // A restore that fails leaves the target exactly as it was, and no fresh database behind.
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &target,
        "--confirm",
        "target",
        "--atomic",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let error = svc.info(&transfer_id(&out))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("not changed"), "{error}");
    assert!(!error.contains("partially restored"), "{error}");
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
    assert_eq!(databases_like(&pg, "target_pgbackups_%"), "");

    // One that succeeds is swapped in; the previous contents stay under a dated name.
    let out = svc.cli(&[
        "backups:restore",
        "b002",
        &target,
        "--confirm",
        "target",
        "--atomic",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "5000");
    assert!(
        !pg.try_psql("target", "SELECT 1 FROM precious")
            .status
            .success()
    );
    let old = databases_like(&pg, "target_old_%");
    assert!(old.starts_with("target_old_"), "{old}");
    assert_eq!(pg.psql(&old, "SELECT x FROM precious").trim(), "42");

    // --drop-old drops the previous contents at once.
    let out = svc.cli(&[
        "backups:restore",
        "b002",
        &target,
        "--confirm",
        "target",
        "--atomic",
        "--drop-old",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(databases_like(&pg, "target_old_%"), old);

    // What it requires is checked up front, with a clear error.
    let plain = format!(
        "postgres://plain_role:plain-pw@127.0.0.1:{}/target",
        pg.port
    );
    let out = svc.cli(&[
        "backups:restore",
        "b002",
        &plain,
        "--confirm",
        "target",
        "--atomic",
    ]);
    assert!(!out.status.success());
    let error = svc.info(&transfer_id(&out))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("CREATEDB"), "{error}");
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "5000");
}
