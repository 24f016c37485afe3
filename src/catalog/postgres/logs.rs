//! Transfer logs in the PostgreSQL catalog: lines numbered per transfer, appended in batches
//! (one statement per batch), read from a sequence number on or as a tail.

use jiff::Timestamp;
use tokio_postgres::{Client, Row, Transaction};

use super::pool::wait;
use crate::catalog::encode::{from_micros, micros};
use crate::catalog::{CatalogError, LogLine, TransferId};

/// The first key of the advisory locks that serialise appends to one transfer's log (the
/// second is a hash of its ID). Two-key locks never collide with the one-key migration lock.
const LOG_LOCK_CLASS: i32 = 0x6c6f_6773; // "logs"

/// Appends `lines` after the transfer's last line, in `tx`. The transfer's log is locked for
/// the rest of the transaction, so that two writers (two nodes) never take the same numbers.
pub(super) async fn append(
    tx: &Transaction<'_>,
    id: TransferId,
    lines: &[(Timestamp, String)],
) -> Result<(), CatalogError> {
    let id = id.to_string();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOG_LOCK_CLASS, &id],
    )
    .await?;
    let ats: Vec<i64> = lines.iter().map(|(at, _)| micros(*at)).collect();
    let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    tx.execute(
        "INSERT INTO transfer_logs (transfer_id, seq, at, line)
         SELECT $1, last.seq + l.n, l.at, l.line
         FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS l (at, line, n),
              (SELECT COALESCE(max(seq), 0) AS seq FROM transfer_logs WHERE transfer_id = $1) last",
        &[&id, &ats, &texts],
    )
    .await?;
    Ok(())
}

/// A transfer's lines after `after_seq`, oldest first.
pub(super) fn after(
    c: &Client,
    id: TransferId,
    after_seq: u64,
) -> Result<Vec<LogLine>, CatalogError> {
    let rows = wait(c.query(
        "SELECT seq, at, line FROM transfer_logs WHERE transfer_id = $1 AND seq > $2 ORDER BY seq",
        &[&id.to_string(), &(after_seq as i64)],
    ))?;
    rows.iter().map(line).collect()
}

/// A transfer's last `limit` lines, oldest first.
pub(super) fn tail(c: &Client, id: TransferId, limit: usize) -> Result<Vec<LogLine>, CatalogError> {
    let rows = wait(c.query(
        "SELECT seq, at, line FROM transfer_logs WHERE transfer_id = $1 ORDER BY seq DESC LIMIT $2",
        &[&id.to_string(), &i64::try_from(limit).unwrap_or(i64::MAX)],
    ))?;
    let mut lines = rows.iter().map(line).collect::<Result<Vec<_>, _>>()?;
    lines.reverse();
    Ok(lines)
}

fn line(r: &Row) -> Result<LogLine, CatalogError> {
    Ok(LogLine {
        seq: r.try_get::<_, i64>(0)? as u64,
        at: from_micros(r.try_get(1)?),
        line: r.try_get(2)?,
    })
}
