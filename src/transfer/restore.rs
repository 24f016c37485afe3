//! A restore: a stored backup into a database, with the stock `pg_restore`.
//!
//! ```text
//! storage ─▶ SHA-256 ─▶ zstd -d ─▶ scratch file ─▶ pg_restore --list (is it a dump?)
//!         ─▶ empty the target ─▶ pg_restore --jobs N
//! ```
//! The dump is spooled to a scratch file because `pg_restore --jobs` needs a seekable file, and
//! because the checksum must be proven before the target is touched. Nothing in the target
//! changes until the backup has been verified end to end.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::download::PlainDump;
use super::job::JobCtx;
use super::pipeline::{CHUNK, DUMP_MAGIC, error_summary, log_stderr, spawn_tool, terminate};
use super::{Job, JobEnd};
use crate::catalog::TransferRecord;
use crate::format::bytes;
use crate::pg::client::{clean_database, server_facts, tool_command};
use crate::pg::{PgTool, PgUrl, Version};

/// Removes the scratch file however the restore ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) async fn run(
    job: &mut Job,
    backup: &TransferRecord,
    url: PgUrl,
    jobs: u32,
) -> Result<(), JobEnd> {
    let engine = job.engine.clone();
    job.log(&format!(
        "Restoring backup {} (of {}) into {}",
        backup.id,
        backup.database,
        url.redacted()
    ));
    let facts = server_facts(&engine.tools, &url)
        .await
        .map_err(JobEnd::failed)?;
    job.rec.server_version = Some(facts.version.to_string());
    job.rec.database_size = Some(facts.database_size);
    // pg_restore must be at least as new as the pg_dump that wrote the archive.
    let archive_major = backup
        .tool_version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    let pg_restore = match archive_major {
        0 => engine.tools.newest(PgTool::Restore),
        major => engine.tools.find(PgTool::Restore, major),
    }
    .map_err(JobEnd::failed)?;
    job.rec.tool_version = engine
        .tools
        .version_of(&pg_restore)
        .map(|v: Version| v.to_string());
    job.rec.dump_size = backup.dump_size;
    job.save().await?;

    // 1. Verify and spool.
    job.log(&format!(
        "Reading backup {} ({}) and checking its SHA-256",
        backup.id,
        bytes(backup.object_size.unwrap_or(0))
    ));
    let scratch = Scratch(engine.tmp_dir.join(format!("{}.dump", job.rec.id)));
    let plain = PlainDump::open(engine.storage.as_ref(), backup).map_err(JobEnd::failed)?;
    let path = scratch.0.clone();
    let ctx = job.ctx.clone();
    tokio::task::spawn_blocking(move || spool(plain, &path, &ctx))
        .await
        .map_err(JobEnd::failed)?
        .map_err(JobEnd::failed)?;
    if job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }

    // 2. Is it a dump pg_restore can read?
    let mut list = tool_command(&pg_restore, None);
    list.arg("--list")
        .arg(&scratch.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = spawn_tool(&mut list, "pg_restore")
        .map_err(JobEnd::failed)?
        .wait_with_output()
        .await
        .map_err(JobEnd::failed)?;
    if !out.status.success() {
        return Err(JobEnd::failed(format!(
            "backup {} is not a custom-format dump that pg_restore can read: {}",
            backup.id,
            crate::pg::client::clean_libpq_message(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    job.log("Backup verified: checksum matches and pg_restore reads it");
    if job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }

    // 3. Empty the target, as Heroku does.
    job.log(&format!(
        "Dropping all objects in database {} (schemas, extensions, large objects)",
        url.dbname()
    ));
    // The drop runs in one transaction that psql commits only after the whole block ran: when
    // the transfer is cancelled meanwhile (say, while waiting for a lock an application holds),
    // psql is killed before it commits and the server rolls everything back.
    tokio::select! {
        r = clean_database(&engine.tools, &url) => r
            .map_err(|e| JobEnd::failed(format!("could not empty the target database: {e}")))?,
        _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
    }
    job.target_touched = true;

    // 4. Restore.
    job.log(&format!(
        "Restoring with pg_restore --jobs {jobs} ({})",
        pg_restore.display()
    ));
    let mut cmd = tool_command(&pg_restore, Some(&url));
    cmd.args(["--verbose", "--no-owner", "--no-acl", "--no-password"])
        .arg(format!("--jobs={jobs}"))
        .arg("--dbname")
        .arg(url.without_password())
        .arg(&scratch.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_tool(&mut cmd, "pg_restore").map_err(JobEnd::failed)?;
    drop(cmd);
    let stderr = child
        .stderr
        .take()
        .map(|s| log_stderr(s, job.ctx.clone(), "pg_restore"));
    let status = tokio::select! {
        s = child.wait() => s,
        _ = job.ctx.cancelled().cancelled() => terminate(&mut child, Duration::from_secs(10)).await,
    };
    let tail = match stderr {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }
    let status = status.map_err(JobEnd::failed)?;
    if !status.success() {
        return Err(JobEnd::failed(format!(
            "pg_restore failed ({status}): {}",
            error_summary(&tail)
        )));
    }
    drop(scratch);
    Ok(())
}

/// Decompresses the backup into the scratch file (mode 0600: it holds the data), counting
/// progress, then proves the checksum and that the content starts like a custom-format dump.
fn spool(mut plain: PlainDump, path: &Path, ctx: &JobCtx) -> io::Result<()> {
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut buf = vec![0u8; CHUNK];
    let mut head: Vec<u8> = Vec::with_capacity(DUMP_MAGIC.len());
    loop {
        if ctx.is_cancelled() {
            return Ok(());
        }
        let n = match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if head.len() < DUMP_MAGIC.len() {
            let want = (DUMP_MAGIC.len() - head.len()).min(n);
            head.extend_from_slice(&buf[..want]);
        }
        out.write_all(&buf[..n])?;
        ctx.add_progress(n as u64);
    }
    out.flush()?;
    plain.verify()?;
    if head != DUMP_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the backup is not a custom-format dump (it does not start with PGDMP)",
        ));
    }
    Ok(())
}
