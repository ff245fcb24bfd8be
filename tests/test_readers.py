"""Readers: explicit types, historic spellings, quirks, and failures that never load silently wrong rows."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

from taxi_pipeline.errors import FileFormatError
from taxi_pipeline.readers import read_csv_gz, read_parquet
from taxi_pipeline.schemas import FHV, GREEN, YELLOW, ZONES, parse_taxi_types, trip_schema
from tests import tlc_files


def _csv(tmp_path, text: str, gz: bool = True):
    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def _read(path, schema, month="2019-01"):
    return pa.Table.from_batches(list(read_csv_gz(path, schema, "f.csv.gz", month)))


def test_green_csv_quirks(tmp_path):
    path = tmp_path / "g.csv.gz"
    path.write_bytes(tlc_files.trip_csv("green", "2019-01", 14))
    table = pa.Table.from_batches(list(read_csv_gz(str(path), GREEN, "g.csv.gz", "2019-01")))
    assert table.schema.names == GREEN.arrow_schema().names
    assert table.schema.field("ratecode_id").type == pa.int64()  # written as "1.00"
    assert table.column("ehail_fee").null_count == 14
    assert table.column("vendor_id").null_count == 2  # rows 3 and 10 have blank ids
    assert set(table.column("source_month").to_pylist()) == {"2019-01"}
    assert set(table.column("source_file").to_pylist()) == {"g.csv.gz"}


def test_integer_column_with_fraction_fails_instead_of_truncating(tmp_path):
    path = _csv(tmp_path, "dispatching_base_num,pickup_datetime,PUlocationID\nB1,2019-01-01 00:00:00,1.5\n")
    with pytest.raises(FileFormatError, match="PUlocationID"):
        _read(path, FHV)


def test_historic_spellings_and_optional_columns(tmp_path):
    path = _csv(
        tmp_path,
        "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,DOlocationID,SR_Flag\n"
        "B00001,2019-01-01 00:30:00,2019-01-01 01:00:00,,264,1\n",
    )
    row = _read(path, FHV).to_pylist()[0]
    assert row["dropoff_datetime"].isoformat() == "2019-01-01T01:00:00"
    assert row["pu_location_id"] is None and row["do_location_id"] == 264 and row["sr_flag"] == 1
    assert row["affiliated_base_number"] is None  # optional, absent in this file


def test_missing_required_column_fails(tmp_path):
    path = _csv(tmp_path, "VendorID,tpep_pickup_datetime\n1,2019-01-01 00:00:00\n")
    with pytest.raises(FileFormatError, match="missing required column"):
        _read(path, YELLOW)


def test_unknown_column_is_kept_as_text(tmp_path):
    path = _csv(tmp_path, "dispatching_base_num,pickup_datetime,new_fee\nB1,2019-01-01 00:00:00,0.25\n")
    table = _read(path, FHV)
    assert table.column("new_fee").to_pylist() == ["0.25"]


def test_bad_timestamp_fails(tmp_path):
    path = _csv(tmp_path, "dispatching_base_num,pickup_datetime\nB1,yesterday\n")
    with pytest.raises(FileFormatError, match="f.csv.gz"):
        _read(path, FHV)


def test_bad_csv_value_names_its_header_column_and_file_line(tmp_path):
    lines = gzip.decompress(tlc_files.trip_csv("green", "2019-01", 40)).decode().splitlines()
    fields = lines[30].split(",")  # the 31st line of the file: the header is line 1
    fields[16] = "N/A"  # pyarrow's column #16, the 17th in the header: total_amount
    lines[30] = ",".join(fields)
    path = tmp_path / "green_tripdata_2019-01.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(FileFormatError) as failed:
        list(read_csv_gz(str(path), GREEN, "green_tripdata_2019-01.csv.gz", "2019-01"))
    message = str(failed.value)
    assert message == (
        "green_tripdata_2019-01.csv.gz: line 31, column 'total_amount' (17th): cannot read 'N/A' as a number"
    )
    assert "#16" not in message


def test_bad_csv_value_line_counts_blank_lines_and_quoted_line_breaks(tmp_path):
    path = _csv(
        tmp_path,
        "dispatching_base_num,pickup_datetime,note\n"
        'B1,2019-01-01 00:00:00,"two\nlines"\n'
        "\n"
        "B2,2019-01-01 00:00:00,x\n"
        "B3,yesterday,y\n",
    )
    with pytest.raises(FileFormatError) as failed:
        _read(path, FHV)
    wanted = "f.csv.gz: line 6, column 'pickup_datetime' (2nd): cannot read 'yesterday' as a date-time"
    assert str(failed.value) == wanted  # pyarrow's row count would say 4


def test_ragged_row_fails(tmp_path):
    path = _csv(tmp_path, "dispatching_base_num,pickup_datetime\nB1,2019-01-01 00:00:00\nB2,2019-01-01 00:00:00,x,y\n")
    with pytest.raises(FileFormatError):
        _read(path, FHV)


def test_plain_zone_csv(tmp_path):
    path = _csv(tmp_path, '"LocationID","Borough","Zone","service_zone"\n1,"EWR","Newark Airport","EWR"\n', gz=False)
    table = pa.Table.from_batches(list(read_csv_gz(path, ZONES, "z.csv", None)))
    assert table.to_pylist() == [{"location_id": 1, "borough": "EWR", "zone": "Newark Airport", "service_zone": "EWR"}]


@pytest.mark.parametrize("style", [2019, 2023, 2025])
def test_parquet_drift_is_cast_to_one_schema(tmp_path, style):
    path = tmp_path / "y.parquet"
    path.write_bytes(tlc_files.trip_parquet("yellow", "2023-01", 10, year_style=style))
    table = pa.Table.from_batches(list(read_parquet(str(path), YELLOW, "y.parquet", "2023-01")))
    assert table.schema == YELLOW.arrow_schema()
    assert table.num_rows == 10
    assert (table.column("airport_fee").null_count == 10) == (style < 2023)


def test_parquet_with_timezone_is_refused(tmp_path):
    import pyarrow.parquet as pq

    t = pa.table(
        {
            "dispatching_base_num": ["B1"],
            "pickup_datetime": pa.array([0], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(t, tmp_path / "f.parquet")
    with pytest.raises(FileFormatError, match="time zone"):
        list(read_parquet(str(tmp_path / "f.parquet"), FHV, "f.parquet", "2019-01"))


def test_taxi_type_lists():
    assert parse_taxi_types("green, yellow,green") == ["green", "yellow"]
    assert trip_schema("fhvhv").table == "fhvhv_tripdata"
    with pytest.raises(ValueError, match="unknown taxi type"):
        parse_taxi_types(["green", "purple"])


def test_parquet_memory_does_not_grow_with_the_file(tmp_path):
    """Row group by row group: Arrow memory while reading 12 row groups is what reading 2 takes, not 6 times it.

    (pyarrow's default pre-buffering kept every row group's bytes until the file was closed: a 20M-row month held
    0.9 GB.)
    """
    import numpy as np
    import pyarrow.parquet as pq

    from taxi_pipeline.schemas import FLOAT, TIMESTAMP, Column, TableSchema

    schema = TableSchema("t", (Column("pickup_datetime", TIMESTAMP), Column("fare", FLOAT), Column("tip", FLOAT)))
    rng = np.random.default_rng(0)

    def peak(row_groups: int) -> int:
        path = tmp_path / f"{row_groups}.parquet"
        with pq.ParquetWriter(path, pa.schema([("pickup_datetime", TIMESTAMP), ("fare", FLOAT), ("tip", FLOAT)])) as w:
            for _ in range(row_groups):
                n = 100_000
                w.write_table(
                    pa.table(
                        {
                            "pickup_datetime": pa.array(rng.integers(0, 10**15, n), TIMESTAMP),
                            "fare": rng.random(n),
                            "tip": rng.random(n),
                        }
                    )
                )
        base, most = pa.total_allocated_bytes(), 0
        for _ in read_parquet(str(path), schema, path.name, "2019-01"):
            most = max(most, pa.total_allocated_bytes() - base)
        return most

    small, large = peak(2), peak(12)
    assert large < 1.5 * small, (small, large)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_source_row_is_each_rows_index_in_its_file_across_batches(tmp_path, monkeypatch, fmt):
    """`source_row` numbers the file's rows 0, 1, … in file order, batch after batch (the trip key is made of it)."""
    import pyarrow.parquet as pq

    import taxi_pipeline.readers as readers

    if fmt == "csv":
        monkeypatch.setattr(readers, "CSV_BLOCK_SIZE", 1 << 10)  # a few rows per block: many batches
        path = tmp_path / "g.csv.gz"
        path.write_bytes(tlc_files.trip_csv("green", "2019-01", 50))
        batches = list(read_csv_gz(str(path), GREEN, "g.csv.gz", "2019-01"))
    else:
        monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 7)
        path = tmp_path / "g.parquet"
        (tmp_path / "one.parquet").write_bytes(tlc_files.trip_parquet("green", "2019-01", 50))
        pq.write_table(pq.read_table(tmp_path / "one.parquet"), path, row_group_size=20)  # 3 row groups
        batches = list(read_parquet(str(path), GREEN, "g.parquet", "2019-01"))
    assert len(batches) > 3
    table = pa.Table.from_batches(batches)
    assert table.column("source_row").to_pylist() == list(range(50))
    assert table.schema.field("source_row") == pa.field("source_row", pa.int64(), nullable=False)
    # the rows are the file's, in its order: the last row is the one picked up the month before
    pickups = table.column("lpep_pickup_datetime").to_pylist()
    assert pickups[-1] == min(pickups) and pickups[-1].month == 12
