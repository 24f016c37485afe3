//! Starting the WAL prefetcher: a detached `pgbackups wal-prefetch` that fetches the segments
//! after the one a `wal-fetch` just delivered, while PostgreSQL replays it.

use std::ffi::OsString;
use std::path::Path;

use crate::proc::Tool;

/// Starts `wal-prefetch` for the segments of `name` after `file` (just fetched to `dest`) in
/// the background, detached: the `wal-fetch` returns at once, and PostgreSQL replays while the
/// next segments arrive. `store_args` are the flags that name the store (`--data-dir`,
/// `--storage`, ...). Nothing is reported: prefetching is an optimisation, and a failed one
/// leaves `wal-fetch` to read the store itself.
pub fn spawn(name: &str, file: &str, dest: &Path, segment_size: u64, store_args: &[OsString]) {
    if file.len() != 24 || !crate::wal::make_prefetch_dir(dest) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // Our environment: it reads its configuration from the same variables we did. Its own
    // process group: the signals PostgreSQL sends its restore_command are not for it. The
    // descriptors the server left open in its restore_command (its log pipe, say) are not
    // the prefetcher's.
    let _ = Tool::new("wal-prefetch", exe)
        .args(["wal-prefetch", "--name", name, "--after", file, "--dir"])
        .arg(crate::wal::prefetch_dir(dest))
        .args(["--segment-size", &segment_size.to_string()])
        .args(store_args)
        .inherit_env()
        .own_process_group()
        .close_inherited_fds()
        .spawn_detached();
}

/// How many segments of `segment_size` bytes one prefetch fetches: about 128 MiB ahead,
/// eight 16 MiB segments.
pub fn count(segment_size: u64) -> usize {
    ((128u64 << 20) / segment_size.max(1)).clamp(1, 8) as usize
}
