//! A restore from an http(s) URL (a presigned object-store link, say): the file is
//! downloaded as a stream into scratch space — checked to be a custom-format dump from its
//! first bytes, bounded in size, with connect and read timeouts and a bounded number of
//! redirects — then proven complete and restored like a spooled backup.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::restore::{Restorer, Scratch, restore_file};
use super::{Job, JobEnd};
use crate::format::bytes;
use crate::pg::client::server_facts;
use crate::pg::{PgTool, PgUrl, archive};

pub use crate::config::DownloadLimits;

/// The URL as shown: without credentials, query (a presigned URL's signature) or fragment.
pub fn shown_url(source: &str) -> String {
    match url::Url::parse(source) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(a URL that cannot be parsed)".into(),
    }
}

/// Where a restore's dump comes from when it is not a stored backup.
#[derive(Debug)]
pub enum DumpSource {
    /// An http(s) URL, downloaded by the service.
    Url(String),
    /// A file the CLI uploaded, already in the scratch space.
    Uploaded { file: UploadedFile, name: String },
}

/// An uploaded dump waiting in scratch space. It is removed when dropped, so that a restore
/// that ends before using it (cancelled while waiting for a slot, say) leaves nothing behind;
/// a restore that uses it moves it into its own scratch directory first.
#[derive(Debug)]
pub struct UploadedFile(pub PathBuf);

impl Drop for UploadedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl DumpSource {
    /// How the source is shown: never with credentials or a presigned signature.
    pub fn shown(&self) -> String {
        match self {
            DumpSource::Url(u) => shown_url(u),
            DumpSource::Uploaded { name, .. } => format!("uploaded file {name}"),
        }
    }
}

