//! The PostgreSQL catalog: the one that several service nodes share (issue 15). Every atomic
//! change is one transaction, as in the SQLite catalog; what two nodes could race for is
//! settled by the server: IDs and scheduled runs by `INSERT ... ON CONFLICT` on one row,
//! removals against additions by row locks (`FOR UPDATE`) and foreign keys, a transfer's log
//! by an advisory lock per transfer.
//!
//! The driver is tokio-postgres on a small runtime of the catalog's own, behind a bounded pool
//! (`pool.rs`); the trait's methods stay synchronous, as the service calls them.

mod by_database;
mod logs;
mod pool;
mod rows;
mod schema;
mod target;
mod team;
mod tls;

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use tokio_postgres::error::SqlState;

use super::encode::{from_micros, kind_str, micros};
use super::model::{
    DatabaseRecord, DatabaseSummary, LogLine, ProtectionRecord, RetentionPolicy, ScheduleRecord,
    TransferId, TransferKind, TransferRecord, TransferState,
};
use super::team::{AuditRecord, SessionRecord, TokenRecord, UserRecord};
use super::{Catalog, CatalogError, ScheduledRun, counter};
use pool::{Conn, Pool, wait};
use rows::{SELECT_TRANSFER, read_row, read_rows};
pub use target::PgTarget;

/// tokio-postgres's errors become the catalog's own, so that no caller depends on this
/// backend.
impl From<tokio_postgres::Error> for CatalogError {
    fn from(e: tokio_postgres::Error) -> CatalogError {
        CatalogError::Database(Box::new(e))
    }
}

/// The catalog on a PostgreSQL database, through a pool of connections.
pub struct PgCatalog {
    pool: Pool,
}

impl PgCatalog {
    /// Connects to `target` and brings its schema up to date (under a lock: nodes starting
    /// together migrate once). Refuses a catalog whose schema is newer than this binary's.
    pub fn open(target: &PgTarget) -> Result<PgCatalog, CatalogError> {
        let catalog = PgCatalog::connect(target)?;
        schema::migrate(&mut *catalog.conn()?)?;
        Ok(catalog)
    }

    /// The pool, with no migration (tests make a "newer" catalog with it).
    fn connect(target: &PgTarget) -> Result<PgCatalog, CatalogError> {
        let described = target.describe();
        let tls = tls::TlsSettings::from_url(&target.url, &described)?;
        let mut config = tokio_postgres::Config::from_str(&tls.url).map_err(|source| {
            CatalogError::Unreachable {
                catalog: described.clone(),
                source: Box::new(source),
            }
        })?;
        config.ssl_mode(tls.mode);
        if let Some(password) = &target.password
            && config.get_password().is_none()
        {
            config.password(password);
        }
        if config.get_application_name().is_none() {
            config.application_name("pgbackups");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A catalog server that vanished without closing the connection (a crashed host, a
        // cut network) fails the waiting statement within a minute or so, not two hours.
        if !target.url.contains("keepalives") {
            config
                .keepalives_idle(Duration::from_secs(30))
                .keepalives_interval(Duration::from_secs(10))
                .keepalives_retries(3);
        }
        Ok(PgCatalog {
            pool: Pool::new(config, tls.connector, described, target.pool_size)?,
        })
    }

    fn conn(&self) -> Result<Conn<'_>, CatalogError> {
        self.pool.get()
    }

    /// Opens the catalog at `target` as if this binary knew `extra` more migrations: for the
    /// test that an older binary refuses a newer catalog.
    #[doc(hidden)]
    pub fn open_with_extra_migrations(
        target: &PgTarget,
        extra: &[&str],
    ) -> Result<PgCatalog, CatalogError> {
        let catalog = PgCatalog::connect(target)?;
        let mut all: Vec<&str> = schema::MIGRATIONS.to_vec();
        all.extend_from_slice(extra);
        schema::migrate_to(&mut *catalog.conn()?, &all)?;
        Ok(catalog)
    }

    /// The schema version the catalog is at.
    pub fn schema_version(&self) -> Result<i64, CatalogError> {
        let row = wait(
            self.conn()?
                .query_one("SELECT max(version) FROM pgbackups_schema", &[]),
        )?;
        Ok(row.try_get::<_, Option<i64>>(0)?.unwrap_or(0))
    }
}

impl Catalog for PgCatalog {
    // ---- databases ----

