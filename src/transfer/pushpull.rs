//! `pull` and `push` (Heroku's pg:pull and pg:push): copies with a guard on the target.
//! `pull` creates the local database and refuses one that exists; `push` refuses a target
//! that has tables unless the user confirms it by name.

use std::sync::Arc;

use super::{Engine, TransferError, blocking};
use crate::catalog::TransferRecord;
use crate::pg::DumpFilter;
use crate::pg::client::{query, quote_ident, quote_literal};

impl Engine {
    /// Creates the database of `local` (it must not exist) and copies `source` into it.
    pub async fn start_pull(
        self: &Arc<Self>,
        source: &str,
        local: &str,
        filter: DumpFilter,
    ) -> Result<TransferRecord, TransferError> {
        // Everything that can be refused is checked before the database is created.
        filter.validate()?;
        let (registry, s, l) = (self.registry.clone(), source.to_string(), local.to_string());
        let (local_label, local_url) = blocking(move || {
            registry.resolve(Some(&s))?;
            Ok(registry.resolve(Some(&l))?)
        })
        .await?;
        let hold = Some(
            self.claims
                .hold_target(&local_url, "a pull being started")?,
        );
        let dbname = local_url.dbname();
        let admin = local_url.with_dbname("postgres");
        let exists = query(
            &self.tools,
            &admin,
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                quote_literal(&dbname)
            ),
        )
        .await
        .map_err(|e| TransferError::Target(e.to_string()))?;
        if !exists.is_empty() {
            return Err(TransferError::Target(format!(
                "database `{dbname}` already exists on {}; pull creates a new database: pick another name, or drop it first (or use `pgbackups copy` to replace its contents)",
                local_url.host_port()
            )));
        }
        query(
            &self.tools,
            &admin,
            &format!("CREATE DATABASE {}", quote_ident(&dbname)),
        )
        .await
        .map_err(|e| TransferError::Target(format!("could not create database `{dbname}`: {e}")))?;
        let confirm = super::confirm_word(&local_label);
        let (engine, s, l) = (self.clone(), source.to_string(), local.to_string());
        let (started, _hold) = blocking(move || {
            let mut hold = hold;
            let started = engine.start_copy_held(&s, &l, Some(&confirm), filter, &mut hold);
            Ok((started, hold))
        })
        .await?;
        match started {
            Ok(rec) => Ok(rec),
            Err(e) => {
                // Leave nothing behind that would make the retry say "already exists" (the
                // target still held meanwhile).
                let drop = format!("DROP DATABASE {}", quote_ident(&dbname));
                let _ = query(&self.tools, &admin, &drop).await;
                Err(e)
            }
        }
    }

    /// Copies `local` into `target`, refusing when the target has tables unless `confirm`
    /// names it.
    pub async fn start_push(
        self: &Arc<Self>,
        local: &str,
        target: &str,
        confirm: Option<&str>,
        filter: DumpFilter,
    ) -> Result<TransferRecord, TransferError> {
        let (registry, t) = (self.registry.clone(), target.to_string());
        let (target_label, target_url) = blocking(move || Ok(registry.resolve(Some(&t))?)).await?;
        let hold = Some(
            self.claims
                .hold_target(&target_url, "a push being started")?,
        );
        let tables = query(
            &self.tools,
            &target_url,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%'",
        )
        .await
        .map_err(|e| TransferError::Target(e.to_string()))?;
        let count: u64 = tables
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let word = super::confirm_word(&target_label);
        let confirm = if count == 0 {
            Some(word.as_str())
        } else {
            confirm
        };
        if count > 0 && confirm != Some(word.as_str()) {
            return Err(TransferError::NotEmpty {
                target: target_label,
                tables: count,
                expected: word,
            });
        }
        let (engine, l, t) = (self.clone(), local.to_string(), target.to_string());
        let confirm = confirm.map(str::to_string);
        blocking(move || {
            let mut hold = hold;
            engine.start_copy_held(&l, &t, confirm.as_deref(), filter, &mut hold)
        })
        .await
    }
}
