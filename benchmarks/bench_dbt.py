"""dbt's monthly cost against the history loaded: one more month on top of 3 months, and on top of 12.

    pip install -e '.[bench]'
    python benchmarks/bench_dbt.py                 # 1M-row yellow months into DuckDB
    python benchmarks/bench_dbt.py --rows 500000

Generates 13 yellow months (2019-01 … 2020-01), serves them on 127.0.0.1 and loads them into a fresh DuckDB file
with `python -m taxi_pipeline`, one month per run, as a monthly schedule would. Measured, each in its own process:

    dbt after the 4th month    `taxi-pipeline dbt`: the monthly build (the months changed since the last build)
    dbt after the 13th month   the same, on top of 12 months
    full refresh               `taxi-pipeline dbt --full-refresh` after each: what every build cost before

Prints a table and the target: the monthly build on top of 12 months ≤ 1.2× the one on top of 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from common import publish, serve, timed_child

MONTHS = [f"2019-{m:02d}" for m in range(1, 13)] + ["2020-01"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per month (1,000,000)")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
