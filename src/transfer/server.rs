//! A whole server at once: `backups:capture --all SERVER` takes one backup of every database
//! of the server, tagged with one set; `backups:restore --set SET SERVER` restores each backup
//! of a set into the database of the same name on a target server.
//!
//! Which databases: those that accept connections and are not templates. `postgres` is the
//! maintenance database every server has; it is kept only when it holds a table of its own
//! (Heroku has no whole-server capture to copy, and a backup of an empty `postgres` would
//! only be noise in the listing).

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, RestoreExtras, TransferError, check_confirm, confirm_word};
use crate::catalog::{Origin, TransferKind, TransferRecord, TransferState};
use crate::pg::client::{query, quote_ident, quote_literal};
use crate::pg::{DumpFilter, PgUrl};

/// A user table outside the system schemas.
const HAS_USER_TABLES: &str = "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' LIMIT 1";

/// The answer to a set restore: the restores started, and the databases whose restore could
/// not even start, with why.
#[derive(Clone, Debug, Default)]
pub struct SetRestore {
    pub started: Vec<TransferRecord>,
    pub refused: Vec<(String, String)>,
}

impl Engine {
    /// Starts one capture of every database of the server `server` (a registered name or a
    /// URL of any database on it), all in one set named after the first backup's ID. Each
    /// backup keeps the server's roles, as every backup does.
    pub async fn start_server_capture(
        self: &Arc<Self>,
        server: &str,
    ) -> Result<Vec<TransferRecord>, TransferError> {
        let registry = self.registry.clone();
        let s = server.to_string();
        let (_, url) = super::blocking(move || Ok(registry.resolve(Some(&s))?)).await?;
        let databases = self.server_databases(&url).await?;
        if databases.is_empty() {
            return Err(TransferError::Target(format!(
                "the server at {} has no database that accepts connections besides its templates; nothing to capture",
                url.host_port()
            )));
        }
        let engine = self.clone();
        super::blocking(move || {
            let mut set = String::new();
            let mut started = Vec::new();
            for db in databases {
                let target = url.with_dbname(&db);
                let rec = engine.capture_url(
                    target.redacted(),
                    target,
                    Origin::Manual,
                    DumpFilter::default(),
                    Some(set.clone()),
                )?;
                set = rec.set.clone().unwrap_or_default();
                started.push(rec);
            }
            Ok(started)
        })
        .await
    }

    /// The databases of the server at `url`, by name: see the module's documentation.
    async fn server_databases(&self, url: &PgUrl) -> Result<Vec<String>, TransferError> {
        let rows = query(
            &self.tools,
            url,
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        )
        .await
        .map_err(|e| {
            TransferError::Target(format!(
                "could not list the databases of the server at {}: {e}",
                url.host_port()
            ))
        })?;
        let mut names = Vec::new();
        for name in rows.into_iter().filter_map(|r| r.into_iter().next()) {
            if name == "postgres" {
                let tables = query(&self.tools, &url.with_dbname(&name), HAS_USER_TABLES)
                    .await
                    .map_err(|e| TransferError::Target(e.to_string()))?;
                if tables.is_empty() {
                    continue;
                }
            }
            names.push(name);
        }
        Ok(names)
    }

    /// Starts a restore of every completed backup of `set` into the database of the same
    /// name on the server `server` (a registered name or URL of any database on it), each
    /// created if missing, after checking the confirmation against the server's name. Every
    /// restore creates the roles it lacks (`--roles`); the first runs alone so that the
    /// others find them. A database whose restore cannot start does not stop the others.
    pub async fn start_set_restore(
        self: &Arc<Self>,
        set: &str,
        server: &str,
        confirm: Option<&str>,
    ) -> Result<SetRestore, TransferError> {
        let (engine, s, set_name) = (self.clone(), server.to_string(), set.to_string());
        let confirm = confirm.map(str::to_string);
        let (backups, url) = super::blocking(move || {
            let (label, url) = engine.registry.resolve(Some(&s))?;
            check_confirm(&label, confirm.as_deref())?;
            let mut backups: Vec<TransferRecord> = engine
                .catalog
                .transfers(Some(TransferKind::Capture))?
                .into_iter()
                .filter(|t| t.set.as_deref() == Some(set_name.as_str()))
                .filter(|t| t.state == TransferState::Succeeded)
                .collect();
            backups.sort_by_key(|t| t.id);
            Ok((backups, url))
        })
        .await?;
        if backups.is_empty() {
            return Err(TransferError::Target(format!(
                "no completed backup belongs to set {set}; the SET column of `pgbackups backups` shows the sets"
            )));
        }
        let admin = url.with_dbname("postgres");
        let mut answer = SetRestore::default();
        for (i, backup) in backups.iter().enumerate() {
            let db = confirm_word(&backup.database);
            match self.set_restore_one(backup, &db, &url, &admin).await {
                Ok(rec) => {
                    if i == 0 {
                        // The first creates the roles; the others wait for it.
                        let mut ended = rec.clone();
                        while !ended.state.is_finished() {
                            ended = self.transfer_after(rec.id, Duration::from_secs(60)).await?;
                        }
                    }
                    answer.started.push(rec);
                }
                Err(e) => answer.refused.push((db, e.to_string())),
            }
        }
        Ok(answer)
    }

    /// Creates `db` on the target server if missing, then starts the restore of `backup`.
    async fn set_restore_one(
        self: &Arc<Self>,
        backup: &TransferRecord,
        db: &str,
        url: &PgUrl,
        admin: &PgUrl,
    ) -> Result<TransferRecord, TransferError> {
        let exists = query(
            &self.tools,
            admin,
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                quote_literal(db)
            ),
        )
        .await
        .map_err(|e| TransferError::Target(e.to_string()))?;
        if exists.is_empty() {
            query(
                &self.tools,
                admin,
                &format!("CREATE DATABASE {}", quote_ident(db)),
            )
            .await
            .map_err(|e| TransferError::Target(format!("could not create database `{db}`: {e}")))?;
        }
        let target = url.with_dbname(db);
        let (engine, id) = (self.clone(), backup.id);
        super::blocking(move || {
            let word = confirm_word(&target.redacted());
            engine.start_restore_with(
                Some(id),
                Some(target.expose()),
                Some(&word),
                1,
                None,
                RestoreExtras {
                    extensions: Vec::new(),
                    roles: true,
                },
            )
        })
        .await
    }
}
