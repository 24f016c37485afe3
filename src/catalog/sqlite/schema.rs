//! The SQLite catalog's tables, and the migrations that bring an older file up to date.

use rusqlite::Connection;

use crate::catalog::CatalogError;

pub(super) const SCHEMA_VERSION: i64 = 13;

const SCHEMA: &str = r#"
CREATE TABLE databases (
    name TEXT PRIMARY KEY,
    url_sealed BLOB NOT NULL,
    url_redacted TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE id_counters (
    prefix TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE transfers (
    id TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    number INTEGER NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    database TEXT NOT NULL,
    backup_id TEXT,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    bytes_processed INTEGER NOT NULL DEFAULT 0,
    database_size INTEGER,
    dump_size INTEGER,
    object_size INTEGER,
    sha256 TEXT,
    object_key TEXT,
    compression TEXT,
    server_version TEXT,
    tool_version TEXT,
    error TEXT
);
CREATE INDEX transfers_by_time ON transfers (created_at);
CREATE TABLE transfer_logs (
    transfer_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (transfer_id, seq)
);
"#;

/// Brings the catalog on `conn` to the current schema (creating it in an empty file), with the
/// settings every connection needs.
pub(super) fn migrate(conn: &Connection) -> Result<(), CatalogError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL for concurrent readers; FULL so that a transfer marked succeeded stays succeeded
    // after a power loss.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(CatalogError::Corrupt(format!(
            "schema version {version}, this pgbackups knows {SCHEMA_VERSION}"
        )));
    }
    if version == 0 {
        conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;"))?;
    }
    if version < 2 {
        // How each stored dump is laid out (zstd frames, archive structure), as JSON.
        conn.execute_batch(
            "BEGIN; ALTER TABLE transfers ADD COLUMN layout TEXT; PRAGMA user_version = 2; COMMIT;",
        )?;
    }
    if version < 3 {
        // Daily schedules, and the runs they started: one per database and local date.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE schedules (
                 database TEXT PRIMARY KEY,
                 hour INTEGER NOT NULL,
                 minute INTEGER NOT NULL,
                 zone TEXT NOT NULL,
                 created_at INTEGER NOT NULL
             );
             CREATE TABLE scheduled_runs (
                 database TEXT NOT NULL,
                 local_date TEXT NOT NULL,
                 due_at INTEGER NOT NULL,
                 transfer_id TEXT,
                 created_at INTEGER NOT NULL,
                 PRIMARY KEY (database, local_date)
             );
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    if version < 4 {
        // Pins, and each database's retention policy.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE transfers ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
             CREATE TABLE retention (
                 database TEXT PRIMARY KEY,
                 daily INTEGER NOT NULL,
                 weekly INTEGER NOT NULL,
                 monthly INTEGER NOT NULL,
                 manual INTEGER NOT NULL
             );
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    if version < 5 {
        // The source of a copy.
        conn.execute_batch(
            "BEGIN; ALTER TABLE transfers ADD COLUMN source TEXT; PRAGMA user_version = 5; COMMIT;",
        )?;
    }
    if version < 6 {
        // The pg_dump selection options of a partial capture or copy, as JSON.
        conn.execute_batch(
            "BEGIN; ALTER TABLE transfers ADD COLUMN filter TEXT; PRAGMA user_version = 6; COMMIT;",
        )?;
    }
    if version < 7 {
        // Encryption of each backup; the one-line result of a verification; whether a
        // schedule verifies what it captures.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE transfers ADD COLUMN encryption TEXT;
             ALTER TABLE transfers ADD COLUMN detail TEXT;
             ALTER TABLE schedules ADD COLUMN verify TEXT NOT NULL DEFAULT 'off';
             PRAGMA user_version = 7;
             COMMIT;",
        )?;
    }
    if version < 8 {
        // Continuous Protection: which databases stream their WAL, and how often a base
        // backup is taken and how many are kept.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE protections (
                 database TEXT PRIMARY KEY,
                 slot TEXT NOT NULL,
                 base_every_secs INTEGER NOT NULL,
                 keep_base INTEGER NOT NULL,
                 created_at INTEGER NOT NULL
             );
             PRAGMA user_version = 8;
             COMMIT;",
        )?;
    }
    if version < 9 {
        // How many objects a completed restore or copy could not restore (warnings): a
        // column, so that the listing needs no log.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE transfers ADD COLUMN warnings INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 9;
             COMMIT;",
        )?;
    }
    if version < 10 {
        // The roles kept beside each backup (`pg_dumpall --globals-only`), as JSON.
        conn.execute_batch(
            "BEGIN; ALTER TABLE transfers ADD COLUMN roles TEXT; PRAGMA user_version = 10; COMMIT;",
        )?;
    }
    if version < 11 {
        // The set of a whole-server capture (`backups:capture --all`).
        conn.execute_batch(
            "BEGIN; ALTER TABLE transfers ADD COLUMN backup_set TEXT; PRAGMA user_version = 11; COMMIT;",
        )?;
    }
    if version < 12 {
        // The team (issue 14): users with an argon2id hash, personal tokens and browser
        // sessions by the SHA-256 of their secret, and the audit log.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE users (
                 name TEXT PRIMARY KEY,
                 role TEXT NOT NULL,
                 password_hash TEXT NOT NULL,
                 created_at INTEGER NOT NULL
             );
             CREATE TABLE api_tokens (
                 id TEXT PRIMARY KEY,
                 hash TEXT NOT NULL UNIQUE,
                 user TEXT NOT NULL,
                 label TEXT,
                 created_at INTEGER NOT NULL
             );
             CREATE INDEX api_tokens_by_user ON api_tokens (user);
             CREATE TABLE sessions (
                 hash TEXT PRIMARY KEY,
                 user TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL
             );
             CREATE INDEX sessions_by_user ON sessions (user);
             CREATE TABLE audit (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 at INTEGER NOT NULL,
                 actor TEXT NOT NULL,
                 action TEXT NOT NULL,
                 target TEXT NOT NULL,
                 status INTEGER NOT NULL
             );
             PRAGMA user_version = 12;
             COMMIT;",
        )?;
    }
    if version < 13 {
        // The dashboard's reads (issue 14): a database's newest transfers of a kind, in the
        // index's order (no sort, no scan of the others' history); and the few unfinished
        // transfers without reading the finished ones.
        conn.execute_batch(
            "BEGIN;
             CREATE INDEX transfers_by_database
                 ON transfers (database, kind, created_at, prefix, number);
             CREATE INDEX transfers_unfinished
                 ON transfers (created_at) WHERE state IN ('pending', 'running');
             PRAGMA user_version = 13;
             COMMIT;",
        )?;
    }
    Ok(())
}
