//! The engine's reads of one database's transfers, shaped for the dashboard's pages: the
//! newest few of some kinds, a count, the unfinished ones, and a summary of every database.
//! Like [`Engine::transfers`], each overlays live progress and ends the catalog has not
//! taken yet; unlike it, none reads the whole history.

use crate::catalog::{DatabaseSummary, TransferKind, TransferRecord, TransferState};

use super::{Engine, TransferError};

impl Engine {
    /// A database's transfers of `kinds` (in `state`, when given), newest first, at most
    /// `limit`, with live progress: what a database's page lists, read through the catalog's
    /// index instead of filtering every transfer.
    pub fn transfers_of(
        &self,
        database: &str,
        kinds: &[TransferKind],
        state: Option<TransferState>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, TransferError> {
        let mut out = Vec::new();
        for &kind in kinds {
            out.extend(self.catalog.transfers_of(database, kind, state, limit)?);
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.newness()));
        out.truncate(limit);
        for t in &mut out {
            self.overlay_progress(t);
        }
        Ok(out)
    }

    /// How many transfers of `kind` a database has.
    pub fn count_transfers_of(
        &self,
        database: &str,
        kind: TransferKind,
    ) -> Result<u64, TransferError> {
        Ok(self.catalog.count_transfers_of(database, kind)?)
    }

    /// A database's pending and running transfers, newest first, with live progress.
    pub fn unfinished_of(&self, database: &str) -> Result<Vec<TransferRecord>, TransferError> {
        let mut out: Vec<TransferRecord> = self
            .catalog
            .unfinished_transfers()?
            .into_iter()
            .filter(|t| t.database == database)
            .collect();
        for t in &mut out {
            self.overlay_progress(t);
        }
        out.retain(|t| !t.state.is_finished());
        out.sort_by_key(|t| std::cmp::Reverse(t.newness()));
        Ok(out)
    }

    /// Every registered database's summary (what the overview shows), with live progress.
    /// A transfer that ended but whose end the catalog has not taken yet counts as ended.
    pub fn database_summaries(&self) -> Result<Vec<DatabaseSummary>, TransferError> {
        let mut all = self.catalog.database_summaries()?;
        for s in &mut all {
            for t in [
                &mut s.last_capture,
                &mut s.last_backup,
                &mut s.last_restore_test,
            ]
            .into_iter()
            .flatten()
            {
                self.overlay_progress(t);
            }
            let unfinished = std::mem::take(&mut s.unfinished);
            for mut t in unfinished {
                self.overlay_progress(&mut t);
                s.consider(&t);
            }
        }
        Ok(all)
    }
}
