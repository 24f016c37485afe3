//! The roles kept with every backup: a Heroku user restoring a dump on a fresh server expects
//! the objects' owners and grants to come back, and `backups:restore --roles` creates them.
//! Against real throwaway clusters and a real service.

mod common;

use common::{Cluster, Service, text, transfer_id};

/// A database whose schema and table belong to `app_owner`, with a grant to `reader`.
const OWNED: &str = "
CREATE ROLE app_owner LOGIN PASSWORD 'owner-Secret-pw';
CREATE ROLE reader;
GRANT CONNECT ON DATABASE app TO app_owner;
CREATE SCHEMA shop AUTHORIZATION app_owner;
CREATE TABLE shop.items (id int PRIMARY KEY, name text);
ALTER TABLE shop.items OWNER TO app_owner;
INSERT INTO shop.items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
GRANT USAGE ON SCHEMA shop TO reader;
GRANT SELECT ON shop.items TO reader;
";

fn register(svc: &Service, name: &str, url: &str) {
    let out = svc.cli_with_stdin(&["databases:add", name], url);
    assert!(out.status.success(), "{}", text(&out));
}

/// The plain text of the roles kept beside a backup (stored zstd-compressed).
fn stored_globals(svc: &Service) -> String {
    let files = svc.stored_files();
    let globals = files
        .iter()
        .find(|f| f.ends_with(".globals.sql.zst"))
        .unwrap_or_else(|| panic!("no roles stored: {files:?}"));
    let bytes = std::fs::read(svc.data_dir.join("storage/backups").join(globals)).unwrap();
    String::from_utf8(zstd::decode_all(bytes.as_slice()).unwrap()).unwrap()
}

/// psql's answer without its newline.
fn one(pg: &Cluster, db: &str, sql: &str) -> String {
    pg.psql(db, sql).trim().to_string()
}

/// The owner of `shop.items` and whether `reader` may read it.
fn owner_and_grant(pg: &Cluster, db: &str) -> String {
    one(
        pg,
        db,
        "SELECT tableowner, has_table_privilege('reader', 'shop.items', 'SELECT'), count(*) \
         FROM pg_tables, shop.items WHERE schemaname = 'shop' AND tablename = 'items' \
         GROUP BY tableowner",
    )
}

/// Heroku users restore a backup into a new server and expect its owners to exist there:
/// with `--roles` the roles the backup carries are created first (without passwords), and the
/// restore has no ownership errors; without it, nothing about roles changes.
#[test]
fn restore_with_roles_into_a_fresh_server_creates_the_owners_and_grants_first() {
    let source = Cluster::start();
    source.create_db("app");
    source.psql("app", OWNED);
    let svc = Service::start();
    register(&svc, "main", &source.url("app"));

    let out = svc.cli(&["backups:capture", "main", "--verbose"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(transfer_id(&out), "b001");
    assert!(
        text(&out).contains(
            "Kept the server's roles with the backup (without passwords): app_owner, reader"
        ),
        "{}",
        text(&out)
    );

    // backups:info lists the roles the backup carries (the bootstrap superuser is not one).
    let info = svc.ok(&["backups:info", "b001"]);
    assert!(
        info.contains("Roles:") && info.contains("app_owner, reader"),
        "{info}"
    );
    assert_eq!(
        svc.info("b001")["roles"],
        serde_json::json!(["app_owner", "reader"])
    );

    // The globals never hold a password.
    let globals = stored_globals(&svc);
    assert!(globals.contains("CREATE ROLE app_owner;"), "{globals}");
    assert!(
        !globals.contains("PASSWORD")
            && !globals.contains("owner-Secret-pw")
            && !globals.contains("SCRAM"),
        "{globals}"
    );

    // A fresh server lacks the roles. Without --roles: today's restore, and no role made.
    let target = Cluster::start();
    target.create_db("fresh");
    register(&svc, "fresh", &target.url("fresh"));
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "fresh",
        "--confirm",
        "fresh",
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // As Heroku restores: owned by the restoring user, privileges left out.
    assert_eq!(
        one(
            &target,
            "fresh",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"
        ),
        "postgres"
    );
    assert_eq!(
        one(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('app_owner', 'reader')"
        ),
        "0"
    );

    // With --roles: the roles are created first, the restore is clean and owners are right.
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "fresh",
        "--confirm",
        "fresh",
        "--roles",
        "--verbose",
    ]);
    let with = text(&out);
    assert!(out.status.success(), "{with}");
    assert!(
        with.contains("Creating roles the target lacks: app_owner, reader"),
        "{with}"
    );
    assert!(!with.contains("does not exist"), "{with}");
    assert_eq!(owner_and_grant(&target, "fresh"), "app_owner|t|100");
    // Attributes came back, passwords did not.
    assert_eq!(
        one(
            &target,
            "postgres",
            "SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = 'app_owner'"
        ),
        "t|t"
    );

    // Again with --roles: the roles exist now and are left alone; the restore succeeds.
    target.psql("postgres", "ALTER ROLE reader CONNECTION LIMIT 3");
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "fresh",
        "--confirm",
        "fresh",
        "--roles",
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("already has every role"),
        "{}",
        text(&out)
    );
    assert_eq!(
        one(
            &target,
            "postgres",
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'reader'"
        ),
        "3"
    );
    assert_eq!(owner_and_grant(&target, "fresh"), "app_owner|t|100");

    // Deleting the backup deletes its roles too.
    svc.ok(&["backups:delete", "b001", "--confirm", "main"]);
    assert!(svc.stored_files().is_empty(), "{:?}", svc.stored_files());
}

