//! Verification of a backup (`backups:verify`, and after each scheduled capture when the
//! schedule asks for it): the whole stored object is re-read and its SHA-256 checked, and
//! the stock `pg_restore --list` must read the archive. With `--restore` the backup is then
//! restored into a scratch database (`pgbackups_verify_<id>`) on the database's own server
//! (or another one), checked (every table of the dump is there; rows are counted), and the
//! scratch database is dropped, whatever happened.

use super::restore::{Scratch, spool, verify_and_extract_toc};
use super::{Job, JobEnd, PlainDump};
use crate::catalog::{RESTORE_TEST_DETAIL, TransferRecord, VerifyMode};
use crate::format::bytes;
use crate::pg::client::{query, quote_ident, tool_command};
use crate::pg::{PgTool, PgUrl};
use crate::stream::framed::StoredLayout;

/// What `pg_restore --list` says the archive holds.
struct Listing {
    entries: usize,
    tables: usize,
    data_blocks: usize,
}

pub(super) async fn run(
    job: &mut Job,
    backup: &TransferRecord,
    mode: VerifyMode,
    target: Option<PgUrl>,
) -> Result<(), JobEnd> {
    let engine = job.engine.clone();
    job.rec.dump_size = backup.dump_size;
    job.log(&format!(
        "Verifying backup {} ({}): reading it back and checking its SHA-256",
        backup.id,
        bytes(backup.object_size.unwrap_or(0))
    ));
    let pg_restore = engine
        .tools
        .newest(PgTool::Restore)
        .map_err(JobEnd::failed)?;
    let scratch = Scratch::create(engine.tmp_dir.join(job.rec.id.to_string()))
        .map_err(|e| JobEnd::failed(format!("cannot create the scratch directory: {e}")))?;

    // 1. The whole object, byte for byte, and an archive pg_restore reads.
    let catalog = engine.catalog.clone();
    let backup_id = backup.id;
    let layout = tokio::task::spawn_blocking(move || catalog.layout(backup_id))
        .await
        .map_err(JobEnd::failed)?
        .map_err(JobEnd::failed)?
        .and_then(|json| serde_json::from_str::<StoredLayout>(&json).ok())
        .filter(|l| l.archive.is_some() && l.is_consistent(backup.dump_size));
    let file = scratch.path().join("toc.dump");
    let (storage, b, f, ctx) = (
        engine.storage.clone(),
        backup.clone(),
        file.clone(),
        job.ctx.clone(),
    );
    let read = tokio::task::spawn_blocking(move || match layout {
        Some(l) => {
            let key = b.object_key.clone().unwrap_or_default();
            verify_and_extract_toc(storage.as_ref(), &b, &l, &key, &f, &ctx)
        }
        // No recorded layout (an old backup): decompress it all, which proves it too.
        None => PlainDump::open(storage.as_ref(), &b)
            .map_err(std::io::Error::other)
            .and_then(|plain| spool(plain, &f, &ctx)),
    })
    .await
    .map_err(JobEnd::failed)?;
    if job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }
    // A checksum or format mismatch says "damaged" itself; an unreachable store or a missing
    // key is reported as what it is.
    read.map_err(|e| JobEnd::failed(format!("could not verify backup {}: {e}", backup.id)))?;
    let listing = list(&pg_restore, &file).await?;
    let mut detail = format!(
        "checksum OK; pg_restore --list reads {} entries ({} tables, {} with data)",
        listing.entries, listing.tables, listing.data_blocks
    );
    job.log(&format!("Backup {}: {detail}", backup.id));
    // The restore below makes its own scratch directory under the same name.
    drop(scratch);

    // 2. Optionally, a real restore.
    if mode == VerifyMode::Restore {
        let Some(target) = target else {
            return Err(JobEnd::failed(
                "a restore test needs a server: the backup's database is not registered; pass --target URL",
            ));
        };
        let name = scratch_name(job.rec.id);
        let admin = target.with_dbname("postgres");
        let scratch_db = target.with_dbname(&name);
        query(
            &engine.tools,
            &admin,
            &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name)),
        )
        .await
        .map_err(|e| {
            JobEnd::failed(format!(
                "could not create the scratch database {name} (the role needs CREATEDB): {e}"
            ))
        })?;
        job.log(&format!("Restoring into the scratch database {name}"));
        let restored = super::restore::run(job, backup, scratch_db.clone(), 2, &[], false).await;
        let checked = match restored {
            Ok(()) => sanity_check(job, &scratch_db, &listing).await,
            Err(e) => Err(e),
        };
        // Dropped however the restore ended; a failure to drop is said, not hidden.
        let dropped = drop_scratch(&engine.tools, &admin, &name).await;
        match &dropped {
            Ok(_) => job.log(&format!("Dropped the scratch database {name}")),
            Err(e) => job.log(&format!(
                "Could not drop the scratch database {name}; drop it by hand: {e}"
            )),
        }
        let summary = checked?;
        detail.push_str(&format!("; {RESTORE_TEST_DETAIL}: {summary}"));
    }
    job.rec.detail = Some(detail);
    Ok(())
}

