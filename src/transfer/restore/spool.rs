//! The spooled restore's scratch file: the stored backup decompressed into it on two threads,
//! proven by its checksum, with the data offsets pg_dump could not write filled in.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::super::download::PlainDump;
use super::super::job::JobCtx;
use super::not_a_dump;
use crate::pg::archive;
use crate::stream::{CHUNK, ChannelReader, Tee};

/// Decompresses the backup into the scratch file (mode 0600: it holds the data), counting
/// progress; proves the checksum and that the content starts like a custom-format dump; then
/// fills in the data offsets pg_dump could not write to its pipe, so that `pg_restore --jobs`
/// seeks straight to each table's data instead of scanning the file for it.
///
/// Two threads share the work: one reads, hashes and decompresses the stored object, the other
/// indexes the archive and writes the scratch file; a bounded channel between them keeps
/// memory at a few chunks.
pub(in crate::transfer) fn spool(plain: PlainDump, path: &Path, ctx: &JobCtx) -> io::Result<()> {
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let producer = std::thread::Builder::new()
        .name("restore-read".into())
        .spawn(move || decompress_into(plain, &tx))?;
    let tee = Tee::new(
        ChannelReader::new(rx),
        BufWriter::with_capacity(CHUNK, file),
        ctx,
    );
    // The scan pulls every byte through the tee, which writes it to the scratch file.
    let mut reader = BufReader::with_capacity(CHUNK, tee);
    let scanned = archive::scan(&mut reader);
    let tee = reader.into_inner();
    let magic_ok = tee.starts_with_magic();
    let Tee { inner, out, .. } = tee;
    // Closing our end stops the reader thread if we stopped early (cancel, write error).
    drop(inner);
    let plain = producer
        .join()
        .map_err(|_| io::Error::other("the restore's reader thread panicked"))??;
    let index = scanned?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    plain.verify()?;
    if !magic_ok {
        return Err(not_a_dump());
    }
    match index.map(|i| i.patches()) {
        Some(patches) if !patches.is_empty() => {
            for (pos, bytes) in &patches {
                file.write_all_at(bytes, *pos)?;
            }
            ctx.log(&format!(
                "Filled in the data offsets of {} table(s) for pg_restore",
                patches.len()
            ));
        }
        _ => ctx.log("Could not index the dump's data blocks; pg_restore will scan for them"),
    }
    Ok(())
}

/// The reading half of [`spool`]: sends the plain dump in chunks until the end or until the
/// receiver goes away, and hands the reader back for its checksum verdict.
fn decompress_into(
    mut plain: PlainDump,
    tx: &std::sync::mpsc::SyncSender<Vec<u8>>,
) -> io::Result<PlainDump> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match plain.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(plain);
        }
        chunk.truncate(filled);
        if tx.send(chunk).is_err() {
            return Ok(plain); // the writer stopped; it knows why
        }
    }
}