pub(super) async fn run(
    job: &mut Job,
    source: DumpSource,
    url: PgUrl,
    jobs: u32,
) -> Result<(), JobEnd> {
    let engine = job.engine.clone();
    let shown = source.shown();
    job.log(&format!("Restoring {shown} into {}", url.redacted()));
    let facts = tokio::select! {
        f = server_facts(&engine.tools, &url) => f.map_err(JobEnd::failed)?,
        _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
    };
    job.rec.server_version = Some(facts.version.to_string());
    // The size of the database the dump came from is not known; the target's before the
    // restore would be the wrong number under "Original DB Size".
    job.rec.database_size = None;
    let pg_restore = engine
        .tools
        .newest(PgTool::Restore)
        .map_err(JobEnd::failed)?;
    job.rec.tool_version = engine.tools.version_of(&pg_restore).map(|v| v.to_string());
    job.save().await?;
    let scratch = Scratch::create(engine.tmp_dir.join(job.rec.id.to_string())).map_err(|e| {
        JobEnd::failed(format!(
            "cannot create the restore's scratch directory: {e}"
        ))
    })?;
    let path = scratch.path().join("download.dump");

    let size = match &source {
        DumpSource::Url(u) => {
            let fetched = scratch.path().join("download.part");
            let (size, zstd) = download(job, u, &shown, &fetched, engine.download_limits).await?;
            if zstd {
                job.log(&format!(
                    "Have {} of zstd (a pgbackups presigned link, say); decompressing",
                    bytes(size)
                ));
                let (from, to, ctx) = (fetched.clone(), path.clone(), job.ctx.clone());
                let max = engine.download_limits.max_bytes;
                tokio::task::spawn_blocking(move || decompress(&from, &to, max, &ctx))
                    .await
                    .map_err(JobEnd::failed)?
                    .map_err(|e| JobEnd::failed(format!("{shown}: {e}")))?
            } else {
                std::fs::rename(&fetched, &path).map_err(JobEnd::failed)?;
                size
            }
        }
        DumpSource::Uploaded { file, .. } => {
            std::fs::rename(&file.0, &path).map_err(JobEnd::failed)?;
            std::fs::metadata(&path).map_err(JobEnd::failed)?.len()
        }
    };
    job.rec.dump_size = Some(size);
    job.log(&format!(
        "Have {}; checking that the dump is complete",
        bytes(size)
    ));
    let p = path.clone();
    let patches = tokio::task::spawn_blocking(move || -> Result<usize, DumpFileError> {
        let file = File::open(&p)?;
        let index = archive::scan(BufReader::with_capacity(1 << 20, &file))?
            .ok_or(DumpFileError::Incomplete)?;
        let patches = index.patches();
        let file = std::fs::OpenOptions::new().write(true).open(&p)?;
        for (pos, b) in &patches {
            file.write_all_at(b, *pos)?;
        }
        Ok(patches.len())
    })
    .await
    .map_err(JobEnd::failed)?
    .map_err(|e| JobEnd::failed(format!("{shown}: {e}")))?;
    if patches > 0 {
        job.log(&format!(
            "Filled in the data offsets of {patches} table(s) for pg_restore"
        ));
    }
    let r = Restorer::new(job, pg_restore, url);
    restore_file(job, &r, jobs, &path, &shown).await?;
    r.record_warnings(job);
    Ok(())
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What is wrong with a downloaded file, or with reading or writing it in the scratch
/// directory.
#[derive(Debug, thiserror::Error)]
enum DumpFileError {
    #[error("cannot read the scratch file: {0}")]
    ReadScratch(#[source] io::Error),
    #[error("cannot write the scratch file: {0}")]
    WriteScratch(#[source] io::Error),
    #[error("cannot decompress: {0}")]
    Decompress(#[source] io::Error),
    #[error("the zstd data is damaged or cut off: {0}")]
    Damaged(#[source] io::Error),
    #[error("cancelled")]
    Cancelled,
    /// What the file holds instead of a dump.
    #[error("it is zstd-compressed, and inside {0}")]
    NotADump(String),
    #[error("decompressed, the file is over the limit of {} (PGBACKUPS_URL_MAX_BYTES)", bytes(*.0))]
    TooBig(u64),
    #[error(
        "the file is not a complete custom-format dump: it ends early (a download cut off?) or is of an archive version this pgbackups cannot read"
    )]
    Incomplete,
    /// Reading the dump's structure or filling in its data offsets failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Decompresses a downloaded zstd file into the dump `to`, proving it holds a custom-format
/// dump; removes `from`. Returns the dump's size.
fn decompress(
    from: &Path,
    to: &Path,
    max_bytes: u64,
    ctx: &super::job::JobCtx,
) -> Result<u64, DumpFileError> {
    let input = File::open(from).map_err(DumpFileError::ReadScratch)?;
    let mut decoder = zstd::stream::read::Decoder::new(input).map_err(DumpFileError::Decompress)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(DumpFileError::WriteScratch)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        if ctx.is_cancelled() {
            return Err(DumpFileError::Cancelled);
        }
        let n = match std::io::Read::read(&mut decoder, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DumpFileError::Damaged(e)),
        };
        if !crate::stream::starts_like_a_dump(written, &buf[..n]) {
            return Err(DumpFileError::NotADump(
                not_a_dump_hint(&buf[..n])
                    .trim_start_matches("this is ")
                    .to_string(),
            ));
        }
        written += n as u64;
        if written > max_bytes {
            return Err(DumpFileError::TooBig(max_bytes));
        }
        out.write_all(&buf[..n])
            .map_err(DumpFileError::WriteScratch)?;
    }
    out.sync_all().map_err(DumpFileError::WriteScratch)?;
    let _ = std::fs::remove_file(from);
    Ok(written)
}

/// Streams `source` into `path`; returns its size and whether it is zstd-compressed (a
/// presigned link to a stored backup) rather than a plain dump.
async fn download(
    job: &Job,
    source: &str,
    shown: &str,
    path: &Path,
    limits: super::restore_url::DownloadLimits,
) -> Result<(u64, bool), JobEnd> {
    let fail = |what: String| JobEnd::failed(format!("{shown}: {what}"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(limits.read_timeout)
        .build()
        .map_err(|e| fail(format!("cannot create an HTTP client: {e}")))?;
    let explain = |e: reqwest::Error| {
        if e.is_timeout() {
            format!(
                "the server sent nothing for {} s; try again, or check the URL",
                limits.read_timeout.as_secs()
            )
        } else if e.is_redirect() {
            "too many redirects (more than 5)".to_string()
        } else if e.is_connect() {
            "could not connect to the server".to_string()
        } else if e.is_body() || e.is_decode() {
            "the download broke off before the end of the file".to_string()
        } else {
            e.without_url().to_string()
        }
    };
    let mut resp = tokio::select! {
        r = client.get(source).send() => r.map_err(|e| fail(explain(e)))?,
        _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
    };
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(match status.as_u16() {
            403 => "the server refused the download (403 Forbidden): the link may have expired, or need a signature".into(),
            404 => "there is no file at this URL (404 Not Found)".into(),
            401 => "the server wants credentials (401 Unauthorized): use a presigned link".into(),
            _ => format!("the server answered {status}"),
        }));
    }
    if let Some(len) = resp.content_length().filter(|l| *l > limits.max_bytes) {
        return Err(fail(format!(
            "the file is {}, over the limit of {} (PGBACKUPS_URL_MAX_BYTES)",
            bytes(len),
            bytes(limits.max_bytes)
        )));
    }
    let expected = resp.content_length();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(format!("cannot write the scratch file: {e}")))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    let mut zstd = false;
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c.map_err(|e| fail(format!("{} (after {})", explain(e), bytes(written))))?,
            _ = job.ctx.cancelled().cancelled() => return Err(JobEnd::Stopped),
        };
        let Some(chunk) = chunk else { break };
        if written == 0 && chunk.starts_with(&ZSTD_MAGIC) {
            zstd = true;
        }
        if !zstd && !crate::stream::starts_like_a_dump(written, &chunk) {
            return Err(fail(not_a_dump_hint(&chunk)));
        }
        written += chunk.len() as u64;
        if written > limits.max_bytes {
            return Err(fail(format!(
                "the file is over the limit of {} (PGBACKUPS_URL_MAX_BYTES)",
                bytes(limits.max_bytes)
            )));
        }
        out.write_all(&chunk)
            .map_err(|e| fail(format!("cannot write the scratch file: {e}")))?;
        job.ctx.add_progress(chunk.len() as u64);
    }
    out.flush()
        .map_err(|e| fail(format!("cannot write the scratch file: {e}")))?;
    if written == 0 {
        return Err(fail("the file is empty".into()));
    }
    if expected.is_some_and(|n| n != written) {
        return Err(fail(format!(
            "the download broke off after {} of {}",
            bytes(written),
            bytes(expected.unwrap_or(0))
        )));
    }
    Ok((written, zstd))
}