    fn add_database(
        &self,
        name: &str,
        url_sealed: &[u8],
        url_redacted: &str,
        now: Timestamp,
    ) -> Result<(), CatalogError> {
        let n = wait(self.conn()?.execute(
            "INSERT INTO databases (name, url_sealed, url_redacted, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &url_sealed, &url_redacted, &micros(now)],
        ))?;
        if n == 0 {
            return Err(CatalogError::DatabaseExists(name.to_string()));
        }
        Ok(())
    }

    fn list_databases(&self) -> Result<Vec<DatabaseRecord>, CatalogError> {
        let rows = wait(self.conn()?.query(
            "SELECT name, url_redacted, created_at FROM databases ORDER BY name COLLATE \"C\"",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(DatabaseRecord {
                    name: r.try_get(0)?,
                    url: r.try_get(1)?,
                    created_at: from_micros(r.try_get(2)?),
                })
            })
            .collect()
    }

    fn database_url_sealed(&self, name: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        let row = wait(
            self.conn()?
                .query_opt("SELECT url_sealed FROM databases WHERE name = $1", &[&name]),
        )?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    fn remove_database(&self, name: &str) -> Result<bool, CatalogError> {
        let mut c = self.conn()?;
        let tx = wait(c.transaction())?;
        // Locked first: a protection being added waits for this transaction, then finds the
        // database gone (its foreign key); one added before is seen below.
        let exists = wait(tx.query_opt(
            "SELECT 1 FROM databases WHERE name = $1 FOR UPDATE",
            &[&name],
        ))?;
        let protected =
            wait(tx.query_opt("SELECT 1 FROM protections WHERE database = $1", &[&name]))?;
        if protected.is_some() {
            return Err(CatalogError::Protected(name.to_string()));
        }
        wait(tx.execute("DELETE FROM schedules WHERE database = $1", &[&name]))?;
        if exists.is_some() {
            wait(tx.execute("DELETE FROM databases WHERE name = $1", &[&name]))?;
        }
        wait(tx.commit())?;
        Ok(exists.is_some())
    }

    // ---- Continuous Protection ----

    fn set_protection(&self, p: &ProtectionRecord) -> Result<(), CatalogError> {
        let n = wait(self.conn()?.execute(
            "INSERT INTO protections (database, slot, base_every_secs, keep_base, created_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM databases WHERE name = $1)
             ON CONFLICT (database) DO UPDATE SET base_every_secs = excluded.base_every_secs,
                 keep_base = excluded.keep_base",
            &[
                &p.database,
                &p.slot,
                &(p.base_every_secs as i64),
                &i64::from(p.keep_base),
                &micros(p.created_at),
            ],
        ))
        .map_err(|e| {
            if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                CatalogError::NotRegistered(p.database.clone())
            } else {
                e.into()
            }
        })?;
        if n == 0 {
            return Err(CatalogError::NotRegistered(p.database.clone()));
        }
        Ok(())
    }

    fn remove_protection(&self, database: &str) -> Result<bool, CatalogError> {
        Ok(wait(
            self.conn()?
                .execute("DELETE FROM protections WHERE database = $1", &[&database]),
        )? > 0)
    }

    fn protections(&self) -> Result<Vec<ProtectionRecord>, CatalogError> {
        let rows = wait(self.conn()?.query(
            "SELECT database, slot, base_every_secs, keep_base, created_at FROM protections
             ORDER BY database COLLATE \"C\"",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(ProtectionRecord {
                    database: r.try_get(0)?,
                    slot: r.try_get(1)?,
                    base_every_secs: r.try_get::<_, i64>(2)?.max(60) as u64,
                    keep_base: r.try_get::<_, i64>(3)?.clamp(1, u32::MAX as i64) as u32,
                    created_at: from_micros(r.try_get(4)?),
                })
            })
            .collect()
    }

    // ---- schedules ----

    fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), CatalogError> {
        wait(self.conn()?.execute(
            "INSERT INTO schedules (database, hour, minute, zone, created_at, verify)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (database) DO UPDATE SET hour = excluded.hour, minute = excluded.minute,
                 zone = excluded.zone, created_at = excluded.created_at, verify = excluded.verify",
            &[
                &s.database,
                &i64::from(s.hour),
                &i64::from(s.minute),
                &s.zone,
                &micros(s.created_at),
                &s.verify.as_str(),
            ],
        ))?;
        Ok(())
    }

    fn remove_schedule(&self, database: &str) -> Result<bool, CatalogError> {
        Ok(wait(
            self.conn()?
                .execute("DELETE FROM schedules WHERE database = $1", &[&database]),
        )? > 0)
    }

