//! Small streaming stages and child-process plumbing shared by captures and restores.

use std::io::{self, Read, Write};
use std::process::ExitStatus;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::job::JobCtx;

/// Size of the chunks the pipelines move; bounds their memory together with zstd's window.
pub const CHUNK: usize = 1 << 20;

/// The first bytes of every custom-format dump.
pub const DUMP_MAGIC: &[u8; 5] = b"PGDMP";

/// Whether `chunk`, which starts `seen` bytes into a stream, agrees with the custom-format
/// magic in the bytes of it that fall among the first five. Lets a download or upload be
/// refused from its first chunk instead of after the whole file.
pub fn starts_like_a_dump(seen: u64, chunk: &[u8]) -> bool {
    let from = (seen as usize).min(DUMP_MAGIC.len());
    let n = (DUMP_MAGIC.len() - from).min(chunk.len());
    chunk[..n] == DUMP_MAGIC[from..from + n]
}

/// Copies `from` to `to` in [`CHUNK`]-sized reads and writes, and returns the bytes copied.
/// For streams of gigabytes into pipes, where `io::copy`'s 8 KiB buffer would mean a system
/// call per 8 KiB.
pub fn copy_chunked(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        copied += n as u64;
    }
}

/// A `Write` stage that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `Read` stage that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (so that the hash covers the whole object), then returns the hex
    /// SHA-256 and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A `Read` stage that also writes everything it reads to `out`, counts it as the transfer's
/// progress, keeps the first bytes (to check a dump's magic), and fails once the transfer is
/// cancelled. A parser pulling from a tee sees the stream exactly once while it is copied.
pub struct Tee<'a, R, W> {
    pub inner: R,
    pub out: W,
    pub head: Vec<u8>,
    ctx: &'a JobCtx,
}

impl<'a, R: Read, W: Write> Tee<'a, R, W> {
    pub fn new(inner: R, out: W, ctx: &'a JobCtx) -> Self {
        Tee {
            inner,
            out,
            head: Vec::with_capacity(DUMP_MAGIC.len()),
            ctx,
        }
    }

    /// Whether what passed started like a custom-format dump.
    pub fn starts_with_magic(&self) -> bool {
        self.head == DUMP_MAGIC
    }
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
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

/// Spawns a PostgreSQL tool so that it dies with the service: if the service is killed, the
/// kernel sends the child SIGTERM (which pg_dump and pg_restore handle by cancelling their
/// queries and stopping their parallel workers).
///
/// Must be called from an async task (a runtime worker thread, which lives as long as the
/// runtime), never from a short-lived blocking thread: the death signal fires when the
/// spawning *thread* exits.
pub fn spawn_tool(cmd: &mut Command, tool: &str) -> Result<Child, io::Error> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(io::Error::from)
        });
    }
    cmd.spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("could not start {tool}: {e}")))
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within `grace`.
pub async fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            child.start_kill()?;
            child.wait().await
        }
    }
}

/// Runs a started tool to its end: its stderr goes into the transfer log, and it is stopped
/// (SIGTERM, then SIGKILL after 10 s) when the transfer is cancelled or `also_stop` fires.
/// Returns its exit status and the stderr lines that explain a failure.
pub async fn supervise(
    mut child: Child,
    ctx: &JobCtx,
    tool: &'static str,
    also_stop: Option<&CancellationToken>,
) -> (io::Result<ExitStatus>, Vec<String>) {
    let stderr = child
        .stderr
        .take()
        .map(|s| log_stderr(s, ctx.clone(), tool));
    let never = CancellationToken::new();
    let also_stop = also_stop.unwrap_or(&never);
    let status = tokio::select! {
        s = child.wait() => s,
        _ = ctx.cancelled().cancelled() => terminate(&mut child, Duration::from_secs(10)).await,
        _ = also_stop.cancelled() => terminate(&mut child, Duration::from_secs(10)).await,
    };
    let lines = match stderr {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    (status, lines)
}

/// Copies a child's stderr into the transfer log line by line, and returns what explains a
/// failure: its first error lines (all of them up to a limit), then its last lines.
pub fn log_stderr(stderr: ChildStderr, ctx: JobCtx, tool: &'static str) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        // Bytes, not `lines()`: a tool prints names in the database's encoding, which need
        // not be UTF-8, and giving up on a line would close the pipe under the tool.
        let mut reader = BufReader::new(stderr);
        let mut raw: Vec<u8> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut tail: Vec<String> = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw).await {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    ctx.log(&line);
                    if is_error_line(&line) && errors.len() < 10 {
                        errors.push(line.clone());
                    }
                    tail.push(line);
                    if tail.len() > 3 {
                        tail.remove(0);
                    }
                }
                Err(e) => {
                    ctx.log(&format!("(could not read {tool}'s messages: {e})"));
                    // Keep draining, so that the tool never blocks or dies on a full pipe.
                    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
                    break;
                }
            }
        }
        for line in tail {
            if !errors.contains(&line) {
                errors.push(line);
            }
        }
        errors
    })
}

