//! A restore of a dump sent in the request body: `backups:restore --file` (an uploaded file)
//! and `push` (the user's local pg_dump, compressed with zstd on the way). The body is spooled
//! to scratch space first and restored only once it has arrived whole, so a body that breaks
//! off (the local pg_dump failed, the connection dropped) never touches the target.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use futures_util::StreamExt;

use super::error::UploadError;
use super::work::Held;
use super::{Engine, TransferError, Work, atomic, blocking, check_confirm, restore_url};
use crate::catalog::{Origin, TransferKind, TransferRecord, TransferState};
use crate::pg::PgUrl;
use crate::pg::client::{COUNT_TABLES_SQL, first_value, query};

/// What an upload is, besides its target.
#[derive(Clone, Copy, Debug)]
pub struct Upload<'a> {
    /// The file's name (for a push: the local database's name), for display.
    pub name: &'a str,
    /// A push: the target needs a confirmation only if it has tables (Heroku's pg:push).
    pub push: bool,
    /// The body is zstd-compressed.
    pub zstd: bool,
}

impl Engine {
    /// Checks an upload's target and confirmation as [`Engine::start_restore_from_upload`]
    /// would, without a body: the CLI calls it first, so that it asks for the name on a
    /// terminal before it sends anything, and sends the file (or runs pg_dump) once.
    pub async fn check_upload(
        self: &Arc<Self>,
        upload: Upload<'_>,
        database: Option<&str>,
        confirm: Option<&str>,
    ) -> Result<(), TransferError> {
        self.upload_target(upload, database, confirm)
            .await
            .map(drop)
    }

    /// The upload's target, confirmed and held.
    async fn upload_target(
        self: &Arc<Self>,
        upload: Upload<'_>,
        database: Option<&str>,
        confirm: Option<&str>,
    ) -> Result<(String, PgUrl, Held), TransferError> {
        let (engine, database) = (self.clone(), database.map(str::to_string));
        let file_confirm = (!upload.push).then(|| confirm.map(str::to_string));
        let (label, url, held) = blocking(move || {
            let (label, url) = engine.registry.resolve(database.as_deref())?;
            // A file needs the confirmation whatever the target holds, checked before the
            // hold as every restore does; a push's rule needs the target's tables (below).
            if let Some(confirm) = file_confirm {
                check_confirm(&label, confirm.as_deref())?;
            }
            let held = Held::target(engine.claims.hold_target(&url, "a restore being started")?);
            Ok((label, url, held))
        })
        .await
        .map_err(|e| match e {
            // `pgbackups push` names its target by its registered name only.
            TransferError::UnknownDatabase(n) if upload.push => {
                TransferError::UnknownForPullPush(n)
            }
            other => other,
        })?;
        if upload.push {
            self.check_push_target(&label, &url, confirm).await?;
        }
        Ok((label, url, held))
    }

    /// Starts a restore of an uploaded dump: `body` is streamed into scratch space (checked to
    /// start like a custom-format dump, within the size limit, decompressed on the way when it
    /// is zstd), then restored as from a URL.
    pub async fn start_restore_from_upload(
        self: &Arc<Self>,
        upload: Upload<'_>,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
        mut body: impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin,
    ) -> Result<TransferRecord, TransferError> {
        super::start::check_jobs(jobs)?;
        let shown: String = upload
            .name
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let source = if upload.push {
            format!("local database {shown} (pushed)")
        } else {
            format!("uploaded file {shown}")
        };
        let (label, url, held) = self.upload_target(upload, database, confirm).await?;
        let engine = self.clone();
        let (held, mut rec) = blocking(move || {
            let mut rec = engine.new_transfer('r', TransferKind::Restore, Origin::Manual, label)?;
            held.name(&rec);
            rec.source = Some(source);
            engine.catalog.save_transfer(&rec)?;
            Ok((held, rec))
        })
        .await?;
        let path = self.tmp_dir.join(format!("upload-{}.dump", rec.id));
        let limit = self.download_limits.max_bytes;
        let received: Result<u64, UploadError> = async {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(UploadError::Scratch)?;
            let mut scratch = Scratch {
                out: std::io::BufWriter::with_capacity(1 << 20, file),
                n: 0,
                limit,
            };
            let mut unzstd = match upload.zstd {
                true => Some(Unzstd::new().map_err(UploadError::Zstd)?),
                false => None,
            };
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(UploadError::BrokeOff)?;
                match &mut unzstd {
                    Some(z) => z.feed(&chunk, &mut scratch)?,
                    None => scratch.take(&chunk)?,
                }
            }
            if let Some(z) = &unzstd {
                z.check_whole()?;
            }
            scratch.out.flush().map_err(UploadError::Scratch)?;
            if scratch.n == 0 {
                return Err(UploadError::Empty);
            }
            Ok(scratch.n)
        }
        .await;
        if let Err(e) = received {
            let _ = std::fs::remove_file(&path);
            rec.state = TransferState::Failed;
            rec.error = Some(format!("{e}. The target database was not changed"));
            rec.finished_at = Some(self.clock.now());
            let catalog = self.catalog.clone();
            blocking(move || Ok(catalog.save_transfer(&rec)?)).await?;
            return Err(TransferError::Upload(e));
        }
        self.launch(
            rec.clone(),
            held,
            Work::RestoreUrl {
                source: restore_url::DumpSource::Uploaded {
                    file: restore_url::UploadedFile(path),
                    name: shown,
                },
                url,
                jobs,
                atomic,
            },
        );
        Ok(rec)
    }

    /// Heroku's pg:push rule: a target without tables is pushed into as it is; one with tables
    /// only when `confirm` names it.
    async fn check_push_target(
        &self,
        label: &str,
        url: &PgUrl,
        confirm: Option<&str>,
    ) -> Result<(), TransferError> {
        let tables = query(&self.tools, url, COUNT_TABLES_SQL)
            .await
            .map_err(|e| TransferError::Target(e.to_string()))?;
        let count: u64 = first_value(&tables).unwrap_or(0);
        let word = super::confirm_word(label);
        if count > 0 && confirm.map(str::trim) != Some(word.as_str()) {
            return Err(TransferError::NotEmpty {
                target: label.to_string(),
                tables: count,
                expected: word,
            });
        }
        Ok(())
    }
}

