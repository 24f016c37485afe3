//! `pull` and `push` run on the user's machine, as Heroku's pg:pull and pg:push do: pull
//! streams the dump from the service (which runs pg_dump, the source's credentials staying
//! there) into a local pg_restore; push streams a local pg_dump through the CLI to the service,
//! which restores it. Two clusters: `remote` is the service's side (its databases registered
//! on the service), `laptop` the user's machine (the CLI's PGHOST/PGPORT/PGUSER/PGPASSWORD
//! point at it).

mod common;

use common::{Cluster, PASSWORD, Service, text};

/// A password only the service knows: the registered source's own role.
const REMOTE_PW: &str = "Only-0n-the-service-pw";

/// The service's side: `app` (table `t` of 300 rows, table `logs` of 50) registered as
/// `main`, through a role whose password only the service has.
fn remote_with_main() -> (Cluster, Service) {
    let remote = Cluster::start();
    remote.psql(
        "postgres",
        &format!("CREATE ROLE keeper LOGIN SUPERUSER PASSWORD '{REMOTE_PW}'"),
    );
    remote.create_db("app");
    remote.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 300) g; \
         CREATE TABLE logs (id int, line text); \
         INSERT INTO logs SELECT g, 'line ' || g FROM generate_series(1, 50) g",
    );
    let svc = Service::start();
    let url = format!(
        "postgres://keeper:{REMOTE_PW}@127.0.0.1:{}/app",
        remote.port
    );
    svc.ok(&["databases:add", "main", &url]);
    (remote, svc)
}

/// The CLI's environment on the user's machine: libpq's defaults point at `laptop`.
fn on_laptop(laptop: &Cluster) -> Vec<(&'static str, String)> {
    vec![
        ("PGHOST", "127.0.0.1".to_string()),
        ("PGPORT", laptop.port.to_string()),
        ("PGUSER", "postgres".to_string()),
        ("PGPASSWORD", PASSWORD.to_string()),
    ]
}

fn run(svc: &Service, laptop: &Cluster, args: &[&str]) -> std::process::Output {
    let env = on_laptop(laptop);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    svc.cli_env(args, &env)
}

fn databases(pg: &Cluster) -> String {
    pg.psql(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    )
}

fn count(pg: &Cluster, db: &str, table: &str) -> String {
    pg.psql(db, &format!("SELECT count(*) FROM {table}"))
        .trim()
        .to_string()
}

