//! A restore: a stored backup into a database, with the stock `pg_restore`.
//!
//! Nothing in the target changes until the whole stored object has been proven (its SHA-256
//! matches the catalog, and `pg_restore --list` reads it). Then the target is emptied, as
//! Heroku does, and restored. Two ways, depending on what the capture recorded:
//!
//! - **Streamed** (backups with a recorded layout, see `layout.rs`): the archive's header and
//!   TOC go to a small scratch file; `pg_restore --section=pre-data` creates the schema; then
//!   up to `--jobs` pg_restore processes load table data in parallel, each fed on its stdin
//!   with the TOC and its tables' data blocks, read straight from the stored object (each from
//!   its own zstd frame); finally `pg_restore --section=post-data --jobs N` builds indexes and
//!   constraints. No copy of the dump is written anywhere.
//! - **Spooled** (backups without a layout): the dump is decompressed into a scratch file with
//!   its data offsets filled in, and `pg_restore --jobs N` restores that file.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::download::{PlainDump, StoreReader};
use super::job::JobCtx;
use crate::pg::restore_errors::{Parser, RestoreError};

/// The warnings of all pg_restore processes of one transfer.
pub(super) type Warnings = Arc<Mutex<Vec<RestoreError>>>;
use super::{Job, JobEnd};
use crate::catalog::TransferRecord;
use crate::format::bytes;
use crate::pg::archive::{ArchiveIndex, SECTION_DATA};
use crate::pg::client::{server_facts, tool_command};
use crate::pg::{PgTool, PgUrl, Version};
use crate::storage::Storage;
use crate::stream::framed::StoredLayout;
use crate::stream::{CHUNK, HashingReader};

mod spool;
pub(super) use spool::spool;

/// Consecutive tables whose data is smaller than this together go to one pg_restore process
/// (a process per tiny table would cost more than it loads).
const GROUP_BYTES: u64 = 64 << 20;

