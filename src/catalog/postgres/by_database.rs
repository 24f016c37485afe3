//! A database's transfers in the PostgreSQL catalog, read the way the dashboard's pages need
//! them: the newest few of a kind, a count, and a summary per database, through the
//! `transfers_by_database` and `transfers_unfinished` indexes (as in the SQLite catalog).

use std::collections::HashMap;

use tokio_postgres::Client;

use super::pool::wait;
use super::rows::{SELECT_TRANSFER, read_rows};
use crate::catalog::CatalogError;
use crate::catalog::encode::kind_str;
use crate::catalog::model::{
    DatabaseSummary, RESTORE_TEST_DETAIL, TransferKind, TransferRecord, TransferState,
};

/// See [`crate::catalog::Catalog::transfers_of`].
pub(super) fn transfers_of(
    c: &Client,
    database: &str,
    kind: TransferKind,
    state: Option<TransferState>,
    limit: usize,
) -> Result<Vec<TransferRecord>, CatalogError> {
    let rows = wait(c.query(
        &format!(
            "{SELECT_TRANSFER} WHERE database = $1 AND kind = $2 AND ($3::text IS NULL OR state = $3)
             ORDER BY created_at DESC, prefix DESC, number DESC LIMIT $4"
        ),
        &[
            &database,
            &kind_str(kind),
            &state.map(TransferState::as_str),
            &i64::try_from(limit).unwrap_or(i64::MAX),
        ],
    ))?;
    read_rows(&rows)
}

/// See [`crate::catalog::Catalog::count_transfers_of`].
pub(super) fn count_of(
    c: &Client,
    database: &str,
    kind: TransferKind,
) -> Result<u64, CatalogError> {
    let row = wait(c.query_one(
        "SELECT count(*) FROM transfers WHERE database = $1 AND kind = $2",
        &[&database, &kind_str(kind)],
    ))?;
    Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
}

/// Transfers that are pending or running, oldest first.
pub(super) fn unfinished(c: &Client) -> Result<Vec<TransferRecord>, CatalogError> {
    let rows = wait(c.query(
        &format!(
            "{SELECT_TRANSFER} WHERE state IN ('pending', 'running') ORDER BY created_at, prefix, number"
        ),
        &[],
    ))?;
    read_rows(&rows)
}

/// Of every registered database, its newest transfer of `kind` (in `state`, with
/// `detail_has` in its detail, when given), by database: one indexed row each.
fn newest_per_database(
    c: &Client,
    kind: TransferKind,
    state: Option<TransferState>,
    detail_has: Option<&str>,
) -> Result<HashMap<String, TransferRecord>, CatalogError> {
    let rows = wait(c.query(
        &format!(
            "{SELECT_TRANSFER} WHERE id IN (
                 SELECT (SELECT n.id FROM transfers n
                         WHERE n.database = d.name AND n.kind = $1
                           AND ($2::text IS NULL OR n.state = $2)
                           AND ($3::text IS NULL OR strpos(n.detail, $3) > 0)
                         ORDER BY n.created_at DESC, n.prefix DESC, n.number DESC LIMIT 1)
                 FROM databases d)"
        ),
        &[
            &kind_str(kind),
            &state.map(TransferState::as_str),
            &detail_has,
        ],
    ))?;
    Ok(read_rows(&rows)?
        .into_iter()
        .map(|t| (t.database.clone(), t))
        .collect())
}

/// See [`crate::catalog::Catalog::database_summaries`].
pub(super) fn summaries(c: &Client) -> Result<Vec<DatabaseSummary>, CatalogError> {
    let mut going: HashMap<String, Vec<TransferRecord>> = HashMap::new();
    for t in unfinished(c)? {
        going.entry(t.database.clone()).or_default().push(t);
    }
    let mut captures = newest_per_database(c, TransferKind::Capture, None, None)?;
    let mut backups = newest_per_database(
        c,
        TransferKind::Capture,
        Some(TransferState::Succeeded),
        None,
    )?;
    let mut tests = newest_per_database(
        c,
        TransferKind::Verify,
        Some(TransferState::Succeeded),
        Some(RESTORE_TEST_DETAIL),
    )?;
    let names = wait(c.query("SELECT name FROM databases ORDER BY name", &[]))?;
    names
        .iter()
        .map(|r| {
            let name: String = r.try_get(0)?;
            Ok(DatabaseSummary {
                last_capture: captures.remove(&name),
                last_backup: backups.remove(&name),
                last_restore_test: tests.remove(&name),
                unfinished: going.remove(&name).unwrap_or_default(),
                database: name,
            })
        })
        .collect()
}