fn is_error_line(line: &str) -> bool {
    line.contains("error:")
        || line.contains("detail:")
        || line.contains("FATAL")
        || line.contains("ERROR")
}

/// The lines of a tool's stderr that say what went wrong (its error lines when there are any,
/// else the last lines), joined for an error message.
pub fn error_summary(lines: &[String]) -> String {
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| is_error_line(l))
        .map(String::as_str)
        .collect();
    if errors.is_empty() {
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ")
    } else {
        errors.join(" / ")
    }
}

/// Reads the chunks a channel delivers, as one stream; the end of the channel is the end.
pub struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
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

/// The thread of [`hashed_read_ahead`]: joined, the SHA-256 and size of what it read.
pub type Hashed = std::thread::JoinHandle<io::Result<(String, u64)>>;

/// Reads `inner` to its end on a thread of its own, hashing what it reads, and hands the
/// bytes over in 1 MiB chunks (at most four waiting): reading and hashing then overlap with
/// whatever consumes them (decompression, say). The handle gives the SHA-256 and the size
/// once the reader is at the end; if the consumer goes first, it stops at once with an error
/// (the rest of the object is not read).
pub fn hashed_read_ahead(inner: Box<dyn Read + Send>) -> io::Result<(ChannelReader, Hashed)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let handle = std::thread::Builder::new()
        .name("read-ahead".into())
        .spawn(move || {
            let mut hashing = HashingReader::new(inner);
            loop {
                let mut chunk = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match hashing.read(&mut chunk[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if filled == 0 {
                    break;
                }
                chunk.truncate(filled);
                if tx.send(chunk).is_err() {
                    return Err(io::Error::other("the reader stopped before the end"));
                }
            }
            hashing.finish()
        })?;
    Ok((ChannelReader::new(rx), handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_stages_agree() {
        let data = b"the quick brown fox".repeat(1000);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (out, hw, nw) = w.finish();
        assert_eq!(out, data);
        let r = HashingReader::new(&data[..]);
        let (hr, nr) = r.finish().unwrap();
        assert_eq!((hw.clone(), nw), (hr, nr));
        assert_eq!(hw, hex::encode(Sha256::digest(&data)));
    }

    #[test]
    fn recognises_a_dump_from_any_first_chunk() {
        assert!(starts_like_a_dump(0, b"PGDMP\x01\x0e"));
        assert!(starts_like_a_dump(0, b"PG"));
        assert!(starts_like_a_dump(2, b"DMPxyz"));
        assert!(starts_like_a_dump(9, b"anything"));
        assert!(!starts_like_a_dump(0, b"<html>"));
        assert!(!starts_like_a_dump(3, b"XX"));
    }

    #[test]
    fn summarises_tool_errors() {
        let tail = vec![
            "pg_dump: dumping contents of table \"public.a\"".to_string(),
            "pg_dump: error: Dumping the contents of table \"b\" failed".to_string(),
            "pg_dump: detail: Error message from server: boom".to_string(),
        ];
        assert_eq!(
            error_summary(&tail),
            "pg_dump: error: Dumping the contents of table \"b\" failed / pg_dump: detail: Error message from server: boom"
        );
    }
}
