"""`--workers N` against `--workers 1` and the native loader, on a backfill of several generated months into Postgres.

    pip install -e '.[bench]'
    python benchmarks/bench_workers.py                       # 6 months × 1M rows, workers 1 and 2
    python benchmarks/bench_workers.py --months 12 --workers 1 2 4 --repeat 2

Generates yellow-shaped CSV.gz months, serves them on 127.0.0.1 and measures, each in its own process and into a
fresh database:

native      download → gunzip → `COPY … FROM STDIN` (psycopg2), the months one after another on one connection,
            then the same spread over N processes (N connections) at once
ours        `python -m taxi_pipeline --dest postgres --taxi yellow --start … --end … --workers N`

Prints seconds, rows/s, the cores the whole machine kept busy meanwhile (client, server and kernel, from
/proc/stat: where one run already keeps every core busy, more workers cannot go faster), the peak RSS of the
largest process (the run or any worker: `RUSAGE_CHILDREN`), each against the native loader on one connection,
then the speed-up of each worker count over `--workers 1` (target with 2 workers: ≥ 1.4×, peak RSS per worker
< 1 GiB). `--repeat N`: N more rounds of every worker count in turn, and the median speed-up. The throwaway
PostgreSQL runs without autovacuum; a CHECKPOINT and an OS `sync` come before each measurement
(`TAXI_TEST_PG_DSN`: your server, as it is).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench import NATIVE_PG_TABLE, POSTGRES_NATIVE, checkpoint
from common import ROOT, publish, serve, timed_child

sys.path.insert(0, str(ROOT))

# the native loader spread over N processes: each COPYs its share of the months on its own connection
NATIVE_SPREAD = """
import subprocess, sys
dsn, n, urls = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
copy = '''
import gzip, sys, urllib.request, psycopg2
con = psycopg2.connect(sys.argv[1]); cur = con.cursor()
for url in sys.argv[2:]:
    src = gzip.GzipFile(fileobj=urllib.request.urlopen(url))
    cur.copy_expert("COPY yellow FROM STDIN WITH (FORMAT csv, HEADER true)", src, size=1 << 20)
    con.commit()
'''
procs = [subprocess.Popen([sys.executable, "-c", copy, dsn, *urls[i::n]]) for i in range(n)]
sys.exit(max(p.wait() for p in procs))
"""


def cpu_busy() -> float:
    """CPU seconds the whole machine has spent busy so far (user, nice, system, irq, softirq: /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def months_of(count: int) -> List[str]:
    return [f"{2019 + i // 12}-{i % 12 + 1:02d}" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per month (1,000,000)")
    parser.add_argument("--months", type=int, default=6, help="months in the backfill (6)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure (1 2)")
    parser.add_argument("--repeat", type=int, default=0, help="N more rounds of every worker count, in turn")
    args = parser.parse_args()
    counts = sorted(set([1, *args.workers]))

    work = Path(tempfile.mkdtemp(prefix="taxi_bench_workers_"))
    cluster = server = None
    try:
        t = time.perf_counter()
        months = months_of(args.months)
        publish(work / "www", {m: args.rows for m in months})
        print(f"generated {args.months} months × {args.rows:,} rows in {time.perf_counter() - t:.0f}s", flush=True)
        server, url = serve(work / "www")
        base = os.environ.get("TAXI_TEST_PG_DSN", "").rsplit("/", 1)[0]
        if not base:
            from tests.pgserver import start_cluster

            cluster = start_cluster("autovacuum=off")
            base = cluster.dsn("").rstrip("/")
        Bench(work, url, base, months, args.rows).run(counts, args.repeat)
    finally:
        if server:
            server.shutdown()
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


class Bench:
    """Each measurement a child process into a fresh database: wall seconds and the largest process's peak RSS."""

    def __init__(self, work: Path, url: str, base: str, months: List[str], rows: int) -> None:
        self.work, self.url, self.base, self.months, self.rows = work, url, base, months, rows
        self.total = rows * len(months)
        self.urls = [f"{url}/yellow/yellow_tripdata_{m}.csv.gz" for m in months]
        self.round = 0
        self.busy: List[float] = []
        """Per measurement: CPU seconds used on the whole machine per second of wall time (cores kept busy)."""

    def fresh(self, name: str, native: bool = False) -> str:
        import psycopg2

        admin = psycopg2.connect(f"{self.base}/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name}")
        admin.close()
        dsn = f"{self.base}/{name}"
        if native:
            with psycopg2.connect(dsn) as con, con.cursor() as cur:
                cur.execute(NATIVE_PG_TABLE)
        return dsn

    def measure(self, cmd: List[str], env: Dict[str, str]) -> tuple[float, float]:
        """Seconds and peak RSS of `cmd`; the cores it kept busy (client, server and kernel) go to `self.busy`."""
        checkpoint(self.base)
        before = cpu_busy()
        seconds, rss = timed_child(cmd, self.work, env)
        self.busy.append((cpu_busy() - before) / seconds)
        return seconds, rss

    def native(self, processes: int) -> tuple[float, float]:
        dsn = self.fresh("bench_native", native=True)
        if processes == 1:
            cmd = [sys.executable, "-c", POSTGRES_NATIVE, dsn, *self.urls]
        else:
            cmd = [sys.executable, "-c", NATIVE_SPREAD, dsn, str(processes), *self.urls]
        seconds, rss = self.measure(cmd, dict(os.environ))
        self.check(dsn, "yellow")
        return seconds, rss

    def ours(self, workers: int) -> tuple[float, float]:
        self.round += 1
        dsn = self.fresh("bench_ours")
        env = {
            **os.environ,
            "DLT_DATA_DIR": str(self.work / "dlt" / f"round_{self.round}"),
            "DESTINATION__POSTGRES__CREDENTIALS": dsn,
        }
        months = ["--start", self.months[0], "--end", self.months[-1]]
        cmd = [sys.executable, "-m", "taxi_pipeline", "--dest", "postgres", "--taxi", "yellow", "--format", "csv"]
        cmd += months
        seconds, rss = self.measure([*cmd, "--base-url", self.url, "--workers", str(workers), "-q"], env)
        self.check(dsn, "taxi_raw.yellow_tripdata")
        return seconds, rss

    def check(self, dsn: str, table: str) -> None:
        import psycopg2

        with psycopg2.connect(dsn) as con, con.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone()[0] == self.total, f"{table}: not every row loaded"

    def run(self, counts: List[int], repeat: int) -> None:
        rows: List[tuple[str, float, float, float]] = []
        native = self.native(1)
        rows.append(("native: COPY FROM STDIN, one connection, months in turn", *native, self.busy[-1]))
        for n in counts[1:]:
            rows.append((f"native: COPY FROM STDIN, {n} processes at once", *self.native(n), self.busy[-1]))
        ours: Dict[int, List[float]] = {n: [] for n in counts}
        rss: Dict[int, float] = {}
        for n in counts:
            seconds, peak = self.ours(n)
            ours[n].append(seconds)
            rss[n] = peak
            rows.append((f"taxi_pipeline --workers {n}", seconds, peak, self.busy[-1]))
        for i in range(repeat):
            line = []
            for n in counts:
                seconds, peak = self.ours(n)
                ours[n].append(seconds)
                rss[n] = max(rss[n], peak)
                line.append(f"--workers {n} {seconds:.1f} s")
            print(f"round {i + 2}: " + ", ".join(line), flush=True)
        print(f"\nPostgres, {len(self.months)} months × {self.rows:,} rows, {os.cpu_count()} cores")
        print("| approach | seconds | rows/s | cores busy | peak RSS MiB (largest process) | vs native |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, seconds, peak, busy in rows:
            ratio = seconds / native[0]
            rate = f"{self.total / seconds:,.0f}"
            print(f"| {name} | {seconds:.1f} | {rate} | {busy:.2f} of {os.cpu_count()} | {peak:.0f} | {ratio:.2f}× |")
        one = statistics.median(ours[1])
        for n in counts[1:]:
            median = statistics.median(ours[n])
            speedup = one / median
            rounds = f" (medians of {repeat + 1} rounds)" if repeat else ""
            target = " (target ≥ 1.40×)" if n == 2 else ""
            print(
                f"--workers {n}: {speedup:.2f}× faster than --workers 1{target}{rounds}; "
                f"peak RSS of the largest process {rss[n]:.0f} MiB (< 1024)"
            )


if __name__ == "__main__":
    main()
