//! The structure of a custom-format archive (what `pg_dump -Fc` writes), read as it streams by.
//!
//! `pg_dump` writing to a pipe cannot go back and fill in where each table's data starts (the
//! "data offsets" in its table of contents), so `pg_restore --jobs` must scan the file to find
//! every block, which costs it a lot on large dumps. [`scan`] reads an archive once, notes
//! where each TOC entry's offset field and each data block lie, and [`ArchiveIndex::patches`]
//! gives the bytes to write back — exactly what `pg_dump` itself does when its output is a
//! file. The field sizes do not change, so the patch is done in place.
//!
//! Format reference: PostgreSQL's `pg_backup_archiver.c` (header, TOC) and
//! `pg_backup_custom.c` (data blocks), archive versions 1.12 to 1.16 (PostgreSQL 11 to 17).
//! Anything else is read through without an index: pg_restore still copes without offsets.

pub mod deflate;
pub mod gzip;

use std::collections::HashMap;
use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 5] = b"PGDMP";
const FORMAT_CUSTOM: u8 = 1;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
const OFFSET_POS_NOT_SET: u8 = 1;
const OFFSET_POS_SET: u8 = 2;
const OFFSET_NO_DATA: u8 = 3;

/// The longest string of a TOC entry the rewriter keeps in memory (a huge function body is a
/// few MiB).
const MAX_RECORDED: u64 = 256 << 20;

const fn version(major: u32, minor: u32) -> u32 {
    (major << 16) | (minor << 8)
}
const MIN_VERSION: u32 = version(1, 12);
const MAX_VERSION: u32 = version(1, 16);
const V1_14: u32 = version(1, 14);
const V1_15: u32 = version(1, 15);
const V1_16: u32 = version(1, 16);

/// Section of a TOC entry whose data (if any) `pg_restore --section=data` restores.
pub const SECTION_DATA: i64 = 3;

/// The layout of an archive: where its TOC ends and where each entry's data block lies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveIndex {
    /// Size of the offset fields (8 in practice).
    pub off_size: usize,
    /// Where the data blocks begin: the bytes before are the header and the TOC.
    pub toc_end: u64,
    /// The TOC entries, in TOC order.
    pub entries: Vec<TocEntry>,
    /// The data blocks, in the order they appear.
    pub blocks: Vec<Block>,
}

/// What the index keeps of a TOC entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TocEntry {
    pub dump_id: i64,
    /// pg_dump's section number: 1 none, 2 pre-data, 3 data, 4 post-data.
    pub section: i64,
    /// Position of the entry's data-offset flag byte.
    pub offset_pos: u64,
    /// The flag as written: 1 offset not set, 2 set, 3 no data.
    pub offset_flag: u8,
}

/// A data block: `[start, end)` in the archive, starting at its block-type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub dump_id: i64,
    pub start: u64,
    pub end: u64,
}

impl ArchiveIndex {
    /// The writes that fill in the data offsets: `(position, bytes)`. Empty when the blocks
    /// found do not match the TOC, so that a surprise never produces a wrong offset.
    pub fn patches(&self) -> Vec<(u64, Vec<u8>)> {
        let unset: HashMap<i64, u64> = self
            .entries
            .iter()
            .filter(|e| e.offset_flag == OFFSET_POS_NOT_SET)
            .map(|e| (e.dump_id, e.offset_pos))
            .collect();
        if self.blocks.iter().any(|b| !unset.contains_key(&b.dump_id)) {
            return Vec::new();
        }
        self.blocks
            .iter()
            .filter_map(|b| {
                let flag_pos = *unset.get(&b.dump_id)?;
                let mut bytes = Vec::with_capacity(1 + self.off_size);
                bytes.push(OFFSET_POS_SET);
                bytes.extend(
                    (0..self.off_size).map(|i| if i < 8 { (b.start >> (8 * i)) as u8 } else { 0 }),
                );
                Some((flag_pos, bytes))
            })
            .collect()
    }
}

