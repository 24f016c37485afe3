//! Rewriting an uncompressed custom-format archive (what `pg_dump -Fc -Z0` writes, and what a
//! backup holds once its zstd is undone) as the gzip-compressed archive `pg_dump -Fc` itself
//! would have written: the same header and TOC with the compression field set, and every data
//! block (each table's data, each large object) deflated as one zlib stream cut into chunks.
//! The stock `pg_restore` of the archive's version reads the result, `--jobs` included.
//!
//! It streams: memory holds one TOC entry and one chunk at a time, whatever the archive's size.
//! The output's data offsets are left "not set" (nothing can be known of them before the data
//! is written); a writer that can seek fills them in from [`Rewritten::index`] afterwards, as
//! `pg_dump` does with a file.

use std::io::{self, BufRead, Write};

use super::deflate::{DeflatePool, ParallelZlib};
use super::{
    ArchiveIndex, BLK_BLOBS, BLK_DATA, Block, Compression, OFFSET_NO_DATA, OFFSET_POS_NOT_SET,
    Parser, Stop, TocEntry,
};

/// The level that makes the file no larger than `pg_dump -Fc`'s (zlib at its default, 6). Our
/// deflate (zlib-rs) matches differently from zlib, so its levels compare unevenly with zlib's;
/// measured on pgbench at scale 20 (195 MB of dump): zlib-rs at 7 wrote 5.73 MB, at 8 5.53 MB,
/// pg_dump -Fc 5.63 MB; level 8 took 1.47 s on one core (`gzip -6`: 1.59 s), 0.74 s on two. On
/// 4.8 MB of text rows: 291 KB at 7 and at 8, pg_dump -Fc 301 KB.
pub const DEFAULT_LEVEL: u32 = 8;

/// The cores of this machine, at most `cap`: how many threads compress.
pub fn workers(cap: usize) -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, cap.max(1))
}

/// Size of the compressed chunks written: larger than pg_dump's 4 KiB, so fewer length words
/// and fewer steps when `pg_restore` skips over a block.
const CHUNK_OUT: usize = 128 * 1024;

/// What [`gzip`] did.
#[derive(Debug)]
pub enum Rewritten {
    /// The archive was rewritten compressed; `index` is the output's layout, whose
    /// [`ArchiveIndex::patches`] fill in its data offsets.
    Compressed { index: ArchiveIndex },
    /// The input was copied as it is: it was already compressed, or is not a custom-format
    /// archive of a version this module knows (pg_restore reads it as well as before).
    Copied,
}

/// Copies the archive `r` to `w`, compressed with gzip at `level` on `workers` threads (see
/// the module's comment). Returns the output's layout; errors of `r` or `w` are returned as they are, and an archive
/// that breaks off or is malformed after its header is an `InvalidData` error, since `w` then
/// holds a header that promises compressed data.
pub fn gzip<R: BufRead, W: Write>(r: R, w: W, level: u32, workers: usize) -> io::Result<Rewritten> {
    let mut p = Parser::new(r);
    let mut out = Counting { w, pos: 0 };
    p.record = Some(Vec::new());
    let header = match p.header() {
        Ok(h) => h,
        Err(Stop::Io(e)) if e.kind() != io::ErrorKind::UnexpectedEof => return Err(e),
        Err(_) => return copy_rest(p, out),
    };
    let none = matches!(
        header.compression,
        Compression::Algorithm(0) | Compression::Level(0)
    );
    if !none {
        return copy_rest(p, out);
    }
    let mut head = p.record.take().unwrap_or_default();
    let at = header.compression_pos as usize;
    match header.compression {
        Compression::Algorithm(_) => head[at] = 1, // PG_COMPRESSION_GZIP
        Compression::Level(_) => {
            let field = int_bytes(i64::from(level), p.int_size);
            head[at..at + field.len()].copy_from_slice(&field);
        }
    }
    out.write_all(&head)?;
    let pool = DeflatePool::new(workers);
    let level = Deflate { pool: &pool, level };
    rewrite_body(&mut p, &mut out, header.off_size, &level).map_err(|stop| match stop {
        Stop::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => e,
        Stop::Io(e) => malformed(&format!("it breaks off ({e})")),
        Stop::Unknown => malformed("it holds a block this version of pgbackups does not know"),
    })
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the dump cannot be rewritten compressed: {why}"),
    )
}

/// Writes what the parser has read (and recorded), then the rest of the input, unchanged.
fn copy_rest<R: BufRead, W: Write>(
    mut p: Parser<R>,
    mut out: Counting<W>,
) -> io::Result<Rewritten> {
    out.write_all(&p.record.take().unwrap_or_default())?;
    io::copy(&mut p.r, &mut out)?;
    Ok(Rewritten::Copied)
}

/// How data is compressed: where, and how hard.
struct Deflate<'p> {
    pool: &'p DeflatePool,
    level: u32,
}