    fn schedules(&self) -> Result<Vec<ScheduleRecord>, CatalogError> {
        let rows = wait(self.conn()?.query(
            "SELECT database, hour, minute, zone, created_at, verify FROM schedules
             ORDER BY database COLLATE \"C\"",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                let small = |i: usize| -> Result<i8, CatalogError> {
                    let v: i64 = r.try_get(i)?;
                    i8::try_from(v).map_err(|_| CatalogError::Corrupt(format!("schedule time {v}")))
                };
                Ok(ScheduleRecord {
                    database: r.try_get(0)?,
                    hour: small(1)?,
                    minute: small(2)?,
                    zone: r.try_get(3)?,
                    created_at: from_micros(r.try_get(4)?),
                    verify: r.try_get::<_, String>(5)?.parse().unwrap_or_default(),
                })
            })
            .collect()
    }

    fn claim_runs(
        &self,
        runs: &[(String, String, Timestamp)],
        now: Timestamp,
    ) -> Result<Vec<bool>, CatalogError> {
        let mut c = self.conn()?;
        let tx = wait(c.transaction())?;
        let stmt = wait(tx.prepare(
            "INSERT INTO scheduled_runs (database, local_date, due_at, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (database, local_date) DO NOTHING",
        ))?;
        // In one order whatever the caller's, so that two nodes claiming overlapping runs
        // wait for each other instead of deadlocking.
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by(|&a, &b| (&runs[a].0, &runs[a].1).cmp(&(&runs[b].0, &runs[b].1)));
        let mut claimed = vec![false; runs.len()];
        for i in order {
            let (database, local_date, due_at) = &runs[i];
            claimed[i] = wait(tx.execute(
                &stmt,
                &[database, local_date, &micros(*due_at), &micros(now)],
            ))? == 1;
        }
        wait(tx.commit())?;
        Ok(claimed)
    }

    fn run_claimed(&self, database: &str, local_date: &str) -> Result<bool, CatalogError> {
        Ok(wait(self.conn()?.query_opt(
            "SELECT 1 FROM scheduled_runs WHERE database = $1 AND local_date = $2",
            &[&database, &local_date],
        ))?
        .is_some())
    }

    fn unclaim_run(&self, database: &str, local_date: &str) -> Result<(), CatalogError> {
        wait(self.conn()?.execute(
            "DELETE FROM scheduled_runs WHERE database = $1 AND local_date = $2 AND transfer_id IS NULL",
            &[&database, &local_date],
        ))?;
        Ok(())
    }

    fn set_run_transfers(&self, runs: &[(String, String, TransferId)]) -> Result<(), CatalogError> {
        let mut c = self.conn()?;
        let tx = wait(c.transaction())?;
        let stmt = wait(tx.prepare(
            "UPDATE scheduled_runs SET transfer_id = $3 WHERE database = $1 AND local_date = $2",
        ))?;
        for (database, local_date, id) in runs {
            wait(tx.execute(&stmt, &[database, local_date, &id.to_string()]))?;
        }
        wait(tx.commit())?;
        Ok(())
    }

    fn scheduled_runs(&self) -> Result<Vec<ScheduledRun>, CatalogError> {
        let rows = wait(self.conn()?.query(
            "SELECT database, local_date, due_at, transfer_id FROM scheduled_runs
             ORDER BY database COLLATE \"C\", local_date",
            &[],
        ))?;
        rows.iter()
            .map(|r| {
                let id: Option<String> = r.try_get(3)?;
                let id = match id {
                    Some(id) => Some(id.parse().map_err(|_| CatalogError::Corrupt(id.clone()))?),
                    None => None,
                };
                Ok((r.try_get(0)?, r.try_get(1)?, from_micros(r.try_get(2)?), id))
            })
            .collect()
    }

    // ---- retention ----

    fn retention(&self, database: &str) -> Result<Option<RetentionPolicy>, CatalogError> {
        let row = wait(self.conn()?.query_opt(
            "SELECT daily, weekly, monthly, manual FROM retention WHERE database = $1",
            &[&database],
        ))?;
        let Some(r) = row else { return Ok(None) };
        let n = |i: usize| -> Result<u32, CatalogError> {
            Ok(r.try_get::<_, i64>(i)?.clamp(0, u32::MAX as i64) as u32)
        };
        Ok(Some(RetentionPolicy {
            daily: n(0)?,
            weekly: n(1)?,
            monthly: n(2)?,
            manual: n(3)?,
        }))
    }

