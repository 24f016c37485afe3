//! Starting a recovered cluster (`rollback --start`, `fork --start`): `pg_ctl start`, then a
//! wait until recovery has reached its target and the server accepts writes, or the reason it
//! stopped instead.
//!
//! No connection is needed (the recovered cluster's roles and pg_hba.conf are the backed-up
//! ones). Two states the server writes say it accepts writes:
//! - `global/pg_control` says "in production": PostgreSQL sets it at the end of recovery in the
//!   same step that makes `pg_is_in_recovery()` false (and it stays "in archive recovery"
//!   while a hot standby already accepts read-only connections);
//! - `postmaster.pid` says `ready` (what `pg_ctl -w` waits for): connections are accepted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::proc::{RunError, Tool};

/// Why a recovered server is not running and accepting writes.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `pg_ctl` could not be run.
    #[error("cannot run {pg_ctl}: {source}", pg_ctl = pg_ctl.display())]
    Spawn {
        pg_ctl: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `pg_ctl start` failed; what it said, and where the server's log is.
    #[error("pg_ctl start failed: {output}; see {log}", log = log.display())]
    PgCtl { output: String, log: PathBuf },
    /// The server stopped during recovery: its own words, and what to do.
    #[error("{0}")]
    Stopped(String),
    /// Recovery did not end in time; the server is still running.
    #[error("{0}")]
    Timeout(String),
}

/// How often the state is polled, and how often progress is shown.
const POLL: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How many lines of `pg_ctl`'s stderr its failure shows: all it says (a few lines).
const PG_CTL_LINES: usize = 100;

/// The running server, once it accepts writes.
pub struct Started {
    pub pid: i32,
    pub port: Option<u16>,
    pub socket_dir: Option<String>,
    /// Where recovery stopped, as the server logged it.
    pub stopped_at: Vec<String>,
}

/// What `postmaster.pid` says.
struct PidFile {
    pid: i32,
    port: Option<u16>,
    socket_dir: Option<String>,
    status: String,
}

fn read_pid_file(data_dir: &Path) -> Option<PidFile> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(PidFile {
        pid: lines.first()?.trim().parse().ok()?,
        port: lines.get(3).and_then(|p| p.trim().parse().ok()),
        socket_dir: lines
            .get(4)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        // Written last, and padded: `starting`, `standby `, `ready   `, `stopping`.
        status: lines
            .get(7)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    })
}

/// `DB_IN_PRODUCTION` of PostgreSQL's `DBState`.
const IN_PRODUCTION: u32 = 6;

/// Whether `global/pg_control` says the cluster is in production: its `state` is the 4-byte
/// field after the system identifier and two version numbers (offset 16), where it has been
/// in every release since 8.x, in the machine's byte order.
fn in_production(data_dir: &Path) -> bool {
    use std::io::{Read, Seek};
    let mut state = [0u8; 4];
    std::fs::File::open(data_dir.join("global/pg_control"))
        .and_then(|mut f| {
            f.seek(std::io::SeekFrom::Start(16))?;
            f.read_exact(&mut state)
        })
        .is_ok_and(|()| u32::from_ne_bytes(state) == IN_PRODUCTION)
}

