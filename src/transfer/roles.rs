//! The server's roles kept beside each backup, and created again by `backups:restore --roles`.
//!
//! A capture runs `pg_dumpall --globals-only --no-role-passwords` after its dump and stores the
//! script at [`manifest::globals_key_for`] through the same storage (so it is encrypted like
//! the dump). Passwords are never kept: a restored role has none until one is set. A capture
//! whose roles cannot be dumped still succeeds, saying why in its log.

use std::io::Read;

use super::manifest;
use super::{Job, JobEnd};
use crate::catalog::TransferRecord;
use crate::pg::client::{clean_libpq_message, query, quote_literal, run_script, tool_command};
use crate::pg::{PgTool, PgUrl, globals};

/// Globals scripts are small; a larger object under that name is not one of ours.
const MAX_GLOBALS: u64 = 64 << 20;

/// The bootstrap superuser (OID 10) exists on every server under its own name: never kept,
/// never created.
const BOOTSTRAP: &str = "SELECT rolname FROM pg_roles WHERE oid = 10";

/// Dumps the roles of `url`'s server beside the dump at `object_key` and returns their names
/// (without the bootstrap superuser), or `None` after logging why they were not kept.
pub(super) async fn keep(
    job: &Job,
    url: &PgUrl,
    major: u32,
    object_key: &str,
) -> Option<Vec<String>> {
    match dump(job, url, major, object_key).await {
        Ok(roles) => {
            job.log(&format!(
                "Kept the server's roles with the backup (without passwords): {}",
                if roles.is_empty() {
                    "none besides the bootstrap superuser".to_string()
                } else {
                    roles.join(", ")
                }
            ));
            Some(roles)
        }
        Err(why) => {
            job.log(&format!(
                "Roles were not kept with this backup ({why}); the backup itself is complete, but `backups:restore --roles` cannot create its roles"
            ));
            None
        }
    }
}

