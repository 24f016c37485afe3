//! One zlib stream compressed on several cores, as `pigz` does: the data is cut into pieces of
//! [`PIECE`], each piece deflated on a worker with the previous piece's last 32 KiB as its
//! dictionary (so the ratio is that of one stream) and ended with a sync flush (so the pieces
//! join into one valid deflate stream), the last one finished; the zlib header goes first and
//! the Adler-32 of the whole, combined from the pieces', last. Any zlib reader (pg_restore's)
//! sees an ordinary stream.
//!
//! Memory is bounded: at most two pieces per worker are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per piece: large enough that the sync flushes (5 bytes each) cost nothing
/// measurable, small enough that a table of a few MiB already spreads over the workers.
pub const PIECE: usize = 1 << 20;

/// Deflate's window: the dictionary each piece gets from the one before.
const WINDOW: usize = 32 * 1024;

/// A piece to compress.
struct Job {
    seq: u64,
    level: u32,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

/// A compressed piece: its raw deflate bytes, and the Adler-32 and length of its input.
struct Done {
    seq: u64,
    deflated: io::Result<Vec<u8>>,
    adler: u32,
    len: u64,
}

/// Worker threads that compress pieces; one [`ParallelZlib`] at a time uses them.
pub struct DeflatePool {
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl DeflatePool {
    /// A pool of `workers` threads (at least one).
    pub fn new(workers: usize) -> DeflatePool {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = mpsc::channel();
        let threads = (0..workers.max(1))
            .map(|_| {
                let (rx, done_tx) = (rx.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    loop {
                        // The lock is held only to take a job, not while compressing.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let done = Done {
                            seq: job.seq,
                            // A panic would leave the writer waiting for this piece for
                            // ever: it becomes the piece's error instead.
                            deflated: std::panic::catch_unwind(|| {
                                deflate_piece(job.level, &job.dict, &job.data, job.last)
                            })
                            .unwrap_or_else(|_| {
                                Err(io::Error::other("the compression of a piece failed"))
                            }),
                            adler: zlib_rs::adler32::adler32(1, &job.data),
                            len: job.data.len() as u64,
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        DeflatePool {
            jobs: Some(jobs),
            done,
            threads,
        }
    }

    fn workers(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for DeflatePool {
    fn drop(&mut self) {
        self.jobs = None; // the workers see the end of the channel and return
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Raw deflate of `data` with `dict` as the preceding window: ended by a sync flush, or
/// finished when `last`.
fn deflate_piece(level: u32, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is in and the output had room left.
            _ if !last && all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

/// The zlib header for `level`: deflate with a 32 KiB window, and the level's class.
fn zlib_header(level: u32) -> [u8; 2] {
    let cmf: u8 = 0x78;
    let flevel: u8 = match level {
        0 | 1 => 0,
        2..=5 => 1,
        6 => 2,
        _ => 3,
    };
    let flg = flevel << 6;
    let check = 31 - ((u16::from(cmf) * 256 + u16::from(flg)) % 31) as u8;
    [cmf, flg | (check % 31)]
}

/// A writer that deflates what it is given into one zlib stream written to `out`, on the
/// workers of a [`DeflatePool`]. [`ParallelZlib::finish`] ends the stream.
pub struct ParallelZlib<'p, W: Write> {
    pool: &'p DeflatePool,
    out: W,
    level: u32,
    piece: Vec<u8>,
    /// The last [`WINDOW`] bytes of the previous piece.
    tail: Vec<u8>,
    submitted: u64,
    written: u64,
    ready: BTreeMap<u64, Done>,
    adler: u32,
}

impl<'p, W: Write> ParallelZlib<'p, W> {
    pub fn new(pool: &'p DeflatePool, out: W, level: u32) -> ParallelZlib<'p, W> {
        ParallelZlib {
            pool,
            out,
            level,
            piece: Vec::new(),
            tail: Vec::new(),
            submitted: 0,
            written: 0,
            ready: BTreeMap::new(),
            adler: 1,
        }
    }

    /// Compresses what is left, waits for every piece, writes the checksum; returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        if self.submitted == 0 {
            // One piece only (most tables): no thread hop.
            self.out.write_all(&zlib_header(self.level))?;
            let deflated = deflate_piece(self.level, &[], &self.piece, true)?;
            self.out.write_all(&deflated)?;
            let adler = zlib_rs::adler32::adler32(1, &self.piece);
            self.out.write_all(&adler.to_be_bytes())?;
            return Ok(self.out);
        }
        self.submit(true)?;
        while self.written < self.submitted {
            self.receive_one()?;
        }
        self.out.write_all(&self.adler.to_be_bytes())?;
        Ok(self.out)
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        if self.submitted == 0 {
            self.out.write_all(&zlib_header(self.level))?;
        }
        let data = std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
        let dict = std::mem::replace(
            &mut self.tail,
            data[data.len().saturating_sub(WINDOW)..].to_vec(),
        );
        let job = Job {
            seq: self.submitted,
            level: self.level,
            dict,
            data,
            last,
        };
        let sent = self.pool.jobs.as_ref().map(|jobs| jobs.send(job));
        if !matches!(sent, Some(Ok(()))) {
            return Err(io::Error::other("the compression workers have stopped"));
        }
        self.submitted += 1;
        // Bounded memory: wait while too many pieces are in flight.
        while self.submitted - self.written > 2 * self.pool.workers() as u64 {
            self.receive_one()?;
        }
        Ok(())
    }

    /// Waits for one piece, then writes every piece that is next in order.
    fn receive_one(&mut self) -> io::Result<()> {
        let done = self
            .pool
            .done
            .recv()
            .map_err(|_| io::Error::other("the compression workers have stopped"))?;
        self.ready.insert(done.seq, done);
        while let Some(done) = self.ready.remove(&self.written) {
            self.out.write_all(&done.deflated?)?;
            self.adler = zlib_rs::adler32::adler32_combine(self.adler, done.adler, done.len);
            self.written += 1;
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelZlib<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.piece.len() == PIECE {
            self.submit(false)?;
        }
        let take = data.len().min(PIECE - self.piece.len());
        self.piece.extend_from_slice(&data[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;

    /// Bytes that compress somewhat, and differ along the way.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 16) as u8
                } else {
                    b"abcdefgh"[(i / 13) % 8]
                }
            })
            .collect()
    }

    #[test]
    fn any_zlib_reader_gets_the_data_back_whatever_the_size() {
        for workers in [1, 3] {
            let pool = DeflatePool::new(workers);
            for len in [0, 10, PIECE - 1, PIECE, PIECE + 1, 5 * PIECE + 77] {
                let data = sample(len);
                let mut z = ParallelZlib::new(&pool, Vec::new(), 7);
                // Written in uneven parts, as a chunked reader hands them over.
                for part in data.chunks(300_001) {
                    z.write_all(part).unwrap();
                }
                let stream = z.finish().unwrap();
                let mut back = Vec::new();
                // The decoder checks the header and the combined Adler-32.
                ZlibDecoder::new(&stream[..])
                    .read_to_end(&mut back)
                    .unwrap_or_else(|e| panic!("{len} bytes on {workers}: {e}"));
                assert!(back == data, "{len} bytes on {workers} workers differ");
            }
        }
    }

    #[test]
    fn the_pieces_compress_as_well_as_one_stream() {
        let data = sample(4 * PIECE);
        let pool = DeflatePool::new(2);
        let mut z = ParallelZlib::new(&pool, Vec::new(), 7);
        z.write_all(&data).unwrap();
        let parallel = z.finish().unwrap().len();
        let mut one = flate2::write::ZlibEncoder::new(Vec::new(), Compression::new(7));
        one.write_all(&data).unwrap();
        let serial = one.finish().unwrap().len();
        assert!(
            parallel <= serial + serial / 100,
            "{parallel} bytes in pieces against {serial} in one stream"
        );
    }

    #[test]
    fn headers_pass_zlibs_check() {
        for level in 0..=9 {
            let [cmf, flg] = zlib_header(level);
            assert_eq!(
                (u16::from(cmf) * 256 + u16::from(flg)) % 31,
                0,
                "level {level}"
            );
        }
    }
}
