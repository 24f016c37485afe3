//! A database's transfers in the SQLite catalog, read the way the dashboard's pages need them:
//! the newest few of a kind, a count, and a summary per database. Each goes through the
//! `transfers_by_database` index (database, kind, created_at, prefix, number; schema version
//! 13), so a page reads the rows it shows, not the whole history.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::rows::{SELECT_TRANSFER, kind_str, read_row};
use crate::catalog::CatalogError;
use crate::catalog::model::{
    DatabaseSummary, RESTORE_TEST_DETAIL, TransferKind, TransferRecord, TransferState,
};

/// A database's transfers of `kind`, in `state` when given and with `detail_has` in their
/// detail when given, newest first, at most `limit`.
fn newest(
    conn: &Connection,
    database: &str,
    kind: TransferKind,
    state: Option<TransferState>,
    detail_has: Option<&str>,
    limit: usize,
) -> Result<Vec<TransferRecord>, CatalogError> {
    // The index gives the order (newest first), so SQLite stops after `limit` matching rows.
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_TRANSFER} WHERE database = ?1 AND kind = ?2 AND (?3 IS NULL OR state = ?3)
         AND (?4 IS NULL OR instr(detail, ?4) > 0)
         ORDER BY created_at DESC, prefix DESC, number DESC LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        params![
            database,
            kind_str(kind),
            state.map(TransferState::as_str),
            detail_has,
            i64::try_from(limit).unwrap_or(i64::MAX),
        ],
        read_row,
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// See [`crate::catalog::Catalog::transfers_of`].
pub(super) fn transfers_of(
    conn: &Connection,
    database: &str,
    kind: TransferKind,
    state: Option<TransferState>,
    limit: usize,
) -> Result<Vec<TransferRecord>, CatalogError> {
    newest(conn, database, kind, state, None, limit)
}

/// See [`crate::catalog::Catalog::count_transfers_of`].
pub(super) fn count_of(
    conn: &Connection,
    database: &str,
    kind: TransferKind,
) -> Result<u64, CatalogError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM transfers WHERE database = ?1 AND kind = ?2",
        params![database, kind_str(kind)],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Transfers that are pending or running, oldest first (the `transfers_unfinished` partial
/// index holds only those).
pub(super) fn unfinished(conn: &Connection) -> Result<Vec<TransferRecord>, CatalogError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_TRANSFER} WHERE state IN ('pending', 'running') ORDER BY created_at"
    ))?;
    let rows = stmt.query_map([], read_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// Of every registered database, its newest transfer of `kind` (in `state`, with
/// `detail_has` in its detail, when given), by database. One statement for all databases: a
/// correlated subquery walks the index once per database. (A statement per database costs
/// more than the rows it reads: SQLite re-prepares it whenever its bound values change.)
fn newest_per_database(
    conn: &Connection,
    kind: TransferKind,
    state: Option<TransferState>,
    detail_has: Option<&str>,
) -> Result<HashMap<String, TransferRecord>, CatalogError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_TRANSFER} WHERE id IN (
             SELECT (SELECT n.id FROM transfers n
                     WHERE n.database = d.name AND n.kind = ?1 AND (?2 IS NULL OR n.state = ?2)
                       AND (?3 IS NULL OR instr(n.detail, ?3) > 0)
                     ORDER BY n.created_at DESC, n.prefix DESC, n.number DESC LIMIT 1)
             FROM databases d)"
    ))?;
    let rows = stmt.query_map(
        params![kind_str(kind), state.map(TransferState::as_str), detail_has],
        read_row,
    )?;
    let mut out = HashMap::new();
    for r in rows {
        let t = r??;
        out.insert(t.database.clone(), t);
    }
    Ok(out)
}

/// See [`crate::catalog::Catalog::database_summaries`]: three reads of one row per registered
/// database (each through the index), and one read of every unfinished transfer (a partial
/// index).
pub(super) fn summaries(conn: &Connection) -> Result<Vec<DatabaseSummary>, CatalogError> {
    let mut going: HashMap<String, Vec<TransferRecord>> = HashMap::new();
    for t in unfinished(conn)? {
        going.entry(t.database.clone()).or_default().push(t);
    }
    let mut captures = newest_per_database(conn, TransferKind::Capture, None, None)?;
    let mut backups = newest_per_database(
        conn,
        TransferKind::Capture,
        Some(TransferState::Succeeded),
        None,
    )?;
    let mut tests = newest_per_database(
        conn,
        TransferKind::Verify,
        Some(TransferState::Succeeded),
        Some(RESTORE_TEST_DETAIL),
    )?;
    let mut names = conn.prepare_cached("SELECT name FROM databases ORDER BY name")?;
    let names = names
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names
        .into_iter()
        .map(|name| DatabaseSummary {
            last_capture: captures.remove(&name),
            last_backup: backups.remove(&name),
            last_restore_test: tests.remove(&name),
            unfinished: going.remove(&name).unwrap_or_default(),
            database: name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::catalog::SqliteCatalog;

    #[test]
    fn the_pages_reads_use_the_indexes_not_a_scan_of_every_transfer() {
        let c = SqliteCatalog::open_in_memory().unwrap();
        let conn = c.conn();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let of = plan(
            "SELECT * FROM transfers WHERE database = 'main' AND kind = 'capture'
             AND state = 'succeeded' ORDER BY created_at DESC, prefix DESC, number DESC LIMIT 5",
        );
        assert!(of.contains("USING INDEX transfers_by_database"), "{of}");
        assert!(!of.contains("TEMP B-TREE"), "{of}");
        let summary = plan(
            "SELECT * FROM transfers WHERE id IN (SELECT (SELECT n.id FROM transfers n
             WHERE n.database = d.name AND n.kind = 'capture'
             ORDER BY n.created_at DESC, n.prefix DESC, n.number DESC LIMIT 1) FROM databases d)",
        );
        assert!(
            summary.contains("USING INDEX transfers_by_database"),
            "{summary}"
        );
        assert!(!summary.contains("SCAN n"), "{summary}");
        let going = plan(
            "SELECT * FROM transfers WHERE state IN ('pending', 'running') ORDER BY created_at",
        );
        assert!(
            going.contains("USING INDEX transfers_unfinished"),
            "{going}"
        );
    }
}
