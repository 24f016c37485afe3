//! Reading and writing the SQLite catalog's transfer rows: the columns, and the text and time
//! encodings of the record's fields.

use rusqlite::Row;

use crate::catalog::CatalogError;
pub(super) use crate::catalog::encode::{
    from_micros, kind_str, micros, origin_str, parse_kind, parse_origin, parse_state,
};
use crate::catalog::model::{TransferId, TransferRecord};

pub(super) const SELECT_TRANSFER: &str = "SELECT id, kind, origin, database, backup_id, state, created_at,
    started_at, finished_at, bytes_processed, database_size, dump_size, object_size, sha256,
    object_key, compression, server_version, tool_version, error, pinned, source, filter, encryption,
    detail, warnings, roles, backup_set FROM transfers";

pub(super) fn read_row(r: &Row<'_>) -> rusqlite::Result<Result<TransferRecord, CatalogError>> {
    let id: String = r.get(0)?;
    let kind: String = r.get(1)?;
    let origin: String = r.get(2)?;
    let backup_id: Option<String> = r.get(4)?;
    let state: String = r.get(5)?;
    let u = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u64))
    };
    let parsed = (|| {
        let id: TransferId = id.parse().map_err(|_| CatalogError::Corrupt(id.clone()))?;
        let backup_id = match backup_id {
            Some(b) => Some(b.parse().map_err(|_| CatalogError::Corrupt(b.clone()))?),
            None => None,
        };
        Ok::<_, CatalogError>((
            id,
            parse_kind(&kind)?,
            parse_origin(&origin)?,
            backup_id,
            parse_state(&state)?,
        ))
    })();
    let (id, kind, origin, backup_id, state) = match parsed {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(TransferRecord {
        id,
        kind,
        origin,
        database: r.get(3)?,
        backup_id,
        state,
        created_at: from_micros(r.get(6)?),
        started_at: r.get::<_, Option<i64>>(7)?.map(from_micros),
        finished_at: r.get::<_, Option<i64>>(8)?.map(from_micros),
        bytes_processed: r.get::<_, i64>(9)? as u64,
        database_size: u(10)?,
        dump_size: u(11)?,
        object_size: u(12)?,
        sha256: r.get(13)?,
        object_key: r.get(14)?,
        compression: r.get(15)?,
        server_version: r.get(16)?,
        tool_version: r.get(17)?,
        error: r.get(18)?,
        pinned: r.get(19)?,
        source: r.get(20)?,
        filter: r
            .get::<_, Option<String>>(21)?
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
        encryption: r.get(22)?,
        detail: r.get(23)?,
        warnings: r.get::<_, i64>(24)?.clamp(0, u32::MAX as i64) as u32,
        roles: r
            .get::<_, Option<String>>(25)?
            .and_then(|f| serde_json::from_str(&f).ok()),
        set: r.get(26)?,
    }))
}
