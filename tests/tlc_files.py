"""Small self-made TLC files carrying the quirks of the real ones (no network, no downloaded data)."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path
from typing import List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

REAL_ZONES = Path(__file__).resolve().parents[2] / "shared" / "data" / "taxi_zone_lookup.csv"

GREEN_HEADER = (
    "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,RatecodeID,PULocationID,"
    "DOLocationID,passenger_count,trip_distance,fare_amount,extra,mta_tax,tip_amount,tolls_amount,ehail_fee,"
    "improvement_surcharge,total_amount,payment_type,trip_type,congestion_surcharge"
)
YELLOW_HEADER = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,"
    "store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,"
    "tolls_amount,improvement_surcharge,total_amount,congestion_surcharge"
)
FHV_HEADER = (
    "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,DOlocationID,SR_Flag,Affiliated_base_number"
)


def _month_bounds(month: str) -> tuple[int, int]:
    year, mon = (int(x) for x in month.split("-"))
    return year, mon


def trip_rows(taxi: str, month: str, n: int, seed: int = 0) -> List[dict]:
    """`n` rows of a taxi type for a month; every 7th has blank ids, the last one is picked up the month before."""
    rnd = random.Random(f"{taxi}{month}{seed}")
    year, mon = _month_bounds(month)
    rows = []
    for i in range(n):
        day, hour, minute = 1 + i % 28, i % 24, (i * 7) % 60
        pickup = f"{year:04d}-{mon:02d}-{day:02d} {hour:02d}:{minute:02d}:{(i * 13) % 60:02d}"
        dropoff = f"{year:04d}-{mon:02d}-{day:02d} {hour:02d}:{minute:02d}:59"
        if i == n - 1 and n > 1:  # a row outside the file's month, as the real files have
            py, pm = (year, mon - 1) if mon > 1 else (year - 1, 12)
            pickup = f"{py:04d}-{pm:02d}-28 23:59:00"
        fare = round(2.5 + rnd.random() * 40, 2)
        blank = i % 7 == 3
        rows.append(
            {
                "vendor": "" if blank else str(1 + i % 2),
                "pickup": pickup,
                "dropoff": dropoff,
                "passengers": "" if blank else str(1 + i % 4),
                "distance": f"{rnd.random() * 10:.2f}",
                "ratecode": "" if blank else "1",
                "flag": "" if blank else "N",
                "pu": str(1 + (i * 31) % 265),
                "do": str(1 + (i * 17) % 265),
                "payment": "" if blank else str(1 + i % 3),
                "fare": f"{fare:.2f}",
                "tip": f"{(fare * 0.1 if i % 2 else 0):.2f}",
                "total": f"{fare + 0.8 + (fare * 0.1 if i % 2 else 0):.2f}",
            }
        )
    return rows


def trip_csv(taxi: str, month: str, n: int, seed: int = 0, trailing_comma: bool = True) -> bytes:
    """A CSV in the DataTalksClub layout: `.00` decimals (also on ids), blanks, a trailing empty column."""
    lines = []
    for r in trip_rows(taxi, month, n, seed):
        if taxi == "green":
            vals = [
                r["vendor"], r["pickup"], r["dropoff"], r["flag"], r["ratecode"] and r["ratecode"] + ".00",
                r["pu"], r["do"], r["passengers"], r["distance"], r["fare"], "0.50", "0.50", r["tip"], "0.00",
                "", "0.30", r["total"], r["payment"], r["vendor"] and "1", r["vendor"] and "0.00",
            ]  # fmt: skip
            header = GREEN_HEADER
        elif taxi == "yellow":
            vals = [
                r["vendor"], r["pickup"], r["dropoff"], r["passengers"] and r["passengers"] + ".0", r["distance"],
                r["ratecode"], r["flag"], r["pu"], r["do"], r["payment"], r["fare"], "0.50", "0.50", r["tip"],
                "0.00", "0.30", r["total"], "" if r["vendor"] == "" else "2.50",
            ]  # fmt: skip
            header = YELLOW_HEADER
        else:
            dropoff_id = "" if int(r["pu"]) % 3 == 0 else r["do"]  # often missing in the FHV files
            vals = [f"B0{r['pu'][:3]}", r["pickup"], r["dropoff"], r["pu"], dropoff_id, "", f"B0{r['do'][:3]}"]
            header = FHV_HEADER
        lines.append(",".join(vals) + ("," if trailing_comma else ""))
    body = header + ("," if trailing_comma else "") + "\n" + "\n".join(lines) + "\n"
    return gzip.compress(body.encode(), mtime=0)


def trip_parquet(taxi: str, month: str, n: int, year_style: int = 2019, seed: int = 0) -> bytes:
    """A parquet in the TLC layout; `year_style` switches the dtype drift of later years.

    2019: int64 `passenger_count`, `airport_fee` absent; 2023: float `passenger_count`, `Airport_fee`,
    int32 ids; 2025: adds `cbd_congestion_fee`.
    """
    rows = trip_rows(taxi, month, n, seed)
    ts = pa.timestamp("us") if year_style < 2023 else pa.timestamp("ns")
    ids = pa.int64() if year_style < 2023 else pa.int32()
    num = lambda v: float(v) if v else None  # noqa: E731
    integer = lambda v: int(v) if v else None  # noqa: E731
    pickup = "tpep_pickup_datetime" if taxi == "yellow" else "lpep_pickup_datetime"
    dropoff = pickup.replace("pickup", "dropoff")
    import datetime as dt

    def parse(v: str) -> dt.datetime:
        return dt.datetime.fromisoformat(v)

    cols = {
        "VendorID": pa.array([integer(r["vendor"]) for r in rows], ids),
        pickup: pa.array([parse(r["pickup"]) for r in rows], ts),
        dropoff: pa.array([parse(r["dropoff"]) for r in rows], ts),
        "passenger_count": pa.array(
            [integer(r["passengers"]) if year_style < 2023 else num(r["passengers"]) for r in rows],
            pa.int64() if year_style < 2023 else pa.float64(),
        ),
        "trip_distance": pa.array([num(r["distance"]) for r in rows], pa.float64()),
        "RatecodeID": pa.array([num(r["ratecode"]) for r in rows], pa.float64()),
        "store_and_fwd_flag": pa.array([r["flag"] or None for r in rows], pa.string()),
        "PULocationID": pa.array([int(r["pu"]) for r in rows], ids),
        "DOLocationID": pa.array([int(r["do"]) for r in rows], ids),
        "payment_type": pa.array([integer(r["payment"]) for r in rows], pa.int64()),
        "fare_amount": pa.array([num(r["fare"]) for r in rows], pa.float64()),
        "extra": pa.array([0.5] * n, pa.float64()),
        "mta_tax": pa.array([0.5] * n, pa.float64()),
        "tip_amount": pa.array([num(r["tip"]) for r in rows], pa.float64()),
        "tolls_amount": pa.array([0.0] * n, pa.float64()),
        "improvement_surcharge": pa.array([0.3] * n, pa.float64()),
        "total_amount": pa.array([num(r["total"]) for r in rows], pa.float64()),
        "congestion_surcharge": pa.array([2.5] * n, pa.float64()),
    }
    if taxi == "green":
        cols["ehail_fee"] = pa.nulls(n, pa.float64())
        cols["trip_type"] = pa.array([1.0] * n, pa.float64())
    if year_style >= 2023:
        cols["Airport_fee"] = pa.array([0.0 if i % 5 else 1.75 for i in range(n)], pa.float64())
    if year_style >= 2025:
        cols["cbd_congestion_fee"] = pa.array([0.75] * n, pa.float64())
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


def zones_csv(path: Optional[Path] = None) -> bytes:
    """The real 265-row zone lookup from shared/data, or a 265-row stand-in of the same shape without it.

    The stand-in keeps every location id of the real file (1–265; 264/265 "Unknown" with zones `NV`/`NA`), so
    trip rows join the same way and the dbt numbers do not depend on where the clone is.
    """
    path = path or REAL_ZONES
    if path.exists():
        return path.read_bytes()
    rows = ['"LocationID","Borough","Zone","service_zone"', '1,"EWR","Newark Airport","EWR"']
    boroughs = ["Queens", "Bronx", "Manhattan", "Staten Island", "Brooklyn"]
    for i in range(2, 264):
        borough = boroughs[i % len(boroughs)]
        service = "Yellow Zone" if borough == "Manhattan" else "Boro Zone"
        rows.append(f'{i},"{borough}","{borough} zone {i}","{service}"')
    rows += ['264,"Unknown","NV","N/A"', '265,"Unknown","NA","N/A"']  # text "NA"/"N/A" that must stay text
    return ("\n".join(rows) + "\n").encode()


def fhvhv_parquet(month: str, n: int, seed: int = 0) -> bytes:
    """A small fhvhv parquet in the TLC layout (string flags, int trip_time, ns timestamps), four companies."""
    import datetime as dt

    rows = trip_rows("fhvhv", month, n, seed)
    ts = pa.timestamp("ns")
    companies = ("HV0003", "HV0005", "HV0003", "HV0004")  # Uber, Lyft, Uber, Via
    money = lambda values: pa.array(values, pa.float64())  # noqa: E731
    fares = [float(r["fare"]) for r in rows]
    table = pa.table(
        {
            "hvfhs_license_num": [companies[i % len(companies)] for i in range(n)],
            "dispatching_base_num": ["B02764"] * n,
            "originating_base_num": [None] * n,
            "request_datetime": pa.array([dt.datetime.fromisoformat(r["pickup"]) for r in rows], ts),
            "on_scene_datetime": pa.nulls(n, ts),
            "pickup_datetime": pa.array([dt.datetime.fromisoformat(r["pickup"]) for r in rows], ts),
            "dropoff_datetime": pa.array([dt.datetime.fromisoformat(r["dropoff"]) for r in rows], ts),
            "PULocationID": pa.array([int(r["pu"]) for r in rows], pa.int64()),
            "DOLocationID": pa.array([int(r["do"]) for r in rows], pa.int64()),
            "trip_miles": [float(r["distance"]) for r in rows],
            "trip_time": pa.array([300 + 60 * (i % 20) for i in range(n)], pa.int64()),
            "base_passenger_fare": fares,
            "tolls": money([6.55 if i % 9 == 0 else 0.0 for i in range(n)]),
            "bcf": money([round(f * 0.025, 2) for f in fares]),
            "sales_tax": money([round(f * 0.08875, 2) for f in fares]),
            "congestion_surcharge": money([2.75 if i % 2 else 0.0 for i in range(n)]),
            "airport_fee": money([2.5 if i % 11 == 0 else None for i in range(n)]),
            "tips": money([float(r["tip"]) for r in rows]),
            "driver_pay": money([round(f * 0.7, 2) for f in fares]),
            "shared_request_flag": ["N"] * n,
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
