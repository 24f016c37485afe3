//! Issue 13: a Heroku user's day, end to end, with the habits of `heroku pg:backups`:
//!
//! ```text
//! heroku pg:backups:capture                   pgbackups backups:capture main
//! heroku pg:backups                           pgbackups backups
//! heroku pg:backups:info b001                 pgbackups backups:info b001
//! curl -o x.dump "$(heroku pg:backups:url)"   curl -o x.dump "$(pgbackups backups:url)"; pg_restore --list x.dump
//! heroku pg:backups:download (twice)          pgbackups backups:download (twice): latest.dump, latest.dump.1
//! heroku pg:backups:restore b001 STAGING      ... "Completed with 1 warning" (an untrusted extension)
//! heroku pg:pull DATABASE_URL mylocaldb       pgbackups pull main app_dev (a bare name: the local server)
//! heroku pg:push mylocaldb DATABASE_URL       pgbackups push app_dev main --confirm main
//! ```
//!
//! Two real clusters: `prod` is the service's side, `laptop` the user's machine, which the CLI's
//! PGHOST/PGPORT/PGUSER/PGPASSWORD point at (as a developer's shell does).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Cluster, PASSWORD, PG_BIN, Service, text};

/// The user's shell: in `dir`, pointed at the service, libpq's defaults at the laptop.
fn heroku_user(svc: &Service, laptop: &Cluster, dir: &Path, args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .current_dir(dir)
        .env("PGBACKUPS_URL", &svc.url)
        .env("PGBACKUPS_TOKEN", svc.token())
        .env_remove("PGBACKUPS_SOURCE_URL")
        .env_remove("PGBACKUPS_TARGET_URL")
        .env_remove("PGDATABASE")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", laptop.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out));
    text(&out)
}

fn count(pg: &Cluster, db: &str, table: &str) -> String {
    pg.psql(db, &format!("SELECT count(*) FROM {table}"))
        .trim()
        .to_string()
}

#[test]
fn a_heroku_users_day_capture_list_info_url_download_restore_pull_push() {
    let prod = Cluster::start();
    prod.create_db("app");
    prod.psql(
        "app",
        "CREATE EXTENSION pgrowlocks; \
         CREATE TABLE events (id int PRIMARY KEY, kind text, body text); \
         INSERT INTO events SELECT g, 'kind-' || (g % 7), repeat('payload ' || g, 4) FROM generate_series(1, 5000) g; \
         CREATE TABLE logs (id int, line text); \
         INSERT INTO logs SELECT g, 'line ' || g FROM generate_series(1, 200) g",
    );
    // Staging belongs to a role that may not create the untrusted pgrowlocks.
    prod.psql(
        "postgres",
        "CREATE ROLE owner_role LOGIN PASSWORD 'owner-pw'",
    );
    prod.psql("postgres", "CREATE DATABASE staging OWNER owner_role");
    let laptop = Cluster::start();
    let svc = Service::start();
    svc.ok(&["databases:add", "main", &prod.url("app")]);
    svc.ok(&[
        "databases:add",
        "staging",
        &format!(
            "postgres://owner_role:owner-pw@127.0.0.1:{}/staging",
            prod.port
        ),
    ]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let user = |args: &[&str]| heroku_user(&svc, &laptop, dir, args);

    // heroku pg:backups:capture
    let out = ok(user(&["backups:capture", "main"]), "capture");
    assert!(out.contains("b001"), "{out}");

    // heroku pg:backups: the backup, Completed, and the Restores and Copies sections.
    let out = ok(user(&["backups"]), "backups");
    assert!(
        out.contains("b001") && out.contains("Completed") && out.contains("=== Copies"),
        "{out}"
    );

    // heroku pg:backups:info b001
    let out = ok(user(&["backups:info", "b001"]), "info");
    assert!(
        out.contains("Status:") && out.contains("Completed") && out.contains("main"),
        "{out}"
    );

    // curl -o latest.dump "$(heroku pg:backups:url)" && pg_restore --list latest.dump
    let url = ok(user(&["backups:url"]), "url");
    let url = url.lines().next().unwrap().trim().to_string();
    ok(
        Command::new("curl")
            .args(["-sSf", "-o", "curled.dump", &url])
            .current_dir(dir)
            .output()
            .unwrap(),
        "curl",
    );
    let list = ok(
        Command::new(format!("{PG_BIN}/pg_restore"))
            .args(["--list", "curled.dump"])
            .current_dir(dir)
            .output()
            .unwrap(),
        "pg_restore --list",
    );
    assert!(list.contains("TABLE DATA public events"), "{list}");

    // heroku pg:backups:download, twice: two files.
    let first = ok(user(&["backups:download"]), "download");
    let second = ok(user(&["backups:download"]), "download again");
    assert!(first.contains("latest.dump "), "{first}");
    assert!(second.contains("latest.dump.1 "), "{second}");
    assert!(dir.join("latest.dump").is_file() && dir.join("latest.dump.1").is_file());

    // heroku pg:backups:restore b001 STAGING: the extension is refused, every row loads.
    let out = ok(
        user(&["backups:restore", "b001", "staging", "--confirm", "staging"]),
        "restore",
    );
    assert!(out.contains("done, with 1 warning"), "{out}");
    let listing = ok(user(&["backups"]), "backups after the restore");
    assert!(listing.contains("Completed with 1 warning"), "{listing}");
    assert_eq!(count(&prod, "staging", "events"), "5000");

    // heroku pg:pull main app_dev: a bare name is a database on the user's machine.
    let out = ok(user(&["pull", "main", "app_dev"]), "pull");
    assert!(out.contains("done"), "{out}");
    assert_eq!(count(&laptop, "app_dev", "events"), "5000");
    let on_prod = prod.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname = 'app_dev'",
    );
    assert_eq!(on_prod.trim(), "0", "the pull wrote to the service's side");

    // Work on the laptop, then heroku pg:push app_dev main (it has tables: confirmed).
    laptop.psql(
        "app_dev",
        "INSERT INTO events VALUES (5001, 'local', 'made on the laptop')",
    );
    let out = ok(
        user(&["push", "app_dev", "main", "--confirm", "main"]),
        "push",
    );
    assert!(out.contains("done"), "{out}");
    assert_eq!(count(&prod, "app", "events"), "5001");
    assert_eq!(
        prod.psql("app", "SELECT kind FROM events WHERE id = 5001")
            .trim(),
        "local"
    );
    let listing = ok(user(&["backups"]), "backups after the push");
    assert!(listing.contains("local database app_dev"), "{listing}");
}
