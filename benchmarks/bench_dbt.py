"""dbt's monthly cost against the history loaded: one more month on top of 3 months, and on top of 12.

    pip install -e '.[bench]'
    python benchmarks/bench_dbt.py                 # 1M-row yellow months into DuckDB
    python benchmarks/bench_dbt.py --rows 500000
    python benchmarks/bench_dbt.py --live           # a live-feed month's load against its dbt build (issue 35)
    python benchmarks/bench_dbt.py --live --parquet-rows 200000 --fhvhv-rows 400000 --only duckdb   # a quick trial

Generates 13 yellow months (2019-01 … 2020-01), serves them on 127.0.0.1 and loads them into a fresh DuckDB file
with `python -m taxi_pipeline`, one month per run, as a monthly schedule would. Measured, each in its own process:

    dbt after the 4th month    `taxi-pipeline dbt`: the monthly build (the months changed since the last build)
    dbt after the 13th month   the same, on top of 12 months
    full refresh               `taxi-pipeline dbt --full-refresh` after each: what every build cost before

Prints a table and the target: the monthly build on top of 12 months ≤ 1.2× the one on top of 3.

`--live`: one live-feed parquet month (`common.make_parquet_month`: yellow 2024-01, 4M rows, and the 24-column
fhvhv 2022-01, 20M rows) loaded into a fresh DuckDB file and a fresh Postgres database (a throwaway server, or
`TAXI_TEST_PG_DSN`), then `taxi-pipeline dbt`: the load's time, the monthly build's time, their ratio and the
build's peak RSS (our process: dbt runs in it, and DuckDB too; Postgres' server is not counted). Targets: the build
≤ 1.0× the load on DuckDB and ≤ 1.5× on Postgres, peak RSS < 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from common import ROOT, ZONES, make_parquet_month, publish, serve, timed_child

MONTHS = [f"2019-{m:02d}" for m in range(1, 13)] + ["2020-01"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per month (1,000,000)")
    parser.add_argument("--live", action="store_true", help="a live-feed month's load against its dbt build")
    parser.add_argument("--parquet-rows", type=int, default=4_000_000, help="--live: yellow rows (4,000,000)")
    parser.add_argument("--fhvhv-rows", type=int, default=20_000_000, help="--live: fhvhv rows (20,000,000)")
    parser.add_argument("--only", choices=["duckdb", "postgres"], help="--live: one destination")
    args = parser.parse_args()
    if args.live:
        live(args)
        return
    with tempfile.TemporaryDirectory(prefix="taxi_bench_dbt_") as tmp:
        work = Path(tmp)
        www = work / "www"
        publish(www, {month: args.rows for month in MONTHS})
        print(f"generated {len(MONTHS)} months of {args.rows:,} rows", flush=True)
        server, url = serve(www)
        try:
            rows = Bench(work, url).run()
        finally:
            server.shutdown()
    print()
    print(f"DuckDB, yellow months of {args.rows:,} rows")
    print("| months loaded | load of the new month | dbt build (monthly) | dbt build --full-refresh |")
    print("|---:|---:|---:|---:|")
    for loaded, load, monthly, full in rows:
        print(f"| {loaded} | {load:.1f} s | {monthly:.1f} s | {full:.1f} s |")
    ratio = rows[-1][2] / rows[0][2]
    print(f"target: the monthly build on top of 12 months {ratio:.2f}× the one on top of 3 (≤ 1.20×)")


class Bench:
    """One DuckDB file and one dlt data dir, loaded a month at a time."""

    def __init__(self, work: Path, url: str) -> None:
        self.work, self.url = work, url
        self.env: Dict[str, str] = {
            **os.environ,
            "DLT_DATA_DIR": str(work / "dlt"),
            "DESTINATION__DUCKDB__CREDENTIALS": str(work / "taxi.duckdb"),
        }

    def cli(self, *argv: str) -> float:
        cmd = [sys.executable, "-m", "taxi_pipeline", *argv]
        seconds, _ = timed_child(cmd, self.work, self.env)
        return seconds

    def load(self, month: str) -> float:
        args = ["--dest", "duckdb", "--taxi", "yellow", "--format", "csv", "--month", month]
        return self.cli(*args, "--base-url", self.url, "-q")

    def run(self) -> List[tuple]:
        out = []
        for i, month in enumerate(MONTHS):
            seconds = self.load(month)
            if i + 1 in (4, 13):
                monthly = self.cli("dbt", "--dest", "duckdb")
                full = self.cli("dbt", "--dest", "duckdb", "--full-refresh")
                out.append((i, seconds, monthly, full))
                print(f"{i} months, then {month}: dbt {monthly:.1f} s, full refresh {full:.1f} s", flush=True)
            elif i + 1 in (3, 12):
                self.cli("dbt", "--dest", "duckdb")  # the models up to date, as after every monthly run
        return out


LIVE = (("yellow", "2024-01"), ("fhvhv", "2022-01"))


def live(args: argparse.Namespace) -> None:
    """Each live-feed month loaded into a fresh destination, then its monthly dbt build; one table per destination."""
    sys.path.insert(0, str(ROOT))
    rows = {"yellow": args.parquet_rows, "fhvhv": args.fhvhv_rows}
    dests = [args.only] if args.only else ["duckdb", "postgres"]
    with tempfile.TemporaryDirectory(prefix="taxi_bench_dbt_") as tmp:
        work = Path(tmp)
        www = work / "www"
        (www / "trip-data").mkdir(parents=True)
        (www / "misc").mkdir()
        stand_in = b"LocationID,Borough,Zone,service_zone\n1,EWR,Newark Airport,EWR\n"
        zones = ZONES.read_bytes() if ZONES.exists() else stand_in
        (www / "misc" / "taxi_zone_lookup.csv").write_bytes(zones)
        for taxi, month in LIVE:
            make_parquet_month(www / "trip-data" / f"{taxi}_tripdata_{month}.parquet", taxi, rows[taxi], month)
        print("generated " + ", ".join(f"{t} {m} ({rows[t]:,} rows)" for t, m in LIVE), flush=True)
        server, url = serve(www)
        cluster = None
        try:
            results = []
            for dest in dests:
                base = ""
                if dest == "postgres":
                    base = os.environ.get("TAXI_TEST_PG_DSN", "").rsplit("/", 1)[0]
                    if not base:
                        from tests.pgserver import start_cluster

                        cluster = start_cluster("autovacuum=off")
                        base = cluster.dsn("").rstrip("/")
                for taxi, month in LIVE:
                    results.append((dest, taxi, rows[taxi], *_load_and_build(work, url, dest, base, taxi, month)))
        finally:
            server.shutdown()
            if cluster:
                cluster.stop()
    print()
    print("| destination | month | rows | load | dbt build (monthly) | build / load | build peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dest, taxi, n, load, build, rss in results:
        print(f"| {dest} | {taxi} | {n:,} | {load:.1f} s | {build:.1f} s | {build / load:.2f}× | {rss:.0f} MiB |")
    limits = {"duckdb": 1.0, "postgres": 1.5}
    worst = ", ".join(f"{d} {t} {b / lo:.2f}× (≤ {limits[d]:.1f}×)" for d, t, _, lo, b, _ in results)
    print(f"targets: {worst} · build peak RSS at most {max(r[-1] for r in results):.0f} MiB (< 2048)")


def _load_and_build(work: Path, url: str, dest: str, base: str, taxi: str, month: str) -> tuple[float, float, float]:
    """A fresh destination: the month's load (seconds), then `taxi-pipeline dbt` (seconds, peak RSS MiB)."""
    place = work / f"{dest}_{taxi}"
    place.mkdir()
    env = {**os.environ, "DLT_DATA_DIR": str(place / "dlt")}
    if dest == "duckdb":
        env["DESTINATION__DUCKDB__CREDENTIALS"] = str(place / "taxi.duckdb")
    else:
        import psycopg2

        database = f"bench_dbt_{taxi}"
        con = psycopg2.connect(f"{base}/postgres")
        con.autocommit = True  # CREATE DATABASE runs outside a transaction
        try:
            with con.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {database}")
                cur.execute(f"CREATE DATABASE {database}")
        finally:
            con.close()
        env["DESTINATION__POSTGRES__CREDENTIALS"] = f"{base}/{database}"
    cli = [sys.executable, "-m", "taxi_pipeline"]
    load, _ = timed_child([*cli, "--dest", dest, "--taxi", taxi, "--month", month, "--base-url", url, "-q"], place, env)
    build, rss = timed_child([*cli, "dbt", "--dest", dest], place, env)
    print(f"{dest} {taxi}: load {load:.1f} s, dbt {build:.1f} s, build peak RSS {rss:.0f} MiB", flush=True)
    return load, build, rss


if __name__ == "__main__":
    main()
