//! Running child processes: the one [`Tool`] type every child (pg_dump, pg_restore, psql,
//! pg_basebackup, pg_receivewal, pg_waldump, pg_ctl, the WAL prefetcher) goes through.
//!
//! A tool gets an explicit environment (nothing of ours leaks in unless passed on purpose),
//! dies with the service (the kernel sends it SIGTERM if we are killed), has its stderr drained
//! as bytes (a line that is not UTF-8 is shown lossily, never ends the draining) into a sink
//! and a buffer of its last lines, is stopped with SIGTERM and then SIGKILL after a grace
//! period, and fails with a [`RunError`] that names the tool, its exit status and what its
//! stderr said.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod stderr;

pub use stderr::{Stderr, error_summary};

/// Where a tool's stderr lines go as they come (the transfer log, tracing).
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// How long a stopped tool has between SIGTERM and SIGKILL, unless [`Tool::grace`] says.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How long to wait, after a tool exited, for the end of its stderr: a grandchild that kept
/// the pipe open must not hold the caller (the draining goes on in the background).
const STDERR_LINGER: Duration = Duration::from_secs(2);

/// A tool that failed to run or ran and failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start {tool}: {source}")]
    Start {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("could not wait for {tool}: {source}")]
    Wait {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: ExitStatus,
        /// The lines of its stderr that explain the failure ([`Stderr::summary`]).
        stderr: String,
    },
}

/// A child process to start: what to run, with which environment and pipes.
pub struct Tool {
    name: String,
    exe: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    feed: Option<Vec<u8>>,
    sink: Option<Sink>,
    keep_lines: usize,
    grace: Duration,
    die_with_parent: bool,
    run_as: Option<(u32, u32)>,
    own_group: bool,
    close_fds: bool,
}

impl Tool {
    /// `exe`, known in messages as `name`, with an empty environment, stdin and stdout on
    /// /dev/null, and its stderr drained into tracing (debug) and the last 3 lines kept.
    pub fn new(name: impl Into<String>, exe: impl AsRef<Path>) -> Tool {
        Tool {
            name: name.into(),
            exe: exe.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            stdin: None,
            stdout: None,
            feed: None,
            sink: None,
            keep_lines: 3,
            grace: DEFAULT_GRACE,
            die_with_parent: true,
            run_as: None,
            own_group: false,
            close_fds: false,
        }
    }

