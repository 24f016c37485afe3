//! The SQLite catalog's team tables: users, personal tokens, sessions and the audit log. Free
//! functions on a connection; `mod.rs` holds the lock and calls them.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{from_micros, micros};
use crate::catalog::CatalogError;
use crate::catalog::team::{AuditRecord, SessionRecord, TokenRecord, UserRecord};

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        role: r.get(1)?,
        password_hash: r.get(2)?,
        created_at: from_micros(r.get(3)?),
    })
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        hash: r.get(1)?,
        user: r.get(2)?,
        label: r.get(3)?,
        created_at: from_micros(r.get(4)?),
    })
}

const SELECT_TOKEN: &str = "SELECT id, hash, user, label, created_at FROM api_tokens";

pub(super) fn add_user(conn: &Connection, u: &UserRecord) -> Result<(), CatalogError> {
    let n = conn.execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO NOTHING",
        params![u.name, u.role, u.password_hash, micros(u.created_at)],
    )?;
    if n == 0 {
        return Err(CatalogError::UserExists(u.name.clone()));
    }
    Ok(())
}

pub(super) fn user(conn: &Connection, name: &str) -> Result<Option<UserRecord>, CatalogError> {
    Ok(conn
        .query_row(
            "SELECT name, role, password_hash, created_at FROM users WHERE name = ?1",
            [name],
            user_row,
        )
        .optional()?)
}

pub(super) fn users(conn: &Connection) -> Result<Vec<UserRecord>, CatalogError> {
    let mut stmt =
        conn.prepare("SELECT name, role, password_hash, created_at FROM users ORDER BY name")?;
    let rows = stmt.query_map([], user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn remove_user(conn: &mut Connection, name: &str) -> Result<bool, CatalogError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
    tx.execute("DELETE FROM api_tokens WHERE user = ?1", [name])?;
    let n = tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
    tx.commit()?;
    Ok(n > 0)
}

pub(super) fn set_password_hash(
    conn: &mut Connection,
    name: &str,
    hash: &str,
) -> Result<bool, CatalogError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE users SET password_hash = ?2 WHERE name = ?1",
        params![name, hash],
    )?;
    tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
    tx.commit()?;
    Ok(n > 0)
}

pub(super) fn set_user_role(
    conn: &Connection,
    name: &str,
    role: &str,
) -> Result<bool, CatalogError> {
    Ok(conn.execute(
        "UPDATE users SET role = ?2 WHERE name = ?1",
        params![name, role],
    )? > 0)
}

pub(super) fn add_session(
    conn: &mut Connection,
    s: &SessionRecord,
    now: Timestamp,
) -> Result<(), CatalogError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [micros(now)])?;
    let n = tx.execute(
        "INSERT INTO sessions (hash, user, created_at, expires_at)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM users WHERE name = ?2)",
        params![s.hash, s.user, micros(s.created_at), micros(s.expires_at)],
    )?;
    if n == 0 {
        return Err(CatalogError::NoSuchUser(s.user.clone()));
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn session(
    conn: &Connection,
    hash: &str,
    now: Timestamp,
) -> Result<Option<(SessionRecord, String)>, CatalogError> {
    Ok(conn
        .query_row(
            "SELECT s.hash, s.user, s.created_at, s.expires_at, u.role
             FROM sessions s JOIN users u ON u.name = s.user
             WHERE s.hash = ?1 AND s.expires_at > ?2",
            params![hash, micros(now)],
            |r| {
                Ok((
                    SessionRecord {
                        hash: r.get(0)?,
                        user: r.get(1)?,
                        created_at: from_micros(r.get(2)?),
                        expires_at: from_micros(r.get(3)?),
                    },
                    r.get(4)?,
                ))
            },
        )
        .optional()?)
}

pub(super) fn remove_session(conn: &Connection, hash: &str) -> Result<bool, CatalogError> {
    Ok(conn.execute("DELETE FROM sessions WHERE hash = ?1", [hash])? > 0)
}

pub(super) fn add_token(conn: &mut Connection, t: &TokenRecord) -> Result<bool, CatalogError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let user_exists = tx
        .query_row("SELECT 1 FROM users WHERE name = ?1", [&t.user], |_| Ok(()))
        .optional()?
        .is_some();
    if !user_exists {
        return Err(CatalogError::NoSuchUser(t.user.clone()));
    }
    let n = tx.execute(
        "INSERT INTO api_tokens (id, hash, user, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT DO NOTHING",
        params![t.id, t.hash, t.user, t.label, micros(t.created_at)],
    )?;
    tx.commit()?;
    Ok(n > 0)
}

pub(super) fn token(conn: &Connection, id: &str) -> Result<Option<TokenRecord>, CatalogError> {
    Ok(conn
        .query_row(&format!("{SELECT_TOKEN} WHERE id = ?1"), [id], token_row)
        .optional()?)
}

pub(super) fn token_by_hash(
    conn: &Connection,
    hash: &str,
) -> Result<Option<(TokenRecord, String)>, CatalogError> {
    Ok(conn
        .query_row(
            "SELECT t.id, t.hash, t.user, t.label, t.created_at, u.role
             FROM api_tokens t JOIN users u ON u.name = t.user WHERE t.hash = ?1",
            [hash],
            |r| Ok((token_row(r)?, r.get(5)?)),
        )
        .optional()?)
}

pub(super) fn tokens(
    conn: &Connection,
    user: Option<&str>,
) -> Result<Vec<TokenRecord>, CatalogError> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT_TOKEN} WHERE (?1 IS NULL OR user = ?1) ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([user], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn remove_token(conn: &Connection, id: &str) -> Result<bool, CatalogError> {
    Ok(conn.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? > 0)
}

pub(super) fn append_audit(conn: &Connection, e: &AuditRecord) -> Result<i64, CatalogError> {
    Ok(conn.query_row(
        "INSERT INTO audit (at, actor, action, target, status) VALUES (?1, ?2, ?3, ?4, ?5)
         RETURNING seq",
        params![micros(e.at), e.actor, e.action, e.target, e.status],
        |r| r.get(0),
    )?)
}

pub(super) fn audit(
    conn: &Connection,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<AuditRecord>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, target, status FROM audit
         WHERE (?1 IS NULL OR seq < ?1) ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![before, limit], |r| {
        Ok(AuditRecord {
            seq: r.get(0)?,
            at: from_micros(r.get(1)?),
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            status: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
