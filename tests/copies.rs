//! Copies between databases (Heroku's pg:copy): pg_dump streamed into pg_restore, nothing
//! stored, the target emptied first.

mod common;

use common::{Cluster, Service, text, transfer_id};

#[test]
fn copy_between_two_clusters_replaces_the_target_and_stores_nothing() {
    let source = Cluster::start();
    source.create_db("app");
    source.psql(
        "app",
        "CREATE EXTENSION citext; CREATE SCHEMA sales; \
         CREATE TABLE sales.customers (id serial PRIMARY KEY, name citext UNIQUE, note text); \
         INSERT INTO sales.customers (name, note) SELECT 'c' || g, 'Zürich ✓ ' || g FROM generate_series(1, 2000) g; \
         CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz) PARTITION BY RANGE (at); \
         CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); \
         INSERT INTO events (at) SELECT '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g; \
         SELECT lo_from_bytea(0, 'large object');",
    );
    let target = Cluster::start();
    target.create_db("staging");
    target.psql(
        "staging",
        "CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (1)",
    );
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "staging"], &target.url("staging"));
    assert!(out.status.success(), "{}", text(&out));

    // Without the right confirmation nothing happens.
    let out = svc.cli(&["copy", &source.url("app"), "staging"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--confirm staging"), "{}", text(&out));
    assert_eq!(
        target
            .psql("staging", "SELECT count(*) FROM leftover")
            .trim(),
        "1"
    );
    // The same database through another spelling of its URL: refused before anything is dropped.
    let same = target.url("staging").replace("127.0.0.1", "localhost");
    let out = svc.cli(&["copy", "staging", &same, "--confirm", "staging"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("same database"), "{}", text(&out));
    assert_eq!(
        target
            .psql("staging", "SELECT count(*) FROM leftover")
            .trim(),
        "1"
    );
    let out = svc.cli(&["copy", "staging", "staging", "--confirm", "staging"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("same database"), "{}", text(&out));

    let out = svc.cli(&[
        "copy",
        &source.url("app"),
        "staging",
        "--confirm",
        "staging",
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(transfer_id(&out), "c002");
    assert!(
        text(&out).contains("processing data for table"),
        "{}",
        text(&out)
    );
    assert_eq!(source.schema("app"), target.schema("staging"));
    assert_eq!(source.row_counts("app"), target.row_counts("staging"));
    // The target's own objects were dropped first.
    let leftover = target.try_psql("staging", "SELECT * FROM leftover");
    assert!(!leftover.status.success());

    let info = svc.info("c002");
    assert_eq!(info["kind"], "copy");
    assert_eq!(info["state"], "succeeded");
    assert!(info["source"].as_str().unwrap().contains("/app"));
    assert!(info["dump_size"].as_u64().unwrap() > 0);
    let listing = svc.ok(&["backups"]);
    assert!(
        listing.contains("=== Copies") && listing.contains("c002"),
        "{listing}"
    );
    assert!(!listing.contains(common::PASSWORD), "{listing}");
    // Nothing was stored.
    assert!(svc.stored_files().is_empty(), "{:?}", svc.stored_files());
}

#[test]
fn partial_captures_and_copies_take_only_what_is_selected_and_record_it() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE SCHEMA sales; CREATE SCHEMA audit; \
         CREATE TABLE sales.orders AS SELECT g FROM generate_series(1, 300) g; \
         CREATE TABLE sales.log AS SELECT g FROM generate_series(1, 1000) g; \
         CREATE TABLE audit.trail AS SELECT g FROM generate_series(1, 50) g; \
         CREATE TABLE public.other AS SELECT 1 AS x;",
    );
    let svc = Service::start();
    let out = svc.cli(&[
        "backups:capture",
        &pg.url("app"),
        "--schema",
        "sales",
        "--exclude-table-data",
        "sales.log",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let info = svc.info("b001");
    assert_eq!(info["filter"]["schema"][0], "sales");
    assert_eq!(info["filter"]["exclude_table_data"][0], "sales.log");
    let shown = svc.ok(&["backups:info", "b001"]);
    assert!(
        shown.contains("Partial:") && shown.contains("--schema=sales"),
        "{shown}"
    );

    pg.create_db("part");
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("part"),
        "--confirm",
        "part",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        pg.psql("part", "SELECT count(*) FROM sales.orders").trim(),
        "300"
    );
    assert_eq!(
        pg.psql("part", "SELECT count(*) FROM sales.log").trim(),
        "0"
    );
    assert!(
        !pg.try_psql("part", "SELECT 1 FROM audit.trail")
            .status
            .success()
    );

    pg.create_db("copied");
    let out = svc.cli(&[
        "copy",
        &pg.url("app"),
        &pg.url("copied"),
        "--confirm",
        "copied",
        "--table",
        "public.other",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pg.psql("copied", "SELECT x FROM public.other").trim(), "1");
    let orders = pg.try_psql("copied", "SELECT 1 FROM sales.orders");
    assert!(!orders.status.success());
    assert_eq!(svc.info("c001")["filter"]["table"][0], "public.other");
    // As with pg_dump itself, --table takes the table alone, not its schema: into an emptied
    // target, a table outside public fails, and says why.
    pg.create_db("copied2");
    let out = svc.cli(&[
        "copy",
        &pg.url("app"),
        &pg.url("copied2"),
        "--confirm",
        "copied2",
        "--table",
        "audit.trail",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("schema \"audit\" does not exist"),
        "{}",
        text(&out)
    );

    // A pattern pg_dump would misread is refused before anything starts.
    let out = svc.cli(&["backups:capture", &pg.url("app"), "--table", " "]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a usable pattern for --table"),
        "{}",
        text(&out)
    );
}

/// Heroku splits `--exclude-table-data` on `;` (`'logs;items'`): both tables keep their
/// definitions and lose their rows, in a capture and in a copy alike. A pattern that matches no
/// table (pg_dump would ignore it silently) is reported in the log and at the end.
#[test]
fn capture_and_copy_with_exclude_table_data_split_on_semicolons_as_heroku_and_report_unmatched() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE SCHEMA sales; \
         CREATE TABLE logs AS SELECT g FROM generate_series(1, 400) g; \
         CREATE TABLE sales.items AS SELECT g FROM generate_series(1, 300) g; \
         CREATE TABLE kept AS SELECT g FROM generate_series(1, 20) g;",
    );
    let svc = Service::start();
    let out = svc.cli(&[
        "backups:capture",
        &pg.url("app"),
        "--exclude-table-data",
        "logs; sales.items",
        "--exclude-table-data",
        "no_such_table",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let warning = "WARNING: --exclude-table-data pattern `no_such_table` matches no table";
    assert!(text(&out).contains(warning), "{}", text(&out));
    assert!(!text(&out).contains("`logs`"), "{}", text(&out));
    let info = svc.info("b001");
    assert_eq!(
        info["filter"]["exclude_table_data"],
        serde_json::json!(["logs", "sales.items", "no_such_table"])
    );
    let shown = svc.ok(&["backups:info", "b001"]);
    assert!(shown.contains(warning), "{shown}");

    pg.create_db("restored");
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("restored"),
        "--confirm",
        "restored",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    pg.create_db("copied");
    let out = svc.cli(&[
        "copy",
        &pg.url("app"),
        &pg.url("copied"),
        "--confirm",
        "copied",
        "--exclude-table-data",
        "logs;sales.items;;Sales.Nothing*",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("pattern `Sales.Nothing*` matches no table"),
        "{}",
        text(&out)
    );
    for db in ["restored", "copied"] {
        // The definitions are there, the rows are not; the other table is whole.
        assert_eq!(pg.psql(db, "SELECT count(*) FROM logs").trim(), "0", "{db}");
        assert_eq!(
            pg.psql(db, "SELECT count(*) FROM sales.items").trim(),
            "0",
            "{db}"
        );
        assert_eq!(
            pg.psql(db, "SELECT count(*) FROM kept").trim(),
            "20",
            "{db}"
        );
    }
}

/// The unmatched-pattern check reads `--exclude-table-data` patterns in a query of its own:
/// a quote and a backslash in one stay text even on a database with
/// `standard_conforming_strings = off`, where `'x\''` would close the literal and run what
/// follows (here a large object's creation) as the database's owner.
#[test]
fn capture_with_a_quote_and_backslash_in_exclude_table_data_runs_no_sql_from_it() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE kept AS SELECT g FROM generate_series(1, 20) g; \
         ALTER DATABASE app SET standard_conforming_strings = off;",
    );
    let svc = Service::start();
    let pattern = r"((x\'::text)) as p(i, nsp, rel) where lo_create(4242) > 0 --";
    let out = svc.cli(&[
        "backups:capture",
        &pg.url("app"),
        "--exclude-table-data",
        pattern,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        pg.psql(
            "app",
            "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 4242"
        )
        .trim(),
        "0",
        "{}",
        text(&out)
    );
    // The pattern matches no table, and is reported as typed.
    assert!(
        text(&out).contains(&format!("pattern `{pattern}` matches no table")),
        "{}",
        text(&out)
    );
}

/// Heroku asks for the name on a terminal; without one (a script, a pipe) the refusal is the
/// same error as ever, and a name on standard input is not taken as a confirmation.
#[test]
fn destructive_commands_without_a_terminal_refuse_as_before_and_ask_nothing() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", "CREATE TABLE t AS SELECT 1 AS x");
    pg.create_db("staging");
    pg.psql(
        "staging",
        "CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (1)",
    );
    let svc = Service::start();
    for name in ["app", "staging"] {
        let out = svc.cli_with_stdin(&["databases:add", name], &pg.url(name));
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = svc.cli(&["backups:capture", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    let refusal = "error: this is destructive: confirm it by passing --confirm staging\n";
    // push checks the target with the service before it runs pg_dump: refused, nothing is sent.
    let pushed = "error: staging has 1 table(s); push replaces everything in it: confirm by passing --confirm staging\n";
    // push reads `app` on the user's machine: libpq's defaults point at the cluster.
    let port = pg.port.to_string();
    let laptop = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGPASSWORD", common::PASSWORD),
    ];
    for (args, expected) in [
        (["copy", "app", "staging"], refusal),
        (["backups:restore", "b001", "staging"], refusal),
        (["push", "app", "staging"], pushed),
    ] {
        let out = svc.cli_env_with_stdin(&args, &laptop, "staging\n");
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{args:?}");
        assert!(!text(&out).contains("Destructive action"), "{}", text(&out));
    }
    let out = svc.cli_with_stdin(&["backups:delete", "b001"], "app\n");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: this is destructive: confirm it by passing --confirm app\n"
    );
    assert_eq!(
        pg.psql("staging", "SELECT count(*) FROM leftover").trim(),
        "1"
    );
    assert!(svc.ok(&["backups"]).contains("b001"));
}

/// Heroku's `pg:copy` without `--confirm` on a terminal: "WARNING: Destructive action ... To
/// proceed, type NAME or re-run this command with --confirm NAME", and the typed name confirms.
#[test]
fn on_a_terminal_a_copy_without_confirm_asks_for_the_name_as_heroku_does() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 70) g",
    );
    pg.create_db("staging");
    pg.psql("staging", "CREATE TABLE leftover (x int)");
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "staging"], &pg.url("staging"));
    assert!(out.status.success(), "{}", text(&out));
    // `script` runs the CLI on a pseudo-terminal and types what it reads from its stdin.
    let on_terminal = |typed: &str| {
        let mut child = std::process::Command::new("script")
            .args(["-qec", "\"$BIN\" copy \"$SRC\" staging", "/dev/null"])
            .env("BIN", common::binary())
            .env("SRC", pg.url("app"))
            .env("PGBACKUPS_URL", &svc.url)
            .env("PGBACKUPS_TOKEN", svc.token())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(typed.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = on_terminal("stagign\n");
    let shown = text(&out);
    assert!(
        shown.contains(" ▸    WARNING: Destructive action\r\n ▸    This command will remove all data from staging\r\n ▸    To proceed, type staging or re-run this command with --confirm staging"),
        "{shown}"
    );
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("(you passed `stagign`)"), "{shown}");
    assert!(
        pg.try_psql("staging", "SELECT 1 FROM leftover")
            .status
            .success()
    );

    let out = on_terminal("staging\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Destructive action"), "{}", text(&out));
    assert_eq!(pg.psql("staging", "SELECT count(*) FROM t").trim(), "70");
    assert!(
        !pg.try_psql("staging", "SELECT 1 FROM leftover")
            .status
            .success()
    );
}
