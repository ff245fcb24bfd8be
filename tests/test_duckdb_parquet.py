"""DuckDB reads a parquet month itself (`destinations.duckdb_parquet`): same rows and errors as the Arrow reader."""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxi_pipeline import readers
from taxi_pipeline.destinations.duckdb_parquet import parquet_select
from taxi_pipeline.errors import FileFormatError
from taxi_pipeline.load_files import dlt_schema
from taxi_pipeline.schemas import FHVHV, GREEN, YELLOW, TableSchema
from tests import tlc_files
from tests.conftest import month_counts


def _write(path: Path, table: pa.Table) -> str:
    pq.write_table(table, path)
    return str(path)


def _parquet(content: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(content))


def _both(path: str, schema: TableSchema, name: str, month: str = "2023-01") -> tuple[list, list, dict, dict]:
    """The rows as the Arrow reader gives them and as DuckDB's insert of the `SELECT` stores them (as the load job:
    `INSERT … BY NAME`, so columns the file lacks are null), and each column's type in either (the `SELECT`'s own
    types: the insert would cast them)."""
    con = duckdb.connect()
    arrow = pa.Table.from_batches(list(readers.read_parquet(path, schema, name, month)))
    arrow = arrow.select([i for i, f in enumerate(arrow.schema) if not pa.types.is_null(f.type)])
    arrow = arrow.rename_columns(dlt_schema(arrow.schema).names)  # as the insert names them
    con.register("arrow_rows", arrow)
    con.execute("CREATE TABLE a AS SELECT * FROM arrow_rows")
    select = parquet_select(path, schema, name, month).sql
    con.execute("CREATE TABLE b AS SELECT * FROM a LIMIT 0")
    con.execute(f"INSERT INTO b BY NAME {select}")
    arrow_types = {n: t for n, t, *_ in con.execute("DESCRIBE a").fetchall()}
    sql_types = {n: t for n, t, *_ in con.execute(f"DESCRIBE {select}").fetchall()}
    rows = "SELECT * FROM {} ORDER BY ALL"
    return con.execute(rows.format("a")).fetchall(), con.execute(rows.format("b")).fetchall(), arrow_types, sql_types


@pytest.mark.parametrize("style", [2019, 2023, 2025])
def test_dtype_drift_gives_the_rows_the_arrow_reader_gives(tmp_path, style):
    """int vs float passenger_count, Airport_fee vs airport_fee, int32 vs int64 ids, ns vs µs timestamps."""
    path = tmp_path / "yellow_tripdata_2023-01.parquet"
    path.write_bytes(tlc_files.trip_parquet("yellow", "2023-01", 40, year_style=style))
    arrow, sql, arrow_types, sql_types = _both(str(path), YELLOW, path.name)
    assert sql == arrow and len(sql) == 40
    assert sql_types == {n: arrow_types[n] for n in sql_types}


def test_fhvhv_with_ns_times_and_unknown_columns_matches(tmp_path):
    """ns timestamps, an all-null column, and new columns the map does not know (kept with their own types)."""
    table = _parquet(tlc_files.fhvhv_parquet("2022-01", 30))
    table = table.append_column("surge_count", pa.array(range(30), pa.int32()))
    table = table.append_column("Surge Note", pa.array([f"n{i}" for i in range(30)]))
    table = table.append_column("empty_new", pa.nulls(30))
    path = _write(tmp_path / "f.parquet", table)
    arrow, sql, arrow_types, sql_types = _both(path, FHVHV, "f.parquet")
    assert sql == arrow and len(sql) == 30
    assert sql_types == {n: arrow_types[n] for n in sql_types}
    assert sql_types["surge_note"] == "VARCHAR" and sql_types["surge_count"] == "INTEGER"
    assert "empty_new" not in sql_types


def test_source_row_counts_the_file_rows_across_row_groups_as_the_arrow_reader_does(tmp_path):
    """DuckDB's `file_row_number` and the Arrow reader's count agree on a file of several row groups."""
    path = tmp_path / "yellow_tripdata_2023-01.parquet"
    pq.write_table(_parquet(tlc_files.trip_parquet("yellow", "2023-01", 40)), path, row_group_size=9)
    arrow, sql, _, _ = _both(str(path), YELLOW, path.name)
    assert sql == arrow
    con = duckdb.connect()
    numbers = con.execute(f"SELECT source_row FROM ({parquet_select(str(path), YELLOW, path.name, '2023-01').sql})")
    assert sorted(r[0] for r in numbers.fetchall()) == list(range(40))


