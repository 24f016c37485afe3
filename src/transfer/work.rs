//! A transfer's work in progress ([`Job`]): the record it keeps up to date, its context (log,
//! progress, cancellation), the claims it holds, and the steps every restore shares (holding
//! the target under its server identity, emptying it).

use std::sync::Arc;

use super::claims::{self, BackupRead, TargetHold};
use super::job::JobCtx;
use super::{Engine, JobEnd, hold, restore};
use crate::catalog::{LogLine, TransferKind, TransferRecord};
use crate::pg::PgUrl;
use crate::pg::client::ScriptEnd;

/// A transfer's work in progress: the record it keeps up to date and its context.
pub(crate) struct Job {
    pub(super) engine: Arc<Engine>,
    pub(super) ctx: JobCtx,
    pub(super) rec: TransferRecord,
    /// Set by a restore once it has started changing the target, so that how it ended can say so.
    pub(super) target_touched: bool,
    /// Set when whether the target was emptied is not known (the connection broke during the
    /// drop's commit).
    pub(super) target_unknown: bool,
    /// What the transfer holds (its target, the backup it reads); released once its end is
    /// recorded.
    pub(super) held: Held,
}

/// The claims a transfer holds while it runs (see `claims.rs`).
#[derive(Default)]
pub(crate) struct Held {
    pub(super) target: Option<TargetHold>,
    pub(super) backup: Option<BackupRead>,
}

impl Held {
    pub(super) fn target(target: TargetHold) -> Held {
        Held {
            target: Some(target),
            backup: None,
        }
    }

    /// Names the transfer in the refusals others get while it holds them.
    pub(super) fn name(&self, rec: &TransferRecord) {
        let what = match rec.kind {
            TransferKind::Capture => "a capture",
            TransferKind::Restore => "a restore",
            TransferKind::Copy => "a copy",
            TransferKind::Verify => "a verification",
        };
        let by = format!("{} ({what})", rec.id);
        if let Some(t) = &self.target {
            t.name(&by);
        }
        if let Some(b) = &self.backup {
            b.name(&by);
        }
    }
}

impl Job {
    pub(super) fn log(&self, line: &str) {
        self.ctx.log(line);
    }

    /// Holds the target under the identity its server reports for it (the database's OID and
    /// when the server started), so that two host names of one server cannot
    /// let two transfers write one database. Called before the target is touched.
    pub(super) async fn hold_server_identity(&mut self, url: &PgUrl) -> Result<(), JobEnd> {
        // In numbers only: a time as text follows the session's TimeZone and DateStyle, which
        // differ between roles; and without the name, so that it survives an atomic swap's
        // rename.
        const WHO: &str = "SELECT oid || ':' || (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint FROM pg_database WHERE datname = current_database()";
        let rows = tokio::select! {
            r = crate::pg::client::query(&self.engine.tools, url, WHO) => r.map_err(JobEnd::failed)?,
            _ = self.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
        };
        let identity = rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or_default();
        if let Some(target) = self.held.target.as_mut() {
            target
                .also_identity(&identity, &claims::target_name(url))
                .map_err(JobEnd::failed)?;
        }
        Ok(())
    }

    /// Logs a warning for each `--exclude-table-data` pattern that matches no table of the
    /// source `url`: pg_dump would silently exclude nothing for it (it has no
    /// `--strict-names` for this option), and the rows the user meant to leave out would be
    /// copied. Run before pg_dump; a failed check is logged and the transfer goes on.
    pub(super) async fn report_unmatched_exclusions(&self, url: &PgUrl) {
        let Some(sql) = self.rec.filter.unmatched_exclusions_query() else {
            return;
        };
        match crate::pg::client::query(&self.engine.tools, url, &sql).await {
            Ok(rows) => {
                let patterns = &self.rec.filter.exclude_table_data;
                let unmatched = rows
                    .iter()
                    .filter_map(|r| r.first()?.parse::<usize>().ok())
                    .filter_map(|i| patterns.get(i));
                for pattern in unmatched {
                    self.log(&unmatched_exclusion_line(pattern));
                }
            }
            Err(e) => self.log(&format!(
                "{}could not check the --exclude-table-data patterns against the source: {e}",
                LogLine::WARNING
            )),
        }
    }

    /// Empties the target, as Heroku does, and records whether it did. Whatever interleaving
    /// of cancel and drop happens, `target_touched` is true exactly when the drop committed
    /// (or may have: then the message says so).
    pub(super) async fn empty_target(&mut self, url: &PgUrl) -> Result<(), JobEnd> {
        hold::at(&self.ctx, "before-empty").await;
        if self.ctx.is_cancelled() {
            return Err(JobEnd::Stopped);
        }
        self.hold_server_identity(url).await?;
        self.log(&format!(
            "Dropping all objects in database {} (schemas, extensions, large objects)",
            url.dbname()
        ));
        // Unique on the server even when two services run transfers with the same ID.
        let nonce = crate::secret::random_hex(4).unwrap_or_default();
        let tag = format!("pgbackups-{}-empty-{nonce}", self.rec.id);
        let cleaned =
            crate::pg::client::clean_database(&self.engine.tools, url, self.ctx.cancelled(), &tag)
                .await;
        match cleaned {
            ScriptEnd::Committed => {
                self.target_touched = true;
                restore::log_kept(self, url).await;
            }
            ScriptEnd::RolledBack(_) if self.ctx.is_cancelled() => {
                self.log("The drop was cancelled before it committed: nothing was dropped");
                return Err(JobEnd::Stopped);
            }
            ScriptEnd::RolledBack(e) => {
                return Err(JobEnd::failed(format!(
                    "could not empty the target database: {e}"
                )));
            }
            ScriptEnd::Unknown(why) => {
                self.target_touched = true;
                self.target_unknown = true;
                return Err(JobEnd::failed(format!(
                    "the connection broke while the target database was being emptied ({why})"
                )));
            }
        }
        hold::at(&self.ctx, "after-empty").await;
        if self.ctx.is_cancelled() {
            return Err(JobEnd::Stopped);
        }
        Ok(())
    }

    pub(super) async fn save(&self) -> Result<(), JobEnd> {
        let catalog = self.engine.catalog.clone();
        let rec = self.rec.clone();
        tokio::task::spawn_blocking(move || catalog.save_transfer(&rec))
            .await
            .map_err(JobEnd::failed)?
            .map_err(JobEnd::failed)
    }
}

/// The log line for an `--exclude-table-data` pattern that matches no table.
fn unmatched_exclusion_line(pattern: &str) -> String {
    format!(
        "{}--exclude-table-data pattern `{pattern}` matches no table, so it excludes nothing; check its spelling and schema (`schema.table`, with `*` and `?` as in pg_dump)",
        LogLine::WARNING
    )
}
