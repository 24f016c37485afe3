#!/usr/bin/env python3
"""Benchmark: how fast the service renders the dashboard's pages with a big catalog.

Fills a fresh service's catalog with 500 registered databases (through the API, so that
their URLs are sealed as always) and 50,000 succeeded captures (rows written straight into
the SQLite catalog while the service is stopped, shaped like real scheduled captures), then
starts the service on it and times N GETs of each path (the whole answer, as a client sees
it), with the service's token as a Bearer credential. It prints p50 / p95 / p99 / max per
path and writes them with the command and the machine to bench/DASHBOARD.md.

A path that does not answer 200 (a page not built yet) is reported with its status, not
treated as an error. The target (issue 14): p99 under 200 ms for the overview `/` and a
database page.

Standard library only (Python 3.11); needs no PostgreSQL (the registered URLs point at
nothing: nothing connects to them). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import shlex
import shutil
import signal
import sqlite3
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (the shared service helpers)

RESULTS_FILE = base.BENCH_DIR / "DASHBOARD.md"
DEFAULT_PATHS = ["/", "/databases/db0001", "/api/transfers"]
TARGET_P99_MS = 200.0
# The catalog schema these rows are written for (src/catalog/sqlite/schema.rs).
SCHEMA_VERSION = 11
MARKER = "dashboard-bench.json"


def db_name(i: int) -> str:
    return f"db{i:04d}"


def api(svc: base.Service, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    """One API request with the service's token; status and body."""
    u = urllib.parse.urlsplit(svc.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {svc.token}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def register_databases(svc: base.Service, count: int) -> None:
    """Registers db0001.. through the API (the service seals each URL) with a daily schedule
    twelve hours away, so that no scheduled run starts while the benchmark runs."""
    at = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=12)).strftime("%H:%M UTC")
    t0 = time.monotonic()
    for i in range(1, count + 1):
        name = db_name(i)
        # Port 1 on loopback: nothing listens, and nothing in this benchmark connects.
        url = f"postgres://app:not-a-real-secret@127.0.0.1:1/{name}"
        status, text = api(svc, "POST", "/api/databases", {"name": name, "url": url})
        if status not in (200, 201):
            raise base.BenchError(f"registering {name} answered {status}: {text}")
        status, text = api(svc, "POST", "/api/schedules", {"database": name, "at": at})
        if status not in (200, 201):
            raise base.BenchError(f"scheduling {name} at {at} answered {status}: {text}")
    base.log(f"registered {count} databases with a schedule at {at} "
             f"in {time.monotonic() - t0:.1f} s")


