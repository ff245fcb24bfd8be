"""Shared by the benchmarks: a generated real-size month, a local file server, timing of a child process."""

from __future__ import annotations

import functools
import gzip
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
ZONES = ROOT.parent / "shared" / "data" / "taxi_zone_lookup.csv"


def make_month(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000, month: str = "2019-01") -> None:
    """Write a yellow 2019-01-shaped gzip CSV with `rows` rows of `month`, with the real files' quirks.

    As the DataTalksClub mirror's files are: integer columns written as decimals (`1.0`), blank ids in about 1 %
    of rows (VendorID, passenger_count, RatecodeID, payment_type empty together), amounts with two decimals
    (`0.50`), an empty `congestion_surcharge` early in 2019, a trailing empty column, and a few rows whose pickup
    falls in the month before. Written in chunks (flat memory) with gzip level 1: reading speed does not depend on
    the level.
    """
    writer = None
    with gzip.open(path, "wb", compresslevel=1) as out:
        for offset in range(0, rows, chunk):
            rng = np.random.default_rng(seed + offset)
            table = _with_quirks(_trips(offset, min(chunk, rows - offset), rows, rng, month), rng)
            if writer is None:
                out.write((",".join(table.column_names) + "\n").encode())  # unquoted, as the TLC writes it
                options = pacsv.WriteOptions(quoting_style="none", include_header=False)
                writer = pacsv.CSVWriter(out, table.schema, write_options=options)
            writer.write_table(table)
        if writer is not None:
            writer.close()


INTEGER_COLUMNS = ("VendorID", "passenger_count", "RatecodeID", "payment_type")
"""Written as decimals and blank together in some rows, as in the mirror's files."""
AMOUNT_COLUMNS = ("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge",
                  "total_amount")  # fmt: skip


def _with_quirks(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    """`table` as the mirror's text: decimals in integer columns, blank ids, `0.50` amounts, a trailing column."""
    n = table.num_rows
    blank = pa.array(rng.random(n) < 0.01)
    for name in INTEGER_COLUMNS:
        text = pc.binary_join_element_wise(pc.cast(table[name], pa.string()), ".0", "")
        table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(blank, None, text))
    for name in AMOUNT_COLUMNS:
        text = pa.array(np.char.mod("%.2f", table[name].to_numpy()))
        table = table.set_column(table.schema.get_field_index(name), name, text)
    return table.append_column("", pa.nulls(n, pa.string()))  # the trailing empty column: `…,congestion,`