/// Reads all of `r` and returns the archive's index, or `None` when it is not a custom-format
/// archive of a version this module knows (it is still read to the end). I/O errors of `r`
/// are returned as they are.
pub fn scan<R: BufRead>(r: R) -> io::Result<Option<ArchiveIndex>> {
    let mut p = Parser::new(r);
    let result = p.archive();
    // Whatever happened, read the rest: callers rely on every byte passing through.
    io::copy(&mut p.r, &mut io::sink())?;
    match result {
        Ok(index) => Ok(Some(index)),
        Err(Stop::Unknown) => Ok(None),
        Err(Stop::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(Stop::Io(e)) => Err(e),
    }
}

enum Stop {
    /// Not an archive this parser understands.
    Unknown,
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

struct Parser<R> {
    r: R,
    /// Bytes read so far.
    pos: u64,
    int_size: usize,
    version: u32,
    /// When set, every byte read is also appended here (the rewriter copies them out).
    record: Option<Vec<u8>>,
}

impl<R> Parser<R> {
    fn new(r: R) -> Parser<R> {
        Parser {
            r,
            pos: 0,
            int_size: 4,
            version: 0,
            record: None,
        }
    }

    /// What was recorded since the last call (the rewriter copies it out); recording goes on.
    fn take_recorded(&mut self) -> Vec<u8> {
        self.record.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

/// What [`Parser::header`] learns.
struct Header {
    off_size: usize,
    /// Where the compression field starts.
    compression_pos: u64,
    compression: Compression,
}

/// The header's compression field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compression {
    /// Archive versions 1.15 and later: the algorithm, 0 for none.
    Algorithm(u8),
    /// Earlier versions: the gzip level, 0 for none.
    Level(i64),
}

impl<R: BufRead> Parser<R> {
    fn archive(&mut self) -> Result<ArchiveIndex, Stop> {
        let header = self.header()?;
        let mut index = ArchiveIndex {
            off_size: header.off_size,
            ..Default::default()
        };
        let entries = self.int()?;
        for _ in 0..entries {
            let (dump_id, section) = self.toc_entry()?;
            let flag_pos = self.pos;
            let flag = self.byte()?;
            for _ in 0..header.off_size {
                self.byte()?;
            }
            index.entries.push(TocEntry {
                dump_id,
                section,
                offset_pos: flag_pos,
                offset_flag: flag,
            });
        }

        index.toc_end = self.pos;
        // Data blocks until the end of the archive.
        loop {
            let block_pos = self.pos;
            let kind = match self.byte() {
                Ok(b) => b,
                Err(Stop::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            };
            let dump_id = self.int()?;
            match kind {
                BLK_DATA => self.skip_chunks()?,
                BLK_BLOBS => {
                    while self.int()? != 0 {
                        self.skip_chunks()?; // one large object: its OID, then its chunks
                    }
                }
                _ => return Err(Stop::Unknown),
            }
            index.blocks.push(Block {
                dump_id,
                start: block_pos,
                end: self.pos,
            });
        }
        Ok(index)
    }

    /// The archive's header, up to its table of contents.
    fn header(&mut self) -> Result<Header, Stop> {
        let mut magic = [0u8; 5];
        self.bytes(&mut magic)?;
        if &magic != MAGIC {
            return Err(Stop::Unknown);
        }
        let (vmaj, vmin, vrev) = (self.byte()?, self.byte()?, self.byte()?);
        self.version = version(u32::from(vmaj), u32::from(vmin)) | u32::from(vrev);
        if !(MIN_VERSION..MAX_VERSION + 0x100).contains(&self.version) {
            return Err(Stop::Unknown);
        }
        self.int_size = usize::from(self.byte()?);
        let off_size = usize::from(self.byte()?);
        if !(1..=8).contains(&self.int_size) || !(1..=16).contains(&off_size) {
            return Err(Stop::Unknown);
        }
        if self.byte()? != FORMAT_CUSTOM {
            return Err(Stop::Unknown);
        }
        let compression_pos = self.pos;
        let compression = if self.version >= V1_15 {
            Compression::Algorithm(self.byte()?) // 0 none, 1 gzip, 2 lz4, 3 zstd
        } else {
            Compression::Level(self.int()?) // 0 none, else a gzip level
        };
        for _ in 0..7 {
            self.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
        }
        for _ in 0..3 {
            self.skip_str()?; // database name, server version, pg_dump version
        }
        Ok(Header {
            off_size,
            compression_pos,
            compression,
        })
    }

    /// One TOC entry, up to (not including) its data-offset flag: its dump ID and section.
    fn toc_entry(&mut self) -> Result<(i64, i64), Stop> {
        let dump_id = self.int()?;
        self.int()?; // had a data dumper
        for _ in 0..4 {
            self.skip_str()?; // table OID, OID, tag, description
        }
        let section = self.int()?;
        for _ in 0..3 {
            self.skip_str()?; // definition, drop statement, COPY statement
        }
        self.skip_str()?; // namespace
        self.skip_str()?; // tablespace
        if self.version >= V1_14 {
            self.skip_str()?; // table access method
        }
        if self.version >= V1_16 {
            self.int()?; // relkind
        }
        self.skip_str()?; // owner
        self.skip_str()?; // "with OIDs", always "false"
        while self.skip_str()?.is_some() {} // dependencies, ended by a NULL string
        Ok((dump_id, section))
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let mut b = [0u8; 1];
        self.bytes(&mut b)?;
        Ok(b[0])
    }

    fn bytes(&mut self, buf: &mut [u8]) -> Result<(), Stop> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        if let Some(record) = &mut self.record {
            record.extend_from_slice(buf);
        }
        Ok(())
    }

    /// pg_dump's integer: a sign byte, then `int_size` bytes, least significant first.
    fn int(&mut self) -> Result<i64, Stop> {
        // Read from the buffer at once when it holds the whole integer (a dump has one per
        // row of data: this is the parser's hot path).
        let n = 1 + self.int_size;
        if self.record.is_none() {
            let buf = self.r.fill_buf()?;
            if buf.len() >= n {
                let negative = buf[0] != 0;
                let v = buf[1..n]
                    .iter()
                    .enumerate()
                    .fold(0i64, |v, (i, b)| v | i64::from(*b) << (8 * i));
                self.r.consume(n);
                self.pos += n as u64;
                return if negative {
                    v.checked_neg().ok_or(Stop::Unknown)
                } else {
                    Ok(v)
                };
            }
        }
        let negative = self.byte()? != 0;
        let mut v: i64 = 0;
        for i in 0..self.int_size {
            v |= i64::from(self.byte()?) << (8 * i);
        }
        if negative {
            v.checked_neg().ok_or(Stop::Unknown)
        } else {
            Ok(v)
        }
    }

    /// A length-prefixed string (length -1 is NULL); returns its length.
    fn skip_str(&mut self) -> Result<Option<u64>, Stop> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        self.skip(len as u64)?;
        Ok(Some(len as u64))
    }

    /// Data chunks: (length, bytes)... ended by length 0.
    fn skip_chunks(&mut self) -> Result<(), Stop> {
        loop {
            let len = self.int()?;
            if len == 0 {
                return Ok(());
            }
            if len < 0 {
                return Err(Stop::Unknown);
            }
            self.skip(len as u64)?;
        }
    }

    fn skip(&mut self, mut n: u64) -> Result<(), Stop> {
        // What is recorded is one TOC entry's strings: a length past any real definition is
        // a damaged archive, not a reason to hold the rest of it in memory.
        if self.record.is_some() && n > MAX_RECORDED {
            return Err(Stop::Unknown);
        }
        while n > 0 {
            let available = self.r.fill_buf()?;
            if available.is_empty() {
                return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let take = available.len().min(n as usize);
            if let Some(record) = &mut self.record {
                record.extend_from_slice(&available[..take]);
            }
            self.r.consume(take);
            self.pos += take as u64;
            n -= take as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_what_it_does_not_know() {
        let junk = b"<html>not a dump</html>".repeat(1000);
        assert!(scan(&junk[..]).unwrap().is_none());
        let truncated = b"PGDMP\x01\x0e\x00\x04\x08\x01";
        assert!(scan(&truncated[..]).unwrap().is_none());
    }
}
