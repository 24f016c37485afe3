//! Child-process plumbing shared by captures and restores (moving to `crate::proc`).

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::job::JobCtx;

/// Spawns a PostgreSQL tool so that it dies with the service: if the service is killed, the
/// kernel sends the child SIGTERM (which pg_dump and pg_restore handle by cancelling their
/// queries and stopping their parallel workers).
///
/// Must be called from an async task (a runtime worker thread, which lives as long as the
/// runtime), never from a short-lived blocking thread: the death signal fires when the
/// spawning *thread* exits.
pub fn spawn_tool(cmd: &mut Command, tool: &str) -> Result<Child, io::Error> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(io::Error::from)
        });
    }
    cmd.spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("could not start {tool}: {e}")))
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within `grace`.
pub async fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            child.start_kill()?;
            child.wait().await
        }
    }
}

/// Runs a started tool to its end: its stderr goes into the transfer log, and it is stopped
/// (SIGTERM, then SIGKILL after 10 s) when the transfer is cancelled or `also_stop` fires.
/// Returns its exit status and the stderr lines that explain a failure.
pub async fn supervise(
    mut child: Child,
    ctx: &JobCtx,
    tool: &'static str,
    also_stop: Option<&CancellationToken>,
) -> (io::Result<ExitStatus>, Vec<String>) {
    let stderr = child
        .stderr
        .take()
        .map(|s| log_stderr(s, ctx.clone(), tool));
    let never = CancellationToken::new();
    let also_stop = also_stop.unwrap_or(&never);
    let status = tokio::select! {
        s = child.wait() => s,
        _ = ctx.cancelled().cancelled() => terminate(&mut child, Duration::from_secs(10)).await,
        _ = also_stop.cancelled() => terminate(&mut child, Duration::from_secs(10)).await,
    };
    let lines = match stderr {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    (status, lines)
}

/// Copies a child's stderr into the transfer log line by line, and returns what explains a
/// failure: its first error lines (all of them up to a limit), then its last lines.
pub fn log_stderr(stderr: ChildStderr, ctx: JobCtx, tool: &'static str) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        // Bytes, not `lines()`: a tool prints names in the database's encoding, which need
        // not be UTF-8, and giving up on a line would close the pipe under the tool.
        let mut reader = BufReader::new(stderr);
        let mut raw: Vec<u8> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut tail: Vec<String> = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw).await {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    ctx.log(&line);
                    if is_error_line(&line) && errors.len() < 10 {
                        errors.push(line.clone());
                    }
                    tail.push(line);
                    if tail.len() > 3 {
                        tail.remove(0);
                    }
                }
                Err(e) => {
                    ctx.log(&format!("(could not read {tool}'s messages: {e})"));
                    // Keep draining, so that the tool never blocks or dies on a full pipe.
                    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
                    break;
                }
            }
        }
        for line in tail {
            if !errors.contains(&line) {
                errors.push(line);
            }
        }
        errors
    })
}

fn is_error_line(line: &str) -> bool {
    line.contains("error:")
        || line.contains("detail:")
        || line.contains("FATAL")
        || line.contains("ERROR")
}

/// The lines of a tool's stderr that say what went wrong (its error lines when there are any,
/// else the last lines), joined for an error message.
pub fn error_summary(lines: &[String]) -> String {
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| is_error_line(l))
        .map(String::as_str)
        .collect();
    if errors.is_empty() {
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ")
    } else {
        errors.join(" / ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_tool_errors() {
        let tail = vec![
            "pg_dump: dumping contents of table \"public.a\"".to_string(),
            "pg_dump: error: Dumping the contents of table \"b\" failed".to_string(),
            "pg_dump: detail: Error message from server: boom".to_string(),
        ];
        assert_eq!(
            error_summary(&tail),
            "pg_dump: error: Dumping the contents of table \"b\" failed / pg_dump: detail: Error message from server: boom"
        );
    }
}
