//! `backups:download`: a backup as the compressed custom-format dump `pg_dump -Fc` would have
//! written, into a file that never replaces another (Heroku's `latest.dump`, then
//! `latest.dump.1`, ...).
//!
//! The service sends the stored object (the smallest form: the dump compressed with zstd),
//! with its SHA-256; this side undoes the zstd, compresses each data block with gzip as
//! `pg_dump -Fc` does, and, the file being seekable, fills in the data offsets that let
//! `pg_restore --jobs` go straight to each table. The SHA-256 of what arrived is checked before
//! the file takes its name: a download is whole and right, or not there.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;

use super::client::{CliError, Client};
use super::shared::{Env, id_or_latest};
use crate::api::{BACKUP_HEADER, SHA256_HEADER};
use crate::format;
use crate::pg::archive::gzip::{self, Rewritten};
use crate::stream::HashingReader;

/// How many numbered names are tried before giving up (`latest.dump.1` ... `.999`).
const MAX_SUFFIX: u32 = 999;

/// `backups:download [ID] [-o FILE]`.
pub async fn download(id: Option<String>, output: &Path, env: &Env) -> Result<i32, CliError> {
    let c = Client::connect(env)?;
    let id_part = id_or_latest(id)?;
    let resp = c
        .send(
            c.request(Method::GET, &format!("/backups/{id_part}/download"))
                .query(&[("form", "zstd")]),
        )
        .await?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let backup = header(BACKUP_HEADER).unwrap_or(id_part);
    let Some(sha256) = header(SHA256_HEADER) else {
        return Err(CliError::msg(format!(
            "the service sent {backup} without its SHA-256, so the download cannot be checked; is the service older than this CLI? Upgrade it, or use `pgbackups backups:url {backup}` and curl"
        )));
    };
    let size = resp.content_length();

    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    if output.is_dir() {
        return Err(CliError::msg(format!(
            "{} is a directory; pass the file to write, such as {}",
            output.display(),
            output.join("latest.dump").display()
        )));
    }
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::msg(format!("{} is not a file name", output.display())))?;
    let tmp = dir.join(format!(".{name}.part-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(CliError::io(format!("cannot create {}", tmp.display())))?;
    let part = Part(tmp.clone());

    let bar = progress_bar(size, output);
    let progress = bar.clone();
    let body = resp
        .bytes_stream()
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64))
        .map_err(io::Error::other);
    let body = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
    let written = tokio::task::spawn_blocking(move || rewrite(body, file))
        .await
        .map_err(|e| CliError::msg(format!("the download stopped: {e}")))?;
    bar.finish_and_clear();
    let (received, got_sha, written, compressed) = written.map_err(|e| {
        CliError::msg(format!(
            "the download of {backup} failed ({e}); nothing was written to {}. Try again; if it fails again, check the backup with `pgbackups backups:verify {backup}`",
            output.display()
        ))
    })?;
    if got_sha != sha256 || size.is_some_and(|n| n != received) {
        return Err(CliError::msg(format!(
            "the download of {backup} arrived damaged or cut off ({received} bytes with SHA-256 {got_sha}, but the service sent {sha256}); nothing was written to {}. Try again",
            output.display()
        )));
    }
    let path = take_free_name(&part.0, output)?;
    drop(part);
    let _ = crate::durable::fsync_dir(&dir);
    println!(
        "Downloaded {backup} to {} ({}), a{} custom-format dump: `pg_restore --jobs 4 -d DATABASE {}` restores it.",
        path.display(),
        format::bytes(written),
        if compressed {
            " compressed"
        } else {
            "n uncompressed"
        },
        path.display()
    );
    Ok(0)
}

/// The scratch file of a download, removed unless it took its name.
struct Part(PathBuf);

impl Drop for Part {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A progress bar with rate and ETA on a terminal; hidden otherwise.
fn progress_bar(size: Option<u64>, output: &Path) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match size {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    let template = "Downloading {msg}... {bar:30} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(output.display().to_string());
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

/// Reads the stored object from `body` (zstd), writes the gzip-compressed dump to `file`, fills
/// in its data offsets and makes it durable. Returns the bytes received, their SHA-256, the
/// size written, and whether it was compressed (an archive of a version this build does not
/// know is copied as it is).
fn rewrite(body: impl io::Read, file: File) -> io::Result<(u64, String, u64, bool)> {
    let hashed = HashingReader::new(body);
    let mut decoder = zstd::stream::read::Decoder::new(hashed)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let rewritten = gzip::gzip(
        BufReader::with_capacity(1 << 20, &mut decoder),
        &mut out,
        gzip::DEFAULT_LEVEL,
        gzip::workers(16),
    )?;
    out.flush()?;
    drop(out);
    let (sha, received) = decoder.finish().into_inner().finish()?;
    let compressed = matches!(rewritten, Rewritten::Compressed { .. });
    if let Rewritten::Compressed { index } = rewritten {
        for (pos, bytes) in index.patches() {
            file.write_all_at(&bytes, pos)?;
        }
    }
    file.sync_all()?;
    let written = file.metadata()?.len();
    Ok((received, sha, written, compressed))
}

/// Gives `part` the name `output`, or the first of `output.1`, `output.2`, ... that is free:
/// a download never replaces a file (a hard link fails rather than overwrite, so two
/// downloads at once cannot take the same name).
fn take_free_name(part: &Path, output: &Path) -> Result<PathBuf, CliError> {
    for n in 0..=MAX_SUFFIX {
        let candidate = if n == 0 {
            output.to_path_buf()
        } else {
            let mut s = output.as_os_str().to_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        let linked = match std::fs::hard_link(part, &candidate) {
            // A file system without hard links (FAT, some network mounts): a rename that
            // refuses to replace does the same.
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                rename_noreplace(part, &candidate)
            }
            other => other,
        };
        match linked {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(CliError::io(format!(
                    "cannot create {}",
                    candidate.display()
                ))(e));
            }
        }
    }
    Err(CliError::msg(format!(
        "{} and {} numbered copies of it exist already; pass another name with --output",
        output.display(),
        MAX_SUFFIX
    )))
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}
