//! A capture: `pg_dump -Fc` of a database, streamed through zstd and SHA-256 into storage.
//!
//! ```text
//! pg_dump (child, custom format, uncompressed) ─pipe─▶ progress ─▶ zstd ─▶ SHA-256 ─▶ storage
//! ```
//! pg_dump's own zlib is single-threaded and slow; zstd on our side is several times faster
//! and compresses better. Downloads and restores decompress, so users always get a dump the
//! stock `pg_restore` reads. The object is committed only after pg_dump exited cleanly, and
//! the backup is marked succeeded only after the commit.

use std::io::{self, BufReader};
use std::process::Stdio;

use super::job::JobCtx;
use super::manifest;
use super::{Job, JobEnd};
use crate::format::bytes;
use crate::pg::client::{server_facts, tool_command};
use crate::pg::{PgTool, PgUrl, archive};
use crate::storage::ObjectWriter;
use crate::stream::framed::{FramedEncoder, StoredLayout};
use crate::stream::{CHUNK, Tee};

/// What the compression pipeline hands back: the uncommitted object and what it measured.
struct Captured {
    writer: Box<dyn ObjectWriter>,
    sha256: String,
    stored_bytes: u64,
    dump_bytes: u64,
    magic_ok: bool,
    layout: StoredLayout,
}

