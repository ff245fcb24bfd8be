"""The Postgres binary COPY job's pieces that need no server: the types it sends, and the driver check."""

from __future__ import annotations

import pyarrow as pa
import pytest

from taxi_pipeline.destinations.postgres_binary import cast_batch, copy_schema
from taxi_pipeline.errors import ConfigError, LoadError


def test_copy_schema_sends_the_tables_types_and_dlts_names():
    batch = pa.schema(
        [
            pa.field("VendorID", pa.int64()),  # the table made it `integer` from an earlier month's int32
            pa.field("pickup", pa.timestamp("ns")),
            pa.field("fare", pa.float32()),  # the table lacks it: dlt makes every float a double
            pa.field("zone", pa.large_string()),
            pa.field("flag", pa.dictionary(pa.int8(), pa.string())),
            pa.field("count16", pa.int8()),
            pa.field("nothing", pa.null()),  # all null: dlt creates no column for it
            pa.field("note", pa.null()),  # all null in this file, but the table has it
        ]
    )
    table = pa.schema(
        [
            pa.field("vendor_id", pa.int32()),
            pa.field("pickup", pa.timestamp("us")),
            pa.field("zone", pa.string()),
            pa.field("note", pa.string()),
            pa.field("other", pa.float64()),  # in the table, not in this file: null by COPY's column list
        ]
    )
    assert copy_schema(batch, table) == pa.schema(
        [
            pa.field("vendor_id", pa.int32()),
            pa.field("pickup", pa.timestamp("us")),
            pa.field("fare", pa.float64()),
            pa.field("zone", pa.string()),
            pa.field("flag", pa.string()),
            pa.field("count16", pa.int16()),
            pa.field("note", pa.string()),
        ]
    )


def test_a_manifest_is_told_from_any_other_jsonl_file(tmp_path):
    from taxi_pipeline.load_files import read_manifest, write_manifest

    write_manifest(str(tmp_path / "m.jsonl"), "/x/f.csv.gz", "f.csv.gz", "green_tripdata", "2019-01")
    assert read_manifest(str(tmp_path / "m.jsonl"))["path"] == "/x/f.csv.gz"
    (tmp_path / "rows.jsonl").write_text('{"path": "/x", "id": 1}\n')
    with pytest.raises(ValueError, match="not a taxi_pipeline manifest"):
        read_manifest(str(tmp_path / "rows.jsonl"))


def test_cast_batch_converts_exactly_or_names_the_column():
    target = pa.schema([pa.field("vendor_id", pa.int32()), pa.field("fare", pa.float64())])
    batch = pa.record_batch({"VendorID": pa.array([1, 2]), "fare": pa.array([1.5, None], pa.float32())})
    cast = cast_batch(batch, target)
    assert cast.schema == target and cast.column(0).to_pylist() == [1, 2] and cast.column(1).to_pylist() == [1.5, None]
    too_big = pa.record_batch({"VendorID": pa.array([3_000_000_000]), "fare": pa.array([1.0])})
    with pytest.raises(LoadError, match="column 'vendor_id' does not fit the table's int32"):
        cast_batch(too_big, target)


def test_postgres_without_the_adbc_driver_is_a_config_error_naming_the_install(monkeypatch):
    from dlt.destinations import _adbc_jobs

    from taxi_pipeline.destinations import make_destination

    monkeypatch.setattr(
        _adbc_jobs, "has_adbc_driver", lambda *a, **k: (False, "No module named 'adbc_driver_postgresql'")
    )
    with pytest.raises(ConfigError) as err:
        make_destination("postgres")
    assert "pip install 'taxi-pipeline[postgres]'" in str(err.value) and "\n" not in str(err.value)
