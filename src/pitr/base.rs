//! Taking a base backup: `pg_basebackup -D - -Ft -X none` streamed through zstd and SHA-256
//! into the store, then its description written beside it.

use std::io::{self, BufReader, Read};
use std::process::Stdio;
use std::sync::Arc;

use super::BaseBackup;
use crate::pg::client::tool_command;
use crate::pg::{PgTool, PgTools, PgUrl};
use crate::storage::{ObjectWriter, Storage};
use crate::transfer::pipeline::{HashingWriter, copy_chunked, error_summary, spawn_tool};

/// Takes a base backup of the cluster at `url` for `name`. The role needs REPLICATION and a
/// `replication` line in `pg_hba.conf`; the cluster must archive its WAL under the same name
/// (`wal-push --name NAME`).
pub async fn take_base_backup(
    storage: Arc<dyn Storage>,
    tools: &PgTools,
    url: &PgUrl,
    name: &str,
) -> Result<BaseBackup, String> {
    crate::wal::key(name, "00000001.history").map_err(|e| e.to_string())?;
    let started_at = jiff::Timestamp::now();
    // Milliseconds, so that two base backups in one second do not share a key or a label.
    let id = format!(
        "{}{:03}Z",
        started_at.strftime("%Y%m%dT%H%M%S."),
        started_at.subsec_millisecond()
    );
    let exe = tools
        .newest(PgTool::BaseBackup)
        .map_err(|e| e.to_string())?;
    let key = format!("base/{name}/{id}.tar.zst");
    let s = storage.clone();
    let k = key.clone();
    let writer = tokio::task::spawn_blocking(move || s.create(&k))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;

    let (reader, pipe_writer) = io::pipe().map_err(|e| e.to_string())?;
    let mut cmd = tool_command(&exe, Some(url));
    cmd.args([
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--no-manifest",
        "--verbose",
        &format!("--label=pgbackups {name} {id}"),
        "--no-password",
        "--dbname",
        &url.without_password(),
    ])
    .stdout(Stdio::from(pipe_writer))
    .stderr(Stdio::piped());
    let child = spawn_tool(&mut cmd, "pg_basebackup").map_err(|e| e.to_string())?;
    drop(cmd);
    let pipeline = tokio::task::spawn_blocking(move || compress(reader, writer));
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("pg_basebackup: {e}"))?;
    let piped = pipeline.await.map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<String> = stderr.lines().map(str::to_string).collect();
    let (writer, sha256, stored_bytes, tar_bytes) = match piped {
        Ok(p) => p,
        Err(e) => return Err(format!("could not store the base backup: {e}")),
    };
    if !out.status.success() {
        tokio::task::spawn_blocking(move || writer.abort())
            .await
            .map_err(|e| e.to_string())?;
        return Err(explain_failure(&lines, url));
    }
    // The backup history file that the server archived at the end of the backup (through
    // `wal-push --name NAME`) says where the backup's WAL starts and ends; finding it also
    // proves that the server archives into this name.
    let label = format!("pgbackups {name} {id}");
    let (s2, n2) = (storage.clone(), name.to_string());
    let history = tokio::task::spawn_blocking(move || find_history(s2.as_ref(), &n2, &label))
        .await
        .map_err(|e| e.to_string())?;
    let history = match history {
        Ok(h) => h,
        Err(e) => {
            tokio::task::spawn_blocking(move || writer.abort())
                .await
                .map_err(|e| e.to_string())?;
            return Err(e);
        }
    };
    let committed = tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not store the base backup: {e}"))?;
    if committed != stored_bytes {
        return Err(format!(
            "the stored base backup has {committed} bytes, but {stored_bytes} were written"
        ));
    }
    let backup = BaseBackup {
        name: name.to_string(),
        id: id.clone(),
        started_at,
        finished_at: jiff::Timestamp::now(),
        start_lsn: history.start_lsn,
        stop_lsn: history.stop_lsn,
        timeline: history.timeline,
        wal_segment_size: history.wal_segment_size,
        tar_bytes,
        stored_bytes,
        sha256,
    };
    // The description makes it exist: written last.
    let json = serde_json::to_vec_pretty(&backup).map_err(|e| e.to_string())?;
    let desc = format!("base/{name}/{id}.json");
    tokio::task::spawn_blocking(move || storage.write_small(&desc, &json))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not store the base backup's description: {e}"))?;
    Ok(backup)
}

