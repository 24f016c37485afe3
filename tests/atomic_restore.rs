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
    // A backup the target's owner cannot restore: a table whose column has the type of an
    // untrusted extension (earthdistance), so the table and its rows fail, not just the
    // extension (which alone would end "Completed with 1 warning", as on Heroku) ...
    pg.create_db("bad");
    pg.psql(
        "bad",
        "CREATE EXTENSION earthdistance CASCADE; \
         CREATE TABLE t AS SELECT ll_to_earth(0, 0) AS at, g FROM generate_series(1, 10) g",
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

/// Everything PostgreSQL records about a database itself: its `pg_database` row (less what
/// names it or moves on its own), owner, privileges, comment, and the settings of the database
/// and of roles in it.
fn database_properties(pg: &Cluster, db: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT (to_jsonb(d) - 'oid' - 'datname' - 'datfrozenxid' - 'datminmxid')::text, \
                    d.datdba::regrole, d.datacl, shobj_description(d.oid, 'pg_database'), \
                    (SELECT string_agg(coalesce(r.rolname, '(database)') || ' ' || s.setconfig::text, '; ' \
                                       ORDER BY r.rolname NULLS FIRST) \
                     FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole \
                     WHERE s.setdatabase = d.oid) \
             FROM pg_database d WHERE d.datname = '{db}'"
        ),
    )
}

/// A database as an application would have set it up: its own owner, a connection limit, an
/// ICU locale (Swedish: z < å < ä < ö, lower case before upper), CONNECT only for one role, a
/// comment, its own settings and a role's settings in it.
fn set_up_a_tuned_database(pg: &Cluster) {
    pg.psql(
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw' CREATEDB; \
         CREATE ROLE reader LOGIN PASSWORD 'reader-pw'",
    );
    pg.psql(
        "postgres",
        "CREATE DATABASE target OWNER app_owner CONNECTION LIMIT 7 \
         LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' TEMPLATE template0",
    );
    pg.psql(
        "postgres",
        "REVOKE CONNECT, TEMPORARY ON DATABASE target FROM PUBLIC; \
         GRANT CONNECT ON DATABASE target TO reader; \
         GRANT TEMPORARY ON DATABASE target TO reader WITH GRANT OPTION; \
         COMMENT ON DATABASE target IS 'Orders — ✓'; \
         ALTER DATABASE target SET work_mem = '8MB'; \
         ALTER DATABASE target SET search_path = \"$user\", public, \"Odd, Name\"; \
         ALTER ROLE reader IN DATABASE target SET statement_timeout = '5s'",
    );
    pg.psql(
        "target",
        "CREATE TABLE words (w text); \
         INSERT INTO words VALUES ('ärlig'), ('Zebra'), ('apa'), ('Örn'), ('zon'), ('Apa'), ('öl'), ('banan'), ('ål')",
    );
}

const ORDERED: &str = "SELECT string_agg(w, ',' ORDER BY w) FROM words";

#[test]
fn an_atomic_restore_keeps_the_owner_locale_privileges_comment_and_settings_of_the_database_it_replaces()
 {
    let pg = Cluster::start();
    set_up_a_tuned_database(&pg);
    let before = database_properties(&pg, "target");
    let order = pg.psql("target", ORDERED);
    // The ICU order is not the byte order, so a database that lost its locale would show.
    assert_ne!(
        order,
        pg.psql(
            "target",
            "SELECT string_agg(w, ',' ORDER BY w COLLATE \"C\") FROM words"
        )
    );
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("target")]);
    assert!(out.status.success(), "{}", text(&out));
    pg.psql("target", "INSERT INTO words VALUES ('later')");

    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("target"),
        "--confirm",
        "target",
        "--atomic",
        "--drop-old",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pg.psql("target", "SELECT count(*) FROM words").trim(), "9");
    assert_eq!(database_properties(&pg, "target"), before);
    assert_eq!(pg.psql("target", ORDERED), order);
    assert_eq!(databases_like(&pg, "target_%"), "");
}

#[test]
fn an_atomic_restore_that_cannot_carry_a_property_is_refused_before_anything_is_created() {
    let pg = Cluster::start();
    set_up_a_tuned_database(&pg);
    let before = database_properties(&pg, "target");
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("target")]);
    assert!(out.status.success(), "{}", text(&out));

    // The owner may create databases and rename its own, but not give another role settings
    // (that needs CREATEROLE or a superuser).
    let owner = format!("postgres://app_owner:owner-pw@127.0.0.1:{}/target", pg.port);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &owner,
        "--confirm",
        "target",
        "--atomic",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let error = svc.info(&transfer_id(&out))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("ALTER ROLE reader IN DATABASE")
            && error.contains("statement_timeout")
            && error.contains("Nothing was created")
            && error.contains("not changed"),
        "{error}"
    );
    assert_eq!(databases_like(&pg, "target_%"), "");
    assert_eq!(database_properties(&pg, "target"), before);
    assert_eq!(pg.psql("target", "SELECT count(*) FROM words").trim(), "9");
}