fn alive(pid: i32) -> bool {
    // EPERM: it exists, as another user's process.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// What the server logged after `from` (its log as `pg_ctl -l` writes it).
fn log_since(log: &Path, from: u64) -> String {
    use std::io::{Read, Seek};
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log)
        && f.seek(std::io::SeekFrom::Start(from)).is_ok()
    {
        let _ = f.take(64 << 20).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Starts the server in `data_dir` with `pg_ctl` (its log in `data_dir/server.log`), as the
/// OS user `run_as` when given, and waits up to `timeout` for the end of recovery, showing
/// progress on stderr.
pub async fn start_and_wait(
    name: &str,
    run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    pg_ctl: &Path,
    data_dir: &Path,
    timeout: Duration,
) -> Result<Started, StartError> {
    let log: PathBuf = data_dir.join("server.log");
    let log_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    // -W: pg_ctl returns once the postmaster is forked; the wait below is ours, because
    // pg_ctl's ends at the first connection a hot standby accepts, before the target.
    let mut tool = Tool::new("pg_ctl", pg_ctl);
    if let Some((uid, gid)) = run_as {
        tool.run_as(uid.as_raw(), gid.as_raw());
    }
    // The server inherits pg_ctl's environment, and its restore_command (our own binary)
    // reads its configuration from the same variables we did. The server must outlive us.
    // Run from the data directory: the server's OS user may not enter ours.
    let out = tool
        .inherit_env()
        .outlive_parent()
        .keep_lines(PG_CTL_LINES)
        .current_dir(data_dir)
        .arg("-D")
        .arg(data_dir)
        .arg("-l")
        .arg(&log)
        .args(["-W", "start"])
        .output(None)
        .await
        .map_err(|e| match e {
            RunError::Start { source, .. } | RunError::Wait { source, .. } => StartError::Spawn {
                pg_ctl: pg_ctl.to_path_buf(),
                source,
            },
            RunError::Failed { stderr, .. } => StartError::PgCtl {
                output: stderr,
                log: log.clone(),
            },
        })?;
    if !out.status.success() {
        return Err(StartError::PgCtl {
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                out.stderr.tail_text()
            ),
            log,
        });
    }
    eprintln!(
        "Started the server; waiting until recovery reaches the target and it accepts writes (log: {})",
        log.display()
    );
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut seen_pid: Option<i32> = None;
    loop {
        let pid_file = read_pid_file(data_dir);
        if let Some(p) = &pid_file {
            seen_pid = Some(p.pid);
        }
        match (&pid_file, seen_pid) {
            (Some(p), _) if p.status == "ready" && in_production(data_dir) && alive(p.pid) => {
                let logged = log_since(&log, log_from);
                return Ok(Started {
                    pid: p.pid,
                    port: p.port,
                    socket_dir: p.socket_dir.clone(),
                    stopped_at: logged
                        .lines()
                        .filter(|l| {
                            l.contains("recovery stopping")
                                || l.contains("last completed transaction")
                        })
                        .map(str::to_string)
                        .collect(),
                });
            }
            (Some(p), _) if alive(p.pid) => {}
            // The postmaster removes its pid file when it exits; one that was seen and is gone
            // (or names a process that is gone) has stopped.
            (Some(_), _) | (None, Some(_)) => return Err(stopped(name, &log, log_from, data_dir)),
            // Not written yet; a server that fails this early (a configuration error) logs a
            // FATAL line and never writes it.
            (None, None) => {
                if has_fatal(&log_since(&log, log_from)) {
                    return Err(stopped(name, &log, log_from, data_dir));
                }
            }
        }
        if started.elapsed() > timeout {
            let pid = seen_pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            return Err(StartError::Timeout(format!(
                "recovery has not ended after {}s: the server{pid} is still running and replaying; watch {} (or stop it with `pg_ctl -D {} stop`). Give a longer --timeout to wait for larger archives",
                timeout.as_secs(),
                log.display(),
                data_dir.display()
            )));
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let logged = log_since(&log, log_from);
            let segment = logged
                .lines()
                .rev()
                .find_map(|l| l.split("restored log file \"").nth(1)?.split('"').next());
            match segment {
                Some(s) => eprintln!(
                    "Recovering: WAL replayed into segment {s} ({}s)",
                    started.elapsed().as_secs()
                ),
                None => eprintln!("Recovering ({}s)", started.elapsed().as_secs()),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn has_fatal(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("FATAL:") || l.contains("PANIC:"))
}

/// The error of a server that stopped during recovery: its own FATAL lines.
fn stopped(name: &str, log: &Path, from: u64, data_dir: &Path) -> StartError {
    let logged = log_since(log, from);
    let mut why: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .collect();
    if why.is_empty() {
        // A log in another language, or elsewhere (logging_collector): its last lines.
        let lines: Vec<&str> = logged.lines().collect();
        why = lines[lines.len().saturating_sub(5)..].to_vec();
    }
    let hint = if logged.contains("recovery ended before configured recovery target was reached") {
        format!(
            " The archive does not hold the target: a transaction that ended before the base backup (or never), a restore point that does not exist after the oldest base backup, or a moment after the last transaction. Roll back again into a new directory with a target inside the archive (`pgbackups protection:info --name {name}` shows its window)."
        )
    } else if logged.contains("Permission denied") && logged.contains("wal-fetch") {
        " The server's OS user was denied what its restore_command reads (the store, or pgbackups' data directory; see the log): roll back again with --through-service, so that it fetches WAL through the service with a token for this archive.".to_string()
    } else {
        String::new()
    };
    StartError::Stopped(format!(
        "the server stopped before recovery reached the target; it said:\n  {}\nNothing runs on {}; its log is {}.{hint}",
        why.join("\n  "),
        data_dir.display(),
        log.display()
    ))
}
