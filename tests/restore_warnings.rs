//! Heroku ends a restore (or copy) whose only errors were objects the target refused without
//! losing any data (an extension, its comment, privileges, ownership) "Completed with N
//! warnings", and lists them; a table or its data that did not load still fails it.

mod common;

use common::{Cluster, Service, text, transfer_id};

/// A source with an untrusted extension (only a superuser may create it) and a table.
fn source_with_an_untrusted_extension(pg: &Cluster) {
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE EXTENSION pgrowlocks; \
         CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g; \
         ALTER TABLE t ADD PRIMARY KEY (g)",
    );
    pg.psql(
        "postgres",
        "CREATE ROLE owner_role LOGIN PASSWORD 'owner-pw'",
    );
    pg.psql("postgres", "CREATE DATABASE target OWNER owner_role");
}

fn as_owner(pg: &Cluster) -> String {
    format!(
        "postgres://owner_role:owner-pw@127.0.0.1:{}/target",
        pg.port
    )
}

/// Heroku: a restore whose target refuses an extension ends "Completed with 1 warning",
/// every row loaded, and `backups:info` lists the warning.
#[test]
fn a_restore_into_a_target_that_refuses_an_untrusted_extension_completes_with_1_warning_as_heroku()
{
    let pg = Cluster::start();
    source_with_an_untrusted_extension(&pg);
    let svc = Service::start();
    svc.ok(&["backups:capture", &pg.url("app")]);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &as_owner(&pg),
        "--confirm",
        "target",
    ]);
    let id = transfer_id(&out);
    let info = svc.info(&id);
    assert!(out.status.success(), "{}\n{info:#}", text(&out));
    assert_eq!(info["state"], "succeeded", "{info:#}");
    assert_eq!(info["warnings"], 1, "{info:#}");
    assert!(
        text(&out).contains("done, with 1 warning")
            && text(&out)
                .contains("WARNING: extension pgrowlocks was not restored: permission denied"),
        "{}",
        text(&out)
    );
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "1000");
    let listing = svc.ok(&["backups"]);
    assert!(listing.contains("Completed with 1 warning"), "{listing}");
    let shown = svc.ok(&["backups:info", &id]);
    assert!(
        shown.contains("Status:") && shown.contains("Completed with 1 warning"),
        "{shown}"
    );
    assert!(
        shown.contains("=== Warnings\nextension pgrowlocks was not restored: permission denied"),
        "{shown}"
    );
}

/// Heroku's `pg:copy` the same: the copy completes with the warning.
#[test]
fn a_copy_into_a_target_that_refuses_an_untrusted_extension_completes_with_1_warning_as_heroku() {
    let pg = Cluster::start();
    source_with_an_untrusted_extension(&pg);
    let svc = Service::start();
    let out = svc.cli(&[
        "copy",
        &pg.url("app"),
        &as_owner(&pg),
        "--confirm",
        "target",
    ]);
    let id = transfer_id(&out);
    let info = svc.info(&id);
    assert!(out.status.success(), "{}\n{info:#}", text(&out));
    assert_eq!(info["warnings"], 1, "{info:#}");
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "1000");
}

/// A table that does not load keeps the restore Failed, as today, beside a refused
/// extension: here a table whose column has a type of that extension (`earthdistance`'s
/// `earth`, untrusted), so neither the table nor its rows can be restored.
#[test]
fn a_restore_whose_table_does_not_load_still_fails_beside_a_refused_extension() {
    let pg = Cluster::start();
    source_with_an_untrusted_extension(&pg);
    pg.psql(
        "app",
        "CREATE EXTENSION earthdistance CASCADE; \
         CREATE TABLE places AS SELECT ll_to_earth(0, 0) AS at",
    );
    let svc = Service::start();
    svc.ok(&["backups:capture", &pg.url("app")]);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &as_owner(&pg),
        "--confirm",
        "target",
    ]);
    let info = svc.info(&transfer_id(&out));
    assert!(!out.status.success(), "{}\n{info:#}", text(&out));
    assert_eq!(info["state"], "failed", "{info:#}");
    assert!(info.get("warnings").is_none(), "{info:#}");
    assert!(
        info["error"]
            .as_str()
            .unwrap_or("")
            .contains("partially restored"),
        "{info:#}"
    );
}

/// Heroku's `--extensions a,b`: each is created in the emptied target before pg_restore runs.
#[test]
fn a_restore_with_extensions_creates_them_in_the_target_before_the_data_as_heroku() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g",
    );
    pg.create_db("target");
    let svc = Service::start();
    svc.ok(&["backups:capture", &pg.url("app")]);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("target"),
        "--confirm",
        "target",
        "--extensions",
        "citext,pg_trgm",
    ]);
    let info = svc.info(&transfer_id(&out));
    assert!(out.status.success(), "{}\n{info:#}", text(&out));
    assert!(info.get("warnings").is_none(), "{info:#}");
    assert_eq!(
        pg.psql(
            "target",
            "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'"
        )
        .trim(),
        "citext,pg_trgm"
    );
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "10");
}

/// An extension `--extensions` names that the target's role may not create fails the restore
/// before any data loads, saying which and why.
#[test]
fn a_restore_with_an_extension_the_target_cannot_create_fails_before_the_data_saying_which() {
    let pg = Cluster::start();
    source_with_an_untrusted_extension(&pg);
    let svc = Service::start();
    svc.ok(&["backups:capture", &pg.url("app")]);
    let out = svc.cli(&[
        "backups:restore",
        "b001",
        &as_owner(&pg),
        "--confirm",
        "target",
        "--extensions",
        "pgrowlocks",
    ]);
    let info = svc.info(&transfer_id(&out));
    assert!(!out.status.success(), "{}\n{info:#}", text(&out));
    let error = info["error"].as_str().unwrap_or("");
    assert!(
        error.contains("could not create extension pgrowlocks (--extensions)")
            && error.contains("permission denied to create extension"),
        "{info:#}"
    );
    assert_eq!(
        pg.psql(
            "target",
            "SELECT count(*) FROM pg_tables WHERE tablename = 't'"
        )
        .trim(),
        "0"
    );
}