/// What a file that does not start with `PGDMP` probably is.
fn not_a_dump_hint(head: &[u8]) -> String {
    let start = String::from_utf8_lossy(&head[..head.len().min(64)]).to_lowercase();
    if start.trim_start().starts_with('<') {
        "this is a web page, not a dump: use the file's direct (or presigned) URL".into()
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "this is zstd-compressed: decompress it first (zstd -d), or restore from its URL".into()
    } else if head.starts_with(&[0x1f, 0x8b]) {
        "this is gzip-compressed: decompress it first".into()
    } else if start.starts_with("--") || start.contains("postgresql database dump") {
        "this is a plain-SQL dump: restore it with psql; pgbackups restores custom-format dumps (pg_dump -Fc)".into()
    } else {
        "this is not a custom-format dump (pg_dump -Fc): it does not start with PGDMP".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_urls_without_secrets_and_names_what_is_not_a_dump() {
        assert_eq!(
            shown_url("https://u:p@bucket.s3.example.com/b.dump?X-Amz-Signature=abc#x"),
            "https://bucket.s3.example.com/b.dump"
        );
        assert!(not_a_dump_hint(b"<!DOCTYPE html><html>").contains("web page"));
        assert!(not_a_dump_hint(&[0x28, 0xb5, 0x2f, 0xfd, 0]).contains("zstd"));
        assert!(not_a_dump_hint(b"--\n-- PostgreSQL database dump").contains("plain-SQL"));
    }
}
