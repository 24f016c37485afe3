//! Logical backups end to end, against real throwaway PostgreSQL clusters and a real service:
//! what a user does with `pgbackups backups:*`, and what must happen when things go wrong.

mod common;

use std::time::Duration;

use common::{Cluster, PASSWORD, Service, text, transfer_id};

/// A database with the things that break naive backup tools: several schemas (one with a
/// non-ASCII name), a partitioned table, a materialized view, sequences and identity columns,
/// a large object, contrib extensions (hstore, citext), a view, a function, comments and
/// non-ASCII text.
const RICH_DATABASE: &str = r#"
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE SCHEMA sales;
CREATE SCHEMA "Inventário";
CREATE TABLE sales.customers (
    id bigserial PRIMARY KEY,
    name citext NOT NULL UNIQUE,
    attrs hstore,
    note text
);
INSERT INTO sales.customers (name, attrs, note)
SELECT 'customer ' || g, hstore('tier', (g % 3)::text), 'Zürich — 東京 — ✓ ' || g
FROM generate_series(1, 500) g;
CREATE TABLE sales.orders (
    id bigint GENERATED ALWAYS AS IDENTITY,
    customer_id bigint REFERENCES sales.customers (id),
    placed date NOT NULL,
    amount numeric(10, 2),
    PRIMARY KEY (id, placed)
) PARTITION BY RANGE (placed);
CREATE TABLE sales.orders_2025 PARTITION OF sales.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales.orders_2026 PARTITION OF sales.orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO sales.orders (customer_id, placed, amount)
SELECT 1 + g % 500, date '2025-01-01' + (g % 700), g * 1.5 FROM generate_series(1, 3000) g;
CREATE MATERIALIZED VIEW sales.totals AS
    SELECT customer_id, sum(amount) AS total FROM sales.orders GROUP BY customer_id;