/// The scratch file an upload is spooled into, checked as it grows.
struct Scratch {
    out: std::io::BufWriter<std::fs::File>,
    n: u64,
    limit: u64,
}

impl Scratch {
    /// Appends a piece of the plain dump.
    fn take(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        if !crate::stream::starts_like_a_dump(self.n, chunk) {
            return Err(UploadError::NotADump);
        }
        self.n += chunk.len() as u64;
        if self.n > self.limit {
            return Err(UploadError::OverLimit(self.limit));
        }
        self.out.write_all(chunk).map_err(UploadError::Scratch)
    }
}

/// zstd decompression of a body that comes in pieces.
struct Unzstd {
    decoder: zstd::stream::raw::Decoder<'static>,
    buf: Vec<u8>,
    /// Whether the last frame was read to its end (no frame open).
    whole: bool,
}

impl Unzstd {
    fn new() -> std::io::Result<Unzstd> {
        Ok(Unzstd {
            decoder: zstd::stream::raw::Decoder::new()?,
            buf: vec![0u8; crate::stream::CHUNK],
            whole: true,
        })
    }

    /// Decompresses `chunk` into `to`.
    fn feed(&mut self, chunk: &[u8], to: &mut Scratch) -> Result<(), UploadError> {
        use zstd::stream::raw::Operation;
        let mut input = chunk;
        loop {
            let status = self
                .decoder
                .run_on_buffers(input, &mut self.buf)
                .map_err(UploadError::Zstd)?;
            input = &input[status.bytes_read..];
            self.whole = status.remaining == 0;
            to.take(&self.buf[..status.bytes_written])?;
            // Done with this chunk once it is all read and the output did not fill up (a full
            // buffer may mean more output is waiting).
            if input.is_empty() && status.bytes_written < self.buf.len() {
                return Ok(());
            }
        }
    }

    /// Fails when the stream ended inside a frame: a compressed body cut short.
    fn check_whole(&self) -> Result<(), UploadError> {
        if self.whole {
            Ok(())
        } else {
            Err(UploadError::BrokeOff(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the zstd stream ends inside a frame",
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(dir: &std::path::Path) -> Scratch {
        Scratch {
            out: std::io::BufWriter::new(std::fs::File::create(dir.join("s")).unwrap()),
            n: 0,
            limit: u64::MAX,
        }
    }

    #[test]
    fn a_zstd_body_in_pieces_is_decompressed_and_a_cut_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plain: Vec<u8> = b"PGDMP"
            .iter()
            .copied()
            .chain((0..3_000_000u32).map(|i| (i % 251) as u8))
            .collect();
        let packed = zstd::encode_all(&plain[..], 1).unwrap();
        let mut z = Unzstd::new().unwrap();
        let mut s = scratch(dir.path());
        for piece in packed.chunks(7_777) {
            z.feed(piece, &mut s).unwrap();
        }
        z.check_whole().unwrap();
        s.out.flush().unwrap();
        assert_eq!(std::fs::read(dir.path().join("s")).unwrap(), plain);

        let mut z = Unzstd::new().unwrap();
        let mut s = scratch(dir.path());
        z.feed(&packed[..packed.len() / 2], &mut s).unwrap();
        assert!(matches!(z.check_whole(), Err(UploadError::BrokeOff(_))));
    }
}
