"""Our CLI into Postgres vs `COPY … FROM STDIN` of the same file, on a throwaway server, in one run.

    python benchmarks/bench_postgres.py --rows 2000000

Generates a yellow-2019-01-shaped CSV.gz, serves it on 127.0.0.1, starts a throwaway PostgreSQL cluster (the
Debian binaries; or `TAXI_TEST_PG_DSN`) and measures:
  native   stream the download through gunzip into `COPY yellow FROM STDIN (FORMAT csv, HEADER)` (psycopg2),
           into a table typed like ours
  ours     `python -m taxi_pipeline --dest postgres --taxi yellow --month 2019-01` (fresh database, subprocess)
  rerun    the same command again (unchanged month: nothing downloaded, nothing loaded)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from common import ROOT, print_table, publish, serve, timed_child

sys.path.insert(0, str(ROOT))
from tests.pgserver import start_cluster  # noqa: E402

NATIVE_TABLE = """
CREATE TABLE yellow (
  vendor_id bigint, tpep_pickup_datetime timestamp, tpep_dropoff_datetime timestamp, passenger_count bigint,
  trip_distance double precision, ratecode_id bigint, store_and_fwd_flag text, pu_location_id bigint,
  do_location_id bigint, payment_type bigint, fare_amount double precision, extra double precision,
  mta_tax double precision, tip_amount double precision, tolls_amount double precision,
  improvement_surcharge double precision, total_amount double precision, congestion_surcharge double precision
)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="taxi_bench_"))
    cluster = None
    try:
        t = time.perf_counter()
        month = publish(work / "www", args.rows)
        size = month.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows, {size:.1f} MiB gzip in {time.perf_counter() - t:.1f}s")
        server, url = serve(work / "www")
        base = os.environ.get("TAXI_TEST_PG_DSN", "").rsplit("/", 1)[0]
        if not base:
            cluster = start_cluster()
            base = cluster.dsn("").rstrip("/")
        admin = psycopg2.connect(f"{base}/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            for db in ("bench_native", "bench_ours"):
                cur.execute(f"drop database if exists {db}")
                cur.execute(f"create database {db}")
        with psycopg2.connect(f"{base}/bench_native") as con, con.cursor() as cur:
            cur.execute(NATIVE_TABLE)
        native_script = (
            "import gzip, urllib.request, psycopg2;"
            f"con = psycopg2.connect('{base}/bench_native'); cur = con.cursor();"
            f"src = gzip.GzipFile(fileobj=urllib.request.urlopen('{url}/yellow/yellow_tripdata_2019-01.csv.gz'));"
            "cur.copy_expert('COPY yellow FROM STDIN WITH (FORMAT csv, HEADER true)', src, size=1 << 20);"
            "con.commit()"
        )
        env = {
            **os.environ,
            "DLT_DATA_DIR": str(work / "dlt"),
            "DESTINATION__POSTGRES__CREDENTIALS": f"{base}/bench_ours",
        }
        native_s, native_rss = timed_child([sys.executable, "-c", native_script], work, env)
        ours_cmd = [
            sys.executable,
            "-m",
            "taxi_pipeline",
            "--dest",
            "postgres",
            "--taxi",
            "yellow",
            "--month",
            "2019-01",
        ]
        ours_cmd += ["--base-url", url]
        ours_s, ours_rss = timed_child(ours_cmd, work, env)
        rerun_s, rerun_rss = timed_child(ours_cmd, work, env)
        with psycopg2.connect(f"{base}/bench_ours") as con, con.cursor() as cur:
            cur.execute("select count(*) from taxi_raw.yellow_tripdata")
            assert cur.fetchone()[0] == args.rows
        server.shutdown()
        print_table(
            args.rows,
            [
                ("Postgres native: download → gunzip → COPY FROM STDIN", native_s, native_rss),
                ("taxi_pipeline → Postgres", ours_s, ours_rss),
                ("taxi_pipeline rerun (unchanged)", rerun_s, rerun_rss),
            ],
            native_s,
        )
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