    fn set_retention(&self, database: &str, p: &RetentionPolicy) -> Result<(), CatalogError> {
        wait(self.conn()?.execute(
            "INSERT INTO retention (database, daily, weekly, monthly, manual) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (database) DO UPDATE SET daily = excluded.daily, weekly = excluded.weekly,
                 monthly = excluded.monthly, manual = excluded.manual",
            &[
                &database,
                &i64::from(p.daily),
                &i64::from(p.weekly),
                &i64::from(p.monthly),
                &i64::from(p.manual),
            ],
        ))?;
        Ok(())
    }

    fn set_pinned(&self, id: TransferId, pinned: bool) -> Result<bool, CatalogError> {
        Ok(wait(self.conn()?.execute(
            "UPDATE transfers SET pinned = $2 WHERE id = $1",
            &[&id.to_string(), &pinned],
        ))? == 1)
    }

    // ---- transfers ----

    fn claim_transfer_id(&self, prefix: char) -> Result<TransferId, CatalogError> {
        // One row per prefix, incremented under its row lock: concurrent claims (other
        // connections, other nodes) queue on it and each gets the next number.
        let row = wait(self.conn()?.query_one(
            "INSERT INTO id_counters (prefix, last) VALUES ($1, 1)
             ON CONFLICT (prefix) DO UPDATE SET last = id_counters.last + 1
             RETURNING last",
            &[&prefix.to_string()],
        ))?;
        let number: i64 = row.try_get(0)?;
        let number =
            u32::try_from(number).map_err(|_| CatalogError::Corrupt("id counter".into()))?;
        Ok(TransferId::new(prefix, number))
    }

    fn bump_id_counter(&self, id: TransferId) -> Result<(), CatalogError> {
        let text = id.to_string();
        let number: i64 = text[1..].parse().unwrap_or(0);
        wait(self.conn()?.execute(
            "INSERT INTO id_counters (prefix, last) VALUES ($1, $2)
             ON CONFLICT (prefix) DO UPDATE SET last = GREATEST(id_counters.last, excluded.last)",
            &[&id.prefix().to_string(), &number],
        ))?;
        Ok(())
    }

    fn id_counters(&self) -> Result<Vec<TransferId>, CatalogError> {
        let rows = wait(self.conn()?.query(
            "SELECT prefix, last FROM id_counters ORDER BY prefix COLLATE \"C\"",
            &[],
        ))?;
        rows.iter()
            .map(|r| counter(&r.try_get::<_, String>(0)?, r.try_get(1)?))
            .collect()
    }

    fn save_transfer(&self, t: &TransferRecord) -> Result<(), CatalogError> {
        let c = self.conn()?;
        wait(rows::upsert(&*c, t, true))?;
        Ok(())
    }

    fn insert_rebuilt_backup(
        &self,
        t: &TransferRecord,
        layout: Option<&str>,
        line: (Timestamp, String),
    ) -> Result<bool, CatalogError> {
        let mut c = self.conn()?;
        let tx = wait(c.transaction())?;
        // The insert itself tells whether the ID was free: no window between a check and it.
        if !wait(rows::upsert(&tx, t, false))? {
            return Ok(false);
        }
        if let Some(layout) = layout {
            wait(tx.execute(
                "UPDATE transfers SET layout = $2 WHERE id = $1",
                &[&t.id.to_string(), &layout],
            ))?;
        }
        wait(logs::append(&tx, t.id, &[line]))?;
        wait(tx.commit())?;
        Ok(true)
    }

    fn set_progress(&self, id: TransferId, bytes: u64) -> Result<(), CatalogError> {
        wait(self.conn()?.execute(
            "UPDATE transfers SET bytes_processed = $2 WHERE id = $1",
            &[&id.to_string(), &(bytes as i64)],
        ))?;
        Ok(())
    }

    fn set_layout(&self, id: TransferId, layout: &str) -> Result<(), CatalogError> {
        wait(self.conn()?.execute(
            "UPDATE transfers SET layout = $2 WHERE id = $1",
            &[&id.to_string(), &layout],
        ))?;
        Ok(())
    }

    fn layout(&self, id: TransferId) -> Result<Option<String>, CatalogError> {
        let row = wait(self.conn()?.query_opt(
            "SELECT layout FROM transfers WHERE id = $1",
            &[&id.to_string()],
        ))?;
        Ok(row
            .map(|r| r.try_get::<_, Option<String>>(0))
            .transpose()?
            .flatten())
    }

    fn transfer(&self, id: TransferId) -> Result<Option<TransferRecord>, CatalogError> {
        let row = wait(self.conn()?.query_opt(
            &format!("{SELECT_TRANSFER} WHERE id = $1"),
            &[&id.to_string()],
        ))?;
        row.as_ref().map(read_row).transpose()
    }

