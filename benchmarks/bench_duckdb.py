"""Our CLI into DuckDB vs DuckDB's native `read_csv` (plus the download) on the same generated month.

    python benchmarks/bench_duckdb.py --rows 2000000

Generates a yellow-2019-01-shaped CSV.gz, serves it on 127.0.0.1, and measures in one run:
  native   download the file + `CREATE TABLE AS SELECT * FROM read_csv(...)` in DuckDB (default sniffing,
           and with sample_size=-1, which types an early-empty column right at the cost of a second pass)
  ours     `python -m taxi_pipeline --dest duckdb --taxi yellow --month 2019-01` (fresh DuckDB file, subprocess)
  rerun    the same command again (unchanged month: nothing downloaded, nothing loaded)
Prints seconds, rows/s, peak RSS and the ratio to native.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import print_table, publish, serve, timed_child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="taxi_bench_"))
    try:
        www = work / "www"
        t = time.perf_counter()
        month = publish(www, args.rows)
        size = month.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows, {size:.1f} MiB gzip in {time.perf_counter() - t:.1f}s")
        server, url = serve(www)
        env = {**os.environ, "DLT_DATA_DIR": str(work / "dlt")}

        def native(options: str, db: str) -> tuple[float, float]:
            script = (
                "import duckdb, urllib.request;"
                f"urllib.request.urlretrieve('{url}/yellow/yellow_tripdata_2019-01.csv.gz', '{db}.csv.gz');"
                f"duckdb.connect('{db}.duckdb')"
                f".execute(\"CREATE TABLE t AS SELECT * FROM read_csv('{db}.csv.gz'{options})\")"
            )
            return timed_child([sys.executable, "-c", script], work, env)

        native_s, native_rss = native("", "native")
        full_s, full_rss = native(", sample_size=-1", "native_full")
        ours_cmd = [sys.executable, "-m", "taxi_pipeline", "--taxi", "yellow", "--month", "2019-01", "--base-url", url]
        ours_s, ours_rss = timed_child(ours_cmd, work, env)
        rerun_s, rerun_rss = timed_child(ours_cmd, work, env)
        server.shutdown()
        rows = [
            ("DuckDB native: download + read_csv", native_s, native_rss),
            ("DuckDB native, sample_size=-1 (types from the whole file)", full_s, full_rss),
            ("taxi_pipeline → DuckDB", ours_s, ours_rss),
            ("taxi_pipeline rerun (unchanged)", rerun_s, rerun_rss),
        ]
        print_table(args.rows, rows, native_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
