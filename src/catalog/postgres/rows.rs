//! Reading and writing the PostgreSQL catalog's transfer rows: the columns, and the record's
//! fields in the encodings both catalogs share (`catalog/encode.rs`).

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use crate::catalog::CatalogError;
use crate::catalog::encode::{
    from_micros, kind_str, micros, origin_str, parse_kind, parse_origin, parse_state,
};
use crate::catalog::model::{TransferId, TransferRecord};

pub(super) const SELECT_TRANSFER: &str = "SELECT id, kind, origin, database, backup_id, state, created_at,
    started_at, finished_at, bytes_processed, database_size, dump_size, object_size, sha256,
    object_key, compression, server_version, tool_version, error, pinned, source, filter, encryption,
    detail, warnings, roles, backup_set FROM transfers";

/// A transfer from a row of [`SELECT_TRANSFER`].
pub(super) fn read_row(r: &Row) -> Result<TransferRecord, CatalogError> {
    let id: String = r.try_get(0)?;
    let id: TransferId = id.parse().map_err(|_| CatalogError::Corrupt(id.clone()))?;
    let backup_id = match r.try_get::<_, Option<String>>(4)? {
        Some(b) => Some(b.parse().map_err(|_| CatalogError::Corrupt(b.clone()))?),
        None => None,
    };
    let u = |i: usize| -> Result<Option<u64>, CatalogError> {
        Ok(r.try_get::<_, Option<i64>>(i)?.map(|v| v as u64))
    };
    Ok(TransferRecord {
        id,
        kind: parse_kind(r.try_get(1)?)?,
        origin: parse_origin(r.try_get(2)?)?,
        database: r.try_get(3)?,
        backup_id,
        state: parse_state(r.try_get(5)?)?,
        created_at: from_micros(r.try_get(6)?),
        started_at: r.try_get::<_, Option<i64>>(7)?.map(from_micros),
        finished_at: r.try_get::<_, Option<i64>>(8)?.map(from_micros),
        bytes_processed: r.try_get::<_, i64>(9)? as u64,
        database_size: u(10)?,
        dump_size: u(11)?,
        object_size: u(12)?,
        sha256: r.try_get(13)?,
        object_key: r.try_get(14)?,
        compression: r.try_get(15)?,
        server_version: r.try_get(16)?,
        tool_version: r.try_get(17)?,
        error: r.try_get(18)?,
        pinned: r.try_get(19)?,
        source: r.try_get(20)?,
        filter: r
            .try_get::<_, Option<String>>(21)?
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
        encryption: r.try_get(22)?,
        detail: r.try_get(23)?,
        warnings: r.try_get::<_, i64>(24)?.clamp(0, u32::MAX as i64) as u32,
        roles: r
            .try_get::<_, Option<String>>(25)?
            .and_then(|f| serde_json::from_str(&f).ok()),
        set: r.try_get(26)?,
    })
}

/// Every row of `rows` as a transfer.
pub(super) fn read_rows(rows: &[Row]) -> Result<Vec<TransferRecord>, CatalogError> {
    rows.iter().map(read_row).collect()
}

/// The columns an upsert writes, in order, and what to do on a conflict.
const UPSERT: &str = "INSERT INTO transfers (id, prefix, number, kind, origin, database, backup_id,
        state, created_at, started_at, finished_at, bytes_processed, database_size, dump_size,
        object_size, sha256, object_key, compression, server_version, tool_version, error, source,
        filter, encryption, detail, warnings, roles, backup_set)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22, $23, $24, $25, $26, $27, $28)";

const ON_CONFLICT_UPDATE: &str = " ON CONFLICT (id) DO UPDATE SET prefix = excluded.prefix,
    number = excluded.number, kind = excluded.kind, origin = excluded.origin,
    database = excluded.database, backup_id = excluded.backup_id, state = excluded.state,
    created_at = excluded.created_at, started_at = excluded.started_at,
    finished_at = excluded.finished_at, bytes_processed = excluded.bytes_processed,
    database_size = excluded.database_size, dump_size = excluded.dump_size,
    object_size = excluded.object_size, sha256 = excluded.sha256, object_key = excluded.object_key,
    compression = excluded.compression, server_version = excluded.server_version,
    tool_version = excluded.tool_version, error = excluded.error, source = excluded.source,
    filter = excluded.filter, encryption = excluded.encryption, detail = excluded.detail,
    warnings = excluded.warnings, roles = excluded.roles, backup_set = excluded.backup_set";

/// Inserts a transfer, or (when `replace`) updates the one with its ID, leaving its layout and
/// pin alone. Returns whether a row was written (an insert that found the ID taken writes
/// none).
pub(super) async fn upsert(
    c: &impl GenericClient,
    t: &TransferRecord,
    replace: bool,
) -> Result<bool, CatalogError> {
    let id = t.id.to_string();
    let prefix = t.id.prefix().to_string();
    let number = id[1..].parse::<i64>().unwrap_or(0);
    let backup_id = t.backup_id.map(|b| b.to_string());
    let filter =
        (!t.filter.is_empty()).then(|| serde_json::to_string(&t.filter).unwrap_or_default());
    let roles = t
        .roles
        .as_ref()
        .map(|r| serde_json::to_string(r).unwrap_or_default());
    let size = |v: Option<u64>| v.map(|v| v as i64);
    let params: [&(dyn ToSql + Sync); 28] = [
        &id,
        &prefix,
        &number,
        &kind_str(t.kind),
        &origin_str(t.origin),
        &t.database,
        &backup_id,
        &t.state.as_str(),
        &micros(t.created_at),
        &t.started_at.map(micros),
        &t.finished_at.map(micros),
        &(t.bytes_processed as i64),
        &size(t.database_size),
        &size(t.dump_size),
        &size(t.object_size),
        &t.sha256,
        &t.object_key,
        &t.compression,
        &t.server_version,
        &t.tool_version,
        &t.error,
        &t.source,
        &filter,
        &t.encryption,
        &t.detail,
        &i64::from(t.warnings),
        &roles,
        &t.set,
    ];
    let sql = if replace {
        format!("{UPSERT}{ON_CONFLICT_UPDATE}")
    } else {
        format!("{UPSERT} ON CONFLICT (id) DO NOTHING")
    };
    Ok(c.execute(sql.as_str(), &params).await? == 1)
}
