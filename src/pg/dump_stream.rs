//! A running pg_dump's output as a stream of zstd-compressed chunks, for the two ends of a
//! dump that crosses the network: the service's side of `pull`, and the CLI's side of `push`.
//!
//! ```text
//! pg_dump ─pipe─▶ zstd (a blocking thread) ─channel of a few chunks─▶ the HTTP body
//! ```
//! The zstd frame is finished only once pg_dump has exited 0; otherwise the stream's last
//! item is an error, so that the reader sees a broken stream and never takes a truncated dump
//! for a whole one. Memory is bounded by the channel, whatever the reader's speed.
//! [`ChannelWriter`] and [`into_stream`] also carry the downloads of stored backups.

use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::proc::{RunError, Running};

/// How many compressed chunks may wait for the reader.
const QUEUE: usize = 4;

/// The size of the chunks sent.
const CHUNK: usize = 1 << 20;

/// Why a compressed dump stream did not end whole.
#[derive(Debug, thiserror::Error)]
pub enum DumpStreamError {
    /// pg_dump failed: its status and what its stderr said.
    #[error(transparent)]
    Dump(#[from] RunError),
    /// The reader went away, or the pipe or compression failed.
    #[error("the dump stream broke: {0}")]
    Stream(#[source] io::Error),
}

/// Streams `running`'s stdout (the read end `from` of its pipe; the caller has dropped its
/// copy of the write end) compressed with zstd at `level`. Returns the chunks, and the task
/// that ends with how the stream ended. If the reader stops reading, pg_dump is stopped.
pub fn compressed(
    running: Running,
    from: io::PipeReader,
    level: i32,
) -> (
    mpsc::Receiver<io::Result<Bytes>>,
    JoinHandle<Result<(), DumpStreamError>>,
) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        let stop = CancellationToken::new();
        let relay_tx = tx.clone();
        let relay = async {
            let r = tokio::task::spawn_blocking(move || compress(from, relay_tx, level)).await;
            let r = r.unwrap_or_else(|e| Err(io::Error::other(e)));
            if r.is_err() {
                // The reader went away (or the pipe failed): pg_dump has no one to write to.
                stop.cancel();
            }
            r
        };
        let (finished, relayed) = tokio::join!(running.wait(&stop, None), relay);
        let end = match (finished.and_then(|f| f.check()), relayed) {
            (_, Err(e)) => Err(DumpStreamError::Stream(e)),
            (Err(e), _) => Err(DumpStreamError::Dump(e)),
            (Ok(_), Ok(encoder)) => {
                let done = tokio::task::spawn_blocking(move || encoder.finish()?.flush()).await;
                done.unwrap_or_else(|e| Err(io::Error::other(e)))
                    .map_err(DumpStreamError::Stream)
            }
        };
        if let Err(e) = &end {
            // The stream ends with an error: the reader sees it broken, never whole.
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
        end
    });
    (rx, task)
}

/// Reads pg_dump's output to its end and compresses it into the channel; answers the encoder
/// with its frame still open (finished only once pg_dump is known to have succeeded).
fn compress(
    mut from: io::PipeReader,
    tx: mpsc::Sender<io::Result<Bytes>>,
    level: i32,
) -> io::Result<zstd::Encoder<'static, ChannelWriter>> {
    let mut encoder = zstd::Encoder::new(ChannelWriter::new(tx), level)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(encoder),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        encoder.write_all(&buf[..n])?;
    }
}

/// A writer (on a blocking thread) that sends what it is given down a channel in chunks of
/// [`CHUNK`] bytes, for an async reader such as an HTTP body; fails with `BrokenPipe` once
/// the reader has gone, which stops the work that writes. The last chunk goes at `flush`.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The receiving end of a chunk channel as a stream (an HTTP body).
pub fn into_stream(
    mut rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