/// The restore's scratch directory (in the data directory's `tmp/`), removed however the
/// restore ends.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn create(path: PathBuf) -> io::Result<Scratch> {
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Scratch(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every pg_restore of one restore shares.
#[derive(Clone)]
pub(super) struct Restorer {
    ctx: JobCtx,
    exe: PathBuf,
    url: PgUrl,
    storage: Arc<dyn Storage>,
    /// What the target refused without losing data, from every pg_restore of this restore.
    warnings: Warnings,
    /// Heroku's `--extensions`: created in the emptied target before pg_restore.
    extensions: Vec<String>,
    /// Restore owners and privileges (`backups:restore --roles`, once the roles exist);
    /// otherwise `--no-owner --no-acl`, as Heroku restores.
    keep_owners: bool,
}

/// Bytes to feed a pg_restore on its stdin: the archive's header and TOC, then data blocks.
struct Feed {
    toc: PathBuf,
    key: String,
    layout: Arc<StoredLayout>,
    /// `[start, end)` ranges of the plain dump.
    ranges: Vec<(u64, u64)>,
}

pub(super) async fn run(
    job: &mut Job,
    backup: &TransferRecord,
    url: PgUrl,
    jobs: u32,
    extensions: &[String],
    keep_owners: bool,
) -> Result<(), JobEnd> {
    let engine = job.engine.clone();
    job.log(&format!(
        "Restoring backup {} (of {}) into {}",
        backup.id,
        backup.database,
        url.redacted()
    ));
    let facts = tokio::select! {
        f = server_facts(&engine.tools, &url) => f.map_err(JobEnd::failed)?,
        _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
    };
    job.rec.server_version = Some(facts.version.to_string());
    // "Original DB Size" is the source's, as for the capture that made the backup: the
    // target's size before the restore says nothing about what is restored.
    job.rec.database_size = backup.database_size;
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

    let catalog = engine.catalog.clone();
    let backup_id = backup.id;
    let layout = tokio::task::spawn_blocking(move || catalog.layout(backup_id))
        .await
        .map_err(JobEnd::failed)?
        .map_err(JobEnd::failed)?
        .and_then(|json| serde_json::from_str::<StoredLayout>(&json).ok())
        .filter(|l| l.archive.is_some() && l.is_consistent(backup.dump_size));
    let scratch = Scratch::create(engine.tmp_dir.join(job.rec.id.to_string())).map_err(|e| {
        JobEnd::failed(format!(
            "cannot create the restore's scratch directory: {e}"
        ))
    })?;
    let restorer = Restorer {
        ctx: job.ctx.clone(),
        exe: pg_restore,
        url,
        storage: engine.storage.clone(),
        warnings: Warnings::default(),
        extensions: extensions.to_vec(),
        keep_owners,
    };
    job.log(&format!(
        "Reading backup {} ({}) and checking its SHA-256",
        backup.id,
        bytes(backup.object_size.unwrap_or(0))
    ));
    match layout {
        Some(layout) => streamed(job, backup, &restorer, layout, jobs, &scratch).await,
        None => spooled(job, backup, &restorer, jobs, &scratch).await,
    }?;
    restorer.record_warnings(job);
    Ok(())
}

async fn streamed(
    job: &mut Job,
    backup: &TransferRecord,
    r: &Restorer,
    layout: StoredLayout,
    jobs: u32,
    scratch: &Scratch,
) -> Result<(), JobEnd> {
    let key = backup
        .object_key
        .clone()
        .ok_or_else(|| JobEnd::failed("the backup has no stored object"))?;
    let layout = Arc::new(layout);
    let archive: ArchiveIndex = layout.archive.clone().unwrap_or_default();
    let toc = scratch.0.join("toc.dump");

    // 1. Prove the object, and extract the header and TOC.
    let (storage, l, k, t, b, ctx) = (
        r.storage.clone(),
        layout.clone(),
        key.clone(),
        toc.clone(),
        backup.clone(),
        job.ctx.clone(),
    );
    tokio::task::spawn_blocking(move || {
        verify_and_extract_toc(storage.as_ref(), &b, &l, &k, &t, &ctx)
    })
    .await
    .map_err(JobEnd::failed)?
    .map_err(JobEnd::failed)?;
    check_readable(r, &format!("backup {}", backup.id), &toc).await?;
    job.log("Backup verified: checksum matches and pg_restore reads it");

    // 2. Empty the target (and create the extensions asked for).
    job.empty_target(&r.url).await?;
    r.create_extensions(job).await?;

    // 3. Schema, then data in parallel, then indexes and constraints.
    job.log("Creating the schema (pg_restore --section=pre-data)");
    let never = CancellationToken::new();
    let args = |a: &[&str]| -> Vec<OsString> { a.iter().map(OsString::from).collect() };
    // Like pg_restore itself, go on past errors (an object the target cannot take) and report
    // them all at the end; only a cancel stops everything at once.
    let mut errors: Vec<String> = Vec::new();
    let mut pre = args(&["--section=pre-data"]);
    pre.push(toc.clone().into_os_string());
    tolerate(r.step(pre, None, &never).await, &mut errors)?;

    let groups = data_groups(&archive);
    job.log(&format!(
        "Loading table data: {} data block(s) in {} stream(s), up to {jobs} at a time",
        archive.blocks.len(),
        groups.len()
    ));
    let queue = Arc::new(Mutex::new(groups));
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..jobs {
        let (r, queue, never, toc, key, layout) = (
            r.clone(),
            queue.clone(),
            never.clone(),
            toc.clone(),
            key.clone(),
            layout.clone(),
        );
        let list_dir = scratch.0.clone();
        workers.spawn(async move {
            let mut errors = Vec::new();
            let mut k = 0;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(group) = next else {
                    return Ok(errors);
                };
                k += 1;
                let list = list_dir.join(format!("list-{n}-{k}"));
                let ids: String = group.ids.iter().map(|id| format!("{id}\n")).collect();
                std::fs::write(&list, ids).map_err(JobEnd::failed)?;
                let mut a = vec![
                    OsString::from("--format=custom"),
                    OsString::from("--use-list"),
                ];
                a.push(list.into_os_string());
                let feed = Feed {
                    toc: toc.clone(),
                    key: key.clone(),
                    layout: layout.clone(),
                    ranges: group.ranges,
                };
                tolerate(r.step(a, Some(feed), &never).await, &mut errors)?;
            }
        });
    }
    let mut stopped = false;
    while let Some(done) = workers.join_next().await {
        match done.map_err(JobEnd::failed).and_then(|r| r) {
            Ok(mut e) => errors.append(&mut e),
            Err(JobEnd::Stopped) => stopped = true,
            Err(JobEnd::Failed(m)) => errors.push(m),
        }
    }
    if stopped || job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }

    job.log(&format!(
        "Building indexes and constraints (pg_restore --section=post-data --jobs {jobs})"
    ));
    let mut post = args(&["--section=post-data"]);
    post.push(format!("--jobs={jobs}").into());
    post.push(toc.into_os_string());
    tolerate(r.step(post, None, &never).await, &mut errors)?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(JobEnd::Failed(errors.join("; ")))
    }
}

