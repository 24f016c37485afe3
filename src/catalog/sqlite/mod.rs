//! The SQLite catalog (the embedded default): one connection to a local file in WAL mode,
//! every statement short, every multi-row change one transaction.

mod by_database;
mod logs;
mod rows;
mod schema;
mod team;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::model::{
    DatabaseRecord, DatabaseSummary, LogLine, ProtectionRecord, RetentionPolicy, ScheduleRecord,
    TransferId, TransferKind, TransferRecord, TransferState,
};
use super::team::{AuditRecord, SessionRecord, TokenRecord, UserRecord};
use super::{Catalog, CatalogError, ScheduledRun, counter};
use rows::{SELECT_TRANSFER, from_micros, kind_str, micros, origin_str, read_row};

/// SQLite's errors become the catalog's own, so that no caller depends on this backend.
impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> CatalogError {
        CatalogError::Database(Box::new(e))
    }
}

/// The catalog, on one SQLite connection.
///
/// Statements are short (single-row reads and writes on a local file in WAL mode), so they run
/// inline on the caller's (blocking) thread; the mutex serialises them. Log lines are written in batches by the caller.
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
}

impl SqliteCatalog {
    /// Opens (creating and migrating) the catalog at `path`.
    pub fn open(path: &Path) -> Result<SqliteCatalog, CatalogError> {
        Self::init(Connection::open(path)?)
    }