    /// The name messages use for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The executable.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Tool {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Tool
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one variable of the child's environment (a later value for the same key wins).
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Tool {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Tool {
        self.current_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The child's stdin (`Stdio::piped()` to write to it through [`Running::stdin`]).
    pub fn stdin(&mut self, stdin: impl Into<Stdio>) -> &mut Tool {
        self.stdin = Some(stdin.into());
        self
    }

    /// The child's stdout (`Stdio::piped()` to read it through [`Running::stdout`]).
    pub fn stdout(&mut self, stdout: impl Into<Stdio>) -> &mut Tool {
        self.stdout = Some(stdout.into());
        self
    }

    /// What [`Tool::output`] writes to its stdin (which is then closed).
    pub fn feed(&mut self, input: impl Into<Vec<u8>>) -> &mut Tool {
        self.feed = Some(input.into());
        self.stdin(Stdio::piped())
    }

    /// Where its stderr lines go as they come.
    pub fn log_to(&mut self, sink: Sink) -> &mut Tool {
        self.sink = Some(sink);
        self
    }

    /// How many of its last stderr lines are kept for the error (besides its first error
    /// lines).
    pub fn keep_lines(&mut self, n: usize) -> &mut Tool {
        self.keep_lines = n.max(1);
        self
    }

    /// How long it has to exit after SIGTERM before it is killed.
    pub fn grace(&mut self, grace: Duration) -> &mut Tool {
        self.grace = grace;
        self
    }

    /// Lets it live on when the service dies (a server started by `pg_ctl`, say).
    pub fn outlive_parent(&mut self) -> &mut Tool {
        self.die_with_parent = false;
        self
    }

    /// Copies `keys` that are set in our own environment into the child's.
    pub fn pass_env(&mut self, keys: &[&str]) -> &mut Tool {
        for key in keys {
            if let Some(v) = crate::config::process_env::var_os(key) {
                self.env(*key, v);
            }
        }
        self
    }

    /// Copies our whole environment into the child's: only for our own binary run again (the
    /// WAL prefetcher, and `pg_ctl`, whose server runs us as its restore_command), which
    /// reads its configuration from the same variables we did.
    pub fn inherit_env(&mut self) -> &mut Tool {
        for (k, v) in crate::config::process_env::vars_os() {
            self.env(k, v);
        }
        self
    }

    /// Runs it as another OS user (`pg_ctl` as the data directory's owner, when we are root).
    pub fn run_as(&mut self, uid: u32, gid: u32) -> &mut Tool {
        self.run_as = Some((uid, gid));
        self
    }

    /// Puts it in a process group of its own: signals sent to ours (a terminal's Ctrl-C, or
    /// PostgreSQL signalling its restore_command) do not reach it.
    pub fn own_process_group(&mut self) -> &mut Tool {
        self.own_group = true;
        self
    }

    /// Closes every descriptor above stderr in the child: those our parent left open (a
    /// server's log pipe, say) are not the child's to hold.
    pub fn close_inherited_fds(&mut self) -> &mut Tool {
        self.close_fds = true;
        self
    }

    /// A std command with everything but stdio set: the one place the settings become a
    /// process, for both the async and the blocking ways of running it.
    fn std_command(&self) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        if self.own_group {
            cmd.process_group(0);
        }
        let (die, close) = (self.die_with_parent, self.close_fds);
        if die || close {
            // SAFETY: prctl and close_range are async-signal-safe and touch no memory of the
            // parent.
            unsafe {
                cmd.pre_exec(move || {
                    if die {
                        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                            .map_err(io::Error::from)?;
                    }
                    if close {
                        libc::close_range(3, libc::c_uint::MAX, 0);
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Starts it and lets it go: not waited for, never killed by us, no death signal, its
    /// stdout and stderr on /dev/null unless set (a WAL prefetcher that outlives the
    /// `wal-fetch` that started it). Returns its process ID.
    pub fn spawn_detached(&mut self) -> Result<u32, RunError> {
        self.die_with_parent = false;
        let mut cmd = self.std_command();
        cmd.stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(self.stdout.take().unwrap_or_else(Stdio::null))
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|source| RunError::Start {
            tool: self.name.clone(),
            source,
        })?;
        Ok(child.id())
    }

    fn sink(&self) -> Sink {
        match &self.sink {
            Some(s) => s.clone(),
            None => {
                let name = self.name.clone();
                Arc::new(move |line: &str| tracing::debug!(tool = %name, "{line}"))
            }
        }
    }

    /// Starts it. The pipes given to [`Tool::stdin`] and [`Tool::stdout`] go to the child
    /// (our copies are closed, so that the other end sees the child's end as the end).
    ///
    /// Must be called from an async task (a runtime worker thread, which lives as long as
    /// the runtime), never from a short-lived blocking thread: the death signal fires when
    /// the spawning *thread* exits.
    pub fn spawn(&mut self) -> Result<Running, RunError> {
        let mut cmd = tokio::process::Command::from(self.std_command());
        cmd.stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(self.stdout.take().unwrap_or_else(Stdio::null))
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| RunError::Start {
            tool: self.name.clone(),
            source,
        })?;
        let stderr = Arc::new(Mutex::new(Stderr::new(self.keep_lines)));
        let drain = child
            .stderr
            .take()
            .map(|pipe| stderr::drain(pipe, self.name.clone(), self.sink(), stderr.clone()));
        Ok(Running {
            name: self.name.clone(),
            child,
            stderr,
            drain,
            grace: self.grace,
        })
    }

    /// Runs it to its end with stdout collected (stdin fed with [`Tool::feed`], as set, or
    /// /dev/null), stopping it if `stop` fires. A failed exit status is not an error here:
    /// see [`Output::check`]. Dropping the future kills the child.
    pub async fn output(&mut self, stop: Option<&CancellationToken>) -> Result<Output, RunError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stdout(Stdio::piped());
        let feed = self.feed.take();
        let mut running = self.spawn()?;
        let mut pipe = running.stdout();
        let stdin = running.stdin();
        let write = async {
            if let (Some(input), Some(mut stdin)) = (feed, stdin) {
                // A write error means the child exited early; its status and stderr tell why.
                let _ = stdin.write_all(&input).await;
            }
        };
        let read = async {
            let mut out = Vec::new();
            if let Some(p) = &mut pipe {
                // An error here means the child went away; its status says why.
                let _ = p.read_to_end(&mut out).await;
            }
            out
        };
        let never = CancellationToken::new();
        let stop = stop.unwrap_or(&never);
        let ((), stdout, finished) = tokio::join!(write, read, running.wait(stop, None));
        let finished = finished?;
        Ok(Output {
            tool: finished.tool,
            status: finished.status,
            stdout,
            stderr: finished.stderr,
        })
    }

    /// [`Tool::output`] for a blocking thread (no cancellation): for short tools run where no
    /// runtime is at hand (`--version` probes, `pg_waldump` on one segment). The death signal
    /// is safe here: the thread waits for the child.
    pub fn output_blocking(&mut self) -> Result<Output, RunError> {
        let mut cmd = self.std_command();
        cmd.stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = |source| RunError::Start {
            tool: self.name.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(start)?;
        // Fed from a thread of its own, so that a child answering on stdout while it reads
        // cannot block us both.
        let feeder = match (self.feed.take(), child.stdin.take()) {
            (Some(input), Some(mut stdin)) => Some(std::thread::spawn(move || {
                use std::io::Write;
                // A write error means the child exited early; its status and stderr tell why.
                let _ = stdin.write_all(&input);
            })),
            _ => None,
        };
        let out = child.wait_with_output().map_err(|source| RunError::Wait {
            tool: self.name.clone(),
            source,
        })?;
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let mut stderr = Stderr::new(self.keep_lines);
        let sink = self.sink();
        for raw in out.stderr.split(|b| *b == b'\n') {
            stderr.push(String::from_utf8_lossy(raw).trim_end(), &sink);
        }
        Ok(Output {
            tool: self.name.clone(),
            status: out.status,
            stdout: out.stdout,
            stderr,
        })
    }
}

/// What a tool run to its end by [`Tool::output`] left.
#[derive(Debug)]
pub struct Output {
    pub tool: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Stderr,
}

impl Output {
    /// Itself if the tool exited 0, else the error that names it, its status and stderr.
    pub fn check(self) -> Result<Output, RunError> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(failed(self.tool, self.status, &self.stderr))
        }
    }

    /// Its stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn failed(tool: String, status: ExitStatus, stderr: &Stderr) -> RunError {
    RunError::Failed {
        tool,
        status,
        stderr: stderr.summary(),
    }
}

/// A started tool.
pub struct Running {
    name: String,
    child: Child,
    stderr: Arc<Mutex<Stderr>>,
    drain: Option<JoinHandle<()>>,
    grace: Duration,
}

/// A tool that has exited.
#[derive(Debug)]
pub struct Finished {
    pub tool: String,
    pub status: ExitStatus,
    pub stderr: Stderr,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Itself if the tool exited 0, else the error that names it, its status and stderr.
    pub fn check(self) -> Result<Finished, RunError> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(failed(self.tool, self.status, &self.stderr))
        }
    }
}

impl Running {
    /// The name messages use for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its stdin, when it was piped (once).
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its stdout, when it was piped (once).
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its process ID while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether it has exited (without waiting).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, RunError> {
        self.child.try_wait().map_err(|source| RunError::Wait {
            tool: self.name.clone(),
            source,
        })
    }

