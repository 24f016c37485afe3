//! The PostgreSQL catalog's team tables: users, personal tokens, sessions and the audit log.
//! Tokens and sessions reference their user (a foreign key), and removing a user locks the
//! user's row first, so that a token or session added by another node at the same moment
//! cannot outlive its user.

use jiff::Timestamp;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

use super::pool::wait;
use crate::catalog::CatalogError;
use crate::catalog::encode::{from_micros, micros};
use crate::catalog::team::{AuditRecord, SessionRecord, TokenRecord, UserRecord};

fn user_row(r: &Row) -> Result<UserRecord, CatalogError> {
    Ok(UserRecord {
        name: r.try_get(0)?,
        role: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        created_at: from_micros(r.try_get(3)?),
    })
}

fn token_row(r: &Row) -> Result<TokenRecord, CatalogError> {
    Ok(TokenRecord {
        id: r.try_get(0)?,
        hash: r.try_get(1)?,
        user: r.try_get(2)?,
        label: r.try_get(3)?,
        created_at: from_micros(r.try_get(4)?),
    })
}

const SELECT_USER: &str = "SELECT name, role, password_hash, created_at FROM users";
const SELECT_TOKEN: &str = "SELECT id, hash, username, label, created_at FROM api_tokens";

/// A statement's failure, as [`CatalogError::NoSuchUser`] when a foreign key found the user
/// gone (removed by another connection meanwhile).
fn user_gone(e: tokio_postgres::Error, user: &str) -> CatalogError {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        CatalogError::NoSuchUser(user.to_string())
    } else {
        e.into()
    }
}

pub(super) fn add_user(c: &Client, u: &UserRecord) -> Result<(), CatalogError> {
    let n = wait(c.execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING",
        &[&u.name, &u.role, &u.password_hash, &micros(u.created_at)],
    ))?;
    if n == 0 {
        return Err(CatalogError::UserExists(u.name.clone()));
    }
    Ok(())
}

pub(super) fn user(c: &Client, name: &str) -> Result<Option<UserRecord>, CatalogError> {
    wait(c.query_opt(&format!("{SELECT_USER} WHERE name = $1"), &[&name]))?
        .as_ref()
        .map(user_row)
        .transpose()
}

pub(super) fn users(c: &Client) -> Result<Vec<UserRecord>, CatalogError> {
    let rows = wait(c.query(&format!("{SELECT_USER} ORDER BY name COLLATE \"C\""), &[]))?;
    rows.iter().map(user_row).collect()
}

pub(super) fn remove_user(c: &mut Client, name: &str) -> Result<bool, CatalogError> {
    let tx = wait(c.transaction())?;
    // Locked first: a token or session being added waits, then finds the user gone.
    let exists = wait(tx.query_opt("SELECT 1 FROM users WHERE name = $1 FOR UPDATE", &[&name]))?;
    if exists.is_none() {
        return Ok(false);
    }
    wait(tx.execute("DELETE FROM sessions WHERE username = $1", &[&name]))?;
    wait(tx.execute("DELETE FROM api_tokens WHERE username = $1", &[&name]))?;
    let n = wait(tx.execute("DELETE FROM users WHERE name = $1", &[&name]))?;
    wait(tx.commit())?;
    Ok(n > 0)
}

pub(super) fn set_password_hash(
    c: &mut Client,
    name: &str,
    hash: &str,
) -> Result<bool, CatalogError> {
    let tx = wait(c.transaction())?;
    let n = wait(tx.execute(
        "UPDATE users SET password_hash = $2 WHERE name = $1",
        &[&name, &hash],
    ))?;
    wait(tx.execute("DELETE FROM sessions WHERE username = $1", &[&name]))?;
    wait(tx.commit())?;
    Ok(n > 0)
}

pub(super) fn set_user_role(c: &Client, name: &str, role: &str) -> Result<bool, CatalogError> {
    Ok(wait(c.execute(
        "UPDATE users SET role = $2 WHERE name = $1",
        &[&name, &role],
    ))? > 0)
}

pub(super) fn add_session(
    c: &mut Client,
    s: &SessionRecord,
    now: Timestamp,
) -> Result<(), CatalogError> {
    let tx = wait(c.transaction())?;
    wait(tx.execute(
        "DELETE FROM sessions WHERE expires_at <= $1",
        &[&micros(now)],
    ))?;
    let n = wait(tx.execute(
        "INSERT INTO sessions (hash, username, created_at, expires_at)
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM users WHERE name = $2)",
        &[
            &s.hash,
            &s.user,
            &micros(s.created_at),
            &micros(s.expires_at),
        ],
    ))
    .map_err(|e| user_gone(e, &s.user))?;
    if n == 0 {
        return Err(CatalogError::NoSuchUser(s.user.clone()));
    }
    wait(tx.commit()).map_err(|e| user_gone(e, &s.user))?;
    Ok(())
}