    /// An in-memory catalog, for tests.
    pub fn open_in_memory() -> Result<SqliteCatalog, CatalogError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteCatalog, CatalogError> {
        schema::migrate(&conn)?;
        Ok(SqliteCatalog {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (statements are
        // atomic), so the poisoned guard is safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Catalog for SqliteCatalog {
    // ---- databases ----

    /// Registers a database. Fails when the name is taken.
    fn add_database(
        &self,
        name: &str,
        url_sealed: &[u8],
        url_redacted: &str,
        now: Timestamp,
    ) -> Result<(), CatalogError> {
        let n = self.conn().execute(
            "INSERT INTO databases (name, url_sealed, url_redacted, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![name, url_sealed, url_redacted, micros(now)],
        )?;
        if n == 0 {
            return Err(CatalogError::DatabaseExists(name.to_string()));
        }
        Ok(())
    }

    /// All registered databases, by name.
    fn list_databases(&self) -> Result<Vec<DatabaseRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, url_redacted, created_at FROM databases ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(DatabaseRecord {
                name: r.get(0)?,
                url: r.get(1)?,
                created_at: from_micros(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The sealed URL of a registered database.
    fn database_url_sealed(&self, name: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT url_sealed FROM databases WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Forgets a database and its schedule; its backups stay. Returns whether it was
    /// registered. Refused while it is protected.
    fn remove_database(&self, name: &str) -> Result<bool, CatalogError> {
        let mut conn = self.conn();
        // IMMEDIATE: the protection check and the delete see one state of the file.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let protected = tx
            .query_row(
                "SELECT 1 FROM protections WHERE database = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if protected {
            return Err(CatalogError::Protected(name.to_string()));
        }
        tx.execute("DELETE FROM schedules WHERE database = ?1", [name])?;
        let n = tx.execute("DELETE FROM databases WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- Continuous Protection ----

    /// Records (or updates) a database's protection; refused for a database that is not
    /// registered.
    fn set_protection(&self, p: &ProtectionRecord) -> Result<(), CatalogError> {
        let n = self.conn().execute(
            "INSERT INTO protections (database, slot, base_every_secs, keep_base, created_at)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM databases WHERE name = ?1)
             ON CONFLICT (database) DO UPDATE SET base_every_secs = excluded.base_every_secs,
                 keep_base = excluded.keep_base",
            params![
                p.database,
                p.slot,
                p.base_every_secs as i64,
                p.keep_base as i64,
                micros(p.created_at)
            ],
        )?;
        if n == 0 {
            return Err(CatalogError::NotRegistered(p.database.clone()));
        }
        Ok(())
    }

    /// Forgets a database's protection; returns whether it had one.
    fn remove_protection(&self, database: &str) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .execute("DELETE FROM protections WHERE database = ?1", [database])?
            > 0)
    }

    /// All protections, by database.
    fn protections(&self) -> Result<Vec<ProtectionRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT database, slot, base_every_secs, keep_base, created_at FROM protections ORDER BY database",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ProtectionRecord {
                database: r.get(0)?,
                slot: r.get(1)?,
                base_every_secs: r.get::<_, i64>(2)?.max(60) as u64,
                keep_base: r.get::<_, i64>(3)?.max(1) as u32,
                created_at: from_micros(r.get(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- schedules ----

    /// Sets (or replaces) a database's daily schedule.
    fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT INTO schedules (database, hour, minute, zone, created_at, verify) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (database) DO UPDATE SET hour = excluded.hour, minute = excluded.minute,
                 zone = excluded.zone, created_at = excluded.created_at, verify = excluded.verify",
            params![s.database, s.hour, s.minute, s.zone, micros(s.created_at), s.verify.as_str()],
        )?;
        Ok(())
    }

    /// Removes a database's schedule; returns whether it had one.
    fn remove_schedule(&self, database: &str) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .execute("DELETE FROM schedules WHERE database = ?1", [database])?
            > 0)
    }

    /// All schedules, by database.
    fn schedules(&self) -> Result<Vec<ScheduleRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT database, hour, minute, zone, created_at, verify FROM schedules ORDER BY database",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ScheduleRecord {
                database: r.get(0)?,
                hour: r.get(1)?,
                minute: r.get(2)?,
                zone: r.get(3)?,
                created_at: from_micros(r.get(4)?),
                verify: r.get::<_, String>(5)?.parse().unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Claims runs, each `(database, local date, due at)`, in one transaction. Only the first
    /// claim of a run succeeds, so a run is started once however often the scheduler (or a
    /// second node) gets to it. Returns, for each run, whether this call claimed it.
    fn claim_runs(
        &self,
        runs: &[(String, String, Timestamp)],
        now: Timestamp,
    ) -> Result<Vec<bool>, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut claimed = Vec::with_capacity(runs.len());
        {
            let mut stmt = tx.prepare(
                "INSERT INTO scheduled_runs (database, local_date, due_at, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (database, local_date) DO NOTHING",
            )?;
            for (database, local_date, due_at) in runs {
                claimed.push(
                    stmt.execute(params![database, local_date, micros(*due_at), micros(now)])? == 1,
                );
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// Whether the run of `database` on `local_date` was claimed.
    fn run_claimed(&self, database: &str, local_date: &str) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM scheduled_runs WHERE database = ?1 AND local_date = ?2",
                params![database, local_date],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Gives up a claim whose capture could not start, so that the run is tried again.
    fn unclaim_run(&self, database: &str, local_date: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM scheduled_runs WHERE database = ?1 AND local_date = ?2 AND transfer_id IS NULL",
            params![database, local_date],
        )?;
        Ok(())
    }

    /// Notes which transfer each claimed run started: `(database, local date, transfer)`.
    fn set_run_transfers(&self, runs: &[(String, String, TransferId)]) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "UPDATE scheduled_runs SET transfer_id = ?3 WHERE database = ?1 AND local_date = ?2",
            )?;
            for (database, local_date, id) in runs {
                stmt.execute(params![database, local_date, id.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn scheduled_runs(&self) -> Result<Vec<ScheduledRun>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT database, local_date, due_at, transfer_id FROM scheduled_runs
             ORDER BY database, local_date",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (database, date, due, id) = row?;
            let id = match id {
                Some(id) => Some(id.parse().map_err(|_| CatalogError::Corrupt(id.clone()))?),
                None => None,
            };
            out.push((database, date, from_micros(due), id));
        }
        Ok(out)
    }

    // ---- retention ----

    /// A database's retention policy, if one was set (else the default applies).
    fn retention(&self, database: &str) -> Result<Option<RetentionPolicy>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT daily, weekly, monthly, manual FROM retention WHERE database = ?1",
                [database],
                |r| {
                    Ok(RetentionPolicy {
                        daily: r.get(0)?,
                        weekly: r.get(1)?,
                        monthly: r.get(2)?,
                        manual: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Sets a database's retention policy.
    fn set_retention(&self, database: &str, p: &RetentionPolicy) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT INTO retention (database, daily, weekly, monthly, manual) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (database) DO UPDATE SET daily = excluded.daily, weekly = excluded.weekly,
                 monthly = excluded.monthly, manual = excluded.manual",
            params![database, p.daily, p.weekly, p.monthly, p.manual],
        )?;
        Ok(())
    }

    /// Pins or unpins a backup: a pinned backup is never expired.
    fn set_pinned(&self, id: TransferId, pinned: bool) -> Result<bool, CatalogError> {
        Ok(self.conn().execute(
            "UPDATE transfers SET pinned = ?2 WHERE id = ?1",
            params![id.to_string(), pinned],
        )? == 1)
    }

    // ---- transfers ----

    /// Allocates the next ID for a prefix (`b` → b001, b002, ...).
    fn claim_transfer_id(&self, prefix: char) -> Result<TransferId, CatalogError> {
        let conn = self.conn();
        let number: i64 = conn.query_row(
            "INSERT INTO id_counters (prefix, last) VALUES (?1, 1)
             ON CONFLICT (prefix) DO UPDATE SET last = last + 1
             RETURNING last",
            [prefix.to_string()],
            |r| r.get(0),
        )?;
        let number =
            u32::try_from(number).map_err(|_| CatalogError::Corrupt("id counter".into()))?;
        Ok(TransferId::new(prefix, number))
    }

    /// Makes sure the next ID with `id`'s prefix comes after it (after a catalog rebuild).
    fn bump_id_counter(&self, id: TransferId) -> Result<(), CatalogError> {
        let text = id.to_string();
        let number: i64 = text[1..].parse().unwrap_or(0);
        self.conn().execute(
            "INSERT INTO id_counters (prefix, last) VALUES (?1, ?2)
             ON CONFLICT (prefix) DO UPDATE SET last = max(last, excluded.last)",
            params![id.prefix().to_string(), number],
        )?;
        Ok(())
    }

    fn id_counters(&self) -> Result<Vec<TransferId>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT prefix, last FROM id_counters ORDER BY prefix")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (prefix, last) = row?;
            out.push(counter(&prefix, last)?);
        }
        Ok(out)
    }

    /// Inserts a transfer record, or updates it (leaving its layout alone).
    fn save_transfer(&self, t: &TransferRecord) -> Result<(), CatalogError> {
        upsert_transfer(&self.conn(), t)
    }

    fn insert_rebuilt_backup(
        &self,
        t: &TransferRecord,
        layout: Option<&str>,
        line: (Timestamp, String),
    ) -> Result<bool, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let taken = tx
            .query_row(
                "SELECT 1 FROM transfers WHERE id = ?1",
                [t.id.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if taken {
            return Ok(false);
        }
        upsert_transfer(&tx, t)?;
        if let Some(layout) = layout {
            tx.execute(
                "UPDATE transfers SET layout = ?2 WHERE id = ?1",
                params![t.id.to_string(), layout],
            )?;
        }
        logs::append(&tx, t.id, &[line])?;
        tx.commit()?;
        Ok(true)
    }

    /// Records progress of a running transfer without rewriting the rest of it.
    fn set_progress(&self, id: TransferId, bytes: u64) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE transfers SET bytes_processed = ?2 WHERE id = ?1",
            params![id.to_string(), bytes as i64],
        )?;
        Ok(())
    }

    /// Records how a backup's stored object is laid out (JSON, see `transfer::layout`).
    fn set_layout(&self, id: TransferId, layout: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE transfers SET layout = ?2 WHERE id = ?1",
            params![id.to_string(), layout],
        )?;
        Ok(())
    }

    /// How a backup's stored object is laid out, if recorded.
    fn layout(&self, id: TransferId) -> Result<Option<String>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT layout FROM transfers WHERE id = ?1",
                [id.to_string()],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// One transfer.
    fn transfer(&self, id: TransferId) -> Result<Option<TransferRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT_TRANSFER} WHERE id = ?1"))?;
        let row = stmt.query_row([id.to_string()], read_row).optional()?;
        row.transpose()
    }

    /// All transfers of a kind (or all), oldest first.
    fn transfers(&self, kind: Option<TransferKind>) -> Result<Vec<TransferRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{SELECT_TRANSFER} WHERE (?1 IS NULL OR kind = ?1) ORDER BY created_at, prefix, number"
        ))?;
        let rows = stmt.query_map([kind.map(kind_str)], read_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Transfers that are pending or running, oldest first.
    fn unfinished_transfers(&self) -> Result<Vec<TransferRecord>, CatalogError> {
        by_database::unfinished(&self.conn())
    }

    // ---- a database's transfers, for the pages (in `by_database.rs`) ----

    fn transfers_of(
        &self,
        database: &str,
        kind: TransferKind,
        state: Option<TransferState>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, CatalogError> {
        by_database::transfers_of(&self.conn(), database, kind, state, limit)
    }

    fn count_transfers_of(&self, database: &str, kind: TransferKind) -> Result<u64, CatalogError> {
        by_database::count_of(&self.conn(), database, kind)
    }

    fn database_summaries(&self) -> Result<Vec<DatabaseSummary>, CatalogError> {
        by_database::summaries(&self.conn())
    }

    /// Removes a transfer and its log.
    fn delete_transfer(&self, id: TransferId) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM transfer_logs WHERE transfer_id = ?1",
            [id.to_string()],
        )?;
        tx.execute("DELETE FROM transfers WHERE id = ?1", [id.to_string()])?;
        tx.commit()?;
        Ok(())
    }