/// The TOC (offsets reset) and the data blocks (compressed).
fn rewrite_body<R: BufRead, W: Write>(
    p: &mut Parser<R>,
    out: &mut Counting<W>,
    off_size: usize,
    level: &Deflate,
) -> Result<Rewritten, Stop> {
    let mut index = ArchiveIndex {
        off_size,
        ..Default::default()
    };
    p.record = Some(Vec::new());
    let entries = p.int()?;
    out.write_all(&p.take_recorded())?;
    for _ in 0..entries {
        let (dump_id, section) = p.toc_entry()?;
        out.write_all(&p.take_recorded())?;
        let flag = p.byte()?;
        for _ in 0..off_size {
            p.byte()?;
        }
        p.take_recorded(); // the input's flag and offset, replaced below
        // The input's offsets (if any) point into the input; the output's are not known yet.
        let flag = if flag == OFFSET_NO_DATA {
            OFFSET_NO_DATA
        } else {
            OFFSET_POS_NOT_SET
        };
        index.entries.push(TocEntry {
            dump_id,
            section,
            offset_pos: out.pos,
            offset_flag: flag,
        });
        out.write_all(&[flag])?;
        out.write_all(&vec![0u8; off_size])?;
    }
    p.record = None;
    index.toc_end = out.pos;

    loop {
        let start = out.pos;
        // The archive ends where a block would start; anything else cut short is an error,
        // the reader's own included (a zstd frame cut off says "unexpected end" too).
        if p.r.fill_buf()?.is_empty() {
            break;
        }
        let kind = p.byte()?;
        let dump_id = p.int()?;
        out.write_all(&[kind])?;
        out.write_all(&int_bytes(dump_id, p.int_size))?;
        match kind {
            BLK_DATA => deflate_chunks(p, out, level)?,
            BLK_BLOBS => loop {
                // One large object: its OID, then its data, compressed on its own.
                let oid = p.int()?;
                out.write_all(&int_bytes(oid, p.int_size))?;
                if oid == 0 {
                    break;
                }
                deflate_chunks(p, out, level)?;
            },
            _ => return Err(Stop::Unknown),
        }
        index.blocks.push(Block {
            dump_id,
            start,
            end: out.pos,
        });
    }
    // Not flushed here: a caller that checks the input afterwards (its checksum) sends the
    // last bytes only then.
    Ok(Rewritten::Compressed { index })
}

/// Reads one run of uncompressed chunks (ended by a zero length) and writes it as one zlib
/// stream in chunks, ended by a zero length. An empty run still gets a (tiny) stream: that is
/// what pg_restore expects of a compressed archive.
fn deflate_chunks<R: BufRead, W: Write>(
    p: &mut Parser<R>,
    out: &mut Counting<W>,
    level: &Deflate,
) -> Result<(), Stop> {
    let int_size = p.int_size;
    let chunks = ChunkWriter {
        out: &mut *out,
        buf: Vec::with_capacity(CHUNK_OUT),
        int_size,
    };
    let mut z = ParallelZlib::new(level.pool, chunks, level.level);
    loop {
        let len = p.int()?;
        if len == 0 {
            break;
        }
        if len < 0 {
            return Err(Stop::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "a data chunk has a negative length",
            )));
        }
        // Straight from the reader's buffer: a chunk is often one row of a table.
        let mut left = u64::try_from(len).map_err(|_| Stop::Unknown)?;
        while left > 0 {
            let buf = p.r.fill_buf()?;
            if buf.is_empty() {
                return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            z.write_all(&buf[..take])?;
            p.r.consume(take);
            p.pos += take as u64;
            left -= take as u64;
        }
    }
    let mut chunks = z.finish()?;
    chunks.emit()?;
    out.write_all(&int_bytes(0, int_size))?;
    Ok(())
}

/// Collects compressed bytes and writes them as `(length, bytes)` chunks of [`CHUNK_OUT`].
struct ChunkWriter<'a, W: Write> {
    out: &'a mut Counting<W>,
    buf: Vec<u8>,
    int_size: usize,
}

