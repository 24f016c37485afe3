#!/usr/bin/env python3
"""Benchmark: base backups and restore-to-a-point, pgbackups against pgBackRest.

On the database of bench/run.py (pgbench plus poorly compressible data; a kept cluster of the
same scale is reused), with WAL archived to both tools at once (one archive_command runs
`pgbackrest archive-push` and `pgbackups wal-push`), each round measures, in alternating
order:

  * base backup: `pgbackups base-backup`, `pgbackrest backup --type=full` (zst,
    process-max 2) and `pg_basebackup -Ft -X fetch` (uncompressed, to a directory);
  * restore to a point: `pgbackups rollback --to T` and `pgbackrest restore --type=time`,
    each followed by starting the server until recovery has ended (the time a user waits);

then, once, the WAL archive lag under a pgbench write load (p50/p99) of `pgbackups protect`
(streaming), `pgbackups wal-push` and `pgbackrest archive-push`, each alone.

Results go to bench/RESULTS-pitr.md. Run as root; installs nothing (pgBackRest comes from
Debian's `pgbackrest` package).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pwd
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402

RESULTS_FILE = base.BENCH_DIR / "RESULTS-pitr.md"
STANZA = "bench"


def as_pg(cmd: list[str], env: dict[str, str] | None = None) -> list[str]:
    prefix = ["runuser", "-u", base.PG_USER, "--"]
    if env:
        prefix += ["env"] + [f"{k}={v}" for k, v in env.items()]
    return prefix + [str(c) for c in cmd]


def chown_pg(path: Path) -> None:
    pw = pwd.getpwnam(base.PG_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def start_restored(cl: base.Cluster, pgdata: Path, port: int) -> None:
    """Starts a restored data directory and waits until recovery has ended."""
    base.run(as_pg([cl.tool("pg_ctl"), "-D", pgdata, "-l", pgdata / "server.log", "-w",
                    "-t", "3600", "-o", f"-p {port} -k {cl.sockdir} -c archive_mode=off",
                    "start"]), what="pg_ctl start (restored)")
    while True:
        cp = base.run([cl.tool("psql"), "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(port),
                       "-U", base.PG_USER, "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"],
                      what="psql", check=False)
        if cp.returncode == 0 and cp.stdout.strip() == "f":
            return
        time.sleep(0.05)


def settle(cl: base.Cluster) -> None:
    """Lets the machine go quiet before a timed restore, whichever tool runs first: the
    source's dirty pages written (CHECKPOINT, sync) and autovacuum done with pgbench's tables."""
    cl.psql("postgres", "CHECKPOINT")
    os.sync()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cl.scalar(
            "postgres", "SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'autovacuum worker'") != "0":
        time.sleep(0.2)
    os.sync()


def stop_restored(cl: base.Cluster, pgdata: Path) -> None:
    base.run(as_pg([cl.tool("pg_ctl"), "-D", pgdata, "-m", "immediate", "stop"]),
             what="pg_ctl stop (restored)", check=False)
    shutil.rmtree(pgdata, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def pgbackups_segments(store: Path) -> set[str]:
    """Whole segments in a pgbackups store directory (wal/<name>/)."""
    try:
        return {n[:24] for n in os.listdir(store) if len(n) == 28 and n.endswith(".zst")}
    except FileNotFoundError:
        return set()


def pgbackrest_segments(archive: Path) -> set[str]:
    """Segments in a pgBackRest repository's archive (<version>/<first 16>/<seg>-<sha1>...)."""
    out: set[str] = set()
    if not archive.exists():
        return out
    for version in os.listdir(archive):
        vdir = archive / version
        if not vdir.is_dir():
            continue
        for sub in os.listdir(vdir):
            sdir = vdir / sub
            if len(sub) == 16 and sdir.is_dir():
                out.update(n[:24] for n in os.listdir(sdir) if len(n) > 24 and n[24] == "-")
    return out