/// The scratch database of a verification.
pub(super) fn scratch_name(id: crate::catalog::TransferId) -> String {
    format!("pgbackups_verify_{id}")
}

/// Drops a scratch database: `WITH (FORCE)` where the server has it (PostgreSQL 13+), else
/// after ending the sessions still in it.
pub(super) async fn drop_scratch(
    tools: &crate::pg::PgTools,
    admin: &PgUrl,
    name: &str,
) -> Result<(), crate::pg::client::PgError> {
    let forced = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    if query(tools, admin, &forced).await.is_ok() {
        return Ok(());
    }
    let _ = query(
        tools,
        admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}",
            crate::pg::client::quote_literal(name)
        ),
    )
    .await;
    query(
        tools,
        admin,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(name)),
    )
    .await
    .map(|_| ())
}

/// `pg_restore --list FILE`, counted.
async fn list(pg_restore: &std::path::Path, file: &std::path::Path) -> Result<Listing, JobEnd> {
    let mut cmd = tool_command(pg_restore, None);
    cmd.arg("--list").arg(file).keep_lines(1000);
    let out = cmd.output(None).await.map_err(JobEnd::failed)?;
    if !out.status.success() {
        return Err(JobEnd::failed(format!(
            "pg_restore cannot read the backup: {}",
            out.stderr.summary()
        )));
    }
    let text = out.stdout_text();
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with(';') && !l.trim().is_empty())
        .collect();
    // An entry reads `1234; 1259 16390 TABLE public accounts owner`; other kinds start with
    // TABLE too (TABLE DATA, TABLE ATTACH).
    let kind = |l: &str| -> String {
        l.split_once(' ')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(2)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let is_table = |l: &str| {
        let k = kind(l);
        k.starts_with("TABLE ") && !k.starts_with("TABLE DATA") && !k.starts_with("TABLE ATTACH")
    };
    Ok(Listing {
        entries: entries.len(),
        tables: entries.iter().filter(|l| is_table(l)).count(),
        data_blocks: entries
            .iter()
            .filter(|l| kind(l).starts_with("TABLE DATA"))
            .count(),
    })
}

/// Every table of the dump must be in the scratch database; rows are counted for the record.
async fn sanity_check(job: &Job, db: &PgUrl, listing: &Listing) -> Result<String, JobEnd> {
    let rows = query(
        &job.engine.tools,
        db,
        "SELECT count(*), coalesce(sum((xpath('/row/c/text()', \
             query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint), 0) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .await
    .map_err(|e| JobEnd::failed(format!("could not check the scratch database: {e}")))?;
    let row = rows.first().cloned().unwrap_or_default();
    let tables: usize = row.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let count: u64 = row.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    if tables < listing.tables {
        return Err(JobEnd::failed(format!(
            "the restore left {tables} tables, but the dump has {}",
            listing.tables
        )));
    }
    let summary = format!("{tables} tables, {count} rows");
    job.log(&format!("Sanity check passed: {summary}"));
    Ok(summary)
}