impl<W: Write> ChunkWriter<'_, W> {
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(&int_bytes(self.buf.len() as i64, self.int_size))?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<W: Write> Write for ChunkWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(CHUNK_OUT - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == CHUNK_OUT {
            self.emit()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// pg_dump's integer: a sign byte, then `int_size` bytes of the magnitude, least significant
/// first.
fn int_bytes(v: i64, int_size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + int_size);
    b.push(u8::from(v < 0));
    let m = v.unsigned_abs();
    b.extend((0..int_size).map(|i| if i < 8 { (m >> (8 * i)) as u8 } else { 0 }));
    b
}

/// A writer that knows how many bytes went through it.
struct Counting<W> {
    w: W,
    pos: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.w.write(data)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;

    /// A small uncompressed archive of version 1.14 (PostgreSQL 15): two TOC entries, the
    /// first with data in two chunks, the second with none; then a blobs block.
    fn plain_archive() -> Vec<u8> {
        let int = |v: i64| int_bytes(v, 4);
        let s = |t: &str| [int(t.len() as i64), t.as_bytes().to_vec()].concat();
        let null = int(-1);
        let mut a = b"PGDMP".to_vec();
        a.extend([1, 14, 0, 4, 8, 1]);
        a.extend(int(0)); // compression level
        for v in [1, 2, 3, 4, 5, 126, 0] {
            a.extend(int(v));
        }
        for t in ["db", "15.4", "15.4"] {
            a.extend(s(t));
        }
        a.extend(int(3));
        for (id, flag) in [(7, OFFSET_POS_NOT_SET), (8, OFFSET_NO_DATA), (9, 1)] {
            a.extend(int(id));
            a.extend(int(1));
            for t in ["0", "0", "t", "TABLE DATA"] {
                a.extend(s(t));
            }
            a.extend(int(3));
            for t in [
                "",
                "",
                "COPY t FROM stdin;\n",
                "public",
                "",
                "heap",
                "me",
                "false",
            ] {
                a.extend(s(t));
            }
            a.extend(s("5"));
            a.extend(null.clone());
            a.push(flag);
            a.extend([0u8; 8]);
        }
        a.push(BLK_DATA);
        a.extend(int(7));
        a.extend(s("1\tone\n"));
        a.extend(s(&"2\ttwo\n".repeat(50_000)));
        a.extend(int(0));
        a.push(BLK_BLOBS);
        a.extend(int(9));
        a.extend(int(16400));
        a.extend(s("large object bytes"));
        a.extend(int(0));
        a.extend(int(16401));
        a.extend(int(0)); // an empty large object
        a.extend(int(0));
        a
    }

    /// Reads chunks at `at` of `a`; returns their bytes inflated and the position after them.
    fn inflate_chunks(a: &[u8], mut at: usize) -> (Vec<u8>, usize) {
        let mut z = Vec::new();
        loop {
            let len = u32::from_le_bytes(a[at + 1..at + 5].try_into().unwrap()) as usize;
            at += 5;
            if len == 0 {
                break;
            }
            z.extend_from_slice(&a[at..at + len]);
            at += len;
        }
        let mut plain = Vec::new();
        ZlibDecoder::new(&z[..]).read_to_end(&mut plain).unwrap();
        (plain, at)
    }

    #[test]
    fn compresses_every_block_and_keeps_the_toc() {
        let plain = plain_archive();
        let mut out = Vec::new();
        let Rewritten::Compressed { index } = gzip(&plain[..], &mut out, 7, 2).unwrap() else {
            panic!("not rewritten");
        };
        assert!(out.len() < plain.len() / 10, "{} bytes", out.len());
        // The TOC is unchanged but for the compression level and the reset offset flag.
        assert_eq!(
            index.toc_end,
            super::super::scan(&plain[..]).unwrap().unwrap().toc_end
        );
        let level_at = 5 + 6;
        assert_eq!(&out[level_at..level_at + 5], &int_bytes(7, 4)[..]);
        assert_eq!(
            index
                .entries
                .iter()
                .map(|e| e.offset_flag)
                .collect::<Vec<_>>(),
            [OFFSET_POS_NOT_SET, OFFSET_NO_DATA, OFFSET_POS_NOT_SET]
        );
        // Each block is one zlib stream holding the original bytes.
        let data = index.blocks[0];
        let (rows, end) = inflate_chunks(&out, data.start as usize + 6);
        assert_eq!(
            rows,
            format!("1\tone\n{}", "2\ttwo\n".repeat(50_000)).as_bytes()
        );
        assert_eq!(end as u64, data.end);
        let blobs = index.blocks[1];
        let mut at = blobs.start as usize + 6 + 5; // block type, dump ID, first OID
        let (first, next) = inflate_chunks(&out, at);
        assert_eq!(first, b"large object bytes");
        at = next + 5;
        let (second, next) = inflate_chunks(&out, at);
        assert!(second.is_empty());
        assert_eq!(next + 5, out.len());
        // The offsets it gives point at the blocks, and scanning the output agrees.
        let rescanned = super::super::scan(&out[..]).unwrap().unwrap();
        assert_eq!(rescanned.blocks, index.blocks);
        assert_eq!(index.patches().len(), 2);
    }

    #[test]
    fn copies_what_it_cannot_rewrite() {
        let junk = b"<html>not a dump</html>".repeat(100);
        let mut out = Vec::new();
        assert!(matches!(
            gzip(&junk[..], &mut out, 6, 1).unwrap(),
            Rewritten::Copied
        ));
        assert_eq!(out, junk);
        // Already compressed: copied as it is.
        let mut compressed = Vec::new();
        gzip(&plain_archive()[..], &mut compressed, 6, 1).unwrap();
        let mut again = Vec::new();
        assert!(matches!(
            gzip(&compressed[..], &mut again, 6, 1).unwrap(),
            Rewritten::Copied
        ));
        assert_eq!(again, compressed);
    }

    #[test]
    fn an_archive_cut_short_is_an_error() {
        let plain = plain_archive();
        let cut = &plain[..plain.len() - 40];
        let err = gzip(cut, &mut Vec::new(), 6, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
