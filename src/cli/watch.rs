//! Watching a transfer until it ends: progress on stderr, log lines with `--verbose`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::client::{CliError, Client};
use crate::catalog::{LogLine, TransferId, TransferRecord, TransferState};
use crate::format;

/// Polls a transfer until it ends. Ctrl-C stops watching (the transfer goes on). Returns the
/// exit code: 0 when it succeeded, 1 when it failed or was cancelled, 130 on Ctrl-C.
pub async fn watch(
    c: &Client,
    id: TransferId,
    title: &str,
    verbose: bool,
) -> Result<i32, CliError> {
    let tty = std::io::stderr().is_terminal();
    let mut last_seq = 0u64;
    let started = Instant::now();
    let mut last_plain_report = Instant::now();
    let mut last_bytes = (Instant::now(), 0u64);
    let mut rate = 0.0f64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let path = format!("/transfers/{id}?wait_ms=500");
    loop {
        // The service answers as soon as the transfer ends, or after half a second.
        let rec: TransferRecord = tokio::select! {
            r = c.get(&path) => r?,
            _ = &mut ctrl_c => {
                if tty {
                    eprint!("\r\x1b[K");
                }
                eprintln!("Stopped watching; {id} goes on in the service. Follow it with `pgbackups backups:info {id}`.");
                return Ok(130);
            }
        };
        if verbose {
            let logs: Vec<LogLine> = c
                .get(&format!("/transfers/{id}/logs?after={last_seq}"))
                .await?;
            for l in logs {
                if tty {
                    eprint!("\r\x1b[K");
                }
                eprintln!("{} {}", format::time(l.at), l.line);
                last_seq = l.seq;
            }
        }
        let now = Instant::now();
        let dt = now.duration_since(last_bytes.0).as_secs_f64();
        if dt >= 1.0 {
            let inst = rec.bytes_processed.saturating_sub(last_bytes.1) as f64 / dt;
            rate = if rate == 0.0 {
                inst
            } else {
                0.5 * rate + 0.5 * inst
            };
            last_bytes = (now, rec.bytes_processed);
        }
        let line = format!(
            "{id}: {} processed, {}/s, {} elapsed",
            format::bytes(rec.bytes_processed),
            format::bytes(rate as u64),
            format::duration(started.elapsed().as_secs())
        );
        if rec.state.is_finished() {
            if tty {
                eprint!("\r\x1b[K");
            }
            let code = report_end(&rec, title);
            for w in end_warnings(c, &rec).await {
                eprintln!("{w}");
            }
            return Ok(code);
        }
        if tty {
            eprint!("\r\x1b[K{line}");
            let _ = std::io::stderr().flush();
        } else if last_plain_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("{line}");
            last_plain_report = Instant::now();
        }
    }
}

/// The warnings of a transfer's log, repeated once it has ended so that they are not lost
/// among its lines: a partial dump's `--exclude-table-data` pattern that matched no table,
/// an object the target refused. The transfer has ended either way: a log that cannot be read
/// now does not change the exit code.
async fn end_warnings(c: &Client, rec: &TransferRecord) -> Vec<String> {
    let logs: Vec<LogLine> = c
        .get(&format!("/transfers/{}/logs", rec.id))
        .await
        .unwrap_or_default();
    logs.into_iter()
        .filter(LogLine::is_warning)
        .map(|l| l.line)
        .collect()
}

fn report_end(rec: &TransferRecord, title: &str) -> i32 {
    match rec.state {
        // Heroku's "Completed with N warnings": the objects the target refused follow.
        TransferState::Succeeded if rec.warnings > 0 => {
            let s = if rec.warnings == 1 { "" } else { "s" };
            eprintln!(
                "{title}... done, with {} warning{s} (see them with `pgbackups backups:info {}`)",
                rec.warnings, rec.id
            );
            0
        }
        TransferState::Succeeded => {
            eprintln!("{title}... done");
            0
        }
        _ => {
            let word = if rec.state == TransferState::Cancelled {
                "cancelled"
            } else {
                "failed"
            };
            eprintln!("{title}... {word}");
            if let Some(e) = &rec.error {
                eprintln!("error: {e}");
            }
            eprintln!("See the full log with `pgbackups backups:info {}`.", rec.id);
            1
        }
    }
}