pub(super) async fn run(job: &mut Job, url: PgUrl) -> Result<(), JobEnd> {
    let engine = job.engine.clone();
    job.log(&format!("Connecting to {}", url.redacted()));
    if !job.rec.filter.is_empty() {
        job.log(&format!(
            "Partial capture: {}",
            job.rec.filter.args().join(" ")
        ));
    }
    let facts = tokio::select! {
        f = server_facts(&engine.tools, &url) => f.map_err(JobEnd::failed)?,
        _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
    };
    job.report_unmatched_exclusions(&url).await;
    let pg_dump = engine
        .tools
        .find(PgTool::Dump, facts.version.major)
        .map_err(JobEnd::failed)?;
    let tool_version = engine.tools.version_of(&pg_dump);
    job.rec.server_version = Some(facts.version.to_string());
    job.rec.database_size = Some(facts.database_size);
    job.rec.tool_version = tool_version.map(|v| v.to_string());
    let key = format!(
        "backups/{}-{}.dump.zst",
        job.rec.id,
        engine.clock.now().strftime("%Y%m%dT%H%M%SZ")
    );
    job.rec.object_key = Some(key.clone());
    job.rec.compression = Some(format!("zstd-{}", engine.zstd_level));
    // Saved before anything is written, so that recovery after a crash knows what to remove.
    job.save().await?;
    job.log(&format!(
        "PostgreSQL {} server, database size {}; dumping with {} ({})",
        facts.version,
        bytes(facts.database_size),
        tool_version
            .map(|v| format!("pg_dump {v}"))
            .unwrap_or_else(|| "pg_dump".into()),
        pg_dump.display()
    ));

    let storage = engine.storage.clone();
    let writer = tokio::task::spawn_blocking(move || storage.create(&key))
        .await
        .map_err(JobEnd::failed)?
        .map_err(JobEnd::failed)?;

    // Our own pipe: a blocking reader for the pipeline thread, pg_dump's stdout on the other end.
    let (reader, pipe_writer) = io::pipe().map_err(JobEnd::failed)?;
    let mut cmd = tool_command(&pg_dump, Some(&url));
    cmd.args([
        "--format=custom",
        "--compress=0",
        "--verbose",
        "--no-password",
        "--dbname",
        &url.without_password(),
    ])
    .args(job.rec.filter.args())
    .stdout(Stdio::from(pipe_writer))
    .log_to(job.ctx.sink());
    let child = cmd.spawn().map_err(JobEnd::failed)?;
    // The command holds our copy of the pipe's write end; without dropping it the pipeline
    // would never see the end of the dump.
    drop(cmd);

    let ctx = job.ctx.clone();
    let (level, workers) = (engine.zstd_level, engine.zstd_workers);
    let pipeline =
        tokio::task::spawn_blocking(move || compress_into(reader, writer, level, workers, &ctx));

    let finished = child.wait(job.ctx.cancelled(), None).await;
    let piped = pipeline.await.map_err(JobEnd::failed)?;

    // Aborting may wait on the store (an object store's multipart abort): off the runtime.
    let abort = |w: Box<dyn ObjectWriter>| tokio::task::spawn_blocking(move || w.abort());
    if job.ctx.is_cancelled() {
        if let Ok(c) = piped {
            let _ = abort(c.writer).await;
        }
        return Err(JobEnd::Stopped);
    }
    let captured = match piped {
        Ok(c) => c,
        Err(e) => return Err(JobEnd::failed(format!("could not store the dump: {e}"))),
    };
    let finished = finished.map_err(JobEnd::failed)?;
    if let Err(failed) = finished.check() {
        let _ = abort(captured.writer).await;
        return Err(JobEnd::failed(failed));
    }
    if !captured.magic_ok {
        let _ = abort(captured.writer).await;
        return Err(JobEnd::failed(
            "pg_dump's output is not a custom-format dump (it does not start with PGDMP)",
        ));
    }

    // A test sees the capture running with all its bytes counted for five seconds.
    super::hold::pause_async("before-commit").await;
    job.log("Dump finished; making the stored object durable");
    let Captured {
        writer,
        sha256,
        stored_bytes,
        dump_bytes,
        layout,
        ..
    } = captured;
    let committed = tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(JobEnd::failed)?
        .map_err(|e| JobEnd::failed(format!("could not store the dump: {e}")))?;
    if committed != stored_bytes {
        return Err(JobEnd::failed(format!(
            "the stored object has {committed} bytes, but {stored_bytes} were written"
        )));
    }
    if layout.archive.is_none() {
        job.log("Could not index the dump's data blocks; restores of it will scan for them");
    }
    job.rec.sha256 = Some(sha256.clone());
    job.rec.object_size = Some(stored_bytes);
    job.rec.dump_size = Some(dump_bytes);
    job.rec.encryption = engine.encryption.clone();
    // Roles are kept after the dump, so that a failed dump never leaves them behind alone.
    if let Some(key) = job.rec.object_key.clone() {
        job.rec.roles = super::roles::keep(job, &url, facts.version.major, &key).await;
    }
    // The manifest beside the object lets `catalog:rebuild` find this backup from the store
    // alone. A backup without one is not finished.
    let mut finished = job.rec.clone();
    finished.state = crate::catalog::TransferState::Succeeded;
    finished.finished_at = Some(engine.clock.now());
    let (storage, l) = (engine.storage.clone(), layout.clone());
    tokio::task::spawn_blocking(move || manifest::write(storage.as_ref(), &finished, &l))
        .await
        .map_err(JobEnd::failed)?
        .map_err(|e| JobEnd::failed(format!("could not store the backup's manifest: {e}")))?;
    let layout = serde_json::to_string(&layout).map_err(JobEnd::failed)?;
    let catalog = engine.catalog.clone();
    let id = job.rec.id;
    tokio::task::spawn_blocking(move || catalog.set_layout(id, &layout))
        .await
        .map_err(JobEnd::failed)?
        .map_err(JobEnd::failed)?;
    // The percentage is against the database's size, as `backups:info` and Heroku give it.
    job.log(&format!(
        "Stored {} ({} of the database's {}; dump {}), SHA-256 {sha256}",
        bytes(stored_bytes),
        crate::format::ratio(job.rec.database_size.unwrap_or(0), stored_bytes),
        bytes(job.rec.database_size.unwrap_or(0)),
        bytes(dump_bytes),
    ));
    Ok(())
}

/// The blocking half of a capture: reads the dump from the pipe, counts it, compresses it in
/// frames and hashes what is stored, and reads the archive's structure on the way (for
/// parallel restores). Stops early when the transfer is cancelled.
fn compress_into(
    reader: io::PipeReader,
    writer: Box<dyn ObjectWriter>,
    level: i32,
    workers: u32,
    ctx: &JobCtx,
) -> io::Result<Captured> {
    let encoder = FramedEncoder::new(writer, level, workers)?;
    let mut tee = BufReader::with_capacity(CHUNK, Tee::new(reader, encoder, ctx));
    let archive = archive::scan(&mut tee)?;
    let tee = tee.into_inner();
    let magic_ok = tee.starts_with_magic();
    let dump_bytes = ctx.bytes();
    let compressed = tee.out.finish()?;
    Ok(Captured {
        writer: compressed.inner,
        sha256: compressed.sha256,
        stored_bytes: compressed.bytes,
        dump_bytes,
        magic_ok,
        layout: StoredLayout {
            frames: compressed.frames,
            archive,
        },
    })
}