/// Notes a failed step and goes on; passes a stop through.
fn tolerate(result: Result<(), JobEnd>, errors: &mut Vec<String>) -> Result<(), JobEnd> {
    match result {
        Ok(()) => Ok(()),
        Err(JobEnd::Failed(m)) => {
            errors.push(m);
            Ok(())
        }
        Err(JobEnd::Stopped) => Err(JobEnd::Stopped),
    }
}

/// One pg_restore process's share of the data: the TOC entries to restore (in stream order)
/// and the plain ranges holding their blocks.
#[derive(Debug)]
struct Group {
    ids: Vec<i64>,
    ranges: Vec<(u64, u64)>,
    bytes: u64,
}

/// Splits the data section into groups: each large table alone, consecutive small ones
/// together; entries of the data section that have no block (sequence values) in a group of
/// their own. Sorted so that `pop()` yields the largest first.
fn data_groups(archive: &ArchiveIndex) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut current: Option<Group> = None;
    for b in &archive.blocks {
        let size = b.end - b.start;
        match &mut current {
            Some(g) if g.bytes + size <= GROUP_BYTES => {
                g.ids.push(b.dump_id);
                if let Some(last) = g.ranges.last_mut().filter(|r| r.1 == b.start) {
                    last.1 = b.end;
                } else {
                    g.ranges.push((b.start, b.end));
                }
                g.bytes += size;
            }
            _ => {
                groups.extend(current.take());
                current = Some(Group {
                    ids: vec![b.dump_id],
                    ranges: vec![(b.start, b.end)],
                    bytes: size,
                });
            }
        }
    }
    groups.extend(current);
    let with_block: std::collections::HashSet<i64> =
        archive.blocks.iter().map(|b| b.dump_id).collect();
    let blockless: Vec<i64> = archive
        .entries
        .iter()
        .filter(|e| e.section == SECTION_DATA && !with_block.contains(&e.dump_id))
        .map(|e| e.dump_id)
        .collect();
    if !blockless.is_empty() {
        groups.push(Group {
            ids: blockless,
            ranges: Vec::new(),
            bytes: 0,
        });
    }
    groups.sort_by_key(|g| g.bytes);
    groups
}

/// Reads the whole stored object to prove its SHA-256 and size, then writes the archive's
/// header and TOC (decompressed) to `toc`.
pub(super) fn verify_and_extract_toc(
    storage: &dyn Storage,
    backup: &TransferRecord,
    layout: &StoredLayout,
    key: &str,
    toc: &Path,
    ctx: &JobCtx,
) -> io::Result<()> {
    let stored = StoreReader::open(storage, key).map_err(io::Error::other)?;
    let mut whole = HashingReader::new(stored);
    let mut buf = vec![0u8; CHUNK];
    loop {
        if ctx.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        match whole.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (sha, size) = whole.finish()?;
    if Some(&sha) != backup.sha256.as_ref() || Some(size) != backup.object_size {
        return Err(super::download::damaged(
            backup.id,
            &format!(
                "its SHA-256 is {sha} ({size} bytes) but {} was recorded",
                backup.sha256.as_deref().unwrap_or("nothing")
            ),
        ));
    }
    let toc_end = layout.archive.as_ref().map(|a| a.toc_end).unwrap_or(0);
    let mut head = layout
        .open_at(storage, key, 0)
        .map_err(io::Error::other)?
        .take(toc_end);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(toc)?;
    let mut magic = [0u8; 5];
    head.read_exact(&mut magic).map_err(|_| not_a_dump())?;
    if &magic != crate::stream::DUMP_MAGIC {
        return Err(not_a_dump());
    }
    out.write_all(&magic)?;
    let copied = io::copy(&mut head, &mut out)? + magic.len() as u64;
    if copied != toc_end {
        return Err(not_a_dump());
    }
    Ok(())
}

fn not_a_dump() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the backup is not a custom-format dump (it does not start with PGDMP)",
    )
}