    // ---- logs ----

    /// Appends lines to a transfer's log in one transaction.
    fn append_logs(
        &self,
        id: TransferId,
        lines: &[(Timestamp, String)],
    ) -> Result<(), CatalogError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        logs::append(&tx, id, lines)?;
        tx.commit()?;
        Ok(())
    }

    /// A transfer's log lines after `after_seq` (0 for all).
    fn logs(&self, id: TransferId, after_seq: u64) -> Result<Vec<LogLine>, CatalogError> {
        logs::after(&self.conn(), id, after_seq)
    }

    fn log_tail(&self, id: TransferId, limit: usize) -> Result<Vec<LogLine>, CatalogError> {
        logs::tail(&self.conn(), id, limit)
    }

    // ---- users, tokens, sessions, audit (in `team.rs`) ----

    fn add_user(&self, u: &UserRecord) -> Result<(), CatalogError> {
        team::add_user(&self.conn(), u)
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, CatalogError> {
        team::user(&self.conn(), name)
    }

    fn users(&self) -> Result<Vec<UserRecord>, CatalogError> {
        team::users(&self.conn())
    }

    fn remove_user(&self, name: &str) -> Result<bool, CatalogError> {
        team::remove_user(&mut self.conn(), name)
    }

    fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool, CatalogError> {
        team::set_password_hash(&mut self.conn(), name, hash)
    }

    fn set_user_role(&self, name: &str, role: &str) -> Result<bool, CatalogError> {
        team::set_user_role(&self.conn(), name, role)
    }

    fn add_session(&self, s: &SessionRecord, now: Timestamp) -> Result<(), CatalogError> {
        team::add_session(&mut self.conn(), s, now)
    }

    fn session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(SessionRecord, String)>, CatalogError> {
        team::session(&self.conn(), hash, now)
    }

    fn remove_session(&self, hash: &str) -> Result<bool, CatalogError> {
        team::remove_session(&self.conn(), hash)
    }

    fn add_token(&self, t: &TokenRecord) -> Result<bool, CatalogError> {
        team::add_token(&mut self.conn(), t)
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, CatalogError> {
        team::token(&self.conn(), id)
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<(TokenRecord, String)>, CatalogError> {
        team::token_by_hash(&self.conn(), hash)
    }

    fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, CatalogError> {
        team::tokens(&self.conn(), user)
    }

    fn remove_token(&self, id: &str) -> Result<bool, CatalogError> {
        team::remove_token(&self.conn(), id)
    }

    fn append_audit(&self, e: &AuditRecord) -> Result<i64, CatalogError> {
        team::append_audit(&self.conn(), e)
    }

    fn audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, CatalogError> {
        team::audit(&self.conn(), limit, before)
    }
}

/// Inserts a transfer record, or updates it (leaving its layout alone), on `conn` (a
/// connection or a transaction).
fn upsert_transfer(conn: &Connection, t: &TransferRecord) -> Result<(), CatalogError> {
    let id = t.id.to_string();
    conn.execute(
        // An upsert, not INSERT OR REPLACE: a replace would wipe the columns kept apart
        // from the record (the layout).
        "INSERT INTO transfers (id, prefix, number, kind, origin, database, backup_id,
            state, created_at, started_at, finished_at, bytes_processed, database_size, dump_size,
            object_size, sha256, object_key, compression, server_version, tool_version, error, source, filter,
            encryption, detail, warnings, roles, backup_set)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)
         ON CONFLICT (id) DO UPDATE SET prefix = excluded.prefix, number = excluded.number, kind = excluded.kind, origin = excluded.origin, database = excluded.database, backup_id = excluded.backup_id, state = excluded.state, created_at = excluded.created_at, started_at = excluded.started_at, finished_at = excluded.finished_at, bytes_processed = excluded.bytes_processed, database_size = excluded.database_size, dump_size = excluded.dump_size, object_size = excluded.object_size, sha256 = excluded.sha256, object_key = excluded.object_key, compression = excluded.compression, server_version = excluded.server_version, tool_version = excluded.tool_version, error = excluded.error, source = excluded.source, filter = excluded.filter, encryption = excluded.encryption, detail = excluded.detail, warnings = excluded.warnings, roles = excluded.roles, backup_set = excluded.backup_set",
        params![
            id,
            t.id.prefix().to_string(),
            id[1..].parse::<i64>().unwrap_or(0),
            kind_str(t.kind),
            origin_str(t.origin),
            t.database,
            t.backup_id.map(|b| b.to_string()),
            t.state.as_str(),
            micros(t.created_at),
            t.started_at.map(micros),
            t.finished_at.map(micros),
            t.bytes_processed as i64,
            t.database_size.map(|v| v as i64),
            t.dump_size.map(|v| v as i64),
            t.object_size.map(|v| v as i64),
            t.sha256,
            t.object_key,
            t.compression,
            t.server_version,
            t.tool_version,
            t.error,
            t.source,
            (!t.filter.is_empty())
                .then(|| serde_json::to_string(&t.filter).unwrap_or_default()),
            t.encryption,
            t.detail,
            i64::from(t.warnings),
            t.roles
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_default()),
            t.set,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
