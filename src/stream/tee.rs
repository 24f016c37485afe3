//! A `Read` stage that copies what it reads to a writer, counts it, and keeps the first bytes.

use std::io::{self, Read, Write};

use super::DUMP_MAGIC;

/// What a [`Tee`] reports to: the progress of the work it is part of, and whether that work
/// was told to stop (a transfer's job context implements it).
pub trait Progress: Sync {
    /// Counts `n` more bytes processed.
    fn add_progress(&self, n: u64);
    /// Whether the work has been told to stop.
    fn is_cancelled(&self) -> bool;
}

/// A `Read` stage that also writes everything it reads to `out`, counts it as the transfer's
/// progress, keeps the first bytes (to check a dump's magic), and fails once the transfer is
/// cancelled. A parser pulling from a tee sees the stream exactly once while it is copied.
pub struct Tee<'a, R, W> {
    pub inner: R,
    pub out: W,
    pub head: Vec<u8>,
    ctx: &'a dyn Progress,
}

impl<'a, R: Read, W: Write> Tee<'a, R, W> {
    pub fn new(inner: R, out: W, ctx: &'a dyn Progress) -> Self {
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
