"""Load files written from the parsed batches, one per month, imported into dlt's load package as they are.

- **csv** for Postgres `COPY`. dlt's own route for Arrow data to Postgres writes parquet in extract, rewrites
  it as CSV in normalize, then COPYs it. Writing the COPY file directly skips both hops, and the file is cheaper
  for the server to parse: timestamps without a fractional part are written as whole seconds and values are
  quoted only in batches that need it.
- **parquet** for DuckDB. dlt would write the same parquet from the Arrow items, but in its own extract step
  on the main thread, one item at a time, dictionary-encoding every column; written here, uncompressed and
  dictionary-encoding only text, it is 20 % cheaper and the month's extract is just an import.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Iterable, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dlt.common.normalizers.naming.snake_case import NamingConvention

from taxi_pipeline.settings import CSV, ENCODE_THREADS, PARQUET, ROWS_PER_ITEM
from taxi_pipeline.streams import coalesce

_NAMING = NamingConvention()
_PLAIN = pacsv.WriteOptions(include_header=False, quoting_style="none")
_QUOTED = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def write_load_file(batches: Iterable[pa.Table | pa.RecordBatch], path: str, file_format: str) -> Tuple[int, pa.Schema]:
    """Write batches to `path` as a `csv` (`write_copy_csv`) or `parquet` (`write_parquet`) load file."""
    if file_format == CSV:
        return write_copy_csv(batches, path)
    if file_format == PARQUET:
        return write_parquet(batches, path)
    raise ValueError(f"no load file format {file_format!r}: choose from {CSV}, {PARQUET}")


def dlt_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with dlt's snake_case column names, as the destination table has them."""
    return pa.schema([f.with_name(_NAMING.normalize_identifier(f.name)) for f in schema])


def write_parquet(batches: Iterable[pa.Table | pa.RecordBatch], path: str) -> Tuple[int, pa.Schema]:
    """Write batches to `path` as one parquet file with dlt-normalized column names.

    Row groups hold about `ROWS_PER_ITEM` rows (DuckDB reads row groups in parallel).
    Returns the row count and the file's Arrow schema (for dlt's table hints). An empty input writes nothing
    and returns (0, empty schema).
    """
    rows = 0
    schema: pa.Schema = pa.schema([])
    writer: Optional[pq.ParquetWriter] = None
    try:
        for table in coalesce((b for b in batches if b.num_rows), ROWS_PER_ITEM):
            if writer is None:
                schema = dlt_schema(table.schema)
                text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
                # dictionaries pay off for repeated text only; for numbers and times they cost more than they save
                writer = pq.ParquetWriter(path, schema, compression="none", use_dictionary=text or False)
            writer.write_table(table.rename_columns(schema.names).cast(schema), row_group_size=table.num_rows)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows, schema


def write_copy_csv(batches: Iterable[pa.Table | pa.RecordBatch], path: str) -> Tuple[int, pa.Schema]:
    """Write batches to `path` as CSV with a header of dlt-normalized column names.

    Returns the row count and the Arrow schema of the file's columns (for dlt's table hints). An empty input
    writes nothing and returns (0, empty schema).
    """
    rows = 0
    schema: pa.Schema = pa.schema([])
    with pa.OSFile(path, "wb") as out, ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="taxi-csv") as pool:
        pending: Deque[Future[pa.Buffer]] = deque()
        for batch in batches:
            if not batch.num_rows:
                continue
            if not rows:
                schema = dlt_schema(batch.schema)
                out.write((",".join(schema.names) + "\n").encode())
            rows += batch.num_rows
            # encode a few batches at once (pyarrow's CSV writer is single-threaded), write them in order
            pending.append(pool.submit(_encode, batch))
            while len(pending) > ENCODE_THREADS:
                out.write(pending.popleft().result())
        while pending:
            out.write(pending.popleft().result())
    return rows, schema


def _encode(batch: pa.Table | pa.RecordBatch) -> pa.Buffer:
    """A batch as CSV bytes: unquoted, or quoted where a value holds a separator, quote or newline."""
    batch = _whole_seconds(batch)
    sink = pa.BufferOutputStream()
    try:
        pacsv.write_csv(batch, sink, _PLAIN)
    except pa.ArrowInvalid:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(batch, sink, _QUOTED)
    return sink.getvalue()


def _whole_seconds(batch: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """Timestamp columns cast to second precision where no value has a fraction (shorter text to parse)."""
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit != "s":
            try:
                seconds = pc.cast(batch.column(i), pa.timestamp("s", field.type.tz), safe=True)
            except pa.ArrowInvalid:
                continue
            batch = batch.set_column(i, field.with_type(seconds.type), seconds)
    return batch