/// Heroku's credentials are not a superuser's: a capture by a plain role succeeds, and keeps
/// the roles all the same (without passwords pg_dumpall reads `pg_roles`, which every role may).
#[test]
fn a_capture_by_a_role_that_is_not_superuser_succeeds_and_keeps_the_roles() {
    let source = Cluster::start();
    source.psql(
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-Secret-pw'",
    );
    source.psql("postgres", "CREATE DATABASE app OWNER app_owner");
    let svc = Service::start();
    let url = source.url("app").replace(
        &format!("postgres:{}", common::PASSWORD),
        "app_owner:owner-Secret-pw",
    );
    register(&svc, "main", &url);
    let out = svc.cli(&["backups:capture", "main", "--verbose"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("Kept the server's roles with the backup (without passwords): app_owner"),
        "{}",
        text(&out)
    );
    let globals = stored_globals(&svc);
    assert!(
        !globals.contains("PASSWORD") && !globals.contains("owner-Secret-pw"),
        "{globals}"
    );
}

/// A server that hides role memberships from plain roles: pg_dumpall cannot read the roles,
/// and the capture still succeeds, saying in its log that the roles were not kept and why;
/// `backups:restore --roles` then restores as without it.
#[test]
fn a_capture_whose_roles_cannot_be_read_succeeds_and_says_the_roles_were_not_kept() {
    let source = Cluster::start();
    source.psql(
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-Secret-pw'",
    );
    source.psql("postgres", "CREATE DATABASE app OWNER app_owner");
    // Catalog privileges are per database: pg_dumpall reads them in `app`.
    source.psql(
        "app",
        "REVOKE SELECT ON pg_catalog.pg_auth_members FROM PUBLIC",
    );
    let svc = Service::start();
    let url = source.url("app").replace(
        &format!("postgres:{}", common::PASSWORD),
        "app_owner:owner-Secret-pw",
    );
    register(&svc, "main", &url);
    let out = svc.cli(&["backups:capture", "main", "--verbose"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("Roles were not kept with this backup (pg_dumpall --globals-only failed: ")
            && log.contains("permission denied"),
        "{log}"
    );
    assert!(svc.info("b001")["roles"].is_null());
    assert!(!svc.ok(&["backups:info", "b001"]).contains("Roles:"));
    assert!(
        !svc.stored_files()
            .iter()
            .any(|f| f.ends_with(".globals.sql.zst")),
        "{:?}",
        svc.stored_files()
    );

    source.create_db("other");
    register(&svc, "other", &source.url("other"));
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "other",
        "--confirm",
        "other",
        "--roles",
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Backup b001 kept no roles"),
        "{}",
        text(&out)
    );
}

/// Heroku users restore as the database's own role, not a superuser. A role with CREATEROLE
/// gets the backup's roles created, and since it cannot act as them, the restore leaves owners
/// and privileges out (as without --roles) instead of failing after the target was emptied.
/// `--atomic` takes `--roles` too; a dump at a URL carries no roles and is refused with it.
#[test]
fn restore_with_roles_as_a_createrole_user_creates_them_and_never_fails_on_owners() {
    let source = Cluster::start();
    source.create_db("app");
    source.psql("app", OWNED);
    let svc = Service::start();
    register(&svc, "main", &source.url("app"));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));

    let target = Cluster::start();
    target.psql(
        "postgres",
        "CREATE ROLE admin LOGIN CREATEROLE CREATEDB PASSWORD 'admin-pw'",
    );
    target.psql("postgres", "CREATE DATABASE fresh OWNER admin");
    let url = target
        .url("fresh")
        .replace(&format!("postgres:{}", common::PASSWORD), "admin:admin-pw");
    register(&svc, "fresh", &url);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "fresh",
        "--confirm",
        "fresh",
        "--roles",
        "--atomic",
        "--verbose",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Creating roles the target lacks: app_owner, reader"),
        "{log}"
    );
    assert!(log.contains("cannot act as"), "{log}");
    assert_eq!(
        one(
            &target,
            "postgres",
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles \
             WHERE rolname IN ('app_owner', 'reader')"
        ),
        "app_owner,reader"
    );
    assert_eq!(
        one(
            &target,
            "fresh",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"
        ),
        "admin"
    );

    let out = svc.cli(&[
        "backups:restore",
        "https://example.com/app.dump",
        "fresh",
        "--confirm",
        "fresh",
        "--roles",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("restore it without --roles"),
        "{}",
        text(&out)
    );
}