    /// Waits for it to exit; stops it (SIGTERM, then SIGKILL after the grace) as soon as
    /// `stop` or `also` fires. Its exit status is not checked: see [`Finished::check`].
    pub async fn wait(
        mut self,
        stop: &CancellationToken,
        also: Option<&CancellationToken>,
    ) -> Result<Finished, RunError> {
        let also = async {
            match also {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            s = self.child.wait() => s,
            _ = stop.cancelled() => terminate(&mut self.child, self.grace).await,
            _ = also => terminate(&mut self.child, self.grace).await,
        };
        self.finish(status).await
    }

    /// Stops it now: SIGTERM, then SIGKILL if it has not exited within the grace.
    pub async fn stop(mut self) -> Result<Finished, RunError> {
        let status = terminate(&mut self.child, self.grace).await;
        self.finish(status).await
    }

    /// What it left, once [`Running::try_wait`] said it exited.
    pub async fn exited(mut self) -> Result<Finished, RunError> {
        let status = self.child.wait().await;
        self.finish(status).await
    }

    async fn finish(self, status: io::Result<ExitStatus>) -> Result<Finished, RunError> {
        let status = status.map_err(|source| RunError::Wait {
            tool: self.name.clone(),
            source,
        })?;
        if let Some(drain) = self.drain {
            // Detached after the linger, not aborted: what comes later still reaches the sink.
            let _ = tokio::time::timeout(STDERR_LINGER, drain).await;
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(Finished {
            tool: self.name,
            status,
            stderr,
        })
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within `grace`.
async fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
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

#[cfg(test)]
mod tests;