def fill_backups(catalog: Path, databases: int, backups: int, seed: int) -> None:
    """Writes `backups` succeeded scheduled captures (IDs a001..), one a day per database
    going back in time, into the stopped service's catalog, in one transaction."""
    rnd = random.Random(seed)
    conn = sqlite3.connect(catalog)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            raise base.BenchError(f"the catalog has schema version {version}, this script "
                                  f"writes version {SCHEMA_VERSION} rows: build a newer binary")
        if version > SCHEMA_VERSION:
            base.log(f"note: the catalog has schema version {version}; rows are written as of "
                     f"version {SCHEMA_VERSION} (newer columns take their defaults)")
        per_db = -(-backups // databases)  # ceiling
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        sizes = [rnd.randint(20, 5000) * 1024 * 1024 for _ in range(databases)]
        rows = []
        number = 0
        # Oldest first, so that IDs grow with time as the service gives them.
        for day in range(per_db, 0, -1):
            for i in range(1, databases + 1):
                if number == backups:
                    break
                number += 1
                created = now - dt.timedelta(days=day) + dt.timedelta(seconds=i * 7)
                started = created + dt.timedelta(seconds=1)
                db_size = int(sizes[i - 1] * (1 - day / (per_db * 4)))
                dump_size = int(db_size * rnd.uniform(0.3, 0.6))
                object_size = int(dump_size * rnd.uniform(0.15, 0.35))
                finished = started + dt.timedelta(seconds=max(2, db_size // (60 * 1024 * 1024)))
                tid = f"a{number:03d}"
                rows.append((
                    tid, "a", number, "capture", "scheduled", db_name(i), None, "succeeded",
                    micros(created), micros(started), micros(finished), dump_size, db_size,
                    dump_size, object_size, rnd.randbytes(32).hex(),
                    f"backups/{tid}-{created.strftime('%Y%m%dT%H%M%SZ')}.dump.zst", "zstd-1",
                    "15.19", "15.19", None, 0, 0,
                ))
        t0 = time.monotonic()
        with conn:
            conn.executemany(
                "INSERT INTO transfers (id, prefix, number, kind, origin, database, backup_id,"
                " state, created_at, started_at, finished_at, bytes_processed, database_size,"
                " dump_size, object_size, sha256, object_key, compression, server_version,"
                " tool_version, error, pinned, warnings)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows)
            conn.execute("INSERT INTO id_counters (prefix, last) VALUES ('a', ?)"
                         " ON CONFLICT (prefix) DO UPDATE SET last = excluded.last", (number,))
        base.log(f"wrote {number} succeeded captures into {catalog} "
                 f"in {time.monotonic() - t0:.1f} s")
    finally:
        conn.close()


def micros(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_ms) * q // 100))
    return sorted_ms[int(rank) - 1]


def measure(svc: base.Service, path: str, requests: int, warmup: int) -> dict:
    """Times `requests` GETs of `path` on one kept-alive connection, after `warmup` untimed
    ones; every answer is read to its end."""
    u = urllib.parse.urlsplit(svc.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    headers = {"Authorization": f"Bearer {svc.token}",
               "Accept": "application/json" if path.startswith("/api") else "text/html"}
    times: list[float] = []
    statuses: dict[int, int] = {}
    size = 0
    try:
        for n in range(warmup + requests):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if n >= warmup:
                times.append(elapsed)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                size = len(body)
            if resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    except (OSError, http.client.HTTPException) as e:
        return {"path": path, "error": f"{type(e).__name__}: {e}", "statuses": statuses}
    finally:
        conn.close()
    times.sort()
    return {
        "path": path,
        "statuses": statuses,
        "bytes": size,
        "p50": percentile(times, 50),
        "p95": percentile(times, 95),
        "p99": percentile(times, 99),
        "max": times[-1],
    }


def verdict(r: dict) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    if set(r["statuses"]) != {200}:
        codes = ", ".join(f"{c} ×{n}" for c, n in sorted(r["statuses"].items()))
        return f"not a page yet ({codes})"
    if r["path"].startswith("/api"):
        return "(API, for comparison)"
    return "met" if r["p99"] < TARGET_P99_MS else "MISSED"


def machine(binary: Path, catalog: Path) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = base.run([str(binary), "--version"], check=False).stdout.strip() or "unknown"
    commit = base.run(["git", "-C", str(base.REPO_DIR), "describe", "--always", "--dirty"],
                      check=False).stdout.strip() or "unknown"
    def rel(p: Path) -> str:
        return os.path.relpath(p, base.REPO_DIR) if p.is_relative_to(base.REPO_DIR) else str(p)

    return [
        ("CPU", f"{cpu} ({os.cpu_count()} logical CPUs, nproc {len(os.sched_getaffinity(0))})"),
        ("Kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("pgbackups", f"{version} (git {commit}, {rel(binary)})"),
        ("Catalog", f"{catalog.stat().st_size / 1e6:.1f} MB ({rel(catalog)})"),
    ]


def report(args: argparse.Namespace, command: str, results: list[dict],
           facts: list[tuple[str, str]]) -> tuple[str, str]:
    head = f"{'path':<28} {'status':<10} {'bytes':>9} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  verdict"
    plain = [head]
    md = [
        "# Dashboard render times",
        "",
        f"Written by `{command}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Catalog: {args.databases} registered databases (each with a daily schedule) and "
        f"{args.backups} succeeded captures. Each path: {args.requests} GETs (after "
        f"{args.warmup} untimed) on one kept-alive connection with the service's token, timed "
        "from the request to the answer's last byte, in milliseconds. Target (issue 14): p99 "
        f"under {TARGET_P99_MS:.0f} ms for the overview and a database page.",
        "",
        "| path | status | bytes | p50 | p95 | p99 | max | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        status = ", ".join(str(c) for c in sorted(r["statuses"])) or "-"
        if "error" in r:
            plain.append(f"{r['path']:<28} {status:<10} {verdict(r)}")
            md.append(f"| `{r['path']}` | {status} | | | | | | {verdict(r)} |")
            continue
        plain.append(f"{r['path']:<28} {status:<10} {r['bytes']:>9} {r['p50']:>8.2f} "
                     f"{r['p95']:>8.2f} {r['p99']:>8.2f} {r['max']:>8.2f}  {verdict(r)}")
        md.append(f"| `{r['path']}` | {status} | {r['bytes']} | {r['p50']:.2f} | "
                  f"{r['p95']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {verdict(r)} |")
    if "debug" in Path(args.binary).parts:
        note = ("A debug build was measured (unoptimized pgbackups code): these figures check "
                "that the benchmark runs, not the target; measure target/release/pgbackups.")
        plain.append("\n" + note)
        md += ["", f"**{note}**"]
    md += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in facts]
    return "\n".join(plain), "\n".join(md) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the dashboard's pages on a service with a big catalog.")
    p.add_argument("paths", nargs="*", default=DEFAULT_PATHS,
                   help=f"paths to GET (default {' '.join(DEFAULT_PATHS)})")
    p.add_argument("--databases", type=int, default=500, help="registered databases (500)")
    p.add_argument("--backups", type=int, default=50_000, help="succeeded captures (50000)")
    p.add_argument("--requests", type=int, default=200, help="timed GETs per path (200)")
    p.add_argument("--warmup", type=int, default=5, help="untimed GETs per path first (5)")
    p.add_argument("--seed", type=int, default=14, help="seed of the sizes and checksums (14)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory; a later run with the same --databases and "
                        "--backups serves the kept catalog instead of filling a new one")
    p.add_argument("--work-dir", type=Path, default=base.BENCH_DIR / "work" / "dashboard",
                   help="where the service's data goes (default bench/work/dashboard)")
    p.add_argument("--binary", type=Path,
                   default=base.REPO_DIR / "target" / "release" / "pgbackups",
                   help="the pgbackups binary (default target/release/pgbackups, built with "
                        "cargo if missing)")
    p.add_argument("--no-write", action="store_true",
                   help=f"print only; leave {RESULTS_FILE.name} alone")
    args = p.parse_args(argv)
    if args.databases < 1 or args.backups < 0 or args.requests < 1 or args.warmup < 0:
        p.error("--databases and --requests must be at least 1, --backups and --warmup at least 0")
    if args.databases > 9999:
        p.error("--databases is at most 9999 (names are db0001..db9999)")
    if any(not path.startswith("/") for path in args.paths):
        p.error("each path starts with /")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = "python3 bench/dashboard.py " + " ".join(shlex.quote(a) for a in argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, base.raise_interrupted)
    work = args.work_dir.resolve()
    svc: base.Service | None = None
    try:
        binary = base.ensure_binary(args.binary.resolve())
        data = work / "service"
        marker = work / MARKER
        wanted = {"databases": args.databases, "backups": args.backups, "seed": args.seed}
        reuse = False
        if marker.exists():
            try:
                reuse = json.loads(marker.read_text()) == wanted
            except (OSError, json.JSONDecodeError):
                reuse = False
        if reuse:
            base.log(f"reusing the kept catalog in {data}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            svc = base.Service(binary=binary, data_dir=data,
                               extra_env={"PGBACKUPS_LOG": "warn"})
            svc.start()
            register_databases(svc, args.databases)
            svc.stop()
            svc = None
            fill_backups(data / "catalog.db", args.databases, args.backups, args.seed)
            marker.write_text(json.dumps(wanted))

        svc = base.Service(binary=binary, data_dir=data, keep_data=True,
                           extra_env={"PGBACKUPS_LOG": "warn"})
        svc.start()
        results = []
        for path in args.paths:
            base.log(f"GET {path} ×{args.requests}")
            results.append(measure(svc, path, args.requests, args.warmup))
        svc.stop()
        plain, md = report(args, command, results, machine(binary, data / "catalog.db"))
        print()
        print(plain)
        print()
        if not args.no_write:
            RESULTS_FILE.write_text(md)
            base.log(f"wrote {RESULTS_FILE}")
        return 0
    except base.BenchError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        if svc is not None and svc.proc is not None:
            print(f"\nlast lines of the service's output ({svc.log_path}):\n"
                  f"{base.indent(svc.log_tail(20))}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, base.Interrupted) as e:
        print(f"\ninterrupted ({str(e) or 'Ctrl-C'}); cleaning up", file=sys.stderr)
        return 130
    finally:
        if svc is not None:
            svc.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