/// After the service's disk is lost, `catalog:rebuild` brings each backup back from its
/// manifest with the roles it carries (retention removing them is in tests/schedules.rs).
#[test]
fn catalog_rebuild_keeps_the_roles_a_backup_carries() {
    let source = Cluster::start();
    source.create_db("app");
    source.psql("app", OWNED);
    let mut svc = Service::start();
    register(&svc, "main", &source.url("app"));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(svc.terminate());
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(svc.data_dir.join(f));
    }
    let svc2 = Service::start_in(svc.data_dir.clone());
    let out = svc2.ok(&["catalog:rebuild"]);
    assert!(out.contains("Recreated 1 backup(s)"), "{out}");
    assert_eq!(
        svc2.info("b001")["roles"],
        serde_json::json!(["app_owner", "reader"])
    );
    let info = svc2.ok(&["backups:info", "b001"]);
    assert!(info.contains("app_owner, reader"), "{info}");
}

/// With encryption configured, the roles are encrypted at rest like the dump, and
/// `backups:restore --roles` reads them back through the key.
#[test]
fn roles_are_encrypted_like_the_dump_and_restore_with_roles_reads_them() {
    use age::secrecy::ExposeSecret;
    let source = Cluster::start();
    source.create_db("app");
    source.psql("app", OWNED);
    let work = tempfile::tempdir().unwrap();
    let key = age::x25519::Identity::generate();
    let key_file = work.path().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let recipient = key.to_public().to_string();
    let data = work.path().join("data");
    let svc = Service::try_start(
        data.clone(),
        &[
            "--encrypt-to",
            &recipient,
            "--identity-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    register(&svc, "main", &source.url("app"));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    let globals = std::fs::read_dir(data.join("storage/backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".globals.sql.zst"))
        .unwrap();
    assert!(
        std::fs::read(&globals)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );

    let target = Cluster::start();
    target.create_db("fresh");
    register(&svc, "fresh", &target.url("fresh"));
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "fresh",
        "--confirm",
        "fresh",
        "--roles",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(owner_and_grant(&target, "fresh"), "app_owner|t|100");
}

/// Any role may set its own settings on the source, and pg_dumpall writes a newline in one as
/// it is: the next line of the kept roles then reads like a statement. `backups:restore
/// --roles` (run by a superuser, as on a fresh Heroku-style server) must not run it: the roles
/// are refused, nothing is created, and no role becomes a superuser.
#[test]
fn restore_with_roles_runs_no_statement_smuggled_in_a_role_setting() {
    let source = Cluster::start();
    source.create_db("app");
    source.psql("app", OWNED);
    source.psql(
        "app",
        "ALTER ROLE reader SET myapp.note TO E'x\\nALTER ROLE app_owner WITH SUPERUSER;\\n';",
    );
    let svc = Service::start();
    register(&svc, "main", &source.url("app"));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stored_globals(&svc).contains("\nALTER ROLE app_owner WITH SUPERUSER;\n"),
        "{}",
        stored_globals(&svc)
    );

    // The setting's own role exists on the target, so its broken first line is never run.
    let target = Cluster::start();
    target.create_db("fresh");
    target.psql("postgres", "CREATE ROLE reader;");
    register(&svc, "fresh", &target.url("fresh"));
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        "fresh",
        "--confirm",
        "fresh",
        "--roles",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("restore without --roles"),
        "{}",
        text(&out)
    );
    assert_eq!(
        one(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner' AND rolsuper"
        ),
        "0",
        "{}",
        text(&out)
    );
}
