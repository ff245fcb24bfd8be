"""BigQuery (emulated): one live-feed parquet month through the package against BigQuery's own load job of the file.

    python benchmarks/bench_bigquery.py [--rows 4000000] [--taxi yellow|fhvhv] [--no-staging]

Starts bqemulator and fake-gcs-server (tests/bqemulator.py), writes a TLC-schema parquet month
(`common.make_parquet_month`), and measures in the same run:

- **native**: the file uploaded to the bucket as it is, then one `load_table_from_uri` (PARQUET) job into a new
  table: what BigQuery does with the file and nothing else (no typing, no lineage, no month bookkeeping);
- **taxi_pipeline**: `python -m taxi_pipeline --dest bigquery --taxi T --month 2024-01 --format parquet` from a
  local mirror, through the bucket (or uploaded, `--no-staging`): download, typed Arrow parse with lineage,
  dlt's parquet, upload, load job, count, record, leases.

Both run against the emulator, whose load job is DuckDB reading parquet on this machine: the ratio is the
package's overhead over a bare load job here, not a BigQuery figure (a real load job runs on Google's slots).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import ZONES, make_parquet_month, serve, timed_child  # noqa: E402
from tests import bqemulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows in the month (4M, a yellow month)")
    parser.add_argument("--taxi", choices=["yellow", "fhvhv"], default="yellow")
    parser.add_argument("--no-staging", action="store_true", help="upload from the worker instead of gs://")
    parser.add_argument("--on-disk", action="store_true", help="the emulator's tables in a file (large months)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_bq_"))
    emulators = bqemulator.start(on_disk=args.on_disk)
    try:
        www = work / "www"
        (www / "trip-data").mkdir(parents=True)
        (www / "misc").mkdir()
        shutil.copy(ZONES, www / "misc" / "taxi_zone_lookup.csv")
        month = www / "trip-data" / f"{args.taxi}_tripdata_2024-01.parquet"
        t = time.perf_counter()
        make_parquet_month(month, args.taxi, args.rows, month="2024-01")
        size = month.stat().st_size / 2**20
        made = time.perf_counter() - t
        print(f"{args.taxi} 2024-01: {args.rows:,} rows, {size:,.0f} MiB parquet (made in {made:.1f} s)")

        os.environ.update(emulators.environ())
        native = native_load(emulators, month)
        after_native = peak_rss(emulators)
        server, url = serve(www)
        env = {**os.environ, "DLT_DATA_DIR": str(work / "dlt"), "PYTHONPATH": str(REPO)}
        if not args.no_staging:
            env.update(TAXI_PIPELINE__STAGING="filesystem", DESTINATION__FILESYSTEM__BUCKET_URL="gs://taxi-stage/stage")
        cmd = [sys.executable, "-m", "taxi_pipeline", "--dest", "bigquery", "--taxi", args.taxi, "--month", "2024-01",
               "--format", "parquet", "--base-url", url]  # fmt: skip
        ours, rss = timed_child(cmd, work, env)
        server.shutdown()
        rows = emulators.client().query_and_wait(f"select count(*) from taxi_raw.{args.taxi}_tripdata")
        loaded = next(iter(rows))[0]
        assert loaded == args.rows, f"loaded {loaded} rows, the file has {args.rows}"
        how = "uploaded" if args.no_staging else "through gs://"
        print(f"native load job (upload + load_table_from_uri): {native:6.1f} s")
        print(f"taxi_pipeline ({how}):                {ours:6.1f} s  peak RSS {rss:,.0f} MiB")
        print(f"ratio taxi_pipeline / native: {ours / native:.2f}x")
        at_end = peak_rss(emulators)
        for name, before in after_native.items():  # the emulators hold what they load in memory
            print(f"{name} peak RSS: {before:,.0f} MiB after the native load, {at_end[name]:,.0f} MiB at the end")
    finally:
        emulators.stop()
        shutil.rmtree(work, ignore_errors=True)


def peak_rss(emulators: bqemulator.Emulators) -> dict[str, float]:
    """Each emulator process's peak RSS so far, MiB (`VmHWM`; neither starts processes of its own)."""
    return {os.path.basename(str(p.args[0])): _vm_hwm(p.pid) for p in emulators.processes}


def _vm_hwm(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0


def native_load(emulators: bqemulator.Emulators, path: Path) -> float:
    """Seconds to put the file in the bucket as it is and load it with one PARQUET load job into a new table."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    client = emulators.client()
    bucket = storage.Client(
        project=bqemulator.PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulators.gcs_url},
    ).bucket(bqemulator.BUCKET)
    import pyarrow.parquet as pq

    client.create_dataset("native", exists_ok=True)
    # the emulator loads into an existing table only (BigQuery would make it from the file): its schema, the file's
    kinds = {"int": "INTEGER", "dou": "FLOAT", "flo": "FLOAT", "tim": "TIMESTAMP", "str": "STRING", "lar": "STRING"}
    schema = [bigquery.SchemaField(f.name, kinds[str(f.type)[:3]]) for f in pq.read_schema(path)]
    client.create_table(bigquery.Table(f"{bqemulator.PROJECT}.native.trips", schema=schema))
    started = time.perf_counter()
    bucket.blob(f"native/{path.name}").upload_from_filename(str(path))
    config = bigquery.LoadJobConfig(source_format="PARQUET")  # a new table: the job creates it
    uri = f"gs://{bqemulator.BUCKET}/native/{path.name}"
    client.load_table_from_uri(uri, f"{bqemulator.PROJECT}.native.trips", job_config=config).result()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