async fn spooled(
    job: &mut Job,
    backup: &TransferRecord,
    r: &Restorer,
    jobs: u32,
    scratch: &Scratch,
) -> Result<(), JobEnd> {
    let path = scratch.0.join("backup.dump");
    let plain = PlainDump::open(r.storage.as_ref(), backup).map_err(JobEnd::failed)?;
    let (p, ctx) = (path.clone(), job.ctx.clone());
    tokio::task::spawn_blocking(move || spool(plain, &p, &ctx))
        .await
        .map_err(JobEnd::failed)?
        .map_err(JobEnd::failed)?;
    if job.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }
    restore_file(job, r, jobs, &path, &format!("backup {}", backup.id)).await
}

/// Restores a complete, seekable dump file: `pg_restore --list` must read it, then the
/// target is emptied and `pg_restore --jobs N` restores the file. `what` names the dump in
/// messages.
pub(super) async fn restore_file(
    job: &mut Job,
    r: &Restorer,
    jobs: u32,
    path: &Path,
    what: &str,
) -> Result<(), JobEnd> {
    check_readable(r, what, path).await?;
    job.log("Dump verified: pg_restore reads it");
    job.empty_target(&r.url).await?;
    r.create_extensions(job).await?;
    job.log(&format!("Restoring with pg_restore --jobs {jobs}"));
    let args = vec![
        OsString::from(format!("--jobs={jobs}")),
        path.as_os_str().to_owned(),
    ];
    r.step(args, None, &CancellationToken::new()).await
}

/// `pg_restore --list`: refuses what pg_restore cannot read before the target is touched.
async fn check_readable(r: &Restorer, what: &str, file: &Path) -> Result<(), JobEnd> {
    let mut list = tool_command(&r.exe, None);
    list.arg("--list").arg(file).keep_lines(1000);
    let out = list.output(None).await.map_err(JobEnd::failed)?;
    if !out.status.success() {
        return Err(JobEnd::failed(format!(
            "{what} is not a custom-format dump that pg_restore can read: {}",
            crate::pg::client::clean_libpq_message(&out.stderr.tail_text())
        )));
    }
    if r.ctx.is_cancelled() {
        return Err(JobEnd::Stopped);
    }
    Ok(())
}

/// Names in the log what the drop kept (objects this role may not drop), if anything.
pub(super) async fn log_kept(job: &Job, url: &crate::pg::PgUrl) {
    if let Ok(kept) = crate::pg::kept::kept_objects(&job.engine.tools, url).await
        && let Some(line) = crate::pg::kept::kept_line(&kept)
    {
        job.log(&line);
    }
}

impl Restorer {
    pub(super) fn new(job: &Job, exe: PathBuf, url: PgUrl) -> Restorer {
        Restorer {
            ctx: job.ctx.clone(),
            exe,
            url,
            storage: job.engine.storage.clone(),
            warnings: Warnings::default(),
            extensions: Vec::new(),
            keep_owners: false,
        }
    }

    /// Heroku's `--extensions`: `CREATE EXTENSION IF NOT EXISTS` each, in the emptied target,
    /// before any pg_restore; one that cannot be created fails the restore before data loads.
    async fn create_extensions(&self, job: &Job) -> Result<(), JobEnd> {
        for name in &self.extensions {
            job.log(&format!("Creating extension {name} (--extensions)"));
            let sql = format!(
                "CREATE EXTENSION IF NOT EXISTS {}",
                crate::pg::client::quote_ident(name)
            );
            let created = tokio::select! {
                c = crate::pg::client::query(&job.engine.tools, &self.url, &sql) => c,
                _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
            };
            created.map_err(|e| {
                JobEnd::failed(format!(
                    "could not create extension {name} (--extensions), so no data was loaded: {e}; have a superuser create it in the target, or restore without it"
                ))
            })?;
        }
        Ok(())
    }