def measure_lag(cl: base.Cluster, stored_now, seconds: int) -> dict[str, float]:
    """Runs pgbench for `seconds` and times each WAL segment from the moment the server
    completes it (its archive_status file appears) to the moment it is in the store."""
    status = cl.pgdata / "pg_wal" / "archive_status"
    # Segments stored, or completed (archive_status files stay until a checkpoint), before.
    before = set(stored_now()) | {n.split(".")[0] for n in os.listdir(status)}
    ready: dict[str, float] = {}
    stored: dict[str, float] = {}
    bench = subprocess.Popen([cl.tool("pgbench"), "-n", "-T", str(seconds), "-c", "2",
                              *cl.conn_args(), base.SOURCE_DB],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = None
    while True:
        now = time.monotonic()
        for name in os.listdir(status):
            seg = name.split(".")[0]
            if len(seg) == 24 and seg not in ready and seg not in before:
                ready[seg] = now
        for seg in stored_now():
            if seg not in stored and seg not in before:
                stored[seg] = now
        if bench.poll() is not None:
            deadline = deadline or now + 120
            if all(s in stored for s in ready) or now > deadline:
                break
        time.sleep(0.01)
    lags = [stored[s] - ready[s] for s in ready if s in stored]
    missing = [s for s in ready if s not in stored]
    if missing:
        raise base.BenchError(f"segments never stored: {missing[:5]}")
    return {"segments": len(lags), "p50": percentile(lags, 50), "p99": percentile(lags, 99),
            "max": max(lags) if lags else float("nan"),
            "per_second": len(lags) / seconds}


def set_archive_command(cl: base.Cluster, command: str) -> None:
    cl.psql("postgres", f"ALTER SYSTEM SET archive_command = '{command}'")
    cl.psql("postgres", "SELECT pg_reload_conf()")
    # Drain: everything before the measurement archived by the new command.
    last = cl.scalar("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
    while last not in cl.scalar("postgres",
                                 "SELECT coalesce(last_archived_wal,'') FROM pg_stat_archiver"):
        time.sleep(0.1)


def archive_lag(cl: base.Cluster, binary: Path, pitr: Path, pgbr_conf: Path,
                seconds: int) -> dict[str, dict[str, float]]:
    """WAL archive lag under a pgbench write load: pgbackups protect (streaming),
    pgbackups wal-push and pgBackRest archive-push, each alone, one after the other."""
    out: dict[str, dict[str, float]] = {}
    lag_store = pitr / "lag-store"
    lag_store.mkdir()
    chown_pg(lag_store)

    base.log("archive lag: pgBackRest archive-push")
    set_archive_command(cl, f"pgbackrest --config={pgbr_conf} --stanza={STANZA} archive-push %p")
    archive = pitr / "repo" / "archive" / STANZA
    out["pgbackrest"] = measure_lag(cl, lambda: pgbackrest_segments(archive), seconds)

    base.log("archive lag: pgbackups wal-push")
    set_archive_command(cl, f"{binary} wal-push --name lag --storage file://{lag_store} "
                            f"--data-dir {pitr / 'cli'} %p")
    out["wal_push"] = measure_lag(cl, lambda: pgbackups_segments(lag_store / "wal" / "lag"),
                                  seconds)

    base.log("archive lag: pgbackups protect (streaming)")
    set_archive_command(cl, "true")
    svc = base.Service(binary=binary, data_dir=pitr / "lag-service",
                       extra_args=["--storage", f"file://{lag_store}"])
    svc.start()
    try:
        base.run(svc.cli("databases:add", "stream", cl.url("postgres")), env=svc.env(),
                 what="pgbackups databases:add")
        base.run(svc.cli("protect", "stream"), env=svc.env(), what="pgbackups protect")
        # The first base backup runs at once: wait for it before loading the server.
        deadline = time.monotonic() + 600
        while True:
            cp = base.run(svc.cli("protection:info", "stream", "--json"), env=svc.env(),
                          what="pgbackups protection:info", check=False)
            try:
                live = json.loads(cp.stdout).get("live") or {}
            except json.JSONDecodeError:
                live = {}
            if live.get("base_backups", 0) >= 1 and not live.get("base_backup_running"):
                break
            if time.monotonic() > deadline:
                raise base.BenchError(f"no base backup within 600 s:\n{svc.log_tail()}")
            time.sleep(0.5)
        out["stream"] = measure_lag(cl, lambda: pgbackups_segments(lag_store / "wal" / "stream"),
                                    seconds)
        base.run(svc.cli("unprotect", "stream"), env=svc.env(), what="pgbackups unprotect")
    finally:
        svc.stop()
    for k, v in out.items():
        base.log(f"archive lag {k}: {v['segments']} segments, p50 {v['p50']:.2f} s, "
                 f"p99 {v['p99']:.2f} s, max {v['max']:.2f} s")
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=int, default=100)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=base.BENCH_DIR / "work")
    p.add_argument("--lag-seconds", type=int, default=30,
                   help="seconds of pgbench per archive-lag measurement (0 skips it)")
    p.add_argument("--binary", type=Path,
                   default=base.REPO_DIR / "target" / "release" / "pgbackups")
    args = p.parse_args(argv)
    command = "python3 bench/pitr.py " + " ".join(shlex.quote(a) for a in argv)
    if os.geteuid() != 0:
        print("error: run as root", file=sys.stderr)
        return 2
    if shutil.which("pgbackrest") is None:
        print("error: pgBackRest is missing: apt-get install pgbackrest", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, base.raise_interrupted)
    work = args.work_dir.resolve()
    pitr = work / "pitr"
    cl = None
    auto_conf_backup = None
    try:
        binary = base.ensure_binary(args.binary.resolve())
        # The postgres OS user runs the binary from the archive_command.
        shutil.rmtree(pitr, ignore_errors=True)
        pitr.mkdir(parents=True)
        os.chmod(pitr, 0o755)
        for sub in ("repo", "store", "cli", "restore", "basebackup", "pgbr"):
            (pitr / sub).mkdir()
            chown_pg(pitr / sub)
        pgbr_conf = pitr / "pgbackrest.conf"
        cl = base.Cluster(bin=base.find_pg_bin(), root=work / "cluster")
        if not cl.marker.exists():
            raise base.BenchError("no kept cluster: run `python3 bench/run.py --scale "
                                  f"{args.scale} --keep` first")
        cl.stop_leftover()
        auto = cl.pgdata / "postgresql.auto.conf"
        auto_conf_backup = auto.read_text()
        pgbackups_push = (f"{binary} wal-push --name {STANZA} --storage file://{pitr / 'store'} "
                          f"--data-dir {pitr / 'cli'} %p")
        archive = (f"pgbackrest --config={pgbr_conf} --stanza={STANZA} archive-push %p && "
                   f"{pgbackups_push}")
        with open(auto, "a") as f:
            f.write(f"\narchive_mode = on\narchive_command = '{archive}'\n")
        cl.start()
        pgbr_conf.write_text(
            "[global]\n"
            f"repo1-path={pitr / 'repo'}\n"
            "repo1-retention-full=10\n"
            "compress-type=zst\n"
            "process-max=2\n"
            "start-fast=y\n"
            "log-level-console=warn\n"
            f"log-path={pitr / 'pgbr'}\n"
            f"lock-path={pitr / 'pgbr'}\n"
            f"[{STANZA}]\n"
            f"pg1-path={cl.pgdata}\n"
            f"pg1-port={cl.port}\n"
            f"pg1-socket-path={cl.sockdir}\n"
            f"pg1-user={base.PG_USER}\n")
        chown_pg(pgbr_conf)
        pgbr = ["pgbackrest", f"--config={pgbr_conf}", f"--stanza={STANZA}"]
        base.run(as_pg(pgbr + ["stanza-create"]), what="pgbackrest stanza-create")
        base.run(as_pg(pgbr + ["check"]), what="pgbackrest check")
        db_bytes = int(cl.scalar(base.SOURCE_DB,
                                 "SELECT pg_database_size(current_database())"))
        cluster_bytes = int(cl.scalar("postgres",
                                      "SELECT sum(pg_database_size(oid)) FROM pg_database"))
        base.log(f"cluster {base.mb(cluster_bytes):.0f} MB ({base.SOURCE_DB} "
                 f"{base.mb(db_bytes):.0f} MB)")

        env = {"PGBACKUPS_DATABASE_URL": cl.url("postgres"),
               "PGBACKUPS_DATA_DIR": str(pitr / "cli")}
        store_flags = ["--name", STANZA, "--storage", f"file://{pitr / 'store'}"]
        rows = []
        for i in range(args.repeat):
            r: dict[str, float] = {}

            def pgbackups_base() -> None:
                r["pgbackups_base"], _ = base.timed(
                    as_pg([binary, "base-backup", *store_flags], env=env),
                    what="pgbackups base-backup")

            def pgbackrest_base() -> None:
                r["pgbackrest_base"], _ = base.timed(
                    as_pg(pgbr + ["backup", "--type=full"]), what="pgbackrest backup")

            def basebackup() -> None:
                target = pitr / "basebackup" / f"r{i}"
                r["pg_basebackup"], _ = base.timed(
                    as_pg([cl.tool("pg_basebackup"), "-D", target, "-Ft", "-X", "fetch",
                           "--checkpoint=fast", "-h", "127.0.0.1", "-p", str(cl.port),
                           "-U", base.PG_USER]), what="pg_basebackup")
                r["pg_basebackup_bytes"] = dir_bytes(target)
                shutil.rmtree(target, ignore_errors=True)

            steps = [pgbackups_base, pgbackrest_base, basebackup]
            if i % 2:
                steps.reverse()
            for step in steps:
                cl.psql("postgres", "CHECKPOINT")
                step()
            base.log(f"round {i + 1} base backups: pgbackups {r['pgbackups_base']:.2f} s, "
                     f"pgBackRest {r['pgbackrest_base']:.2f} s, "
                     f"pg_basebackup {r['pg_basebackup']:.2f} s")

            # A moment after some writes, archived by both.
            base.run([cl.tool("pgbench"), "-n", "-T", "10", "-c", "2",
                      *cl.conn_args(), base.SOURCE_DB], what="pgbench")
            t_iso, target = cl.scalar(
                "postgres",
                "SELECT to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '|' || "
                "to_char(t, 'YYYY-MM-DD HH24:MI:SS.US') || '+00' "
                "FROM (SELECT clock_timestamp() AT TIME ZONE 'UTC' AS t) x").split("|")
            base.run([cl.tool("pgbench"), "-n", "-T", "3", "-c", "2",
                      *cl.conn_args(), base.SOURCE_DB], what="pgbench")
            last = cl.scalar("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
            while last not in cl.scalar("postgres",
                                         "SELECT coalesce(last_archived_wal,'') FROM pg_stat_archiver"):
                time.sleep(0.1)

            def pgbackups_restore() -> None:
                d = pitr / "restore" / "pgbackups"
                start = time.monotonic()
                base.run(as_pg([binary, "rollback", "--to", t_iso, "--data-dir", d,
                                *store_flags], env=env), what="pgbackups rollback")
                r["pgbackups_unpack"] = time.monotonic() - start
                start_restored(cl, d, base.free_port())
                r["pgbackups_restore"] = time.monotonic() - start
                stop_restored(cl, d)

            def pgbackrest_restore() -> None:
                d = pitr / "restore" / "pgbackrest"
                d.mkdir(mode=0o700)
                chown_pg(d)
                start = time.monotonic()
                base.run(as_pg(pgbr + ["restore", "--type=time", f"--target={target}",
                                       "--target-action=promote", f"--pg1-path={d}",
                                       "--archive-mode=off"]),
                         what="pgbackrest restore")
                r["pgbackrest_unpack"] = time.monotonic() - start
                start_restored(cl, d, base.free_port())
                r["pgbackrest_restore"] = time.monotonic() - start
                stop_restored(cl, d)

            steps = [pgbackups_restore, pgbackrest_restore]
            if i % 2:
                steps.reverse()
            for step in steps:
                settle(cl)
                step()
            base.log(f"round {i + 1} restore to a point: pgbackups "
                     f"{r['pgbackups_restore']:.2f} s, pgBackRest {r['pgbackrest_restore']:.2f} s")
            rows.append(r)

        lag = (archive_lag(cl, binary, pitr, pgbr_conf, args.lag_seconds)
               if args.lag_seconds > 0 else None)

        med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731

        def position(tool: str, parity: int) -> str:
            # pgbackups restores first in even rounds (0, 2, ...), pgBackRest in odd ones.
            vals = [r[f"{tool}_restore"] for i, r in enumerate(rows) if i % 2 == parity]
            return f"{statistics.mean(vals):.2f}" if vals else "n/a"
        store_bytes = dir_bytes(pitr / "store" / "base")
        repo_backup = dir_bytes(pitr / "repo" / "backup")
        n = args.repeat
        lines = [
            "# Base backups and restore to a point: pgbackups against pgBackRest",
            "",
            f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`: "
            f"{n} rounds, medians, order alternating. Cluster {base.mb(cluster_bytes):.0f} MB "
            f"(pgbench scale {args.scale} plus poorly compressible data); {os.cpu_count()} "
            "cores; WAL archived to both tools by one archive_command. pgBackRest "
            f"{subprocess.run(['pgbackrest', 'version'], capture_output=True, text=True).stdout.strip()}"
            " with compress-type=zst (its default level), process-max=2, start-fast.",
            "",
            "| | pgbackups | pgBackRest | pg_basebackup | pgbackups / pgBackRest |",
            "|---|---|---|---|---|",
            f"| base backup, s | {med('pgbackups_base'):.2f} | {med('pgbackrest_base'):.2f} | "
            f"{med('pg_basebackup'):.2f} (-Ft -X fetch, uncompressed) | "
            f"{med('pgbackups_base') / med('pgbackrest_base'):.2f}× |",
            f"| stored per base backup, MB | {base.mb(store_bytes / n):.0f} | "
            f"{base.mb(repo_backup / n):.0f} | {base.mb(med('pg_basebackup_bytes')):.0f} | |",
            f"| restore to a point + recovery, s | {med('pgbackups_restore'):.2f} | "
            f"{med('pgbackrest_restore'):.2f} | | "
            f"{med('pgbackups_restore') / med('pgbackrest_restore'):.2f}× |",
            "",
            "Restore to a point = from the command until the restored server has left recovery "
            "(pgbackups: `rollback --to T` then `pg_ctl start`; pgBackRest: `restore "
            "--type=time` then `pg_ctl start`), replaying the WAL of 10 s of pgbench, each "
            "started on a quiet machine (CHECKPOINT, sync, autovacuum done). Of that, "
            f"the restore command alone: pgbackups {med('pgbackups_unpack'):.2f} s, pgBackRest "
            f"{med('pgbackrest_unpack'):.2f} s; the rest is PostgreSQL's start and recovery, "
            "which fetches WAL through each tool's restore_command. The restore that runs "
            "first in a round is slower for both tools (the machine is still settling from the "
            "base backups and pgbench); by position, mean seconds: pgbackups "
            f"{position('pgbackups', 0)} first, {position('pgbackups', 1)} second; pgBackRest "
            f"{position('pgbackrest', 1)} first, {position('pgbackrest', 0)} second (rounds "
            "alternate the order; use an even --repeat so that each tool goes first as often).",
            "",
            "| round | pgbackups base | pgBackRest base | pg_basebackup | pgbackups restore | pgBackRest restore |",
            "|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(rows):
            lines.append(f"| {i + 1} | {r['pgbackups_base']:.2f} | {r['pgbackrest_base']:.2f} | "
                         f"{r['pg_basebackup']:.2f} | {r['pgbackups_restore']:.2f} | "
                         f"{r['pgbackrest_restore']:.2f} |")
        if lag is not None:
            cols = [("stream", "pgbackups protect (streaming)"),
                    ("wal_push", "pgbackups wal-push (archive_command)"),
                    ("pgbackrest", "pgBackRest archive-push (archive_command)")]
            lines += [
                "",
                f"WAL archive lag under a write load ({args.lag_seconds} s of pgbench -c 2 per "
                "tool, one tool at a time): from the moment the server completes a segment (its "
                "`archive_status` file appears) to the moment the whole segment is in the "
                "store, polled every 10 ms. The streaming receiver also uploads the segment "
                "still filling every 5 s, which this does not count. Segment counts differ with "
                "the full-page writes after a checkpoint (the streaming run starts with its first "
                "base backup's), not with the tools.",
                "",
                "| | " + " | ".join(c[1] for c in cols) + " |",
                "|---|" + "---|" * len(cols),
                "| segments | " + " | ".join(str(lag[c[0]]["segments"]) for c in cols) + " |",
                "| lag p50, s | " + " | ".join(f"{lag[c[0]]['p50']:.2f}" for c in cols) + " |",
                "| lag p99, s | " + " | ".join(f"{lag[c[0]]['p99']:.2f}" for c in cols) + " |",
                "| lag max, s | " + " | ".join(f"{lag[c[0]]['max']:.2f}" for c in cols) + " |",
                "",
            ]
        md = "\n".join(lines) + "\n"
        RESULTS_FILE.write_text(md)
        print("\n" + md)
        return 0
    except base.BenchError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, base.Interrupted):
        return 130
    finally:
        if cl is not None:
            cl.stop()
            if auto_conf_backup is not None:
                (cl.pgdata / "postgresql.auto.conf").write_text(auto_conf_backup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
