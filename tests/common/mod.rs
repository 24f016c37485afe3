//! The test harness: throwaway PostgreSQL clusters started with `initdb`, and throwaway
//! pgbackups services, both real processes.
//!
//! When the tests run as root (as in CI), the PostgreSQL server runs as the unprivileged
//! `postgres` user, because it refuses to run as root.

#![allow(dead_code)]

pub mod browser;
pub mod engine;
pub mod faulty;
pub mod s3;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The superuser password of every test cluster (TCP connections need it).
pub const PASSWORD: &str = "Sup3r-s3cret-pw";

fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("PGBACKUPS_TEST_PG_BIN").unwrap_or_else(|_| PG_BIN.to_string());
    Path::new(&dir).join(tool)
}

/// The OS user the server runs as: `postgres` when we are root, else ourselves.
fn server_user() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("running as root needs the `postgres` OS user to run the PostgreSQL server");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(out: Output, what: &str) -> String {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway PostgreSQL cluster on a free port; stopped and removed on drop.
pub struct Cluster {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// initdb + start, with password (SCRAM) authentication on TCP.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`], with extra `postgresql.conf` lines (archiving, say).
    pub fn start_with(settings: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pgbackups-test-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        check(
            as_server_user(Command::new(pg_bin("initdb")).args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]))
            .output()
            .unwrap(),
            "initdb",
        );
        if !settings.is_empty() {
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            for line in settings {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&conf, text).unwrap();
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=40",
                dir.path().display()
            );
            let out = as_server_user(Command::new(pg_bin("pg_ctl")).args([
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                dir.path().join("server.log").to_str().unwrap(),
                "-w",
                "start",
            ]))
            .stdin(Stdio::null())
            .output()
            .unwrap();
            if out.status.success() {
                return Cluster { port, dir };
            }
            last_err = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        }
        panic!("could not start PostgreSQL: {last_err}");
    }

    /// Starts a server on a data directory made by someone else (a rollback), in `root/data`,
    /// on `port`; waits until it accepts connections.
    pub fn start_existing(root: tempfile::TempDir, port: u16) -> Cluster {
        let data = root.path().join("data");
        if server_user().is_some() {
            check(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(root.path())
                    .output()
                    .unwrap(),
                "chown",
            );
        }
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            root.path().display()
        );
        let out = as_server_user(Command::new(pg_bin("pg_ctl")).args([
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            root.path().join("server.log").to_str().unwrap(),
            "-w",
            "-t",
            "120",
            "start",
        ]))
        .stdin(Stdio::null())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "could not start the restored cluster: {}",
            std::fs::read_to_string(root.path().join("server.log")).unwrap_or_default()
        );
        Cluster { port, dir: root }
    }

    /// Takes charge of a server that a command started (`rollback --start`) on a data directory
    /// in `root/data`, listening on `port`: stopped and removed on drop.
    pub fn adopt(root: tempfile::TempDir, port: u16) -> Cluster {
        Cluster { port, dir: root }
    }

    /// Switches to a new WAL segment and waits until the one it left is archived; returns
    /// that segment's name.
    pub fn switch_wal_and_wait_archived(&self) -> String {
        let segment = self.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
        let segment = segment.trim().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let archived = self.psql(
                "postgres",
                "SELECT archived_count, coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver",
            );
            if archived.contains(&segment) {
                return segment;
            }
            assert!(
                Instant::now() < deadline,
                "{segment} not archived: {archived}\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/db`.
    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Runs SQL with psql; panics on error; returns unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        check(self.try_psql(db, sql), &format!("psql {sql}"))
    }

    pub fn try_psql(&self, db: &str, sql: &str) -> Output {
        Command::new(pg_bin("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn create_db(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    }

    /// Starts a psql session that runs `sql` and then holds on (its transaction open, its
    /// locks held) until the returned guard is released or dropped.
    pub fn hold(&self, db: &str, sql: &str) -> Holder<'_> {
        let mut child = Command::new(pg_bin("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db])
            .env("PGPASSWORD", PASSWORD)
            .env("PGAPPNAME", "pgbackups-test-holder")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        writeln!(stdin, "SELECT pg_sleep(600);").unwrap();
        stdin.flush().unwrap();
        // Wait until the statement runs, so that its locks are taken.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .psql(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbackups-test-holder' AND query LIKE '%pg_sleep%'")
            .trim()
            != "1"
        {
            assert!(Instant::now() < deadline, "the lock holder did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Holder {
            cluster: self,
            child: Some(child),
            _stdin: stdin,
        }
    }

    /// `pg_dump --schema-only` of a database, for round-trip comparisons.
    pub fn schema(&self, db: &str) -> String {
        let out = Command::new(pg_bin("pg_dump"))
            .args(["--schema-only", "--no-owner", "--no-acl", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        // `\restrict KEY` lines (pg_dump 15.14 and later) carry a random key per run.
        check(out, "pg_dump --schema-only")
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Row counts of every table and materialized view, and the number of large objects.
    pub fn row_counts(&self, db: &str) -> Vec<(String, i64)> {
        let tables = self.psql(
            db,
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
        );
        let mut out = Vec::new();
        for t in tables.lines().filter(|l| !l.is_empty()) {
            let n: i64 = self
                .psql(db, &format!("SELECT count(*) FROM {t}"))
                .trim()
                .parse()
                .unwrap();
            out.push((t.to_string(), n));
        }
        let los: i64 = self
            .psql(db, "SELECT count(*) FROM pg_largeobject_metadata")
            .trim()
            .parse()
            .unwrap();
        out.push(("large objects".into(), los));
        out
    }

    /// Restarts the server (a fast shutdown, then the same options): connections drop.
    pub fn restart(&self) {
        check(
            as_server_user(Command::new(pg_bin("pg_ctl")).args([
                "-D",
                self.dir.path().join("data").to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "restart",
                "-l",
                self.dir.path().join("server.log").to_str().unwrap(),
            ]))
            .stdin(Stdio::null())
            .output()
            .unwrap(),
            "pg_ctl restart",
        );
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server_user(Command::new(pg_bin("pg_ctl")).args([
            "-D",
            self.dir.path().join("data").to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

/// A psql session holding locks; see [`Cluster::hold`].
pub struct Holder<'a> {
    cluster: &'a Cluster,
    child: Option<Child>,
    _stdin: std::process::ChildStdin,
}

impl Holder<'_> {
    /// Ends the session and its transaction (the server would not notice a killed client
    /// while it sleeps, so its backend is terminated too).
    pub fn release(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.cluster.psql(
                "postgres",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbackups-test-holder'",
            );
        }
    }
}

impl Drop for Holder<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Hands `path` to the OS user the test servers run as (when we are root), so that a
/// command the server runs (an archive_command) may write there.
pub fn give_to_server_user(path: &Path) {
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// [`give_to_server_user`] for a whole tree.
pub fn give_to_server_user_recursively(path: &Path) {
    if server_user().is_some() {
        check(
            Command::new("chown")
                .args(["-R", "postgres:", path.to_str().unwrap()])
                .output()
                .unwrap(),
            "chown",
        );
    }
}

/// Polls `done` every 20 ms until it holds; panics with `why()` after `secs` seconds.
pub fn wait_until(secs: u64, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private temporary directory with a store (`store/`) and a pgbackups data directory
/// (`cli/`) that the server's OS user may write: its archive_command and restore_command run
/// as that user. Returns the directory, the store and the data directory's path.
pub fn archive_dirs() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.path().join("store");
    let cli_dir = dir.path().join("cli");
    for d in [&store, &cli_dir] {
        std::fs::create_dir(d).unwrap();
        give_to_server_user(d);
    }
    let cli = cli_dir.to_str().unwrap().to_string();
    (dir, store, cli)
}

/// A throwaway `pgbackups serve` with its own data directory.
pub struct Service {
    pub data_dir: PathBuf,
    pub url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    stderr_log: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pgbackups")
}

impl Service {
    pub fn start() -> Service {
        let dir = tempfile::Builder::new()
            .prefix("pgbackups-test-svc-")
            .tempdir()
            .unwrap();
        let data_dir = dir.path().join("data");
        let mut s = Service::start_in(data_dir);
        s._dir = Some(dir);
        s
    }

    /// Starts a service on an existing data directory (after a crash, say).
    pub fn start_in(data_dir: PathBuf) -> Service {
        Service::start_in_with(data_dir, &[])
    }

    /// Starts a service with extra environment variables (a test clock, say).
    pub fn start_in_with(data_dir: PathBuf, env: &[(&str, &str)]) -> Service {
        Service::try_start(data_dir, &[], env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a service with extra `serve` arguments and environment; the service's stderr
    /// when it does not start.
    pub fn try_start(
        data_dir: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Service, String> {
        std::fs::create_dir_all(&data_dir).unwrap();
        let stderr_log = data_dir.with_extension("stderr.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .unwrap();
        let mut child = Command::new(binary())
            .args([
                "serve",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .env_remove("PGBACKUPS_URL")
            .env_remove("PGBACKUPS_TOKEN")
            .env("PGBACKUPS_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            let _ = child.wait();
            return Err(format!(
                "service did not start: {line}\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            ));
        };
        Ok(Service {
            data_dir,
            url: url.to_string(),
            child: Some(child),
            _dir: None,
            stderr_log,
        })
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The CLI, pointed at this service.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(binary())
            .args(args)
            .env("PGBACKUPS_URL", &self.url)
            .env("PGBACKUPS_TOKEN", self.token())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The CLI, pointed at this service, with `env` added and libpq's own variables
    /// (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) only as `env` sets them: the
    /// environment of a user's machine, for `pull` and `push`, which run there.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cli_env_with_stdin(args, env, "")
    }

    /// [`Service::cli_env`] with `stdin` as its standard input (not a terminal).
    pub fn cli_env_with_stdin(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("PGBACKUPS_URL", &self.url)
            .env("PGBACKUPS_TOKEN", self.token())
            .env_remove("PGBACKUPS_SOURCE_URL")
            .env_remove("PGBACKUPS_TARGET_URL");
        for key in ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"] {
            cmd.env_remove(key);
        }
        let mut child = cmd
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs the CLI and panics unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check(self.cli(args), &format!("pgbackups {}", args.join(" ")))
    }

    /// A transfer as JSON (`backups:info ID --json`).
    pub fn info(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["backups:info", id, "--json"])).unwrap()
    }

    /// Waits until a transfer's state is one of `states`; returns its JSON.
    pub fn wait_state(&self, id: &str, states: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.info(id);
            if states.contains(&v["state"].as_str().unwrap_or("")) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("{id} did not reach {states:?}: {v:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Files under the local storage directory (partial objects included).
    pub fn stored_files(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path(), out);
                    } else {
                        out.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir.join("storage"), &mut out);
        out.sort();
        out
    }

    /// A raw HTTP request (no client library in between); returns status and body.
    /// GETs an API path with the token; panics unless it answers 200; returns the body.
    pub fn ok_http(&self, path: &str) -> String {
        let (status, resp) = self.raw_http(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token()
        ));
        assert_eq!(status, 200, "{resp}");
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    pub fn raw_http(&self, request_head: &str) -> (u16, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request_head.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, resp)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: as if the machine lost the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        c.wait().unwrap().success()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// stdout + stderr of a CLI run, for assertions on messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first line of stdout that looks like a transfer ID.
pub fn transfer_id(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.len() >= 4 && l[1..].bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no transfer ID in output: {}", text(out)))
        .to_string()
}

/// A webhook receiver on 127.0.0.1: every POST's body, as JSON, in the order received.
pub struct Webhook {
    pub url: String,
    bodies: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<Value>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, bodies) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                if tx
                    .send(String::from_utf8_lossy(&body).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        Webhook {
            url: format!("http://127.0.0.1:{port}/hook?token=hook-s3cret"),
            bodies,
            seen: Vec::new(),
        }
    }

    /// Waits up to `secs` for an event for which `matches` holds; returns it.
    pub fn wait_for(&mut self, secs: u64, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self.seen.iter().find(|v| matches(v)) {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.bodies.recv_timeout(left) {
                Ok(body) => self.seen.push(
                    serde_json::from_str(&body)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
                ),
                Err(_) => panic!("no such notification; got {:?}", self.seen),
            }
        }
    }
}

/// Runs the CLI with `env` as the OS user the test servers run as (PostgreSQL refuses to run
/// as root, and `rollback --start` runs its pg_ctl).
pub fn cli_as_server_user(args: &[&str], env: &[(&str, &str)]) -> Output {
    as_server_user(
        Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null()),
    )
    .output()
    .unwrap()
}

/// A temporary directory that the test servers' OS user owns (for a data directory that a
/// command run as that user creates).
pub fn server_user_dir() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("pgbackups-test-restore-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    give_to_server_user(root.path());
    root
}

/// Runs the CLI with `env`, without a service.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The marker rows (`marks.v`) of a restored cluster, in order.
pub fn marks(pg: &Cluster) -> Vec<String> {
    pg.psql(
        "postgres",
        "SELECT string_agg(v, ',' ORDER BY v) FROM marks",
    )
    .trim()
    .split(',')
    .filter(|s| !s.is_empty())
    .map(str::to_string)
    .collect()
}

/// Rolls back (or forks) into a new directory with `extra` configuration lines, starts it
/// and waits for the end of recovery.
pub fn restore(
    args: &[&str],
    store_flags: &[&str],
    env: &[(&str, &str)],
    extra: &[&str],
) -> Cluster {
    let root = tempfile::Builder::new()
        .prefix("pgbackups-test-restore-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = root.path().join("data");
    let port = free_port();
    let port_s = port.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--target-dir", data.to_str().unwrap(), "--port", &port_s]);
    all.extend_from_slice(store_flags);
    let out = cli(&all, env);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    if !extra.is_empty() {
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap();
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(&auto, conf).unwrap();
    }
    let pg = Cluster::start_existing(root, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = pg.try_psql("postgres", "SELECT pg_is_in_recovery()");
        if String::from_utf8_lossy(&out.stdout).trim() == "f" {
            break;
        }
        assert!(
            out.status.success() && Instant::now() < deadline,
            "recovery did not end: {}\n{}",
            text(&out),
            pg.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pg
}

/// `lsn("0/3000060")` as a number.
pub fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.trim().split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}
