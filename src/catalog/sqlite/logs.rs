//! Transfer logs in the SQLite catalog: lines numbered per transfer, appended in batches,
//! read from a sequence number on or as a tail.

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::rows::{from_micros, micros};
use crate::catalog::{CatalogError, LogLine, TransferId};

/// Appends `lines` after the transfer's last line, on `conn` (a connection or a transaction).
pub(super) fn append(
    conn: &Connection,
    id: TransferId,
    lines: &[(Timestamp, String)],
) -> Result<(), CatalogError> {
    let id = id.to_string();
    let mut seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM transfer_logs WHERE transfer_id = ?1",
        [&id],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "INSERT INTO transfer_logs (transfer_id, seq, at, line) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (at, line) in lines {
        seq += 1;
        stmt.execute(params![id, seq, micros(*at), line])?;
    }
    Ok(())
}

/// A transfer's lines after `after_seq`, oldest first.
pub(super) fn after(
    conn: &Connection,
    id: TransferId,
    after_seq: u64,
) -> Result<Vec<LogLine>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, line FROM transfer_logs WHERE transfer_id = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![id.to_string(), after_seq as i64], line)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A transfer's last `limit` lines, oldest first.
pub(super) fn tail(
    conn: &Connection,
    id: TransferId,
    limit: usize,
) -> Result<Vec<LogLine>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, line FROM transfer_logs WHERE transfer_id = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![id.to_string(), limit as i64], line)?;
    let mut lines = rows.collect::<Result<Vec<_>, _>>()?;
    lines.reverse();
    Ok(lines)
}

fn line(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogLine> {
    Ok(LogLine {
        seq: r.get::<_, i64>(0)? as u64,
        at: from_micros(r.get(1)?),
        line: r.get(2)?,
    })
}
