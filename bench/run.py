#!/usr/bin/env python3
"""Benchmark: pgbackups against the stock PostgreSQL tools.

Builds a throwaway PostgreSQL cluster with a pgbench database plus a table of poorly
compressible data (about a third of the total), then compares, on the same database and
one after another:

  * `pgbackups backups:capture`            against  `pg_dump -Fc -f FILE`
  * `pgbackups backups:restore --jobs 2`   against  `pg_restore --jobs 2 FILE`
  * `pgbackups backups:download`           against  `pg_dump -Fc -f FILE` (both give the
    gzip-compressed .dump a user restores with pg_restore; sizes compared too)

and reports wall-time ratios, the stored-size ratio and the service's peak RSS. The
results, with a description of the machine, go to bench/RESULTS.md and to stdout.

Standard library only (Python 3.11). Run as root (the cluster runs as the `postgres` OS
user). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import pwd
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_FILE = BENCH_DIR / "RESULTS.md"

PG_USER = "postgres"  # both the OS user that runs the cluster and the database superuser
SOURCE_DB = "bench"
TARGET_PGTOOLS = "restore_pgtools"
TARGET_PGBACKUPS = "restore_pgbackups"

# Targets from the issue.
TARGET_CAPTURE_SPEEDUP = 1.25  # pg_dump time / pgbackups time, at least
TARGET_SIZE_RATIO = 1.10  # pgbackups stored bytes / pg_dump file bytes, at most
TARGET_RESTORE_RATIO = 1.10  # pgbackups restore time / pg_restore time, at most
TARGET_CAPTURE_RSS_MB = 100.0  # service peak RSS during a capture, below

# Server settings of the throwaway cluster: enough WAL room that checkpoints do not land in
# the middle of a timed step, and nothing else tuned. The same for both sides.
CLUSTER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "256MB",
    "max_connections": "50",
}

# Rows of the noise table: base64 of random bytes (text) and random bytes (bytea).
NOISE_TEXT_RANDOM_BYTES = 144  # → 192 base64 characters
NOISE_BYTEA_BYTES = 256
NOISE_CALIBRATION_ROWS = 50_000
NOISE_BATCH_ROWS = 500_000


class BenchError(Exception):
    """A step failed; the message says which and why."""


class Interrupted(Exception):
    """SIGTERM (or SIGHUP) arrived; unwinds like Ctrl-C so that cleanup runs."""


# --------------------------------------------------------------------------------------
# Output and commands


T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def fmt_cmd(cmd: list[str]) -> str:
    return " ".join(shlex.quote(str(c)) for c in cmd)


def tail(text: str, lines: int = 30) -> str:
    rows = text.rstrip().splitlines()
    cut = rows[-lines:]
    prefix = [f"... ({len(rows) - lines} earlier lines left out)"] if len(rows) > lines else []
    return "\n".join(prefix + cut)


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    what: str | None = None,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion, capturing its output; raises BenchError with its
    stderr when it fails."""
    cmd = [str(c) for c in cmd]
    try:
        cp = subprocess.run(
            cmd,
            env=env,
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError as e:
        raise BenchError(f"{what or 'command'} could not start: {e}\n  command: {fmt_cmd(cmd)}")
    if check and cp.returncode != 0:
        out = tail(cp.stderr) or tail(cp.stdout) or "(no output)"
        raise BenchError(
            f"{what or 'command'} failed with exit code {cp.returncode}\n"
            f"  command: {fmt_cmd(cmd)}\n"
            f"  output:\n{indent(out)}"
        )
    return cp


def timed(cmd: list[str], *, env: dict[str, str] | None = None, what: str) -> tuple[float, str]:
    """Runs a command, returning its wall time (monotonic clock) and its stdout."""
    subprocess.run(["sync"], check=False)  # dirty pages of earlier steps are not ours to pay
    start = time.monotonic()
    cp = run(cmd, env=env, what=what)
    return time.monotonic() - start, cp.stdout


def indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--"] + [str(c) for c in cmd]


# --------------------------------------------------------------------------------------
# The throwaway cluster


def find_pg_bin() -> Path:
    candidates = []
    env = os.environ.get("PG_BIN")
    if env:
        candidates.append(Path(env))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=pg_major_of, reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "pgbench").exists():
            return c
    raise BenchError(
        "no PostgreSQL server binaries found (looked in $PG_BIN and /usr/lib/postgresql/*/bin)"
    )