#[test]
fn pull_into_a_bare_name_creates_it_on_the_users_machine_not_on_the_services_host() {
    // Heroku: `heroku pg:pull DATABASE mylocaldb` runs pg_restore on the user's machine, into
    // a database it creates there with the local defaults.
    let (remote, svc) = remote_with_main();
    let laptop = Cluster::start();
    let out = run(&svc, &laptop, &["pull", "main", "mydb"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Pulling main into mydb on the local server... done"),
        "{said}"
    );
    assert_eq!(count(&laptop, "mydb", "t"), "300");
    assert_eq!(count(&laptop, "mydb", "logs"), "50");
    assert!(
        !databases(&remote).contains("mydb"),
        "{}",
        databases(&remote)
    );
    // Same extensions on both sides: no warning.
    assert!(
        !said.contains("Extensions in newly created target"),
        "{said}"
    );
    // The source's credentials never leave the service.
    assert!(!said.contains(REMOTE_PW), "{said}");
    assert!(!svc.log().contains(REMOTE_PW));
    // Heroku does not list pulls; the service logs them.
    assert!(
        svc.log().contains("pull: streaming a dump of main"),
        "{}",
        svc.log()
    );
}

#[test]
fn pull_refuses_a_local_database_that_exists_and_changes_nothing() {
    // Heroku: pg:pull runs `createdb`, which fails when the database exists.
    let (_remote, svc) = remote_with_main();
    let laptop = Cluster::start();
    laptop.create_db("mydb");
    laptop.psql(
        "mydb",
        "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1), (2)",
    );
    let out = run(&svc, &laptop, &["pull", "main", "mydb"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("already exists") && said.contains("pull creates a new database"),
        "{said}"
    );
    assert_eq!(count(&laptop, "mydb", "mine"), "2");
    assert!(!laptop.try_psql("mydb", "SELECT 1 FROM t").status.success());
    // A URL target with tables is refused too (Heroku refuses a non-empty remote target).
    let url = laptop.url("mydb");
    let out = run(&svc, &laptop, &["pull", "main", &url]);
    assert!(!out.status.success());
    assert!(text(&out).contains("has 1 table(s)"), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD), "{}", text(&out));
    // A source the service does not know: said before anything is created.
    let out = run(&svc, &laptop, &["pull", "nosuch", "other"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no database named `nosuch` is registered on the service"),
        "{}",
        text(&out)
    );
    assert!(
        !databases(&laptop).contains("other"),
        "{}",
        databases(&laptop)
    );
}

#[test]
fn pull_with_exclude_table_data_leaves_that_table_empty() {
    // Heroku: `pg:pull --exclude-table-data 'logs'` keeps the table's definition, not its rows.
    let (_remote, svc) = remote_with_main();
    let laptop = Cluster::start();
    // A postgres:// URL target that does not exist yet is created, as a bare name is.
    let slim = laptop.url("slim");
    let out = run(
        &svc,
        &laptop,
        &["pull", "main", &slim, "--exclude-table-data", "logs"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&laptop, "slim", "logs"), "0");
    assert_eq!(count(&laptop, "slim", "t"), "300");
}

#[test]
fn pull_warns_when_the_local_database_gets_other_extensions_than_the_source() {
    // Heroku compares `SELECT extname FROM pg_extension` on both sides after a pull and warns
    // when they differ. Here the laptop's template1 has pg_trgm (installed there by hand, as
    // people do), so every database created on it has an extension the source lacks.
    let (_remote, svc) = remote_with_main();
    let laptop = Cluster::start();
    laptop.psql("template1", "CREATE EXTENSION pg_trgm");
    let out = run(&svc, &laptop, &["pull", "main", "mydb"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(
            "Extensions in newly created target database differ from existing source database."
        ),
        "{said}"
    );
    assert!(
        said.contains("Target extensions:\npg_trgm\nplpgsql\nSource extensions:\nplpgsql\n"),
        "{said}"
    );
    assert_eq!(count(&laptop, "mydb", "t"), "300");
}

#[test]
fn push_from_a_bare_local_name_into_an_empty_registered_database_completes() {
    // Heroku: `heroku pg:push mylocaldb DATABASE` runs pg_dump on the user's machine and
    // restores into an empty remote database without asking.
    let (remote, svc) = remote_with_main();
    remote.create_db("staging");
    let url = format!(
        "postgres://keeper:{REMOTE_PW}@127.0.0.1:{}/staging",
        remote.port
    );
    svc.ok(&["databases:add", "staging", &url]);
    let laptop = Cluster::start();
    laptop.create_db("localapp");
    laptop.psql(
        "localapp",
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 123)",
    );
    let out = run(&svc, &laptop, &["push", "localapp", "staging"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Restoring localapp (pushed) to staging... done"),
        "{said}"
    );
    assert_eq!(count(&remote, "staging", "items"), "123");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(svc.info(&id)["source"], "local database localapp (pushed)");
    assert!(
        !said.contains(REMOTE_PW) && !said.contains(PASSWORD),
        "{said}"
    );
    assert!(
        !said.contains("Extensions in newly created target"),
        "{said}"
    );
}

#[test]
fn push_into_a_target_with_tables_without_confirm_is_refused_and_the_target_is_unchanged() {
    // Heroku: pg:push refuses a remote database that is not empty; we keep --confirm for it.
    let (remote, svc) = remote_with_main();
    let laptop = Cluster::start();
    laptop.create_db("localapp");
    laptop.psql(
        "localapp",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    );
    let out = run(&svc, &laptop, &["push", "localapp", "main"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("--confirm main"), "{said}");
    assert_eq!(count(&remote, "app", "t"), "300");
    // Named, it goes through.
    let out = run(
        &svc,
        &laptop,
        &["push", "localapp", "main", "--confirm", "main"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&remote, "app", "t"), "1");
}

#[test]
fn a_push_whose_local_pg_dump_fails_leaves_the_target_unchanged_and_says_why() {
    let (remote, svc) = remote_with_main();
    let laptop = Cluster::start();
    // A local database that does not exist: said before anything is sent.
    let out = run(
        &svc,
        &laptop,
        &["push", "nosuch", "main", "--confirm", "main"],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("nosuch")
            && said.contains("does not exist")
            && said.contains("main was not changed"),
        "{said}"
    );
    // pg_dump failing halfway, after the archive's header has gone out: a table whose rows
    // row-level security hides from the dumping role. The upload is aborted and the service
    // restores nothing.
    laptop.create_db("localapp");
    laptop.psql(
        "localapp",
        "CREATE ROLE alice LOGIN PASSWORD 'alice-pw-77'; \
         CREATE TABLE open (id int); INSERT INTO open VALUES (1); \
         CREATE TABLE secret (id int); INSERT INTO secret VALUES (1); \
         ALTER TABLE secret ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY mine ON secret USING (false); \
         GRANT SELECT ON open, secret TO alice",
    );
    let local = format!("postgres://alice@127.0.0.1:{}/localapp", laptop.port);
    let env = [("PGPASSWORD", "alice-pw-77")];
    let out = svc.cli_env(&["push", &local, "main", "--confirm", "main"], &env);
    let said = text(&out);

    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("the local pg_dump failed") && said.contains("row-level security"),
        "{said}"
    );
    assert!(said.contains("main was not changed"), "{said}");
    assert!(!said.contains("alice-pw-77"), "{said}");
    assert_eq!(count(&remote, "app", "t"), "300");
    assert_eq!(count(&remote, "app", "logs"), "50");
    // The service saw the body break off and restored nothing.
    let upload = svc.info("r001");
    assert_eq!(upload["state"], "failed", "{upload}");
    let error = upload["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("broke off") && error.contains("not changed"),
        "{error}"
    );
}

#[test]
fn a_pull_whose_dump_fails_on_the_service_says_the_new_database_is_incomplete() {
    // Heroku's pg:pull pipes pg_dump into pg_restore; here the pipe crosses the network, and
    // a pg_dump that fails halfway on the service must not pass for a whole dump: the stream
    // ends broken, and the CLI says the database it created is incomplete.
    let remote = Cluster::start();
    remote.create_db("app");
    remote.psql(
        "app",
        &format!(
            "CREATE ROLE reader LOGIN PASSWORD '{REMOTE_PW}'; \
             CREATE TABLE open (id int); INSERT INTO open SELECT generate_series(1, 10); \
             CREATE TABLE secret (id int); INSERT INTO secret VALUES (1); \
             ALTER TABLE secret ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY none ON secret USING (false); \
             GRANT SELECT ON open, secret TO reader"
        ),
    );
    let svc = Service::start();
    let url = format!(
        "postgres://reader:{REMOTE_PW}@127.0.0.1:{}/app",
        remote.port
    );
    svc.ok(&["databases:add", "main", &url]);
    let laptop = Cluster::start();
    let out = run(&svc, &laptop, &["pull", "main", "mydb"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("broke off")
            && said.contains("The database `mydb` was created and is incomplete")
            && said.contains("dropdb mydb"),
        "{said}"
    );
    assert!(!said.contains(REMOTE_PW), "{said}");
    // What the message says is true: the database is there, and the refused table's rows are not.
    assert!(databases(&laptop).contains("mydb"));
    assert!(
        svc.log().contains("did not end whole") && svc.log().contains("row-level security"),
        "{}",
        svc.log()
    );
    assert!(!svc.log().contains(REMOTE_PW));
}

#[test]
fn pull_as_a_local_user_who_cannot_create_an_extension_completes_with_a_warning_as_heroku() {
    // Heroku's pg:pull ignores pg_restore's errors and then warns that the extensions differ;
    // here an extension the local user may not create is a warning ("done, with 1 warning",
    // as restores say), the rows are all there, and Heroku's extension warning follows.
    let (remote, svc) = remote_with_main();
    remote.psql("app", "CREATE EXTENSION pgrowlocks");
    let laptop = Cluster::start();
    laptop.psql(
        "postgres",
        "CREATE ROLE dev LOGIN CREATEDB PASSWORD 'dev-pw-42'",
    );
    let env = [
        ("PGHOST", "127.0.0.1".to_string()),
        ("PGPORT", laptop.port.to_string()),
        ("PGUSER", "dev".to_string()),
        ("PGPASSWORD", "dev-pw-42".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = svc.cli_env(&["pull", "main", "mydb"], &env);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("on the local server... done, with 1 warning"),
        "{said}"
    );
    assert!(
        said.contains("WARNING: extension pgrowlocks was not restored: permission denied"),
        "{said}"
    );
    assert!(
        said.contains("Target extensions:\nplpgsql\nSource extensions:\npgrowlocks\nplpgsql\n"),
        "{said}"
    );
    assert_eq!(count(&laptop, "mydb", "t"), "300");
    assert!(
        !said.contains("dev-pw-42") && !said.contains(REMOTE_PW),
        "{said}"
    );
}
