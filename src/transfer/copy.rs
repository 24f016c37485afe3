//! A copy: one database into another, nothing stored — Heroku's `pg:copy`.
//!
//! ```text
//! pg_dump -Fc -Z0 (source) ─pipe─▶ relay (progress) ─pipe─▶ pg_restore --no-owner --no-acl (target)
//! ```
//! Both servers are checked (and the tools chosen) before the target is emptied, as for a
//! restore.

use std::io::{self, Read, Write};
use std::process::Stdio;

use super::job::JobCtx;
use super::restore::parsed_sink;
use super::{Job, JobEnd};
use crate::format::bytes;
use crate::pg::client::{query, server_facts, tool_command};
use crate::pg::restore_errors::Parser;
use crate::pg::{PgTool, PgUrl};
use crate::stream::CHUNK;

pub(super) async fn run(job: &mut Job, source: PgUrl, target: PgUrl) -> Result<(), JobEnd> {
    let engine = job.engine.clone();
    job.log(&format!(
        "Copying {} into {}",
        source.redacted(),
        target.redacted()
    ));
    let (from, to) = tokio::select! {
        f = async { tokio::join!(server_facts(&engine.tools, &source), server_facts(&engine.tools, &target)) } => f,
        _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
    };
    let from = from.map_err(|e| JobEnd::failed(format!("source: {e}")))?;
    let to = to.map_err(|e| JobEnd::failed(format!("target: {e}")))?;
    job.report_unmatched_exclusions(&source).await;
    let pg_dump = engine
        .tools
        .find(PgTool::Dump, from.version.major)
        .map_err(JobEnd::failed)?;
    let dump_version = engine.tools.version_of(&pg_dump);
    let pg_restore = engine
        .tools
        .find(
            PgTool::Restore,
            dump_version.map(|v| v.major).unwrap_or(from.version.major),
        )
        .map_err(JobEnd::failed)?;
    job.rec.database_size = Some(from.database_size);
    job.rec.server_version = Some(format!("{} → {}", from.version, to.version));
    job.rec.tool_version = dump_version.map(|v| v.to_string());
    job.save().await?;
    job.log(&format!(
        "Source: PostgreSQL {} ({}); target: PostgreSQL {}",
        from.version,
        bytes(from.database_size),
        to.version
    ));
    if to.version.major < from.version.major {
        job.log(&format!(
            "Note: the target server ({}) is older than the source ({}); objects that use newer features may be refused",
            to.version, from.version
        ));
    }

    // Two URLs can name one database (localhost and 127.0.0.1, a default port written out):
    // emptying the target would then empty the source. Compare what the servers say.
    // In numbers only: a time as text follows each session's TimeZone and DateStyle.
    const WHO: &str = "SELECT current_database() || ':' || (SELECT oid FROM pg_database WHERE datname = current_database()) || ':' || (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint";
    let (a, b) = tokio::join!(
        query(&engine.tools, &source, WHO),
        query(&engine.tools, &target, WHO)
    );
    let (a, b) = (a.map_err(JobEnd::failed)?, b.map_err(JobEnd::failed)?);
    if a == b {
        return Err(JobEnd::failed(
            "the source and the target are the same database (reached through two different URLs); a copy needs two",
        ));
    }
    job.empty_target(&target).await?;

    let (relay_from, dump_stdout) = io::pipe().map_err(JobEnd::failed)?;
    let (restore_stdin, relay_to) = io::pipe().map_err(JobEnd::failed)?;
    let mut dump = tool_command(&pg_dump, Some(&source));
    dump.args([
        "--format=custom",
        "--compress=0",
        "--verbose",
        "--no-password",
        "--dbname",
    ])
    .arg(source.without_password())
    .args(job.rec.filter.args())
    .stdout(Stdio::from(dump_stdout))
    .log_to(job.ctx.sink());
    let parser = std::sync::Arc::new(std::sync::Mutex::new(Parser::default()));
    let mut restore = tool_command(&pg_restore, Some(&target));
    restore
        .args([
            "--format=custom",
            "--verbose",
            "--no-owner",
            "--no-acl",
            "--no-password",
            "--dbname",
        ])
        .arg(target.without_password())
        .stdin(Stdio::from(restore_stdin))
        .log_to(parsed_sink(&job.ctx, &parser));
    let dump_child = dump.spawn().map_err(JobEnd::failed)?;
    let restore_child = restore.spawn().map_err(JobEnd::failed)?;
    // Our copies of the pipe ends must go, or neither side would ever see the other's end.
    drop(dump);
    drop(restore);
    let ctx = job.ctx.clone();
    let relay = tokio::task::spawn_blocking(move || relay(relay_from, relay_to, &ctx));
    job.log("Streaming pg_dump into pg_restore");
    let (dumped, restored) = tokio::join!(
        dump_child.wait(job.ctx.cancelled(), None),
        restore_child.wait(job.ctx.cancelled(), None),
    );
    let relayed = relay.await.map_err(JobEnd::failed)?;
    if job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }
    let dumped = dumped.map_err(JobEnd::failed)?;
    let restored = restored.map_err(JobEnd::failed)?;
    dumped.check().map_err(JobEnd::failed)?;
    // Only objects the target may refuse without losing data failed: warnings, as Heroku's
    // "Completed with N warnings".
    let warnings = if restored.success() {
        Vec::new()
    } else {
        let w = parser.lock().unwrap_or_else(|p| p.into_inner()).warnings();
        match w {
            Some(w) => w,
            None => {
                restored.check().map_err(JobEnd::failed)?;
                Vec::new()
            }
        }
    };
    let n = relayed.map_err(|e| JobEnd::failed(format!("could not pass the dump on: {e}")))?;
    for w in &warnings {
        job.log(&w.warning_line());
    }
    job.rec.warnings = u32::try_from(warnings.len()).unwrap_or(u32::MAX);
    job.rec.dump_size = Some(n);
    job.log(&format!("Copied {} of dump", bytes(n)));
    Ok(())
}

/// Passes pg_dump's output to pg_restore, counting it.
fn relay(mut from: io::PipeReader, to: io::PipeWriter, ctx: &JobCtx) -> io::Result<u64> {
    let mut to = io::BufWriter::with_capacity(CHUNK, to);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
        ctx.add_progress(n as u64);
    }
    to.flush()?;
    Ok(total)
}