/// Why a capture's roles were not kept (the capture itself still succeeds).
#[derive(Debug, thiserror::Error)]
enum NotKept {
    #[error(transparent)]
    NoTool(#[from] crate::pg::ToolError),
    #[error(transparent)]
    Run(#[from] crate::proc::RunError),
    #[error("pg_dumpall --globals-only failed: {0}")]
    Failed(String),
    #[error("pg_dumpall's output sets a password, which is never stored")]
    Password,
    #[error(transparent)]
    Query(#[from] crate::pg::client::PgError),
    #[error("could not compress them: {0}")]
    Compress(#[source] std::io::Error),
    #[error("could not store them: {0}")]
    Store(#[from] crate::storage::StorageError),
    #[error("the store's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

async fn dump(
    job: &Job,
    url: &PgUrl,
    major: u32,
    object_key: &str,
) -> Result<Vec<String>, NotKept> {
    let engine = job.engine.clone();
    let exe = engine.tools.find(PgTool::DumpAll, major)?;
    let mut cmd = tool_command(&exe, Some(url));
    cmd.args([
        "--globals-only",
        "--no-role-passwords",
        "--no-password",
        "--dbname",
        &url.without_password(),
        // The database to connect to: pg_dumpall ignores the one in the connection string.
        "-l",
        &url.dbname(),
    ])
    .keep_lines(1000);
    let out = cmd.output(Some(job.ctx.cancelled())).await?;
    if !out.status.success() {
        // Its first line says why; the rest is the query that failed.
        let stderr = out.stderr.tail_text();
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim_start_matches("pg_dumpall: error: ");
        return Err(NotKept::Failed(clean_libpq_message(first)));
    }
    let script = out.stdout_text();
    if globals::has_password(&script) {
        return Err(NotKept::Password);
    }
    let bootstrap = query(&engine.tools, url, BOOTSTRAP).await?;
    let bootstrap = bootstrap.first().and_then(|r| r.first()).cloned();
    let roles: Vec<String> = globals::roles(&script)
        .into_iter()
        .filter(|r| Some(r) != bootstrap.as_ref())
        .collect();
    let compressed = zstd::encode_all(script.as_bytes(), 3).map_err(NotKept::Compress)?;
    let (storage, key) = (
        engine.storage.clone(),
        manifest::globals_key_for(object_key),
    );
    // Through `create`, not `write_small`: small objects are stored plain (manifests must be
    // readable without the key), and the roles are encrypted like the dump.
    tokio::task::spawn_blocking(move || {
        let mut w = storage.create(&key)?;
        std::io::Write::write_all(&mut w, &compressed).map_err(|source| {
            crate::storage::StorageError::Io {
                op: "write",
                key: key.clone(),
                source,
            }
        })?;
        w.commit().map(|_| ())
    })
    .await??;
    Ok(roles)
}

/// Creates the roles `backup` carries that the server of `url` lacks, before the restore, so
/// that its `OWNER TO` and `GRANT` statements find them. Roles the server has (and its
/// bootstrap superuser) are left as they are. Answers whether the restore may keep owners and
/// privileges: only when the target's role can act as every role the backup names (so that
/// no `OWNER TO` fails once the target is emptied), never when the backup kept no roles.
pub(super) async fn create_missing(
    job: &Job,
    backup: &TransferRecord,
    url: &PgUrl,
) -> Result<bool, JobEnd> {
    let engine = job.engine.clone();
    let (Some(kept), Some(object_key)) = (&backup.roles, &backup.object_key) else {
        job.log(&format!(
            "Backup {} kept no roles (see its capture's log); restoring without creating any, with owners and privileges left out as without --roles",
            backup.id
        ));
        return Ok(false);
    };
    let script = read(&engine.storage, object_key).await.map_err(|e| {
        JobEnd::failed(format!(
            "could not read the roles kept with backup {}: {e}",
            backup.id
        ))
    })?;
    let names = |rows: Vec<Vec<String>>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect()
    };
    let existing = names(
        query(&engine.tools, url, "SELECT rolname FROM pg_roles")
            .await
            .map_err(JobEnd::failed)?,
    );
    let bootstrap = names(
        query(&engine.tools, url, BOOTSTRAP)
            .await
            .map_err(JobEnd::failed)?,
    );
    let missing: Vec<String> = kept
        .iter()
        .filter(|r| !existing.contains(r) && !bootstrap.contains(r))
        .cloned()
        .collect();
    if missing.is_empty() {
        job.log(&format!(
            "The target already has every role of backup {} ({})",
            backup.id,
            if kept.is_empty() {
                "none".to_string()
            } else {
                kept.join(", ")
            }
        ));
    } else {
        let Some(create) = globals::creation_script(&script, &missing) else {
            return Err(JobEnd::failed(format!(
                "the roles kept with backup {} do not define {} as expected; restore without --roles and create the roles by hand",
                backup.id,
                missing.join(", ")
            )));
        };
        job.log(&format!(
            "Creating roles the target lacks: {}",
            missing.join(", ")
        ));
        run_script(&engine.tools, url, &create).await.map_err(|e| {
            JobEnd::failed(format!(
                "could not create the backup's roles ({}) on the target, which is unchanged: {e}; connect as a role with CREATEROLE (or a superuser for superuser roles), or restore without --roles",
                missing.iter().map(|r| quote_literal(r)).collect::<Vec<_>>().join(", ")
            ))
        })?;
    }
    // Every role the dump may name as an owner: the kept ones and the source's bootstrap
    // superuser (in the script, not in the list). Owners are kept only if the target's role
    // may act as each of them; otherwise pg_restore would fail after the target was emptied.
    let acting = names(
        query(
            &engine.tools,
            url,
            "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER')",
        )
        .await
        .map_err(JobEnd::failed)?,
    );
    let cannot: Vec<String> = globals::roles(&script)
        .into_iter()
        .filter(|r| !acting.contains(r))
        .collect();
    if !cannot.is_empty() {
        job.log(&format!(
            "The target's role cannot act as {} (it is neither a superuser nor a member), so objects cannot be given to them: restoring with owners and privileges left out, as without --roles",
            cannot.join(", ")
        ));
        return Ok(false);
    }
    Ok(true)
}

/// The globals script kept beside the backup at `object_key`.
async fn read(
    storage: &std::sync::Arc<dyn crate::storage::Storage>,
    object_key: &str,
) -> Result<String, crate::storage::StorageError> {
    let (storage, key) = (storage.clone(), manifest::globals_key_for(object_key));
    tokio::task::spawn_blocking(move || {
        // Through `open`, which decrypts (see `keep`).
        let stored = storage.open(&key)?.take(MAX_GLOBALS);
        let mut plain = String::new();
        zstd::Decoder::new(stored)
            .and_then(|mut d| d.read_to_string(&mut plain))
            .map_err(|source| crate::storage::StorageError::Io {
                op: "decompress",
                key: key.clone(),
                source,
            })?;
        Ok(plain)
    })
    .await
    .map_err(|e| crate::storage::StorageError::Io {
        op: "read",
        key: object_key.to_string(),
        source: std::io::Error::other(e),
    })?
}
