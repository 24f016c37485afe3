//! How a stored dump is laid out, so that a restore can read its parts in parallel.
//!
//! A capture compresses the dump as a series of independent zstd frames of [`FRAME_SIZE`]
//! plain bytes each (one zstd stream to any reader: `zstd -d` and our own reader see one
//! dump), and records where each frame starts, in the plain dump and in the stored object.
//! With the archive's own structure (where each table's data block lies, from
//! [`crate::pg::archive`]) a reader can start at any table's data: seek to the frame that
//! holds it, decompress, skip to the block.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::HashingWriter;
use crate::pg::archive::ArchiveIndex;
use crate::storage::{Storage, StorageError};

/// Plain bytes per zstd frame: large enough that frame boundaries cost nothing measurable in
/// ratio or speed, small enough that starting mid-frame wastes little decompression.
pub const FRAME_SIZE: u64 = 16 << 20;

/// The recorded layout of a stored dump.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoredLayout {
    /// `(plain offset, stored offset)` where each zstd frame starts, ascending.
    pub frames: Vec<(u64, u64)>,
    /// The archive's structure, when pg_dump's output was understood.
    pub archive: Option<ArchiveIndex>,
}

impl StoredLayout {
    /// Whether the layout can be trusted for a dump of `dump_size` plain bytes: frames start
    /// at 0 and ascend, blocks lie after the TOC, in order, inside the dump. A layout that is
    /// not (a damaged or edited catalog) is ignored; the restore then takes the spooled path.
    pub fn is_consistent(&self, dump_size: Option<u64>) -> bool {
        let size = dump_size.unwrap_or(u64::MAX);
        let frames_ok = self.frames.first() == Some(&(0, 0))
            && self
                .frames
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let archive_ok = self.archive.as_ref().is_none_or(|a| {
            let mut at = a.toc_end;
            a.toc_end <= size
                && a.blocks.iter().all(|b| {
                    let ok = at <= b.start && b.start < b.end && b.end <= size;
                    at = b.end;
                    ok
                })
        });
        frames_ok && archive_ok
    }

    /// A reader of the plain dump from `plain_offset` on.
    pub fn open_at(
        &self,
        storage: &dyn Storage,
        key: &str,
        plain_offset: u64,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let i = self
            .frames
            .partition_point(|(plain, _)| *plain <= plain_offset)
            .saturating_sub(1);
        let (frame_plain, frame_stored) = self.frames.get(i).copied().unwrap_or((0, 0));
        let reader = storage.open_at(key, frame_stored)?;
        let io = |e: io::Error| StorageError::Io {
            op: "read",
            key: key.to_string(),
            source: e,
        };
        let mut decoder = zstd::stream::read::Decoder::new(reader).map_err(io)?;
        let skip = plain_offset - frame_plain;
        let skipped = io::copy(&mut (&mut decoder).take(skip), &mut io::sink()).map_err(io)?;
        if skipped != skip {
            return Err(io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stored dump is shorter than its recorded layout",
            )));
        }
        Ok(Box::new(decoder))
    }
}

/// What a [`FramedEncoder`] wrote.
pub struct Compressed<W> {
    pub inner: W,
    /// Hex SHA-256 of the compressed bytes.
    pub sha256: String,
    /// Number of compressed bytes.
    pub bytes: u64,
    /// Where each frame starts, as in [`StoredLayout::frames`].
    pub frames: Vec<(u64, u64)>,
}

/// A `Write` stage that compresses into a new zstd frame every [`FRAME_SIZE`] plain bytes,
/// hashing and counting the compressed output, and records where each frame starts.
pub struct FramedEncoder<W: Write> {
    encoder: Option<zstd::stream::write::Encoder<'static, HashingWriter<W>>>,
    level: i32,
    workers: u32,
    plain: u64,
    in_frame: u64,
    frames: Vec<(u64, u64)>,
    /// The first error, which every later call repeats: a full disk or a store outage at a
    /// frame boundary must read as itself, not as "the encoder failed".
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write> FramedEncoder<W> {
    pub fn new(inner: W, level: i32, workers: u32) -> io::Result<Self> {
        Ok(FramedEncoder {
            encoder: Some(Self::frame(HashingWriter::new(inner), level, workers)?),
            level,
            workers,
            plain: 0,
            in_frame: 0,
            frames: vec![(0, 0)],
            failed: None,
        })
    }

    fn frame(
        out: HashingWriter<W>,
        level: i32,
        workers: u32,
    ) -> io::Result<zstd::stream::write::Encoder<'static, HashingWriter<W>>> {
        let mut enc = zstd::stream::write::Encoder::new(out, level)?;
        if workers > 0 {
            enc.multithread(workers)?;
        }
        enc.include_checksum(true)?;
        Ok(enc)
    }

    /// The error that stopped the encoder, again.
    fn earlier(&self) -> io::Error {
        match &self.failed {
            Some((kind, msg)) => io::Error::new(*kind, msg.clone()),
            None => io::Error::other("the encoder failed earlier"),
        }
    }