pub(super) fn session(
    c: &Client,
    hash: &str,
    now: Timestamp,
) -> Result<Option<(SessionRecord, String)>, CatalogError> {
    let row = wait(c.query_opt(
        "SELECT s.hash, s.username, s.created_at, s.expires_at, u.role
         FROM sessions s JOIN users u ON u.name = s.username
         WHERE s.hash = $1 AND s.expires_at > $2",
        &[&hash, &micros(now)],
    ))?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some((
        SessionRecord {
            hash: r.try_get(0)?,
            user: r.try_get(1)?,
            created_at: from_micros(r.try_get(2)?),
            expires_at: from_micros(r.try_get(3)?),
        },
        r.try_get(4)?,
    )))
}

pub(super) fn remove_session(c: &Client, hash: &str) -> Result<bool, CatalogError> {
    Ok(wait(c.execute("DELETE FROM sessions WHERE hash = $1", &[&hash]))? > 0)
}

pub(super) fn add_token(c: &Client, t: &TokenRecord) -> Result<bool, CatalogError> {
    // One statement: the user's existence, the insert, and (through the foreign key) a user
    // removed at the same moment.
    let row = wait(c.query_one(
        "WITH u AS (SELECT name FROM users WHERE name = $3),
              ins AS (INSERT INTO api_tokens (id, hash, username, label, created_at)
                      SELECT $1, $2, name, $4, $5 FROM u
                      ON CONFLICT DO NOTHING RETURNING 1)
         SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM ins)",
        &[&t.id, &t.hash, &t.user, &t.label, &micros(t.created_at)],
    ))
    .map_err(|e| user_gone(e, &t.user))?;
    if row.try_get::<_, i64>(0)? == 0 {
        return Err(CatalogError::NoSuchUser(t.user.clone()));
    }
    Ok(row.try_get::<_, i64>(1)? > 0)
}

pub(super) fn token(c: &Client, id: &str) -> Result<Option<TokenRecord>, CatalogError> {
    wait(c.query_opt(&format!("{SELECT_TOKEN} WHERE id = $1"), &[&id]))?
        .as_ref()
        .map(token_row)
        .transpose()
}

pub(super) fn token_by_hash(
    c: &Client,
    hash: &str,
) -> Result<Option<(TokenRecord, String)>, CatalogError> {
    let row = wait(c.query_opt(
        "SELECT t.id, t.hash, t.username, t.label, t.created_at, u.role
         FROM api_tokens t JOIN users u ON u.name = t.username WHERE t.hash = $1",
        &[&hash],
    ))?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some((token_row(&r)?, r.try_get(5)?)))
}

pub(super) fn tokens(c: &Client, user: Option<&str>) -> Result<Vec<TokenRecord>, CatalogError> {
    let rows = wait(c.query(
        &format!(
            "{SELECT_TOKEN} WHERE ($1::text IS NULL OR username = $1) ORDER BY created_at, id"
        ),
        &[&user],
    ))?;
    rows.iter().map(token_row).collect()
}

pub(super) fn remove_token(c: &Client, id: &str) -> Result<bool, CatalogError> {
    Ok(wait(c.execute("DELETE FROM api_tokens WHERE id = $1", &[&id]))? > 0)
}

pub(super) fn append_audit(c: &Client, e: &AuditRecord) -> Result<i64, CatalogError> {
    let row = wait(c.query_one(
        "INSERT INTO audit (at, actor, action, target, status) VALUES ($1, $2, $3, $4, $5)
         RETURNING seq",
        &[
            &micros(e.at),
            &e.actor,
            &e.action,
            &e.target,
            &i32::from(e.status),
        ],
    ))?;
    Ok(row.try_get(0)?)
}

pub(super) fn audit(
    c: &Client,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<AuditRecord>, CatalogError> {
    let rows = wait(c.query(
        "SELECT seq, at, actor, action, target, status FROM audit
         WHERE ($1::bigint IS NULL OR seq < $1) ORDER BY seq DESC LIMIT $2",
        &[&before, &i64::from(limit)],
    ))?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                seq: r.try_get(0)?,
                at: from_micros(r.try_get(1)?),
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                status: u16::try_from(r.try_get::<_, i32>(5)?).unwrap_or(0),
            })
        })
        .collect()
}
