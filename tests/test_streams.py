"""Plumbing under the readers: read-ahead thread, coalescing, the CSV files written for Postgres COPY."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from taxi_pipeline.load_files import write_parquet
from taxi_pipeline.streams import coalesce, read_ahead


def test_read_ahead_keeps_order_and_raises_producer_errors_in_the_consumer():
    assert list(read_ahead(iter(range(50)), 3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for item in read_ahead(broken(), 2):
            got.append(item)
    assert got == [1]


def test_read_ahead_stops_and_closes_the_producer_when_the_consumer_stops():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = read_ahead(endless(), 2)
    assert next(stream) == 0
    stream.close()  # what an error downstream or Ctrl-C does to the generator
    assert closed.is_set()
    assert not any(t.name == "taxi-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_coalesce_hands_over_bigger_tables_and_every_row():
    batches = [pa.record_batch({"a": list(range(i * 10, i * 10 + 10))}) for i in range(7)]
    tables = list(coalesce(batches, 25))
    assert [t.num_rows for t in tables] == [30, 30, 10]
    assert pa.concat_tables(tables).column("a").to_pylist() == list(range(70))


def test_parquet_load_file_has_dlt_names_dictionary_text_only_and_row_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import taxi_pipeline.load_files as load_files

    monkeypatch.setattr(load_files, "ROWS_PER_ITEM", 3)
    schema = pa.schema([("VendorID", pa.int64()), ("Store Flag", pa.string()), ("fare", pa.float64())])
    batches = [
        pa.record_batch({"VendorID": [1, 2], "Store Flag": ["N", None], "fare": [1.5, 2.0]}, schema=schema),
        pa.RecordBatch.from_pylist([], schema=schema),
        pa.record_batch({"VendorID": [3, 4], "Store Flag": ["Y", "N"], "fare": [3.0, None]}, schema=schema),
        pa.record_batch({"VendorID": [5], "Store Flag": ["N"], "fare": [4.25]}, schema=schema),
    ]
    path = tmp_path / "load.parquet"
    rows, schema = write_parquet(batches, str(path))
    assert rows == 5
    assert schema.names == ["vendor_id", "store_flag", "fare"]
    parquet = pq.ParquetFile(path)
    assert parquet.read().to_pydict() == {
        "vendor_id": [1, 2, 3, 4, 5],
        "store_flag": ["N", None, "Y", "N", "N"],
        "fare": [1.5, 2.0, 3.0, None, 4.25],
    }
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [4, 1]
    encodings = {
        parquet.metadata.schema.column(i).name: parquet.metadata.row_group(0).column(i).encodings for i in range(3)
    }
    assert "RLE_DICTIONARY" in encodings["store_flag"]
    assert "RLE_DICTIONARY" not in encodings["fare"] and "RLE_DICTIONARY" not in encodings["vendor_id"]
    assert parquet.metadata.row_group(0).column(0).compression == "UNCOMPRESSED"


def test_parquet_load_file_of_no_rows_is_not_written(tmp_path):
    path = tmp_path / "load.parquet"
    assert write_parquet([], str(path)) == (0, pa.schema([]))
    assert not path.exists()
