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
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
use crate::pg::{PgTool, PgUrl, Version, archive};

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
/// progress; proves the checksum and that the content starts like a custom-format dump; then
/// fills in the data offsets pg_dump could not write to its pipe, so that `pg_restore --jobs`
/// seeks straight to each table's data instead of scanning the file for it.
///
/// Two threads share the work: one reads, hashes and decompresses the stored object, the other
/// indexes the archive and writes the scratch file; a bounded channel between them keeps
/// memory at a few chunks.
fn spool(plain: PlainDump, path: &Path, ctx: &JobCtx) -> io::Result<()> {
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let producer = std::thread::Builder::new()
        .name("restore-read".into())
        .spawn(move || decompress_into(plain, &tx))?;
    let tee = Tee {
        inner: ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        },
        out: BufWriter::with_capacity(CHUNK, file),
        head: Vec::with_capacity(DUMP_MAGIC.len()),
        ctx,
    };
    // The scan pulls every byte through the tee, which writes it to the scratch file.
    let mut reader = BufReader::with_capacity(CHUNK, tee);
    let scanned = archive::scan(&mut reader);
    let Tee {
        inner, out, head, ..
    } = reader.into_inner();
    // Closing our end stops the reader thread if we stopped early (cancel, write error).
    drop(inner);
    let plain = producer
        .join()
        .map_err(|_| io::Error::other("the restore's reader thread panicked"))??;
    let index = scanned?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    plain.verify()?;
    if head != DUMP_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the backup is not a custom-format dump (it does not start with PGDMP)",
        ));
    }
    match index.map(|i| i.patches()) {
        Some(patches) if !patches.is_empty() => {
            for (pos, bytes) in &patches {
                file.write_all_at(bytes, *pos)?;
            }
            ctx.log(&format!(
                "Filled in the data offsets of {} table(s) for pg_restore",
                patches.len()
            ));
        }
        _ => ctx.log("Could not index the dump's data blocks; pg_restore will scan for them"),
    }
    Ok(())
}

/// The reading half of [`spool`]: sends the plain dump in chunks until the end or until the
/// receiver goes away, and hands the reader back for its checksum verdict.
fn decompress_into(
    mut plain: PlainDump,
    tx: &std::sync::mpsc::SyncSender<Vec<u8>>,
) -> io::Result<PlainDump> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match plain.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(plain);
        }
        chunk.truncate(filled);
        if tx.send(chunk).is_err() {
            return Ok(plain); // the writer stopped; it knows why
        }
    }
}

/// Reads the chunks a channel delivers, as one stream; the end of the channel is the end.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A `Read` stage that copies what is read into the scratch file, counts progress, keeps the
/// first bytes, and stops when the transfer is cancelled.
struct Tee<'a> {
    inner: ChannelReader,
    out: BufWriter<File>,
    head: Vec<u8>,
    ctx: &'a JobCtx,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ctx.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        if self.head.len() < DUMP_MAGIC.len() {
            let want = (DUMP_MAGIC.len() - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..want]);
        }
        self.out.write_all(&buf[..n])?;
        self.ctx.add_progress(n as u64);
        Ok(n)
    }
}