/// What a backup history file (`….backup`) says.
struct History {
    start_lsn: String,
    stop_lsn: String,
    timeline: u32,
    wal_segment_size: u64,
}

/// Finds the archived backup history file with `label`, waiting a little for the archiver.
fn find_history(storage: &dyn Storage, name: &str, label: &str) -> Result<History, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let keys = storage
            .list(&format!("wal/{name}/"))
            .map_err(|e| e.to_string())?;
        for key in keys.iter().rev().filter(|k| k.ends_with(".backup.zst")) {
            // Through `open`, which decrypts (WAL is encrypted like backups).
            let mut stored = Vec::new();
            storage
                .open(key)
                .map_err(|e| e.to_string())?
                .take(1 << 20)
                .read_to_end(&mut stored)
                .map_err(|e| format!("{key}: {e}"))?;
            let text = zstd::decode_all(&stored[..])
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| format!("{key}: {e}"))?;
            if !text.lines().any(|l| l.trim() == format!("LABEL: {label}")) {
                continue;
            }
            let field = |f: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                    .unwrap_or_default()
            };
            // `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`: the LSN and
            // its file tell the segment size.
            let start_file = text
                .lines()
                .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
                .and_then(|v| v.split("(file ").nth(1))
                .map(|f| f.trim_end_matches(')').trim().to_string())
                .unwrap_or_default();
            let start_lsn = field("START WAL LOCATION: ");
            let h = History {
                wal_segment_size: super::segment_size_of(&start_lsn, &start_file)
                    .ok_or_else(|| format!("{key}: cannot tell the WAL segment size"))?,
                start_lsn,
                stop_lsn: field("STOP WAL LOCATION: "),
                timeline: field("START TIMELINE: ").parse().unwrap_or(0),
            };
            if super::parse_lsn(&h.start_lsn).is_none() || super::parse_lsn(&h.stop_lsn).is_none() {
                return Err(format!(
                    "{key} does not say where the backup's WAL starts and ends"
                ));
            }
            return Ok(h);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the server did not archive this backup's WAL into pgbackups under the name {name}: set archive_mode = on and archive_command = 'pgbackups wal-push --name {name} %p' (with the same storage settings), then take the base backup again"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

type Compressed = (Box<dyn ObjectWriter>, String, u64, u64);

/// The tar from the pipe, through zstd and SHA-256 into the object.
fn compress(reader: io::PipeReader, writer: Box<dyn ObjectWriter>) -> io::Result<Compressed> {
    let mut input = BufReader::with_capacity(1 << 20, reader);
    let mut encoder = zstd::stream::write::Encoder::new(HashingWriter::new(writer), 1)?;
    encoder.multithread(2)?;
    encoder.include_checksum(true)?;
    let tar_bytes = copy_chunked(&mut input, &mut encoder)?;
    let hashing = encoder.finish()?;
    let (writer, sha, stored) = hashing.finish();
    Ok((writer, sha, stored, tar_bytes))
}

/// pg_basebackup's error, with what to do about the usual ones.
fn explain_failure(lines: &[String], url: &PgUrl) -> String {
    let summary = error_summary(lines);
    let user = url.user().unwrap_or_default();
    if summary.contains("no pg_hba.conf entry for replication connection") {
        format!(
            "pg_basebackup failed: {summary}. Add a line such as `host replication {user} <client address>/32 scram-sha-256` to pg_hba.conf and reload the server"
        )
    } else if summary.contains("must be superuser or replication role")
        || summary.contains("permission denied to start WAL sender")
        || summary.contains("REPLICATION")
    {
        format!(
            "pg_basebackup failed: {summary}. The role needs REPLICATION: ALTER ROLE {user} REPLICATION"
        )
    } else {
        format!("pg_basebackup failed: {summary}")
    }
}
