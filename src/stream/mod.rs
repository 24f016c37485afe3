//! Generic streaming stages that captures, restores, base backups and WAL files are built
//! from: hashing, a tee that counts progress, a read-ahead thread, chunked copies, the
//! custom-format magic check, and the framed zstd encoder with its recorded layout. Nothing
//! here knows about transfers, jobs or child processes.

use std::io::{self, Read, Write};

pub mod framed;
mod hash;
mod readahead;
mod tee;

pub use hash::{HashingReader, HashingWriter};
pub use readahead::{ChannelReader, Hashed, hashed_read_ahead};
pub use tee::{Progress, Tee};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_dump_from_any_first_chunk() {
        assert!(starts_like_a_dump(0, b"PGDMP\x01\x0e"));
        assert!(starts_like_a_dump(0, b"PG"));
        assert!(starts_like_a_dump(2, b"DMPxyz"));
        assert!(starts_like_a_dump(9, b"anything"));
        assert!(!starts_like_a_dump(0, b"<html>"));
        assert!(!starts_like_a_dump(3, b"XX"));
    }
}
