//! A whole server at once: `backups:capture --all SERVER` and `backups:restore --set SET
//! SERVER`. Heroku has one database per add-on and no whole-server capture; a user moving a
//! server with several databases expects one backup each (with the roles, as every backup
//! keeps them), and one command to bring them all back. Against real throwaway clusters.

mod common;

use common::{Cluster, Service, text};

/// Three databases on one server; `shop` has a table owned by a role of its own.
fn three_databases() -> Cluster {
    let pg = Cluster::start();
    for db in ["shop", "blog", "crm"] {
        pg.create_db(db);
    }
    pg.psql(
        "shop",
        "CREATE ROLE shop_owner;
         CREATE TABLE items (id int PRIMARY KEY);
         ALTER TABLE items OWNER TO shop_owner;
         INSERT INTO items SELECT generate_series(1, 50);",
    );
    pg.psql(
        "blog",
        "CREATE TABLE posts (id int); INSERT INTO posts SELECT generate_series(1, 20);",
    );
    pg.psql(
        "crm",
        "CREATE TABLE leads (id int); INSERT INTO leads SELECT generate_series(1, 7);",
    );
    pg
}

fn one(pg: &Cluster, db: &str, sql: &str) -> String {
    pg.psql(db, sql).trim().to_string()
}

/// The captures of the listing's JSON: (database name, set).
fn captured(svc: &Service) -> Vec<(String, Option<String>)> {
    let out = svc.ok(&["backups", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut v: Vec<(String, Option<String>)> = all
        .iter()
        .filter(|t| t["kind"] == "capture")
        .map(|t| {
            let db = t["database"].as_str().unwrap_or_default();
            let name = db.rsplit('/').next().unwrap_or_default().to_string();
            (name, t["set"].as_str().map(str::to_string))
        })
        .collect();
    v.sort();
    v
}

/// Heroku users moving a server expect every database back: `--all` takes one backup per
/// database (not `postgres`, which has no tables of its own), all in one set the listing
/// shows; restoring the set into a second server gives the three databases with every row
/// and the owner role.
#[test]
fn capture_all_then_restore_the_set_into_a_second_server_brings_every_database_back() {
    let source = three_databases();
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", "--all", &source.url("postgres")]);
    assert!(out.status.success(), "{}", text(&out));

    let set = Some("b001".to_string());
    assert_eq!(
        captured(&svc),
        vec![
            ("blog".to_string(), set.clone()),
            ("crm".to_string(), set.clone()),
            ("shop".to_string(), set.clone()),
        ]
    );
    let listing = svc.ok(&["backups"]);
    assert!(listing.contains("Set"), "{listing}");
    assert_eq!(listing.matches(" b001\n").count(), 3, "{listing}");

    let target = Cluster::start();
    let out = svc.cli(&[
        "backups:restore",
        "--set",
        "b001",
        &target.url("postgres"),
        "--confirm",
        "postgres",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("All 3 databases of the set restored."),
        "{}",
        text(&out)
    );
    assert_eq!(one(&target, "shop", "SELECT count(*) FROM items"), "50");
    assert_eq!(one(&target, "blog", "SELECT count(*) FROM posts"), "20");
    assert_eq!(one(&target, "crm", "SELECT count(*) FROM leads"), "7");
    assert_eq!(
        one(
            &target,
            "shop",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"
        ),
        "shop_owner"
    );
}

/// A set restore goes on past a database that cannot be restored (here one that refuses
/// connections on the target), restores the others, and exits non-zero naming it.
#[test]
fn restoring_a_set_with_one_failing_database_restores_the_others_and_names_it() {
    let source = three_databases();
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", "--all", &source.url("postgres")]);
    assert!(out.status.success(), "{}", text(&out));

    let target = Cluster::start();
    target.create_db("blog");
    target.psql(
        "postgres",
        "ALTER DATABASE blog WITH ALLOW_CONNECTIONS false",
    );
    let out = svc.cli(&[
        "backups:restore",
        "--set",
        "b001",
        &target.url("postgres"),
        "--confirm",
        "postgres",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 of 3 databases not restored: blog"),
        "{}",
        text(&out)
    );
    assert_eq!(one(&target, "shop", "SELECT count(*) FROM items"), "50");
    assert_eq!(one(&target, "crm", "SELECT count(*) FROM leads"), "7");
}