/// Waits until transfer `id` logs that it is held at `point` (a debug-build test hold).
fn wait_for_hold(svc: &Service, id: &str, point: &str) {
    let line = format!("Test hold: {point}");
    common::wait_until(
        60,
        || {
            svc.ok_http(&format!("/api/transfers/{id}/logs"))
                .contains(&line)
        },
        || format!("{id} never reached {point}: {}", svc.info(id)),
    );
}

/// A service held at `point` of an atomic restore of `app` (5,000 rows) into database
/// `target` (which holds `precious`; registered under that name, and named so unless
/// `by_url`), killed there and started again on the same data directory. Returns the
/// restarted service and the restore's ID.
fn kill_during_an_atomic_restore(
    pg: &Cluster,
    point: &str,
    dir: &std::path::Path,
    by_url: bool,
) -> (Service, String) {
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g",
    );
    pg.create_db("target");
    pg.psql(
        "target",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
    );
    let data_dir = dir.join("data");
    let mut svc = Service::start_in_with(data_dir.clone(), &[("PGBACKUPS_TEST_HOLD", point)]);
    let out = svc.cli_with_stdin(&["databases:add", "target"], &pg.url("target"));
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    let target = if by_url {
        pg.url("target")
    } else {
        "target".to_string()
    };
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &target,
        "--confirm",
        "target",
        "--atomic",
        "--no-wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    wait_for_hold(&svc, &id, point);
    if point == "atomic-restored" {
        let fresh = format!("target_pgbackups_{id}");
        assert_eq!(pg.psql(&fresh, "SELECT count(*) FROM t").trim(), "5000");
    }
    svc.kill9();
    (Service::start_in(data_dir), id)
}

#[test]
fn a_service_killed_during_an_atomic_restore_drops_the_partial_copy_and_says_the_target_was_not_changed()
 {
    let pg = Cluster::start();
    let dir = tempfile::Builder::new()
        .prefix("pgbackups-test-svc-")
        .tempdir()
        .unwrap();
    // Held after the restore into the fresh database, before the swap: the copy is full.
    let (svc, id) = kill_during_an_atomic_restore(&pg, "atomic-restored", dir.path(), false);
    let fresh = format!("target_pgbackups_{id}");
    let info = svc.info(&id);
    assert_eq!(info["state"], "failed", "{info:#}");
    let error = info["error"].as_str().unwrap();
    assert!(
        error.contains("The target database was not changed")
            && error.contains(&format!("the partial copy {fresh} was dropped")),
        "{error}"
    );
    assert!(!error.contains("partially restored"), "{error}");
    assert_eq!(databases_like(&pg, "target_%"), "");
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
}

#[test]
fn a_service_killed_right_after_an_atomic_swap_says_the_target_holds_the_restored_backup() {
    let pg = Cluster::start();
    let dir = tempfile::Builder::new()
        .prefix("pgbackups-test-svc-")
        .tempdir()
        .unwrap();
    let (svc, id) = kill_during_an_atomic_restore(&pg, "atomic-swapped", dir.path(), false);
    let old = databases_like(&pg, "target_old_%");
    assert!(old.starts_with("target_old_"), "{old}");
    let error = svc.info(&id)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("The swap had been done")
            && error.contains(&format!("its previous contents are in {old}")),
        "{error}"
    );
    assert_eq!(databases_like(&pg, "target_pgbackups_%"), "");
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "5000");
    assert_eq!(pg.psql(&old, "SELECT x FROM precious").trim(), "42");
}

#[test]
fn a_service_killed_as_an_atomic_swap_begins_drops_the_restored_copy_and_says_the_target_was_not_changed()
 {
    let pg = Cluster::start();
    let dir = tempfile::Builder::new()
        .prefix("pgbackups-test-svc-")
        .tempdir()
        .unwrap();
    // Held after the swap was recorded as begun, before its transaction ran.
    let (svc, id) = kill_during_an_atomic_restore(&pg, "atomic-swapping", dir.path(), false);
    let error = svc.info(&id)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&format!(
            "The target database was not changed; the restored copy target_pgbackups_{id} was dropped"
        )),
        "{error}"
    );
    assert_eq!(databases_like(&pg, "target_%"), "");
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
}

#[test]
fn a_service_killed_during_an_atomic_restore_into_a_url_names_the_copy_to_drop() {
    let pg = Cluster::start();
    let dir = tempfile::Builder::new()
        .prefix("pgbackups-test-svc-")
        .tempdir()
        .unwrap();
    // A URL's password is not stored, so the restarted service cannot reach the server.
    let (svc, id) = kill_during_an_atomic_restore(&pg, "atomic-restored", dir.path(), true);
    let fresh = format!("target_pgbackups_{id}");
    let error = svc.info(&id)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("The target database was not changed")
            && error.contains(&format!("DROP DATABASE \"{fresh}\"")),
        "{error}"
    );
    assert!(!error.contains(common::PASSWORD), "{error}");
    assert_eq!(databases_like(&pg, "target_pgbackups_%"), fresh);
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
}
