//! The SQLite catalog runs the catalog's shared behaviour tests (`catalog/conformance.rs`),
//! each on a fresh in-memory catalog; the PostgreSQL catalog runs the same ones in
//! `tests/pg_catalog.rs`.

use std::sync::Arc;

use super::SqliteCatalog;
use crate::catalog::Catalog;
use crate::catalog::conformance;

macro_rules! behaviours {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                conformance::$name(&SqliteCatalog::open_in_memory().unwrap());
            }
        )*

        #[test]
        fn every_shared_behaviour_runs_here() {
            let here = [$(stringify!($name)),*];
            let all: Vec<&str> = conformance::ALL.iter().map(|(name, _)| *name).collect();
            assert_eq!(here.as_slice(), all.as_slice());
        }
    };
}

behaviours!(
    ids_per_prefix_and_transfers_round_trip,
    every_field_and_time_round_trips_exactly,
    a_rebuilt_backup_is_added_whole_or_not_at_all,
    refuses_a_second_database_of_the_same_name,
    a_protection_never_outlives_its_database,
    a_tail_is_the_last_lines_oldest_first,
    a_databases_transfers_come_newest_first,
    a_summary_has_the_newest_of_each_and_what_is_going,
    removing_a_user_removes_their_sessions_and_tokens,
    a_new_password_ends_the_users_sessions,
    the_audit_log_pages_back_newest_first,
    a_scheduled_run_is_claimed_once,
    schedules_retention_and_pins_are_kept,
    a_sqlite_catalog_is_copied_whole,
);

#[test]
fn claims_are_race_free_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    // Two connections to one file, as two processes would have.
    let catalogs: Vec<Arc<dyn Catalog>> = vec![
        Arc::new(SqliteCatalog::open(&path).unwrap()),
        Arc::new(SqliteCatalog::open(&path).unwrap()),
    ];
    conformance::claims_are_race_free(&catalogs, 4);
}

#[test]
fn a_newer_catalog_is_refused_with_the_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    drop(SqliteCatalog::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteCatalog::open(&path).err().unwrap();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}
