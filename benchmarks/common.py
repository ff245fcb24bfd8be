"""Shared by the benchmarks: a generated real-size month, a local file server, timing of a child process."""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
ZONES = ROOT.parent / "shared" / "data" / "taxi_zone_lookup.csv"


def make_month(path: Path, rows: int, seed: int = 0) -> None:
    """Write a yellow 2019-01-shaped gzip CSV with `rows` rows (blank early congestion_surcharge included)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2019-01-01T00:00:00")
    pickup = start + rng.integers(0, 31 * 86400, rows).astype("timedelta64[s]")
    dropoff = pickup + rng.integers(60, 3600, rows).astype("timedelta64[s]")
    fare = np.round(rng.uniform(2.5, 60, rows), 2)
    tip = np.round(fare * rng.choice([0, 0.1, 0.2], rows), 2)
    congestion = np.where(np.arange(rows) < rows // 3, np.nan, 2.5)  # empty early in the file, as in 2019
    table = pa.table(
        {
            "VendorID": rng.integers(1, 3, rows),
            "tpep_pickup_datetime": pa.array(pickup.astype("datetime64[s]")),
            "tpep_dropoff_datetime": pa.array(dropoff.astype("datetime64[s]")),
            "passenger_count": rng.integers(1, 7, rows),
            "trip_distance": np.round(rng.uniform(0, 20, rows), 2),
            "RatecodeID": rng.integers(1, 3, rows),
            "store_and_fwd_flag": pa.array(np.where(rng.random(rows) < 0.01, "Y", "N")),
            "PULocationID": rng.integers(1, 266, rows),
            "DOLocationID": rng.integers(1, 266, rows),
            "payment_type": rng.integers(1, 5, rows),
            "fare_amount": fare,
            "extra": np.full(rows, 0.5),
            "mta_tax": np.full(rows, 0.5),
            "tip_amount": tip,
            "tolls_amount": np.zeros(rows),
            "improvement_surcharge": np.full(rows, 0.3),
            "total_amount": np.round(fare + tip + 1.3, 2),
            "congestion_surcharge": pa.array(congestion, from_pandas=True),
        }
    )
    with pa.CompressedOutputStream(str(path), "gzip") as out:
        pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="none"))


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def timed_child(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run a command; wall seconds and its peak RSS in MiB (each measurement runs in its own process)."""
    script = (
        "import resource, subprocess, sys, time; t = time.perf_counter();"
        f"rc = subprocess.run({cmd!r}).returncode; dt = time.perf_counter() - t;"
        "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{out.stderr}")
    seconds, rss = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(rss)


def publish(www: Path, rows: int) -> Path:
    """Lay out a mirror folder with the zone lookup and a generated yellow 2019-01 month; returns the month file."""
    (www / "yellow").mkdir(parents=True)
    (www / "misc").mkdir()
    zones = www / "misc" / "taxi_zone_lookup.csv"
    if ZONES.exists():
        zones.write_bytes(ZONES.read_bytes())
    else:
        zones.write_text("LocationID,Borough,Zone,service_zone\n1,EWR,Newark Airport,EWR\n")
    month = www / "yellow" / "yellow_tripdata_2019-01.csv.gz"
    make_month(month, rows)
    return month


def print_table(rows: int, results: list[tuple[str, float, float]], native_s: float) -> None:
    """A markdown table: seconds, rows/s, peak RSS and ratio to the native loader."""
    print(f"\n| approach ({rows:,} rows) | seconds | rows/s | peak RSS MiB | vs native |")
    print("|---|---:|---:|---:|---:|")
    for name, secs, rss in results:
        rate = f"{rows / secs:,.0f}" if "rerun" not in name else "-"
        print(f"| {name} | {secs:.1f} | {rate} | {rss:.0f} | {secs / native_s:.2f}× |")
