//! Reading on a thread of its own: a channel of chunks read as one stream, and a read-ahead
//! that hashes what it reads.

use std::io::{self, Read};

use super::{CHUNK, HashingReader};

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