    /// Remembers `e` if it is the first error.
    fn remember(&mut self, e: io::Error) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some((e.kind(), e.to_string()));
        }
        e
    }

    fn encoder(
        &mut self,
    ) -> io::Result<&mut zstd::stream::write::Encoder<'static, HashingWriter<W>>> {
        let earlier = self.earlier();
        self.encoder.as_mut().ok_or(earlier)
    }

    /// Ends the last frame; returns the inner writer and what was written.
    pub fn finish(mut self) -> io::Result<Compressed<W>> {
        let out = match self.encoder.take() {
            Some(enc) => enc.finish().map_err(|e| self.remember(e))?,
            None => return Err(self.earlier()),
        };
        let (inner, sha256, bytes) = out.finish();
        Ok(Compressed {
            inner,
            sha256,
            bytes,
            frames: self.frames,
        })
    }
}

impl<W: Write> Write for FramedEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = (FRAME_SIZE - self.in_frame) as usize;
        let n = self
            .encoder()?
            .write(&buf[..buf.len().min(room)])
            .map_err(|e| self.remember(e))?;
        self.plain += n as u64;
        self.in_frame += n as u64;
        if self.in_frame == FRAME_SIZE {
            let out = match self.encoder.take() {
                Some(enc) => enc.finish().map_err(|e| self.remember(e))?,
                None => return Err(self.earlier()),
            };
            self.frames.push((self.plain, out.bytes()));
            let next = Self::frame(out, self.level, self.workers).map_err(|e| self.remember(e))?;
            self.encoder = Some(next);
            self.in_frame = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder()?.flush().map_err(|e| self.remember(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    /// A disk that is full after `room` bytes.
    struct FullAfter {
        room: usize,
    }

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.room {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (os error 28)",
                ));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_disk_that_fills_at_a_frame_boundary_is_reported_as_itself() {
        // Incompressible bytes, one frame and a bit: the first frame's tail is written when
        // the frame ends, and that write is the one the full disk refuses.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let data: Vec<u8> = (0..FRAME_SIZE as usize + 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut whole = FramedEncoder::new(Vec::new(), 1, 0).unwrap();
        whole.write_all(&data[..FRAME_SIZE as usize]).unwrap();
        // Where the second frame starts is the first frame's compressed size.
        let first_frame = whole.finish().unwrap().frames[1].1 as usize;

        let mut enc = FramedEncoder::new(
            FullAfter {
                room: first_frame - 8,
            },
            1,
            0,
        )
        .unwrap();
        let failed = enc.write_all(&data).unwrap_err();
        assert_eq!(failed.kind(), io::ErrorKind::StorageFull, "{failed}");
        let again = enc.write_all(b"more").unwrap_err();
        assert!(again.to_string().contains("No space left"), "{again}");
        let end = enc.finish().err().unwrap();
        assert!(end.to_string().contains("No space left"), "{end}");
    }

    #[test]
    fn inconsistent_layouts_are_not_trusted() {
        use crate::pg::archive::{ArchiveIndex, Block};
        let archive = |blocks: Vec<Block>| ArchiveIndex {
            off_size: 8,
            toc_end: 100,
            entries: Vec::new(),
            blocks,
        };
        let block = |start, end| Block {
            dump_id: 1,
            start,
            end,
        };
        let good = StoredLayout {
            frames: vec![(0, 0), (FRAME_SIZE, 10)],
            archive: Some(archive(vec![block(100, 200), block(200, 300)])),
        };
        assert!(good.is_consistent(Some(300)));
        assert!(!good.is_consistent(Some(299)));
        let frames_off = StoredLayout {
            frames: vec![(5, 0)],
            ..good.clone()
        };
        assert!(!frames_off.is_consistent(None));
        let backwards = StoredLayout {
            archive: Some(archive(vec![block(200, 150)])),
            ..good.clone()
        };
        assert!(!backwards.is_consistent(None));
        let inside_toc = StoredLayout {
            archive: Some(archive(vec![block(50, 150)])),
            ..good
        };
        assert!(!inside_toc.is_consistent(None));
    }

    #[test]
    fn frames_can_be_read_from_any_offset_and_as_one_stream() {
        let plain: Vec<u8> = (0..(FRAME_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_path_buf()).unwrap();
        let mut w = FramedEncoder::new(storage.create("d").unwrap(), 1, 0).unwrap();
        for part in plain.chunks(1_000_003) {
            w.write_all(part).unwrap();
        }
        let Compressed {
            inner: obj,
            bytes: size,
            frames,
            ..
        } = w.finish().unwrap();
        assert_eq!(obj.commit().unwrap(), size);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].0, FRAME_SIZE);
        let layout = StoredLayout {
            frames,
            archive: None,
        };
        for offset in [0, 1, FRAME_SIZE - 1, FRAME_SIZE, FRAME_SIZE * 2 + 100] {
            let mut r = layout.open_at(&storage, "d", offset).unwrap();
            let mut got = vec![0u8; 5000.min(plain.len() - offset as usize)];
            r.read_exact(&mut got).unwrap();
            assert_eq!(
                got,
                &plain[offset as usize..offset as usize + got.len()],
                "{offset}"
            );
        }
        let mut whole = Vec::new();
        zstd::stream::read::Decoder::new(storage.open("d").unwrap())
            .unwrap()
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, plain);
    }
}