def _trips(offset: int, n: int, total: int, rng: np.random.Generator, month: str = "2019-01") -> pa.Table:
    start = np.datetime64(f"{month}-01T00:00:00")
    first = np.datetime64(month, "M")
    days = int(((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(int))
    pickup = start + rng.integers(0, days * 86400, n).astype("timedelta64[s]")
    # a few trips picked up in the month before, as every TLC month has
    pickup = np.where(rng.random(n) < 0.001, pickup - np.timedelta64(days, "D"), pickup)
    dropoff = pickup + rng.integers(60, 3600, n).astype("timedelta64[s]")
    fare = np.round(rng.uniform(2.5, 60, n), 2)
    tip = np.round(fare * rng.choice([0, 0.1, 0.2], n), 2)
    # empty in the first third of the file, as in early 2019
    congestion = np.where(np.arange(offset, offset + n) < total // 3, np.nan, 2.5)
    return pa.table(
        {
            "VendorID": rng.integers(1, 3, n),
            "tpep_pickup_datetime": pa.array(pickup.astype("datetime64[s]")),
            "tpep_dropoff_datetime": pa.array(dropoff.astype("datetime64[s]")),
            "passenger_count": rng.integers(1, 7, n),
            "trip_distance": np.round(rng.uniform(0, 20, n), 2),
            "RatecodeID": rng.integers(1, 3, n),
            "store_and_fwd_flag": pa.array(np.where(rng.random(n) < 0.01, "Y", "N")),
            "PULocationID": rng.integers(1, 266, n),
            "DOLocationID": rng.integers(1, 266, n),
            "payment_type": rng.integers(1, 5, n),
            "fare_amount": fare,
            "extra": np.full(n, 0.5),
            "mta_tax": np.full(n, 0.5),
            "tip_amount": tip,
            "tolls_amount": np.zeros(n),
            "improvement_surcharge": np.full(n, 0.3),
            "total_amount": np.round(fare + tip + 1.3, 2),
            "congestion_surcharge": pa.array(congestion, from_pandas=True),
        }
    )


LIVE_ROW_GROUP = 1_000_000
"""Rows per row group of a generated live-feed parquet month (the TLC's files hold ~1M-row row groups)."""


def make_parquet_month(path: Path, taxi: str, rows: int, month: str = "2024-01", seed: int = 0) -> None:
    """Write a live-feed parquet month of `taxi` (`yellow` or `fhvhv`) as the TLC publishes it, row group by row group.

    The TLC's schemas and dtypes: yellow (19 columns) with int32 `VendorID`/`PULocationID`/`DOLocationID`, µs
    timestamps, `Airport_fee`; fhvhv (24 columns) with ns timestamps (2019–2022 files) and int64 ids, text flags,
    a blank `originating_base_num` or `on_scene_datetime` for the companies that leave them out. Amounts in cents,
    snappy compression, ~1M-row row groups: a 20M-row fhvhv month is about the size of the real ones.
    """
    writer = None
    try:
        for offset in range(0, rows, LIVE_ROW_GROUP):
            rng = np.random.default_rng(seed + offset)
            n = min(LIVE_ROW_GROUP, rows - offset)
            table = _yellow_live(n, rng, month) if taxi == "yellow" else _fhvhv_live(n, rng, month)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=n)
    finally:
        if writer is not None:
            writer.close()


def _times(n: int, rng: np.random.Generator, month: str, unit: str) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Pickup and dropoff times of `month` (a few in the month before) and the trip seconds."""
    start = np.datetime64(f"{month}-01T00:00:00")
    first = np.datetime64(month, "M")
    days = int(((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(int))
    pickup = start + rng.integers(0, days * 86400, n).astype("timedelta64[s]")
    pickup = np.where(rng.random(n) < 0.001, pickup - np.timedelta64(days, "D"), pickup)
    seconds = rng.integers(60, 3600, n)
    dropoff = pickup + seconds.astype("timedelta64[s]")
    return pa.array(pickup.astype(f"datetime64[{unit}]")), pa.array(dropoff.astype(f"datetime64[{unit}]")), seconds


def _cents(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return np.round(rng.uniform(low, high, n), 2)


def _yellow_live(n: int, rng: np.random.Generator, month: str) -> pa.Table:
    pickup, dropoff, _ = _times(n, rng, month, "us")
    fare = _cents(rng, 3, 70, n)
    tip = np.round(fare * rng.choice([0, 0.15, 0.2, 0.25], n), 2)
    blank = rng.random(n) < 0.05  # the TLC leaves these blank together for some trips
    ids = lambda low, high: pa.array(rng.integers(low, high, n).astype(np.int32))  # noqa: E731
    maybe = lambda values: pa.array(values, mask=blank)  # noqa: E731
    return pa.table(
        {
            "VendorID": ids(1, 3),
            "tpep_pickup_datetime": pickup,
            "tpep_dropoff_datetime": dropoff,
            "passenger_count": maybe(rng.integers(1, 5, n)),
            "trip_distance": _cents(rng, 0, 20, n),
            "RatecodeID": maybe(rng.choice([1, 1, 1, 2, 5], n)),
            "store_and_fwd_flag": maybe(np.where(rng.random(n) < 0.005, "Y", "N")),
            "PULocationID": ids(1, 266),
            "DOLocationID": ids(1, 266),
            "payment_type": pa.array(np.where(blank, 0, rng.integers(1, 5, n))),
            "fare_amount": fare,
            "extra": rng.choice([0.0, 1.0, 2.5, 3.5], n),
            "mta_tax": np.full(n, 0.5),
            "tip_amount": tip,
            "tolls_amount": np.where(rng.random(n) < 0.05, 6.94, 0.0),
            "improvement_surcharge": np.full(n, 1.0),
            "total_amount": np.round(fare + tip + 4.5, 2),
            "congestion_surcharge": maybe(rng.choice([0.0, 2.5], n)),
            "Airport_fee": maybe(rng.choice([0.0, 0.0, 0.0, 1.75], n)),
        }
    )


def _fhvhv_live(n: int, rng: np.random.Generator, month: str) -> pa.Table:
    pickup, dropoff, seconds = _times(n, rng, month, "ns")
    request = pa.array(pickup.to_numpy(zero_copy_only=False) - rng.integers(60, 600, n).astype("timedelta64[s]"))
    company = rng.choice(np.array(["HV0003", "HV0005"]), n, p=[0.72, 0.28])
    uber = company == "HV0003"
    bases = np.array([f"B0{b}" for b in range(2510, 2900, 13)])
    fare = _cents(rng, 5, 80, n)
    flag = lambda p: pa.array(np.where(rng.random(n) < p, "Y", "N"))  # noqa: E731
    money = lambda values: pa.array(np.round(values, 2))  # noqa: E731
    return pa.table(
        {
            "hvfhs_license_num": pa.array(company),
            "dispatching_base_num": pa.array(rng.choice(bases, n)),
            "originating_base_num": pa.array(rng.choice(bases, n), mask=~uber),
            "request_datetime": request,
            "on_scene_datetime": pa.array(request.to_numpy(zero_copy_only=False), mask=~uber),
            "pickup_datetime": pickup,
            "dropoff_datetime": dropoff,
            "PULocationID": pa.array(rng.integers(1, 266, n)),
            "DOLocationID": pa.array(rng.integers(1, 266, n)),
            "trip_miles": _cents(rng, 0.3, 25, n),
            "trip_time": pa.array(seconds),
            "base_passenger_fare": fare,
            "tolls": np.where(rng.random(n) < 0.06, 6.94, 0.0),
            "bcf": money(fare * 0.0275),
            "sales_tax": money(fare * 0.08875),
            "congestion_surcharge": rng.choice([0.0, 2.75], n),
            "airport_fee": rng.choice([0.0, 0.0, 0.0, 0.0, 2.5], n).astype(float),
            "tips": np.where(rng.random(n) < 0.2, _cents(rng, 1, 10, n), 0.0),
            "driver_pay": money(fare * 0.72),
            "shared_request_flag": flag(0.01),
            "shared_match_flag": flag(0.005),
            "access_a_ride_flag": pa.array(np.where(uber, " ", "N")),
            "wav_request_flag": flag(0.002),
            "wav_match_flag": flag(0.05),
        }
    )


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # capped peers hang up mid-file


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


def publish(www: Path, months: dict[str, int]) -> None:
    """Lay out a mirror folder: the zone lookup and generated yellow months ({"2019-01": rows, …})."""
    (www / "yellow").mkdir(parents=True)
    (www / "misc").mkdir()
    zones = www / "misc" / "taxi_zone_lookup.csv"
    if ZONES.exists():
        zones.write_bytes(ZONES.read_bytes())
    else:
        zones.write_text("LocationID,Borough,Zone,service_zone\n1,EWR,Newark Airport,EWR\n")
    for month, rows in months.items():
        make_month(www / "yellow" / f"yellow_tripdata_{month}.csv.gz", rows, month=month)