def pg_major_of(p: Path) -> int:
    try:
        return int(p.parent.name)
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bin: Path
    root: Path  # owned by postgres: pgdata/ and server.log
    port: int = 0
    sockdir: Path | None = None
    running: bool = False

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def marker(self) -> Path:
        return self.root / "bench.json"

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    def url(self, db: str) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def conn_args(self, db: str | None = None) -> list[str]:
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        if db is not None:
            args += ["-d", db]
        return args

    def init(self) -> None:
        pw = pwd.getpwnam(PG_USER)
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        log(f"initdb in {self.pgdata}")
        run(
            as_postgres([
                self.tool("initdb"), "-D", self.pgdata, "-U", PG_USER, "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ]),
            what="initdb",
        )

    def start(self) -> None:
        pw = pwd.getpwnam(PG_USER)
        self.sockdir = Path(tempfile.mkdtemp(prefix="pgbackups-bench-sock-"))
        os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
        # A port nothing listens on now; retry if another process takes it meanwhile.
        for attempt in range(5):
            self.port = free_port()
            opts = [f"-p {self.port}", f"-k {self.sockdir}"]
            opts += [f"-c {k}={v}" for k, v in CLUSTER_SETTINGS.items()]
            cp = run(
                as_postgres([
                    self.tool("pg_ctl"), "-D", self.pgdata, "-l", self.logfile, "-w",
                    "-t", "120", "-o", " ".join(opts), "start",
                ]),
                what="pg_ctl start",
                check=False,
            )
            if cp.returncode == 0:
                self.running = True
                log(f"PostgreSQL cluster running on 127.0.0.1:{self.port}")
                return
            log(f"pg_ctl start failed (attempt {attempt + 1}); retrying on another port")
        server_log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        raise BenchError(
            "could not start the PostgreSQL cluster\n"
            f"  pg_ctl said:\n{indent(tail(cp.stderr + cp.stdout))}\n"
            f"  server log:\n{indent(tail(server_log))}"
        )

    def stop(self) -> None:
        if self.running:
            cp = run(
                as_postgres([self.tool("pg_ctl"), "-D", self.pgdata, "-m", "fast", "-w",
                             "-t", "60", "stop"]),
                what="pg_ctl stop", check=False,
            )
            if cp.returncode != 0:
                run(as_postgres([self.tool("pg_ctl"), "-D", self.pgdata, "-m", "immediate",
                                 "stop"]), what="pg_ctl stop", check=False)
            self.running = False
        if self.sockdir is not None:
            shutil.rmtree(self.sockdir, ignore_errors=True)
            self.sockdir = None

    def stop_leftover(self) -> None:
        """Stops a server still running in a kept data directory (an interrupted run)."""
        if (self.pgdata / "postmaster.pid").exists():
            log("stopping a cluster left running by an earlier run")
            self.running = True
            self.stop()

    def psql(self, db: str, sql: str, *, what: str = "psql") -> str:
        cp = run(
            [self.tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             *self.conn_args(db), "-c", sql],
            what=what,
        )
        return cp.stdout.strip()

    def scalar(self, db: str, sql: str) -> str:
        return self.psql(db, sql).splitlines()[-1].strip()

    def recreate_db(self, name: str) -> None:
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql("postgres", f'CREATE DATABASE "{name}"')

    def drop_db(self, name: str) -> None:
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------
# The benchmark database


def pgbench_size(cl: Cluster) -> int:
    return int(cl.scalar(
        SOURCE_DB,
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'pgbench\\_%'",
    ))


def noise_rows_sql(first: int, last: int) -> str:
    return (
        "INSERT INTO noise (id, txt, bin) SELECT g, "
        f"translate(encode(gen_random_bytes({NOISE_TEXT_RANDOM_BYTES}), 'base64'), E'\\n', ''), "
        f"gen_random_bytes({NOISE_BYTEA_BYTES}) "
        f"FROM generate_series({first}, {last}) g"
    )


def build_database(cl: Cluster, scale: int) -> None:
    cl.recreate_db(SOURCE_DB)
    log(f"pgbench -i -s {scale} (this takes a while at large scales)")
    start = time.monotonic()
    run([cl.tool("pgbench"), "-i", "-q", "-s", str(scale), *cl.conn_args(), SOURCE_DB],
        what="pgbench -i")
    base = pgbench_size(cl)
    log(f"pgbench tables: {mb(base):.0f} MB in {time.monotonic() - start:.0f} s")

    # The noise table is half the size of the database so far (the pgbench tables and the
    # catalogs, which matter only at tiny scales): a third of the total.
    want = int(cl.scalar(SOURCE_DB, "SELECT pg_database_size(current_database())")) // 2
    cl.psql(SOURCE_DB, "CREATE EXTENSION IF NOT EXISTS pgcrypto")
    cl.psql(SOURCE_DB, "CREATE TABLE noise (id bigint PRIMARY KEY, txt text NOT NULL, "
                       "bin bytea NOT NULL)")
    # A first batch measures the bytes per row (heap and primary key), for the row count.
    first = max(1000, min(NOISE_CALIBRATION_ROWS, want // 540 // 4))
    cl.psql(SOURCE_DB, noise_rows_sql(1, first), what="noise rows")
    per_row = int(cl.scalar(SOURCE_DB, "SELECT pg_total_relation_size('noise')")) / first
    total_rows = max(first, int(want / per_row))
    log(f"noise table: {total_rows} rows of ~{per_row:.0f} bytes for ~{mb(want):.0f} MB")
    done = first
    while done < total_rows:
        upto = min(total_rows, done + NOISE_BATCH_ROWS)
        cl.psql(SOURCE_DB, noise_rows_sql(done + 1, upto), what="noise rows")
        done = upto
        log(f"  {done}/{total_rows} noise rows")
    cl.psql(SOURCE_DB, "VACUUM (ANALYZE)", what="VACUUM")
    cl.psql(SOURCE_DB, "CHECKPOINT", what="CHECKPOINT")
    log(f"database built in {time.monotonic() - start:.0f} s")


def row_counts(cl: Cluster, db: str) -> dict[str, int]:
    tables = cl.psql(
        db,
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    ).splitlines()
    counts: dict[str, int] = {}
    for t in tables:
        t = t.strip()
        if t:
            counts[t] = int(cl.scalar(db, f"SELECT count(*) FROM {t}"))
    return counts


# --------------------------------------------------------------------------------------
# The pgbackups service


@dataclass
class Service:
    binary: Path
    data_dir: Path
    proc: subprocess.Popen | None = None
    url: str = ""
    token: str = ""
    log_path: Path | None = None
    _log_file: object = None
    # Extra `serve` arguments and environment (bench/storage.py runs one on S3).
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Start on the data directory as it is (bench/dashboard.py fills a catalog, then serves it).
    keep_data: bool = False

    def start(self) -> None:
        if self.data_dir.exists() and not self.keep_data:
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._log_file = open(self.log_path, "w")
        cmd = [str(self.binary), "serve", "--data-dir", str(self.data_dir),
               "--listen", "127.0.0.1:0", *self.extra_args]
        log(f"starting the service: {fmt_cmd(cmd)}")
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop it in order.
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **self.extra_env})
        deadline = time.monotonic() + 30
        pattern = re.compile(r"pgbackups listening on (http://\S+)")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the service exited at once (code {self.proc.returncode})\n"
                                 f"  its output:\n{indent(self.log_tail())}")
            # Its log lines (stderr) share the file with stdout, whose first line we want.
            m = pattern.search(self.log_path.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
                token_file = self.data_dir / "token"
                if token_file.exists():
                    self.token = token_file.read_text().strip()
                    log(f"service running at {self.url} (pid {self.proc.pid})")
                    return
            time.sleep(0.05)
        raise BenchError("the service did not report its address within 30 s\n"
                         f"  its output:\n{indent(self.log_tail())}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path and self.log_path.exists():
            return tail(self.log_path.read_text(errors="replace"), lines) or "(empty)"
        return "(no log)"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PGBACKUPS_DATA_DIR", None)
        env["PGBACKUPS_URL"] = self.url
        env["PGBACKUPS_TOKEN"] = self.token
        return env

    def cli(self, *args: str) -> list[str]:
        return [str(self.binary), *args]

    def _status_kb(self, key: str) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def peak_rss_mb(self) -> float | None:
        kb = self._status_kb("VmHWM")
        return None if kb is None else kb / 1024

    def reset_peak_rss(self) -> bool:
        """Resets VmHWM to the current RSS (Linux ≥ 4.0), so that the next reading is the
        peak of the next step alone. False when the kernel does not allow it."""
        if self.proc is None:
            return False
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def info(self, transfer_id: str) -> dict:
        cp = run(self.cli("backups:info", transfer_id, "--json"), env=self.env(),
                 what="pgbackups backups:info")
        try:
            return json.loads(cp.stdout)
        except json.JSONDecodeError as e:
            raise BenchError(f"backups:info --json printed something that is not JSON ({e}):\n"
                             f"{indent(tail(cp.stdout))}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log("the service did not stop within 20 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def ensure_binary(path: Path) -> Path:
    if path.exists():
        return path
    default = REPO_DIR / "target" / "release" / "pgbackups"
    if path.resolve() != default.resolve():
        raise BenchError(f"no pgbackups binary at {path}")
    log("target/release/pgbackups is missing; building it with cargo build --release")
    cp = subprocess.run(["cargo", "build", "--release"], cwd=REPO_DIR)
    if cp.returncode != 0 or not path.exists():
        raise BenchError("cargo build --release failed (its output is above)")
    return path


# --------------------------------------------------------------------------------------
# Machine description


def machine_description(cl: Cluster, binary: Path, work_dir: Path) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    usage = shutil.disk_usage(work_dir)
    fs = "unknown"
    try:
        fs = run(["df", "--output=fstype,source", str(work_dir)], check=False).stdout \
            .splitlines()[-1].split()[0]
    except (IndexError, BenchError):
        pass
    pg_version = cl.scalar("postgres", "SELECT version()")
    pg_dump_version = run([cl.tool("pg_dump"), "--version"], what="pg_dump --version").stdout.strip()
    pgb_version = run([str(binary), "--version"], check=False).stdout.strip() or "unknown"
    commit = run(["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
                 check=False).stdout.strip() or "unknown"
    return [
        ("CPU", f"{cpu} ({os.cpu_count()} logical CPUs, nproc {len(os.sched_getaffinity(0))})"),
        ("RAM", mem),
        ("Kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("PostgreSQL", pg_version),
        ("pg_dump", pg_dump_version),
        ("pgbackups", f"{pgb_version} (git {commit}, {binary})"),
        ("Work directory", f"{work_dir} ({fs}), {usage.free / 1e9:.0f} GB free of "
                           f"{usage.total / 1e9:.0f} GB"),
        ("Cluster settings", ", ".join(f"{k}={v}" for k, v in CLUSTER_SETTINGS.items())),
    ]


# --------------------------------------------------------------------------------------
# One round of measurements


@dataclass
class Round:
    order: str
    pg_dump_s: float = 0.0
    capture_s: float = 0.0
    capture_service_s: float | None = None
    dump_file_bytes: int = 0
    object_bytes: int = 0
    dump_bytes: int = 0
    pg_restore_s: float = 0.0
    restore_s: float = 0.0
    restore_service_s: float | None = None
    capture_phases: dict[str, float] = field(default_factory=dict)
    restore_phases: dict[str, float] = field(default_factory=dict)
    capture_rss_mb: float | None = None
    restore_rss_mb: float | None = None
    backup_id: str = ""
    download_s: float = 0.0
    download_bytes: int = 0
    counts_ok: bool = False


def parse_ts(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    # RFC 3339 with up to nanoseconds; fromisoformat wants at most microseconds.
    s = re.sub(r"(\.\d{6})\d+", r"\1", s.replace("Z", "+00:00"))
    try:
        return dt.datetime.fromisoformat(s)
    except ValueError:
        return None


def service_seconds(info: dict) -> float | None:
    a, b = parse_ts(info.get("started_at")), parse_ts(info.get("finished_at"))
    return (b - a).total_seconds() if a and b else None


# A transfer's phases: (name, the log line that starts it); the first starts at started_at,
# the last ends at finished_at.
CAPTURE_PHASES = [
    ("connect, check the server", None),
    ("pg_dump → zstd → storage", "PostgreSQL "),
    ("make the object durable, commit", "Dump finished"),
]
# Streamed restores (backups with a recorded layout) and spooled ones (without) log different
# phases; the first list whose lines are all in the log is used.
RESTORE_PHASES = [
    [
        ("connect, check the target", None),
        ("verify checksum, extract the TOC, pg_restore --list", "Reading backup"),
        ("empty the target", "Dropping all objects"),
        ("schema (pre-data)", "Creating the schema"),
        ("table data, parallel streams", "Loading table data"),
        ("indexes and constraints (post-data)", "Building indexes"),
    ],
    [
        ("connect, check the target", None),
        ("verify checksum, spool, pg_restore --list", "Reading backup"),
        ("other", "Backup verified"),
        ("empty the target", "Dropping all objects"),
        ("pg_restore", "Restoring with pg_restore"),
    ],
]


def phases(info: dict, starts: list[tuple[str, str | None]]) -> dict[str, float]:
    """Splits a transfer's time inside the service by its log lines. Empty when the log does
    not have the expected lines."""
    seen: dict[str, dt.datetime] = {}
    for line in info.get("logs") or []:
        text, at = line.get("line", ""), parse_ts(line.get("at"))
        for _, prefix in starts[1:]:
            if at is not None and prefix not in seen and text.startswith(prefix):
                seen[prefix] = at
    begin, end = parse_ts(info.get("started_at")), parse_ts(info.get("finished_at"))
    if begin is None or end is None or len(seen) != len(starts) - 1:
        return {}
    times = [begin] + [seen[p] for _, p in starts[1:]] + [end]
    return {name: (b - a).total_seconds() for (name, _), a, b in zip(starts, times, times[1:])}


def log_phases(split: dict[str, float]) -> None:
    if split:
        log("    inside the service: " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items()))


def transfer_id(stdout: str, what: str) -> str:
    m = re.search(r"\b([a-z]\d{3,})\b", stdout)
    if not m:
        raise BenchError(f"{what} printed no transfer ID: {stdout!r}")
    return m.group(1)


def one_round(i: int, cl: Cluster, svc: Service, work: Path, source_counts: dict[str, int],
              jobs: int) -> Round:
    pg_first = i % 2 == 0
    r = Round(order="pg tools first" if pg_first else "pgbackups first")
    dump_file = work / "pg_dump.dump"
    if dump_file.exists():
        dump_file.unlink()
    log(f"round {i + 1}: {r.order}")

    def pg_dump() -> None:
        r.pg_dump_s, _ = timed(
            [cl.tool("pg_dump"), "-Fc", *cl.conn_args(), "-f", dump_file, SOURCE_DB],
            what="pg_dump -Fc")
        r.dump_file_bytes = dump_file.stat().st_size
        log(f"  pg_dump -Fc: {r.pg_dump_s:.2f} s, {mb(r.dump_file_bytes):.1f} MB")

    def capture() -> None:
        reset = svc.reset_peak_rss()
        r.capture_s, out = timed(
            svc.cli("backups:capture", cl.url(SOURCE_DB)), env=svc.env(),
            what="pgbackups backups:capture")
        r.capture_rss_mb = svc.peak_rss_mb()
        if not reset:
            log("  (could not reset VmHWM; the RSS figure is the service's lifetime peak)")
        r.backup_id = transfer_id(out, "backups:capture")
        info = svc.info(r.backup_id)
        if info.get("state") not in (None, "succeeded", "Succeeded"):
            raise BenchError(f"capture {r.backup_id} ended in state {info.get('state')!r}")
        r.object_bytes = int(info.get("object_size") or 0)
        r.dump_bytes = int(info.get("dump_size") or 0)
        r.capture_service_s = service_seconds(info)
        r.capture_phases = phases(info, CAPTURE_PHASES)
        log(f"  pgbackups capture {r.backup_id}: {r.capture_s:.2f} s, "
            f"{mb(r.object_bytes):.1f} MB stored ({mb(r.dump_bytes):.1f} MB dump), "
            f"peak RSS {r.capture_rss_mb or 0:.1f} MB")
        log_phases(r.capture_phases)

    def download() -> None:
        out_file = work / "downloaded.dump"
        if out_file.exists():
            out_file.unlink()
        r.download_s, _ = timed(
            svc.cli("backups:download", r.backup_id, "-o", str(out_file)), env=svc.env(),
            what="pgbackups backups:download")
        r.download_bytes = out_file.stat().st_size
        out_file.unlink()
        log(f"  pgbackups download {r.backup_id}: {r.download_s:.2f} s, "
            f"{mb(r.download_bytes):.1f} MB")

    def pg_restore() -> None:
        cl.psql("postgres", "CHECKPOINT")
        r.pg_restore_s, _ = timed(
            [cl.tool("pg_restore"), f"--jobs={jobs}", *cl.conn_args(TARGET_PGTOOLS), dump_file],
            what=f"pg_restore --jobs {jobs}")
        log(f"  pg_restore --jobs {jobs}: {r.pg_restore_s:.2f} s")

    def restore() -> None:
        cl.psql("postgres", "CHECKPOINT")
        reset = svc.reset_peak_rss()
        r.restore_s, out = timed(
            svc.cli("backups:restore", r.backup_id, cl.url(TARGET_PGBACKUPS),
                    "--confirm", TARGET_PGBACKUPS, "--jobs", str(jobs)),
            env=svc.env(), what="pgbackups backups:restore")
        r.restore_rss_mb = svc.peak_rss_mb() if reset else None
        rid = transfer_id(out, "backups:restore")
        info = svc.info(rid)
        r.restore_service_s = service_seconds(info)
        r.restore_phases = next(
            (p for p in (phases(info, v) for v in RESTORE_PHASES) if p), {})
        log(f"  pgbackups restore --jobs {jobs}: {r.restore_s:.2f} s, "
            f"peak RSS {r.restore_rss_mb or 0:.1f} MB")
        log_phases(r.restore_phases)

    for step in ([pg_dump, capture] if pg_first else [capture, pg_dump]):
        step()
    download()
    cl.recreate_db(TARGET_PGTOOLS)
    cl.recreate_db(TARGET_PGBACKUPS)
    for step in ([pg_restore, restore] if pg_first else [restore, pg_restore]):
        step()

    # Sanity check: both restored databases have the source's tables and row counts.
    ok = True
    for target in (TARGET_PGTOOLS, TARGET_PGBACKUPS):
        got = row_counts(cl, target)
        if got == source_counts:
            log(f"  row counts of {target} match the source "
                f"({sum(got.values())} rows in {len(got)} tables)")
        else:
            ok = False
            log(f"  ROW COUNTS OF {target} DIFFER from the source:")
            for t in sorted(set(got) | set(source_counts)):
                if got.get(t) != source_counts.get(t):
                    log(f"    {t}: source {source_counts.get(t)}, {target} {got.get(t)}")
    r.counts_ok = ok
    return r


# --------------------------------------------------------------------------------------
# Report


def mb(n: float) -> float:
    return n / 1024 / 1024


def yes_no(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def build_report(args: argparse.Namespace, rounds: list[Round], machine: list[tuple[str, str]],
                 db_facts: dict[str, float], command: str, warmup_s: float) -> tuple[str, str]:
    """Returns (table as plain text for stdout, RESULTS.md)."""
    med = statistics.median
    pg_dump_s = med(r.pg_dump_s for r in rounds)
    capture_s = med(r.capture_s for r in rounds)
    pg_restore_s = med(r.pg_restore_s for r in rounds)
    restore_s = med(r.restore_s for r in rounds)
    download_s = med(r.download_s for r in rounds)
    last = rounds[-1]
    dump_mb, obj_mb = mb(last.dump_file_bytes), mb(last.object_bytes)
    cap_rss = [r.capture_rss_mb for r in rounds if r.capture_rss_mb is not None]
    res_rss = [r.restore_rss_mb for r in rounds if r.restore_rss_mb is not None]
    cap_rss_mb = max(cap_rss) if cap_rss else None
    res_rss_mb = max(res_rss) if res_rss else None
    svc_cap = [r.capture_service_s for r in rounds if r.capture_service_s is not None]
    svc_res = [r.restore_service_s for r in rounds if r.restore_service_s is not None]

    speedup = pg_dump_s / capture_s
    size_ratio = obj_mb / dump_mb
    restore_ratio = restore_s / pg_restore_s
    agg = "median of " + str(len(rounds)) if len(rounds) > 1 else "one run"
    jobs = args.jobs

    header = ["metric", "pg tools", "pgbackups", "ratio", "target", "met?"]
    rows = [
        [f"capture wall time, s ({agg})", f"{pg_dump_s:.2f}", f"{capture_s:.2f}",
         f"{speedup:.2f}× faster", f"≥ {TARGET_CAPTURE_SPEEDUP:.2f}× faster",
         yes_no(speedup >= TARGET_CAPTURE_SPEEDUP)],
        ["stored size, MB", f"{dump_mb:.1f}", f"{obj_mb:.1f}", f"{size_ratio:.3f}×",
         f"≤ {TARGET_SIZE_RATIO:.2f}×", yes_no(size_ratio <= TARGET_SIZE_RATIO)],
        [f"restore wall time --jobs {jobs}, s ({agg})", f"{pg_restore_s:.2f}", f"{restore_s:.2f}",
         f"{restore_ratio:.2f}×", f"≤ {TARGET_RESTORE_RATIO:.2f}×",
         yes_no(restore_ratio <= TARGET_RESTORE_RATIO)],
        [f"download a pg_restore-ready .dump, s ({agg}; pg tools: pg_dump -Fc)",
         f"{pg_dump_s:.2f}", f"{download_s:.2f}", f"{pg_dump_s / download_s:.2f}× faster",
         "(for information)", ""],
        ["downloaded .dump size, MB (pg tools: pg_dump -Fc's file)", f"{dump_mb:.1f}",
         f"{mb(last.download_bytes):.1f}", f"{mb(last.download_bytes) / dump_mb:.3f}×",
         "≤ 1.00×", yes_no(last.download_bytes <= last.dump_file_bytes)],
        ["service peak RSS during capture, MB", "—",
         "n/a" if cap_rss_mb is None else f"{cap_rss_mb:.1f}", "—",
         f"< {TARGET_CAPTURE_RSS_MB:.0f} MB",
         yes_no(None if cap_rss_mb is None else cap_rss_mb < TARGET_CAPTURE_RSS_MB)],
        ["service peak RSS during restore, MB", "—",
         "n/a" if res_rss_mb is None else f"{res_rss_mb:.1f}", "—", "(for information)", ""],
    ]
    if svc_cap:
        rows.append(["capture time inside the service, s", f"{pg_dump_s:.2f}",
                     f"{med(svc_cap):.2f}", f"{pg_dump_s / med(svc_cap):.2f}× faster",
                     "(for information)", ""])
    if svc_res:
        rows.append(["restore time inside the service, s", f"{pg_restore_s:.2f}",
                     f"{med(svc_res):.2f}", f"{med(svc_res) / pg_restore_s:.2f}×",
                     "(for information)", ""])

    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    plain = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
        for line in [header, ["-" * w for w in widths], *rows]
    )

    small = args.scale != 100
    md: list[str] = []
    md.append("# pgbackups benchmark results\n")
    if small:
        md.append(f"> **Small-scale run (pgbench scale {args.scale}, not the default 100).** "
                  "The targets are meant for the default scale; at small scales fixed costs "
                  "(process start-up, the API calls, the restore's checks) "
                  "weigh much more.\n")
    md.append(f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    md.append(f"- Command: `{command}`")
    md.append(f"- pgbench scale: {args.scale}; rounds: {len(rounds)} "
              f"({'median reported, tool order alternated' if len(rounds) > 1 else 'one run'}); "
              f"restore jobs: {jobs}")
    md.append(f"- Database: {db_facts['db_mb']:.0f} MB in total; pgbench tables "
              f"{db_facts['pgbench_mb']:.0f} MB, noise table {db_facts['noise_mb']:.0f} MB "
              f"({db_facts['noise_share'] * 100:.0f}% of the total); "
              f"uncompressed dump {mb(last.dump_bytes):.0f} MB")
    md.append(f"- Warm-up `pg_dump -Fc` to /dev/null before the timed runs: {warmup_s:.1f} s")
    md.append(f"- Row counts of both restored databases equal the source's: "
              f"{'yes' if all(r.counts_ok for r in rounds) else '**NO**'}")
    md.append("\n## Machine\n")
    for k, v in machine:
        md.append(f"- {k}: {v}")
    md.append("\n## Results\n")
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        md.append("| " + " | ".join("**no**" if c == "NO" else c for c in row) + " |")
    md.append("")
    md.append("What is compared: `pg_dump -Fc -f FILE` (default compression) against "
              "`pgbackups backups:capture URL` (waits until done); "
              f"`pg_restore --jobs {jobs} -d DB FILE` (FILE from that pg_dump) against "
              f"`pgbackups backups:restore ID URL --jobs {jobs}`, each into a new empty database. "
              "Wall times are those of the commands as a user runs them. Capture speedup = "
              "pg_dump time / pgbackups time; size ratio = pgbackups stored bytes / pg_dump file "
              "bytes; restore ratio = pgbackups time / pg_restore time. Peak RSS is the "
              "service process's VmHWM, reset before each step.")
    for title, key, total in (("Capture", "capture_phases", last.capture_s),
                              ("Restore", "restore_phases", last.restore_s)):
        split = getattr(last, key)
        if not split:
            continue
        md.append(f"\n### {title} inside the service, last round\n")
        md.append("From the transfer's log timestamps; the rest of the command's wall time "
                  "is the CLI (start-up, the API calls; it learns of the end at once by long polling).\n")
        md.append("| phase | s |")
        md.append("|---|---|")
        for name, secs in split.items():
            md.append(f"| {name} | {secs:.2f} |")
        inside = sum(split.values())
        md.append(f"| CLI and polling (wall time − time inside the service) | "
                  f"{total - inside:.2f} |")
    if len(rounds) > 1:
        md.append("\n## Rounds\n")
        md.append("| round | order | pg_dump s | capture s | pg_restore s | restore s | "
                  "capture RSS MB | restore RSS MB |")
        md.append("|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(rounds, 1):
            md.append(f"| {i} | {r.order} | {r.pg_dump_s:.2f} | {r.capture_s:.2f} | "
                      f"{r.pg_restore_s:.2f} | {r.restore_s:.2f} | "
                      f"{r.capture_rss_mb or 0:.1f} | {r.restore_rss_mb or 0:.1f} |")
    return plain, "\n".join(md) + "\n"


# --------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare pgbackups capture/restore with pg_dump -Fc / pg_restore --jobs 2.")
    p.add_argument("--scale", type=int, default=100,
                   help="pgbench scale factor (default 100, about 1.5 GB of pgbench tables)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of measurements; with more than one, medians are reported and "
                        "the order of the tools alternates (default 1)")
    p.add_argument("--keep", action="store_true",
                   help="keep the cluster and the work directory; a later run with the same "
                        "scale reuses the database instead of building it again")
    p.add_argument("--fresh", action="store_true",
                   help="build the database again even if a kept one of the same scale exists")
    p.add_argument("--work-dir", type=Path, default=BENCH_DIR / "work",
                   help="where the cluster, dumps and service data go (default bench/work)")
    p.add_argument("--binary", type=Path, default=REPO_DIR / "target" / "release" / "pgbackups",
                   help="the pgbackups binary (default target/release/pgbackups, built with "
                        "cargo if missing)")
    p.add_argument("--jobs", type=int, default=2, help="restore jobs on both sides (default 2)")
    args = p.parse_args(argv)
    if args.scale < 1 or args.repeat < 1 or args.jobs < 1:
        p.error("--scale, --repeat and --jobs must be at least 1")
    return args


def raise_interrupted(signum, frame):  # noqa: ARG001
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = "python3 bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    if os.geteuid() != 0:
        print("error: run as root (the cluster is run as the postgres OS user with runuser)",
              file=sys.stderr)
        return 2
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupted)
    signal.signal(signal.SIGHUP, raise_interrupted)

    work = args.work_dir.resolve()
    cl: Cluster | None = None
    svc: Service | None = None
    ok = False
    try:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            raise BenchError(f"there is no {PG_USER!r} OS user to run the cluster as")
        binary = ensure_binary(args.binary.resolve())
        pg_bin = find_pg_bin()
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)
        log(f"work directory {work}; PostgreSQL binaries in {pg_bin}")
        need = 8 * 1024**3 + args.scale * 100 * 1024**2  # WAL room + ~4 copies of the data
        free = shutil.disk_usage(work).free
        if free < need:
            log(f"WARNING: {free / 1e9:.1f} GB free in {work}; this scale may need about "
                f"{need / 1e9:.0f} GB")

        cl = Cluster(bin=pg_bin, root=work / "cluster")
        cl.stop_leftover()
        reuse = False
        if not args.fresh and cl.marker.exists():
            try:
                reuse = json.loads(cl.marker.read_text()).get("scale") == args.scale
            except (OSError, json.JSONDecodeError):
                reuse = False
        if reuse:
            log(f"reusing the kept cluster of scale {args.scale} in {cl.root}")
        else:
            cl.init()
        cl.start()
        if reuse and cl.scalar("postgres", f"SELECT count(*) FROM pg_database "
                                           f"WHERE datname = '{SOURCE_DB}'") != "1":
            log("the kept cluster has no benchmark database; building it")
            reuse = False
        if not reuse:
            cl.marker.unlink(missing_ok=True)
            build_database(cl, args.scale)
            cl.marker.write_text(json.dumps({"scale": args.scale,
                                             "built": dt.datetime.now().isoformat()}))

        db_bytes = int(cl.scalar(SOURCE_DB, "SELECT pg_database_size(current_database())"))
        pg_bytes = pgbench_size(cl)
        noise_bytes = int(cl.scalar(SOURCE_DB, "SELECT pg_total_relation_size('noise')"))
        db_facts = {"db_mb": mb(db_bytes), "pgbench_mb": mb(pg_bytes), "noise_mb": mb(noise_bytes),
                    "noise_share": noise_bytes / db_bytes}
        log(f"database {SOURCE_DB}: {mb(db_bytes):.0f} MB (pgbench {mb(pg_bytes):.0f} MB, "
            f"noise {mb(noise_bytes):.0f} MB = {noise_bytes / db_bytes * 100:.0f}%)")
        source_counts = row_counts(cl, SOURCE_DB)
        log("source row counts: " + ", ".join(f"{t} {n}" for t, n in source_counts.items()))

        machine = machine_description(cl, binary, work)

        log("warm-up: pg_dump -Fc to /dev/null")
        # --no-sync: pg_dump cannot fsync /dev/null. The timed runs do sync their file.
        warmup_s, _ = timed([cl.tool("pg_dump"), "-Fc", "--no-sync", *cl.conn_args(),
                             "-f", "/dev/null", SOURCE_DB], what="warm-up pg_dump")
        log(f"  warm-up took {warmup_s:.2f} s")

        svc = Service(binary=binary, data_dir=work / "service")
        svc.start()

        rounds: list[Round] = []
        for i in range(args.repeat):
            r = one_round(i, cl, svc, work, source_counts, args.jobs)
            rounds.append(r)
            if i + 1 < args.repeat:  # keep the disk use of many rounds down
                run(svc.cli("backups:delete", r.backup_id, "--confirm", SOURCE_DB),
                    env=svc.env(), what="pgbackups backups:delete")

        plain, md = build_report(args, rounds, machine, db_facts, command, warmup_s)
        RESULTS_FILE.write_text(md)
        print()
        print(plain)
        print()
        log(f"wrote {RESULTS_FILE}")
        if not all(r.counts_ok for r in rounds):
            raise BenchError("the restored databases do not match the source (see above)")
        ok = True
        return 0
    except BenchError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        if svc is not None and svc.proc is not None:
            print(f"\nlast lines of the service's output ({svc.log_path}):\n"
                  f"{indent(svc.log_tail(20))}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"\ninterrupted ({str(e) or 'Ctrl-C'}); cleaning up", file=sys.stderr)
        return 130
    finally:
        # Cleanup must survive a second Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if svc is not None:
            svc.stop()
        if cl is not None:
            try:
                if cl.running:
                    for db in (TARGET_PGTOOLS, TARGET_PGBACKUPS):
                        cl.drop_db(db)
            except BenchError:
                pass
            cl.stop()
            if args.keep:
                log(f"kept the cluster in {cl.root} (start it with: runuser -u {PG_USER} -- "
                    f"{cl.tool('pg_ctl')} -D {cl.pgdata} -l {cl.logfile} start -o '-p PORT "
                    f"-k /tmp -c listen_addresses=127.0.0.1')")
            else:
                shutil.rmtree(cl.root, ignore_errors=True)
        if not args.keep:
            for p in ("pg_dump.dump", "service", "service.log"):
                target = work / p
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists() and (ok or p != "service.log"):
                    target.unlink()
            if not ok and (work / "service.log").exists():
                log(f"kept the service's output for inspection: {work / 'service.log'}")
            try:
                work.rmdir()  # only when empty
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
