//! Taking a base backup: `pg_basebackup -D - -Ft -X none` streamed through zstd and SHA-256
//! into the store, then its description written beside it once the WAL it needs is stored
//! too.

use std::io::{self, BufReader, Read, Write};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::BaseBackup;
use crate::pg::client::tool_command;
use crate::pg::wal_names::Lsn;
use crate::pg::{PgTool, PgTools, PgUrl};
use crate::proc::{RunError, error_summary};
use crate::storage::{ObjectWriter, Storage, StorageError};
use crate::stream::copy_chunked;
use crate::stream::framed::FramedEncoder;
use crate::wal::WalError;

/// Why a base backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BaseBackupError {
    /// The name cannot name WAL in the store.
    #[error(transparent)]
    Name(WalError),
    #[error(transparent)]
    NoTool(#[from] crate::pg::ToolError),
    #[error(transparent)]
    Run(#[from] RunError),
    /// pg_basebackup exited with an error; `hint` says what to do about the usual ones.
    #[error("pg_basebackup failed: {stderr}{hint}")]
    Failed {
        status: ExitStatus,
        stderr: String,
        hint: String,
    },
    #[error("could not store the base backup: {0}")]
    Store(#[source] io::Error),
    #[error("could not store the base backup: {0}")]
    Storage(#[source] StorageError),
    #[error("could not store the base backup's description: {0}")]
    Description(#[source] StorageError),
    #[error("the stored base backup has {committed} bytes, but {written} were written")]
    Size { committed: u64, written: u64 },
    /// What the tar carried does not say where the backup's WAL lies.
    #[error("{0}")]
    Undescribed(String),
    /// The WAL up to the backup's end never reached the store.
    #[error(
        "the WAL this base backup needs ({file}) did not reach the store within {secs} s, so the base backup was discarded. The cluster's WAL must go into pgbackups under the name {name}: protect it (`pgbackups protect {name}`), or set archive_mode = on and archive_command = 'pgbackups wal-push --name {name} %p' (with the same storage settings)"
    )]
    WalMissing {
        file: String,
        name: String,
        secs: u64,
    },
    #[error("could not look for the base backup's WAL: {0}")]
    WalLookup(#[source] StorageError),
    #[error("the base backup was cancelled")]
    Cancelled,
    #[error("the base backup's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("could not describe the base backup: {0}")]
    Json(#[from] serde_json::Error),
}

/// Takes a base backup of the cluster at `url` for `name`. The role needs REPLICATION and a
/// `replication` line in `pg_hba.conf`; the cluster's WAL must reach the store under the
/// same name (archived with `wal-push --name NAME`, or streamed by `protect`) within
/// `wal_wait` of the backup's end (`Tuning::base_wal_wait`).
pub async fn take_base_backup(
    storage: Arc<dyn Storage>,
    tools: &PgTools,
    url: &PgUrl,
    name: &str,
    wal_wait: std::time::Duration,
) -> Result<BaseBackup, BaseBackupError> {
    take_base_backup_until(
        storage,
        tools,
        url,
        name,
        wal_wait,
        &CancellationToken::new(),
    )
    .await
}

/// [`take_base_backup`], stopped (pg_basebackup terminated, nothing stored) when `stop`
/// fires.
pub async fn take_base_backup_until(
    storage: Arc<dyn Storage>,
    tools: &PgTools,
    url: &PgUrl,
    name: &str,
    wal_wait: std::time::Duration,
    stop: &CancellationToken,
) -> Result<BaseBackup, BaseBackupError> {
    crate::wal::key(name, "00000001.history").map_err(BaseBackupError::Name)?;
    let started_at = jiff::Timestamp::now();
    // Milliseconds, so that two base backups in one second do not share a key or a label.
    let id = format!(
        "{}{:03}Z",
        started_at.strftime("%Y%m%dT%H%M%S."),
        started_at.subsec_millisecond()
    );
    let exe = tools.newest(PgTool::BaseBackup)?;
    let key = format!("base/{name}/{id}.tar.zst");
    let s = storage.clone();
    let k = key.clone();
    let writer = tokio::task::spawn_blocking(move || s.create(&k))
        .await?
        .map_err(BaseBackupError::Storage)?;

    let (reader, pipe_writer) = io::pipe().map_err(BaseBackupError::Store)?;
    let mut cmd = tool_command(&exe, Some(url));
    cmd.args([
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--verbose",
        &format!("--label=pgbackups {name} {id}"),
        "--no-password",
        "--dbname",
        &url.without_password(),
    ])
    .stdout(Stdio::from(pipe_writer))
    .keep_lines(20);
    let child = cmd.spawn()?;
    drop(cmd);
    let pipeline = tokio::task::spawn_blocking(move || compress(reader, writer));
    let finished = child.wait(stop, None).await?;
    let piped = pipeline.await?;
    if stop.is_cancelled() {
        if let Ok(p) = piped {
            abort(p.writer).await;
        }
        return Err(BaseBackupError::Cancelled);
    }
    // pg_basebackup's own error first: when it dies mid-stream, the tar is cut short too.
    if !finished.success() {
        if let Ok(p) = piped {
            abort(p.writer).await;
        }
        return Err(explain_failure(
            finished.status,
            &finished.stderr.lines(),
            url,
        ));
    }
    let Compressed {
        writer,
        sha256,
        stored_bytes,
        tar_bytes,
        frames,
        scanned,
    } = piped.map_err(BaseBackupError::Store)?;
    let described = match describe(&scanned, name) {
        Ok(d) => d,
        Err(e) => {
            abort(writer).await;
            return Err(e);
        }
    };
    // A base backup is only usable with the WAL up to its end: wait until that is in the
    // store (archived by `wal-push`, or streamed by `protect`), which also proves that the
    // cluster's WAL reaches the store under this name.
    let (s2, n2, d2, stop2) = (
        storage.clone(),
        name.to_string(),
        described.clone(),
        stop.clone(),
    );
    let waited =
        tokio::task::spawn_blocking(move || wait_for_wal(s2.as_ref(), &n2, &d2, wal_wait, &stop2))
            .await
            .map_err(BaseBackupError::from)
            .and_then(|r| r);
    if let Err(e) = waited {
        abort(writer).await;
        return Err(e);
    }
    let committed = tokio::task::spawn_blocking(move || writer.commit())
        .await?
        .map_err(BaseBackupError::Storage)?;
    if committed != stored_bytes {
        return Err(BaseBackupError::Size {
            committed,
            written: stored_bytes,
        });
    }
    let backup = BaseBackup {
        name: name.to_string(),
        id: id.clone(),
        started_at,
        finished_at: server_now(tools, url).await,
        start_lsn: described.start_lsn,
        stop_lsn: described.stop_lsn,
        timeline: described.timeline,
        wal_segment_size: described.wal_segment_size,
        tar_bytes,
        stored_bytes,
        sha256,
        frames,
    };
    // The description makes it exist: written last.
    let json = serde_json::to_vec_pretty(&backup)?;
    let desc = format!("base/{name}/{id}.json");
    tokio::task::spawn_blocking(move || storage.write_small(&desc, &json))
        .await?
        .map_err(BaseBackupError::Description)?;
    Ok(backup)
}

/// The server's clock, which is what `recovery_target_time` is compared with (rollbacks pick
/// the newest base backup that finished before a target); ours if the server cannot say.
async fn server_now(tools: &PgTools, url: &PgUrl) -> jiff::Timestamp {
    let rows = crate::pg::client::query(
        tools,
        url,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .await;
    rows.ok()
        .and_then(|r| r.first()?.first()?.parse().ok())
        .unwrap_or_else(jiff::Timestamp::now)
}

/// Where a base backup's WAL starts and ends, from the `backup_label` and `backup_manifest`
/// inside its tar.
#[derive(Clone, Debug)]
struct Described {
    start_lsn: Lsn,
    stop_lsn: Lsn,
    /// The timeline the backup started on (recovery starts there).
    timeline: u32,
    /// The timeline its WAL ends on (different when a standby was promoted meanwhile).
    stop_timeline: u32,
    wal_segment_size: u64,
}

/// What the tar stream carried besides the data directory: `backup_label` (where the WAL
/// starts) and the end of `backup_manifest`, which pg_basebackup appends to a tar it writes
/// to stdout and whose `WAL-Ranges` say where the WAL ends.
#[derive(Default)]
struct Scanned {
    label: String,
    manifest_tail: Vec<u8>,
}

/// The manifest's last bytes kept: `WAL-Ranges` and the checksum close it.
const MANIFEST_TAIL: usize = 64 << 10;

fn describe(scanned: &Scanned, name: &str) -> Result<Described, BaseBackupError> {
    let missing = |what: &str| {
        BaseBackupError::Undescribed(format!(
            "the base backup of {name} has no {what} (is the server PostgreSQL 13 or newer, and pg_basebackup as new as the server?)"
        ))
    };
    let field = |f: &str| scanned.label.lines().find_map(|l| l.strip_prefix(f));
    // `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`: the LSN and its file
    // tell the segment size.
    let start = field("START WAL LOCATION: ").ok_or_else(|| missing("backup_label"))?;
    let start_lsn = start.split_whitespace().next().unwrap_or("").to_string();
    let start_file = start
        .split("(file ")
        .nth(1)
        .map(|f| f.trim_end_matches(')').trim())
        .unwrap_or("");
    let timeline = field("START TIMELINE: ")
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| missing("START TIMELINE in its backup_label"))?;
    let wal_segment_size = super::segment_size_of(&start_lsn, start_file).ok_or_else(|| {
        BaseBackupError::Undescribed(format!("cannot tell the WAL segment size from `{start}`"))
    })?;

    #[derive(serde::Deserialize)]
    struct Range {
        #[serde(rename = "Timeline")]
        timeline: u32,
        #[serde(rename = "End-LSN")]
        end_lsn: String,
    }
    let tail = String::from_utf8_lossy(&scanned.manifest_tail);
    let ranges = tail
        .rfind("\"WAL-Ranges\"")
        .and_then(|at| {
            let rest = &tail[at..];
            let open = rest.find('[')?;
            let close = rest.find(']')?;
            serde_json::from_str::<Vec<Range>>(&rest[open..=close]).ok()
        })
        .ok_or_else(|| missing("WAL-Ranges in its backup_manifest"))?;
    let last = ranges
        .last()
        .ok_or_else(|| missing("WAL range in its backup_manifest"))?;
    let (Ok(start_lsn), Ok(stop_lsn)) = (start_lsn.parse::<Lsn>(), last.end_lsn.parse::<Lsn>())
    else {
        return Err(BaseBackupError::Undescribed(format!(
            "the base backup of {name} does not say where its WAL starts and ends"
        )));
    };
    Ok(Described {
        start_lsn,
        stop_lsn,
        timeline,
        stop_timeline: last.timeline,
        wal_segment_size,
    })
}

/// Waits until the segment holding the backup's last WAL byte is in the store, at most
/// `wal_wait`.
fn wait_for_wal(
    storage: &dyn Storage,
    name: &str,
    d: &Described,
    wal_wait: std::time::Duration,
    stop: &CancellationToken,
) -> Result<(), BaseBackupError> {
    // The end LSN is the first byte after the backup's WAL: the byte before it is the last
    // one needed.
    let last = d.stop_lsn.0.saturating_sub(1);
    let file = super::segment_file(d.stop_timeline, last, d.wal_segment_size);
    let key = crate::wal::key(name, &file).map_err(BaseBackupError::Name)?;
    let deadline = std::time::Instant::now() + wal_wait;
    loop {
        if storage
            .size(&key)
            .map_err(BaseBackupError::WalLookup)?
            .is_some()
        {
            return Ok(());
        }
        if stop.is_cancelled() {
            return Err(BaseBackupError::Cancelled);
        }
        if std::time::Instant::now() > deadline {
            return Err(BaseBackupError::WalMissing {
                file,
                name: name.to_string(),
                secs: wal_wait.as_secs(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

async fn abort(writer: Box<dyn ObjectWriter>) {
    let _ = tokio::task::spawn_blocking(move || writer.abort()).await;
}

/// The compressed tar in its (uncommitted) object, with what the pipeline learned.
struct Compressed {
    writer: Box<dyn ObjectWriter>,
    sha256: String,
    stored_bytes: u64,
    tar_bytes: u64,
    frames: Vec<(u64, u64)>,
    scanned: Scanned,
}

/// A reader that writes everything read through it to `to`: the tar is parsed on its way
/// into the compressor.
struct Tee<R, W> {
    from: R,
    to: W,
    bytes: u64,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The tar from the pipe, through zstd (a new frame every 16 MiB, so that a restore can
/// decompress frames in parallel) and SHA-256 into the object, read entry by entry on the way
/// to pick out `backup_label` and the manifest's end.
fn compress(reader: io::PipeReader, writer: Box<dyn ObjectWriter>) -> io::Result<Compressed> {
    let input = BufReader::with_capacity(1 << 20, reader);
    let encoder = FramedEncoder::new(writer, 1, 2)?;
    let mut tee = Tee {
        from: input,
        to: encoder,
        bytes: 0,
    };
    let mut scanned = Scanned::default();
    {
        let mut archive = tar::Archive::new(&mut tee);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path_bytes().into_owned();
            match path.as_slice() {
                b"backup_label" => {
                    let mut label = Vec::new();
                    (&mut entry).take(1 << 20).read_to_end(&mut label)?;
                    scanned.label = String::from_utf8_lossy(&label).into_owned();
                    copy_chunked(&mut entry, &mut io::sink())?;
                }
                b"backup_manifest" => {
                    copy_chunked(&mut entry, &mut TailWriter(&mut scanned.manifest_tail))?;
                }
                _ => {
                    copy_chunked(&mut entry, &mut io::sink())?;
                }
            }
        }
    }
    // The end-of-archive blocks and any padding after them.
    copy_chunked(&mut tee, &mut io::sink())?;
    let tar_bytes = tee.bytes;
    let done = tee.to.finish()?;
    Ok(Compressed {
        writer: done.inner,
        sha256: done.sha256,
        stored_bytes: done.bytes,
        tar_bytes,
        frames: done.frames,
        scanned,
    })
}

/// Keeps the last [`MANIFEST_TAIL`] bytes written to it.
struct TailWriter<'a>(&'a mut Vec<u8>);

impl Write for TailWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        if self.0.len() > 2 * MANIFEST_TAIL {
            self.0.drain(..self.0.len() - MANIFEST_TAIL);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// pg_basebackup's error, with what to do about the usual ones.
fn explain_failure(status: ExitStatus, lines: &[String], url: &PgUrl) -> BaseBackupError {
    let summary = error_summary(lines);
    let user = url.user().unwrap_or_default();
    let hint = if summary.contains("no pg_hba.conf entry for replication connection") {
        format!(
            ". Add a line such as `host replication {user} <client address>/32 scram-sha-256` to pg_hba.conf and reload the server"
        )
    } else if summary.contains("must be superuser or replication role")
        || summary.contains("permission denied to start WAL sender")
        || summary.contains("REPLICATION")
    {
        format!(". The role needs REPLICATION: ALTER ROLE {user} REPLICATION")
    } else {
        String::new()
    };
    BaseBackupError::Failed {
        status,
        stderr: summary,
        hint,
    }
}