    fn transfers(&self, kind: Option<TransferKind>) -> Result<Vec<TransferRecord>, CatalogError> {
        let rows = wait(self.conn()?.query(
            &format!(
                "{SELECT_TRANSFER} WHERE ($1::text IS NULL OR kind = $1) ORDER BY created_at, prefix, number"
            ),
            &[&kind.map(kind_str)],
        ))?;
        read_rows(&rows)
    }

    fn unfinished_transfers(&self) -> Result<Vec<TransferRecord>, CatalogError> {
        by_database::unfinished(&*self.conn()?)
    }

    fn transfers_of(
        &self,
        database: &str,
        kind: TransferKind,
        state: Option<TransferState>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, CatalogError> {
        by_database::transfers_of(&*self.conn()?, database, kind, state, limit)
    }

    fn count_transfers_of(&self, database: &str, kind: TransferKind) -> Result<u64, CatalogError> {
        by_database::count_of(&*self.conn()?, database, kind)
    }

    fn database_summaries(&self) -> Result<Vec<DatabaseSummary>, CatalogError> {
        by_database::summaries(&*self.conn()?)
    }

    fn delete_transfer(&self, id: TransferId) -> Result<(), CatalogError> {
        let mut c = self.conn()?;
        let tx = wait(c.transaction())?;
        let id = id.to_string();
        wait(tx.execute("DELETE FROM transfer_logs WHERE transfer_id = $1", &[&id]))?;
        wait(tx.execute("DELETE FROM transfers WHERE id = $1", &[&id]))?;
        wait(tx.commit())?;
        Ok(())
    }

    // ---- logs ----

    fn append_logs(
        &self,
        id: TransferId,
        lines: &[(Timestamp, String)],
    ) -> Result<(), CatalogError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut c = self.conn()?;
        let tx = wait(c.transaction())?;
        wait(logs::append(&tx, id, lines))?;
        wait(tx.commit())?;
        Ok(())
    }

    fn logs(&self, id: TransferId, after_seq: u64) -> Result<Vec<LogLine>, CatalogError> {
        logs::after(&*self.conn()?, id, after_seq)
    }

    fn log_tail(&self, id: TransferId, limit: usize) -> Result<Vec<LogLine>, CatalogError> {
        logs::tail(&*self.conn()?, id, limit)
    }

    // ---- users, tokens, sessions, audit (in `team.rs`) ----

    fn add_user(&self, u: &UserRecord) -> Result<(), CatalogError> {
        team::add_user(&*self.conn()?, u)
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, CatalogError> {
        team::user(&*self.conn()?, name)
    }

    fn users(&self) -> Result<Vec<UserRecord>, CatalogError> {
        team::users(&*self.conn()?)
    }

    fn remove_user(&self, name: &str) -> Result<bool, CatalogError> {
        team::remove_user(&mut *self.conn()?, name)
    }

    fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool, CatalogError> {
        team::set_password_hash(&mut *self.conn()?, name, hash)
    }

    fn set_user_role(&self, name: &str, role: &str) -> Result<bool, CatalogError> {
        team::set_user_role(&*self.conn()?, name, role)
    }

    fn add_session(&self, s: &SessionRecord, now: Timestamp) -> Result<(), CatalogError> {
        team::add_session(&mut *self.conn()?, s, now)
    }

    fn session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(SessionRecord, String)>, CatalogError> {
        team::session(&*self.conn()?, hash, now)
    }

    fn remove_session(&self, hash: &str) -> Result<bool, CatalogError> {
        team::remove_session(&*self.conn()?, hash)
    }

    fn add_token(&self, t: &TokenRecord) -> Result<bool, CatalogError> {
        team::add_token(&*self.conn()?, t)
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, CatalogError> {
        team::token(&*self.conn()?, id)
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<(TokenRecord, String)>, CatalogError> {
        team::token_by_hash(&*self.conn()?, hash)
    }

    fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, CatalogError> {
        team::tokens(&*self.conn()?, user)
    }

    fn remove_token(&self, id: &str) -> Result<bool, CatalogError> {
        team::remove_token(&*self.conn()?, id)
    }

    fn append_audit(&self, e: &AuditRecord) -> Result<i64, CatalogError> {
        team::append_audit(&*self.conn()?, e)
    }

    fn audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, CatalogError> {
        team::audit(&*self.conn()?, limit, before)
    }
}
