//! Restoring into a database that a restore already filled: the drop before the restore must
//! clear what a dump recreates outside schemas, or the second restore trips over it.

mod common;

use common::{Cluster, Service, text, transfer_id};

/// Objects that live outside schemas (or that a table depends on from outside them): an
/// access method and a table using it, a foreign-data wrapper with a server, a user mapping
/// and a foreign table, a transform, a cast between built-in types, an event trigger, a
/// publication and a subscription (created without connecting, so no publisher is needed).
const OUTSIDE_SCHEMAS: &str = r#"
CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;
CREATE TABLE t2 (x int) USING heap2;
INSERT INTO t2 VALUES (1), (2);
CREATE FOREIGN DATA WRAPPER w;
CREATE SERVER s FOREIGN DATA WRAPPER w;
CREATE USER MAPPING FOR postgres SERVER s OPTIONS (user 'x');
CREATE FOREIGN TABLE ft (a int) SERVER s;
CREATE TRANSFORM FOR int LANGUAGE plpgsql (FROM SQL WITH FUNCTION varchar_support(internal), TO SQL WITH FUNCTION int4recv(internal));
CREATE CAST (money AS boolean) WITH INOUT;
CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION on_ddl();
CREATE PUBLICATION p FOR TABLE t2;
CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere' PUBLICATION p WITH (connect = false);
"#;

#[test]
fn restoring_twice_into_the_same_database_succeeds_with_access_methods_wrappers_transforms_casts_and_event_triggers()
 {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", OUTSIDE_SCHEMAS);
    pg.create_db("target");
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    for round in 1..=2 {
        let out = svc.cli(&[
            "backups:restore",
            "b001",
            &pg.url("target"),
            "--confirm",
            "target",
        ]);
        let info = svc.info(&transfer_id(&out));
        assert!(
            out.status.success(),
            "restore {round}: {}\n{info:#}",
            text(&out)
        );
        assert_eq!(info["state"], "succeeded", "restore {round}: {info:#}");
        assert_eq!(pg.schema("app"), pg.schema("target"), "restore {round}");
        assert_eq!(
            pg.psql(
                "target",
                "SELECT string_agg(x::text, ',' ORDER BY x) FROM t2"
            )
            .trim(),
            "1,2"
        );
    }
}

#[test]
fn a_restore_by_a_role_that_may_not_drop_an_access_method_or_wrapper_keeps_them_and_says_so() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g",
    );
    pg.psql(
        "postgres",
        "CREATE ROLE owner_role LOGIN PASSWORD 'owner-pw'",
    );
    pg.psql("postgres", "CREATE DATABASE target OWNER owner_role");
    // Only a superuser may drop these; the target's owner may not.
    pg.psql(
        "target",
        "CREATE ACCESS METHOD heap3 TYPE TABLE HANDLER heap_tableam_handler; \
         CREATE FOREIGN DATA WRAPPER w2",
    );
    let svc = Service::start();
    let out = svc.cli(&["backups:capture", &pg.url("app")]);
    assert!(out.status.success(), "{}", text(&out));
    let target = format!(
        "postgres://owner_role:owner-pw@127.0.0.1:{}/target",
        pg.port
    );
    let out = svc.cli(&["backups:restore", "b001", &target, "--confirm", "target"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = transfer_id(&out);
    let logs = svc.ok_http(&format!("/api/transfers/{id}/logs"));
    assert!(
        logs.contains("Kept, as this role may not drop them")
            && logs.contains("access method heap3")
            && logs.contains("foreign-data wrapper w2"),
        "{logs}"
    );
    assert_eq!(pg.psql("target", "SELECT count(*) FROM t").trim(), "10");
}