CREATE SEQUENCE "Inventário"."códigos" START 1000;
SELECT nextval('"Inventário"."códigos"') FROM generate_series(1, 5);
CREATE TABLE "Inventário"."Peças" (
    "código" int DEFAULT nextval('"Inventário"."códigos"') PRIMARY KEY,
    "descrição" text
);
INSERT INTO "Inventário"."Peças" ("descrição") VALUES ('Élément'), ('Ärger'), ('日本語'), ('emoji 🐘');
CREATE TABLE public.documents (id serial PRIMARY KEY, body oid);
INSERT INTO public.documents (body) VALUES (lo_from_bytea(0, convert_to('large object ✓', 'UTF8')));
CREATE VIEW public.customer_names AS SELECT name FROM sales.customers;
CREATE FUNCTION public.add(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b';
COMMENT ON TABLE sales.customers IS 'Kunden — clients — 顧客';
"#;

/// The sequence values and large-object content, which row counts do not cover.
fn sequence_and_lo(pg: &Cluster, db: &str) -> String {
    pg.psql(
        db,
        r#"SELECT (SELECT last_value FROM "Inventário"."códigos"),
                  (SELECT last_value FROM sales.customers_id_seq),
                  (SELECT convert_from(lo_get(body), 'UTF8') FROM public.documents)"#,
    )
}

fn register(svc: &Service, name: &str, url: &str) {
    // The URL goes through stdin, so that the password never sits in the process list.
    let out = svc.cli_with_stdin(&["databases:add", name], url);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn capture_then_restore_round_trips_schema_and_rows() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", RICH_DATABASE);
    let svc = Service::start();
    register(&svc, "main", &pg.url("app"));

    let out = svc.cli(&["backups:capture", "main", "--verbose"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    assert_eq!(id, "b001");
    assert!(
        text(&out).contains("dumping contents of table"),
        "{}",
        text(&out)
    );
    let info = svc.info("b001");
    assert_eq!(info["state"], "succeeded");
    assert_eq!(info["origin"], "manual");
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    assert!(info["database_size"].as_u64().unwrap() > 0);
    assert!(info["object_size"].as_u64().unwrap() < info["dump_size"].as_u64().unwrap());

    // A restore test of the rich database (partitions, extensions, large object) passes and
    // leaves no scratch database.
    let out = svc.ok(&["backups:verify", "b001", "--restore"]);
    assert!(
        out.contains("checksum OK") && out.contains("scratch database"),
        "{out}"
    );
    let dbs = pg.psql(
        "postgres",
        "SELECT string_agg(datname, ',') FROM pg_database",
    );
    assert!(!dbs.contains("pgbackups_verify"), "{dbs}");

    // The stored object is what the catalog says it is.
    let stored = svc
        .data_dir
        .join("storage")
        .join(info["object_key"].as_str().unwrap());
    let bytes = std::fs::read(&stored).unwrap();
    assert_eq!(bytes.len() as u64, info["object_size"].as_u64().unwrap());
    // Dumps hold all the data: only the service's user may read them.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(mode(stored.parent().unwrap()), 0o700);
    assert_eq!(mode(&svc.data_dir), 0o700);
    assert_eq!(sha256_hex(&bytes), info["sha256"].as_str().unwrap());

    // Restore into a database that already holds other objects: they are dropped first.
    pg.create_db("restored");
    pg.psql(
        "restored",
        "CREATE TABLE junk (x int); CREATE SCHEMA extra; CREATE TABLE extra.t (x int); \
         CREATE EXTENSION citext; SELECT lo_from_bytea(0, 'junk')",
    );
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("restored"),
        "--confirm",
        "restored",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(transfer_id(&out), "r001");
    // The restore streamed the tables' data into parallel pg_restore processes.
    let restore_log = svc.info("r001")["logs"].to_string();
    assert!(restore_log.contains("Loading table data"), "{restore_log}");
    assert_eq!(pg.schema("app"), pg.schema("restored"));
    assert_eq!(pg.row_counts("app"), pg.row_counts("restored"));
    assert_eq!(
        sequence_and_lo(&pg, "app"),
        sequence_and_lo(&pg, "restored")
    );

    // A download is a plain custom-format dump that the stock pg_restore takes, --jobs too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latest.dump");
    let out = svc.cli(&["backups:download", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let list = std::process::Command::new(format!("{}/pg_restore", common::PG_BIN))
        .arg("--list")
        .arg(&file)
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("TABLE DATA sales orders_2025"));
    // Its data offsets are filled in, as in a file pg_dump writes itself.
    let dumped = std::io::BufReader::new(std::fs::File::open(&file).unwrap());
    let index = pgbackups::pg::archive::scan(dumped).unwrap().unwrap();
    assert!(!index.blocks.is_empty());
    for block in &index.blocks {
        let entry = index
            .entries
            .iter()
            .find(|e| e.dump_id == block.dump_id)
            .unwrap();
        assert_eq!(entry.offset_flag, 2, "offset of {} not set", block.dump_id);
    }
    pg.create_db("fromfile");
    let restore = std::process::Command::new(format!("{}/pg_restore", common::PG_BIN))
        .args([
            "--jobs",
            "2",
            "--no-owner",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &pg.port.to_string(), "-d", "fromfile"])
        .arg(&file)
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(pg.schema("app"), pg.schema("fromfile"));
    assert_eq!(pg.row_counts("app"), pg.row_counts("fromfile"));

    // The listings read like heroku pg:backups, and never show the password.
    let listing = svc.ok(&["backups"]);
    assert!(
        listing.contains("=== Backups") && listing.contains("=== Restores"),
        "{listing}"
    );
    assert!(
        listing.contains("b001") && listing.contains("Completed 20"),
        "{listing}"
    );
    assert!(
        listing.contains("r001") && listing.contains("Completed 2026"),
        "{listing}"
    );
    let info_text = svc.ok(&["backups:info", "b001"]);
    for want in [
        "Database:",
        "main",
        "Type:",
        "Manual",
        "Original DB Size:",
        "Backup Size:",
        "compression",
        "=== Backup Logs",
    ] {
        assert!(info_text.contains(want), "{want} missing in:\n{info_text}");
    }
    let databases = svc.ok(&["databases"]);
    assert!(
        databases.contains("postgres://postgres:***@127.0.0.1"),
        "{databases}"
    );
    for shown in [
        listing,
        info_text,
        databases,
        svc.ok(&["backups", "--json"]),
        svc.log(),
    ] {
        assert!(!shown.contains(PASSWORD), "password leaked in:\n{shown}");
    }
    let catalog = std::fs::read(svc.data_dir.join("catalog.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&catalog).contains(PASSWORD),
        "password stored in clear"
    );
}

#[test]
fn cancel_stops_a_running_capture_and_removes_its_object() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    // pg_dump waits for this lock, so the capture stays running until we cancel it.
    let mut holder = pg.hold("app", "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;");
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app"), "--no-wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    svc.wait_state(&id, &["running"]);
    std::thread::sleep(Duration::from_millis(500));

    let out = svc.cli(&["backups:cancel"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&id));
    let info = svc.wait_state(&id, &["cancelled"]);
    assert!(info["finished_at"].is_string());
    assert!(svc.stored_files().is_empty(), "{:?}", svc.stored_files());
    // pg_dump is gone: nothing of ours is still waiting for the lock.
    let waiting = pg.psql(
        "app",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbackups'",
    );
    assert_eq!(waiting.trim(), "0");
    // Cancelling it again says it is not running.
    let again = svc.cli(&["backups:cancel", &id]);
    assert!(!again.status.success());
    assert!(text(&again).contains("not running"), "{}", text(&again));
    holder.release();
    // A cancelled capture is not a backup: it cannot be restored or downloaded.
    let out = svc.cli(&["backups:download", &id, "-o", "/dev/null"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a completed backup"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_pg_dump_that_dies_midway_fails_the_capture_with_its_stderr() {
    let pg = Cluster::start();
    pg.create_db("app");
    // Row-level security makes pg_dump (which runs with row_security off) stop with an error
    // when it reaches this table's data — after it has written the first tables' data.
    pg.psql(
        "app",
        "CREATE ROLE dumper LOGIN PASSWORD 'dumper-pw'; \
         CREATE TABLE a_first AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g; \
         CREATE TABLE z_secret (id int, owner text); \
         INSERT INTO z_secret VALUES (1, 'someone'); \
         ALTER TABLE z_secret ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY mine ON z_secret USING (owner = current_user); \
         GRANT SELECT ON a_first, z_secret TO dumper;",
    );
    let svc = Service::start();
    let url = format!("postgres://dumper:dumper-pw@127.0.0.1:{}/app", pg.port);
    let out = svc.cli(&["backups:capture", &url]);
    assert!(!out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    let info = svc.info(&id);
    assert_eq!(info["state"], "failed");
    let error = info["error"].as_str().unwrap();
    assert!(error.contains("pg_dump failed"), "{error}");
    assert!(error.contains("row-level security"), "{error}");
    let logs: Vec<&str> = info["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("pg_dump: error:")),
        "{logs:?}"
    );
    assert!(svc.stored_files().is_empty(), "{:?}", svc.stored_files());
    assert!(!text(&out).contains("dumper-pw"));
    // The failure is visible in the listing.
    assert!(svc.ok(&["backups"]).contains("Failed 20"));
}

#[test]
fn unreachable_databases_and_wrong_passwords_fail_clearly_without_leaking_it() {
    let pg = Cluster::start();
    pg.create_db("app");
    let svc = Service::start();

    let wrong = format!(
        "postgres://postgres:Wr0ng-pa55word@127.0.0.1:{}/app",
        pg.port
    );
    let out = svc.cli(&["backups:capture", &wrong]);
    assert!(!out.status.success());
    let id = transfer_id(&out);
    let info = svc.info(&id);
    assert_eq!(info["state"], "failed");
    let error = info["error"].as_str().unwrap();
    assert!(error.contains("password authentication failed"), "{error}");
    let everything = format!("{}{info}{}{}", text(&out), svc.ok(&["backups"]), svc.log());
    assert!(
        !everything.contains("Wr0ng-pa55word"),
        "password leaked: {everything}"
    );

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = svc.cli(&[
        "backups:capture",
        &format!("postgres://u:pw-unreachable@127.0.0.1:{port}/db"),
    ]);
    assert!(!out.status.success());
    let error = svc.info(&transfer_id(&out))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("could not connect") && error.contains("Connection refused"),
        "{error}"
    );

    // A restore into a database that does not exist names it and leaves everything alone.
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    let backup = transfer_id(&out);
    let out = svc.cli(&[
        "backups:restore",
        &backup,
        &pg.url("nope"),
        "--confirm",
        "nope",
    ]);
    assert!(!out.status.success());
    let error = svc.info(&transfer_id(&out))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("database \"nope\" does not exist"),
        "{error}"
    );
    assert!(error.contains("not changed"), "{error}");

    // Malformed input never reaches the service's jobs.
    let out = svc.cli(&["backups:capture", "mysql://root:pw@h/db"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a registered database")
            || text(&out).contains("not a valid database name")
            || text(&out).contains("postgres://"),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_ids_missing_tokens_and_missing_confirmations_are_refused() {
    let pg = Cluster::start();
    pg.create_db("app");
    let svc = Service::start();
    register(&svc, "main", &pg.url("app"));

    let out = svc.cli(&["backups:info", "b999"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no backup or transfer b999"),
        "{}",
        text(&out)
    );
    let out = svc.cli(&["backups:info", "zz1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("IDs look like b001"), "{}", text(&out));
    let out = svc.cli(&["backups:capture", "nosuchdb"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no database named `nosuchdb`"),
        "{}",
        text(&out)
    );

    // Every API call needs the token.
    let (status, body) =
        svc.raw_http("GET /api/transfers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 401, "{body}");
    let (status, _) = svc.raw_http(
        "GET /api/transfers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401);
    let (status, _) = svc.raw_http(&format!(
        "GET /api/transfers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        svc.token()
    ));
    assert_eq!(status, 200);
    let (status, _) = svc.raw_http("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    // A CLI that shares the service's data directory finds the service and token by itself.
    let out = std::process::Command::new(common::binary())
        .arg("databases")
        .env_remove("PGBACKUPS_URL")
        .env_remove("PGBACKUPS_TOKEN")
        .env("PGBACKUPS_DATA_DIR", &svc.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("main"), "{}", text(&out));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(svc.data_dir.join("token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Destructive commands need the right confirmation, and do nothing without it.
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    for args in [
        vec!["backups:delete", "b001"],
        vec!["backups:delete", "b001", "--confirm", "other"],
        vec!["backups:restore", "b001", "main"],
        vec!["backups:restore", "b001", "main", "--confirm", "app"],
    ] {
        let out = svc.cli(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains("--confirm main"), "{}", text(&out));
    }
    // The backup, its manifest and its roles.
    assert_eq!(svc.stored_files().len(), 3, "{:?}", svc.stored_files());
    assert!(svc.ok(&["backups"]).contains("b001"));
    let out = svc.cli(&["backups:delete", "b001", "--confirm", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(svc.stored_files().is_empty());
    assert!(!svc.ok(&["backups"]).contains("b001"));

    // Forgetting a database keeps nothing of its URL, and it can no longer be captured.
    let out = svc.cli(&["databases:remove", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!svc.ok(&["databases"]).contains("main"));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no database named `main`"),
        "{}",
        text(&out)
    );
    let out = svc.cli(&["databases:remove", "main"]);
    assert!(!out.status.success());
}

#[test]
fn a_damaged_backup_is_refused_before_the_target_is_touched() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g",
    );
    pg.create_db("target");
    pg.psql(
        "target",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
    );
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    let info = svc.info("b001");
    let stored = svc
        .data_dir
        .join("storage")
        .join(info["object_key"].as_str().unwrap());
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let error = refused_restore_of_b001(&svc, &pg);
    assert!(error.contains("damaged"), "{error}");
    assert!(error.contains("not changed"), "{error}");
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");

    // A download of it breaks off with an error instead of writing a bad file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b001.dump");
    let out = svc.cli(&["backups:download", "b001", "-o", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!file.exists());
}

#[test]
fn a_service_killed_mid_capture_marks_it_failed_and_recovers() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    let mut holder = pg.hold("app", "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;");
    let mut svc = Service::start();
    register(&svc, "main", &pg.url("app"));
    let id = transfer_id(&svc.cli(&["backups:capture", "main", "--no-wait"]));
    svc.wait_state(&id, &["running"]);
    std::thread::sleep(Duration::from_millis(500));
    // Simulate a leftover of a write in progress, as a crash mid-upload leaves it.
    svc.kill9();
    holder.release();

    let data_dir = svc.data_dir.clone();
    // The restarted service says so to its webhook too.
    let mut hook = common::Webhook::start();
    let svc2 = Service::try_start(data_dir, &["--notify-url", &hook.url], &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let info = svc2.info(&id);
    assert_eq!(info["state"], "failed");
    assert!(
        info["error"].as_str().unwrap().contains("interrupted"),
        "{info}"
    );
    let event = hook.wait_for(30, |e| e["event"] == "transfer.failed");
    assert_eq!(event["id"], id.as_str(), "{event}");
    assert!(svc2.stored_files().is_empty(), "{:?}", svc2.stored_files());
    // pg_dump died with the service (it gets SIGTERM when its parent dies).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = pg.psql(
            "app",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbackups'",
        );
        if n.trim() == "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pg_dump outlived the service"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = svc2.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(svc2.info(&transfer_id(&out))["state"], "succeeded");
    drop(svc);
}

#[test]
fn a_service_shut_down_mid_capture_records_it_as_interrupted() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    let mut holder = pg.hold("app", "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;");
    let mut svc = Service::start();
    let id = transfer_id(&svc.cli(&["backups:capture", &pg.url("app"), "--no-wait"]));
    svc.wait_state(&id, &["running"]);
    assert!(
        svc.terminate(),
        "the service did not exit cleanly on SIGTERM:\n{}",
        svc.log()
    );
    holder.release();
    let svc2 = Service::start_in(svc.data_dir.clone());
    let info = svc2.info(&id);
    assert_eq!(info["state"], "failed");
    assert!(
        info["error"].as_str().unwrap().contains("shut down"),
        "{info}"
    );
    assert!(svc2.stored_files().is_empty());
}

/// Restores b001 into `target`, which must fail; returns the error.
fn refused_restore_of_b001(svc: &Service, pg: &Cluster) -> String {
    let target = pg.url("target");
    let out = svc.cli(&["backups:restore", "b001", &target, "--confirm", "target"]);
    assert!(!out.status.success());
    svc.info(&transfer_id(&out))["error"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_cancelled_restore_leaves_the_target_as_it_was() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    pg.create_db("target");
    pg.psql(
        "target",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
    );
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));

    // An application holds a lock on the target, so emptying it waits: cancel it there.
    let mut holder = pg.hold("target", "BEGIN; LOCK TABLE precious IN ACCESS SHARE MODE;");
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("target"),
        "--confirm",
        "target",
        "--no-wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !svc.info(&id)["logs"]
        .to_string()
        .contains("Dropping all objects")
    {
        assert!(std::time::Instant::now() < deadline, "{}", svc.info(&id));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = svc.cli(&["backups:cancel", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let info = svc.wait_state(&id, &["cancelled"]);
    assert!(
        info["error"].as_str().unwrap().contains("not changed"),
        "{info}"
    );
    holder.release();
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
    assert!(
        svc.data_dir
            .join("tmp")
            .read_dir()
            .unwrap()
            .next()
            .is_none(),
        "scratch file left"
    );
}

#[test]
fn a_stored_object_that_is_not_a_dump_is_refused_before_the_target_is_touched() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.create_db("target");
    pg.psql(
        "target",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
    );
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    // Replace the object with a well-formed zstd stream of something else, and make the
    // catalog agree with it, so that only the content check can catch it.
    let info = svc.info("b001");
    let stored = svc
        .data_dir
        .join("storage")
        .join(info["object_key"].as_str().unwrap());
    let foreign = zstd::encode_all(&b"<html>not a dump</html>\n".repeat(100)[..], 3).unwrap();
    std::fs::write(&stored, &foreign).unwrap();
    let catalog = rusqlite::Connection::open(svc.data_dir.join("catalog.db")).unwrap();
    catalog
        .execute(
            "UPDATE transfers SET sha256 = ?1, object_size = ?2 WHERE id = 'b001'",
            rusqlite::params![sha256_hex(&foreign), foreign.len() as i64],
        )
        .unwrap();

    let error = refused_restore_of_b001(&svc, &pg);
    assert!(error.contains("not a custom-format dump"), "{error}");
    assert!(error.contains("not changed"), "{error}");
    assert_eq!(pg.psql("target", "SELECT x FROM precious").trim(), "42");
}

#[test]
fn a_backup_without_a_recorded_layout_is_restored_through_a_scratch_file() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", RICH_DATABASE);
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    // As for a backup taken before layouts were recorded.
    rusqlite::Connection::open(svc.data_dir.join("catalog.db"))
        .unwrap()
        .execute("UPDATE transfers SET layout = NULL WHERE id = 'b001'", [])
        .unwrap();
    pg.create_db("restored");
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("restored"),
        "--confirm",
        "restored",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let log = svc.info("r001")["logs"].to_string();
    assert!(log.contains("Filled in the data offsets of"), "{log}");
    assert_eq!(pg.schema("app"), pg.schema("restored"));
    assert_eq!(pg.row_counts("app"), pg.row_counts("restored"));
    assert_eq!(
        sequence_and_lo(&pg, "app"),
        sequence_and_lo(&pg, "restored")
    );
}

#[test]
fn a_restore_goes_on_past_an_extension_the_target_refuses_and_completes_with_1_warning_as_heroku() {
    let pg = Cluster::start();
    pg.create_db("app");
    // pg_buffercache is not a trusted extension: only a superuser may create it.
    pg.psql(
        "app",
        "CREATE EXTENSION pg_buffercache; \
         CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g; \
         ALTER TABLE t ADD PRIMARY KEY (g);",
    );
    pg.psql(
        "postgres",
        "CREATE ROLE owner_role LOGIN PASSWORD 'owner-pw'",
    );
    pg.psql("postgres", "CREATE DATABASE target OWNER owner_role");
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    let target = format!(
        "postgres://owner_role:owner-pw@127.0.0.1:{}/target",
        pg.port
    );
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &target,
        "--confirm",
        "target",
        "--jobs",
        "2",
    ]);
    // Only the extension failed: Heroku ends such a restore "Completed with 1 warning".
    assert!(out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    let info = svc.info(&id);
    assert_eq!(info["state"], "succeeded");
    assert_eq!(info["warnings"], 1);
    let shown = text(&svc.cli(&["backups:info", &id]));
    assert!(shown.contains("Completed with 1 warning"), "{shown}");
    assert!(shown.contains("pg_buffercache"), "{shown}");
    // Everything else was restored, indexes included.
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "5000");
    assert_eq!(
        pg.psql(
            "target",
            "SELECT count(*) FROM pg_indexes WHERE tablename = 't'"
        )
        .trim(),
        "1"
    );
}

#[test]
fn a_failed_capture_is_posted_to_the_webhook_without_secrets() {
    let mut hook = common::Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::try_start(dir.path().join("data"), &["--notify-url", &hook.url], &[])
        .unwrap_or_else(|e| panic!("{e}"));

    // A capture that cannot work: no server there; the URL holds a password.
    let id = transfer_id(&svc.cli(&[
        "backups:capture",
        "postgres://app:hunter2-pw@127.0.0.1:1/nope",
        "--no-wait",
    ]));
    let event = hook.wait_for(60, |e| e["event"] == "transfer.failed");
    let body = event.to_string();
    assert_eq!(event["id"], id.as_str(), "{body}");
    assert!(
        event["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(!body.contains("hunter2-pw"), "{body}");
    assert!(!svc.log().contains("hook-s3cret"));

    // A URL that is not http(s) stops the service at start, without echoing it.
    let out = Service::try_start(
        dir.path().join("other"),
        &["--notify-url", "ftp://user:pw-in-url@x/hook"],
        &[],
    )
    .err()
    .expect("the service started");
    assert!(out.contains("--notify-url must be"), "{out}");
    assert!(!out.contains("pw-in-url"), "{out}");
}

#[test]
fn a_restore_shows_the_size_of_the_database_its_backup_came_from() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g",
    );
    pg.create_db("target");
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    let source_size = svc.info("b001")["database_size"].as_u64().unwrap();
    let target_before: u64 = pg
        .psql("target", "SELECT pg_database_size(current_database())")
        .trim()
        .parse()
        .unwrap();
    assert_ne!(source_size, target_before);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("target"),
        "--confirm",
        "target",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let restore = svc.info(&transfer_id(&out));
    assert_eq!(
        restore["database_size"].as_u64(),
        Some(source_size),
        "{restore}"
    );
    let shown = svc.ok(&["backups:info", &transfer_id(&out)]);
    let line = shown
        .lines()
        .find(|l| l.starts_with("Original DB Size"))
        .unwrap_or_default()
        .to_string();
    assert!(!line.is_empty(), "{shown}");
    let capture_shown = svc.ok(&["backups:info", "b001"]);
    assert!(capture_shown.contains(&line), "{line} / {capture_shown}");
}