    /// Logs each object the target refused as a `WARNING: ` line and counts them on the
    /// record: the restore completed, "with N warnings" as Heroku says.
    pub(super) fn record_warnings(&self, job: &mut Job) {
        let warnings =
            std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()));
        for w in &warnings {
            job.log(&w.warning_line());
        }
        job.rec.warnings = u32::try_from(warnings.len()).unwrap_or(u32::MAX);
    }

    /// Runs one pg_restore into the target with `args` (plus the common ones), fed on stdin
    /// when `feed` is given. Stops it when the transfer is cancelled or `abort` fires.
    async fn step(
        &self,
        args: Vec<OsString>,
        feed: Option<Feed>,
        abort: &CancellationToken,
    ) -> Result<(), JobEnd> {
        let parser = Arc::new(Mutex::new(Parser::default()));
        let mut cmd = tool_command(&self.exe, Some(&self.url));
        cmd.args(["--verbose", "--no-password"]);
        if !self.keep_owners {
            cmd.args(["--no-owner", "--no-acl"]);
        }
        cmd.arg("--dbname")
            .arg(self.url.without_password())
            .args(&args)
            .log_to(parsed_sink(&self.ctx, &parser));
        let mut feeder = None;
        if let Some(feed) = feed {
            let (reader, writer) = io::pipe().map_err(JobEnd::failed)?;
            cmd.stdin(Stdio::from(reader));
            let (storage, ctx) = (self.storage.clone(), self.ctx.clone());
            feeder = Some(tokio::task::spawn_blocking(move || {
                feed_blocks(storage.as_ref(), &feed, writer, &ctx)
            }));
        }
        let child = cmd.spawn().map_err(JobEnd::failed)?;
        drop(cmd);
        let finished = child.wait(self.ctx.cancelled(), Some(abort)).await;
        let fed = match feeder {
            Some(f) => f.await.map_err(JobEnd::failed)?,
            None => Ok(()),
        };
        if self.ctx.is_cancelled() || abort.is_cancelled() {
            return Err(JobEnd::Stopped);
        }
        let finished = finished.map_err(JobEnd::failed)?;
        match fed {
            // A broken pipe only means pg_restore stopped reading; its own error says why.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(JobEnd::failed(format!(
                "could not read the backup: {e} (pg_restore, fed a cut-off stream: {})",
                finished.stderr.summary()
            ))),
            // Only objects the target may refuse without losing data failed: warnings.
            _ if !finished.success()
                && let Some(mut w) =
                    parser.lock().unwrap_or_else(|p| p.into_inner()).warnings() =>
            {
                self.warnings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut w);
                Ok(())
            }
            _ if !finished.success() => Err(JobEnd::failed(format!(
                "pg_restore failed ({}): {}",
                finished.status,
                finished.stderr.summary()
            ))),
            Err(e) => Err(JobEnd::failed(format!("could not read the backup: {e}"))),
            Ok(()) => Ok(()),
        }
    }
}

/// A pg_restore's stderr sink: each line to the transfer's log and to `parser`.
pub(super) fn parsed_sink(ctx: &JobCtx, parser: &Arc<Mutex<Parser>>) -> crate::proc::Sink {
    let (ctx, parser) = (ctx.clone(), parser.clone());
    Arc::new(move |line: &str| {
        parser.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        ctx.log(line);
    })
}

/// Writes the TOC and then the plain ranges to a pg_restore's stdin.
fn feed_blocks(
    storage: &dyn Storage,
    feed: &Feed,
    pipe: io::PipeWriter,
    ctx: &JobCtx,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(CHUNK, pipe);
    io::copy(&mut File::open(&feed.toc)?, &mut out)?;
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in &feed.ranges {
        let mut part = feed
            .layout
            .open_at(storage, &feed.key, *start)
            .map_err(io::Error::other)?
            .take(end - start);
        loop {
            if ctx.is_cancelled() {
                return Err(io::Error::other("cancelled"));
            }
            let n = match part.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&buf[..n])?;
            ctx.add_progress(n as u64);
        }
    }
    out.flush()
}