BAD_VALUES = {
    "a fraction in an integer column": ("passenger_count", pa.array([1.0, 1.5, None] * 4), "1.5"),
    "an integer written as text that would round": ("payment_type", pa.array(["1", "2.5", None] * 4), "2.5"),
    "a time finer than a microsecond": (
        "tpep_pickup_datetime",
        pa.array([1_600_000_000_000_000_000, 1_600_000_000_000_000_500, None] * 4, pa.timestamp("ns")),
        "40.0000005",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_value_that_would_change_fails_in_both_readers_naming_file_column_and_value(tmp_path, case):
    column, values, shown = BAD_VALUES[case]
    table = _parquet(tlc_files.trip_parquet("yellow", "2023-01", 12))
    table = table.set_column(table.column_names.index(column), column, values)
    path = _write(tmp_path / "yellow_tripdata_2023-01.parquet", table)
    with pytest.raises(FileFormatError, match=f"column '{column}' does not fit"):
        list(readers.read_parquet(path, YELLOW, "yellow_tripdata_2023-01.parquet", "2023-01"))
    select = parquet_select(path, YELLOW, "yellow_tripdata_2023-01.parquet", "2023-01").sql
    with pytest.raises(duckdb.InvalidInputException) as failed:
        duckdb.connect().execute(f"CREATE TABLE t AS {select}")
    assert f"yellow_tripdata_2023-01.parquet: column '{column}' does not fit" in str(failed.value)
    assert shown in str(failed.value)


def test_exact_values_of_other_types_load(tmp_path):
    """`2.0` into an integer, text `7` into an integer, whole-µs ns times: what fits is taken as it is."""
    table = _parquet(tlc_files.trip_parquet("yellow", "2023-01", 3))
    table = table.set_column(table.column_names.index("passenger_count"), "passenger_count", pa.array([2.0, 3.0, None]))
    table = table.set_column(table.column_names.index("payment_type"), "payment_type", pa.array(["7", "-1", None]))
    path = _write(tmp_path / "y.parquet", table)
    arrow, sql, _, _ = _both(path, YELLOW, "y.parquet")
    assert sql == arrow
    select = parquet_select(path, YELLOW, "y.parquet", "2023-01").sql
    got = duckdb.connect().execute(f"SELECT passenger_count, payment_type FROM ({select})").fetchall()
    assert sorted(got, key=str) == sorted([(2, 7), (3, -1), (None, None)], key=str)


def test_what_the_metadata_shows_is_refused_before_reading(tmp_path):
    zoned = pa.table({"dispatching_base_num": ["B1"], "pickup_datetime": pa.array([0], pa.timestamp("us", tz="UTC"))})
    from taxi_pipeline.schemas import FHV

    with pytest.raises(FileFormatError, match="time zone"):
        parquet_select(_write(tmp_path / "z.parquet", zoned), FHV, "z.parquet", "2019-01")
    empty = _parquet(tlc_files.trip_parquet("green", "2019-01", 3)).slice(0, 0)
    with pytest.raises(FileFormatError, match="g.parquet has a header but no rows"):
        parquet_select(_write(tmp_path / "g.parquet", empty), GREEN, "g.parquet", "2019-01")
    no_fare = _parquet(tlc_files.trip_parquet("green", "2019-01", 3)).drop_columns(["fare_amount"])
    with pytest.raises(FileFormatError, match="missing required column"):
        parquet_select(_write(tmp_path / "n.parquet", no_fare), GREEN, "n.parquet", "2019-01")


def test_a_duckdb_month_is_read_by_duckdb_not_parsed_in_python(mirror, cli, duck, monkeypatch):
    """The load never calls the Arrow parquet reader on DuckDB, and loads the month exactly."""

    def no_arrow_reading(*args, **kwargs):
        raise AssertionError("the parquet month was parsed in Python")

    monkeypatch.setattr(readers, "read_parquet", no_arrow_reading)
    mirror.trips("yellow", "2023-01", 25, fmt="parquet", year_style=2023)
    r = cli("--base-url", mirror.url, "--format", "parquet", "--taxi", "yellow", "--month", "2023-01")
    assert r.code == 0, r
    assert month_counts(duck, "yellow_tripdata") == {"2023-01": 25}


def test_the_default_format_is_the_live_parquet_feed(mirror, cli, duck, monkeypatch):
    monkeypatch.delenv("SOURCES__TAXI__FILE_FORMAT")
    mirror.trips("green", "2024-01", 7, fmt="parquet")
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2024-01")
    assert r.code == 0, r
    assert mirror.gets("/trip-data/green_tripdata_2024-01.parquet") == 1
    assert duck("select distinct source_file from taxi_raw.green_tripdata") == [("green_tripdata_2024-01.parquet",)]


def test_a_parquet_insert_runs_under_its_memory_limit_and_gives_the_connection_back_its_own():
    """DuckDB inserts a parquet month faster with more memory (`DUCKDB_PARQUET_MEMORY_LIMIT`); the run's other
    statements keep the connection's lower limit."""
    from taxi_pipeline.destinations.duckdb_insert import _ParquetInsert
    from taxi_pipeline.destinations.duckdb_parquet import ParquetSelect

    con = duckdb.connect(config={"memory_limit": "128MB"})
    con.execute("CREATE TABLE t (seen VARCHAR)")
    seen = ParquetSelect("SELECT current_setting('memory_limit') AS seen", 1)
    insert = _ParquetInsert(seen, "f.parquet", "t 2019-01", None, "300MB")
    assert insert(con, "t") == (1, 1)
    assert con.execute("SELECT seen FROM t").fetchall() == [("286.1 MiB",)]
    assert con.execute("SELECT current_setting('memory_limit')").fetchone() == ("122.0 MiB",)

    failing = _ParquetInsert(ParquetSelect("SELECT error('bad value') AS seen", 1), "f.parquet", "t", None, "300MB")
    with pytest.raises(FileFormatError, match="^f.parquet: bad value$"):
        failing(con, "t")
    assert con.execute("SELECT current_setting('memory_limit')").fetchone() == ("122.0 MiB",)
