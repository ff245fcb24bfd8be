"""CSV files written for Postgres `COPY`: Arrow batches → one compact CSV file per month, imported into dlt.

dlt's own route for Arrow data to Postgres writes parquet in extract, rewrites it as CSV in normalize, then
COPYs it. Writing the COPY file directly from the parsed batches skips both hops, and the file is cheaper for
the server to parse: timestamps without a fractional part are written as whole seconds and values are quoted
only in batches that need it.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Iterable, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from dlt.common.normalizers.naming.snake_case import NamingConvention

from taxi_pipeline.settings import ENCODE_THREADS

_NAMING = NamingConvention()
_PLAIN = pacsv.WriteOptions(include_header=False, quoting_style="none")
_QUOTED = pacsv.WriteOptions(include_header=False, quoting_style="needed")


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
                names = [_NAMING.normalize_identifier(n) for n in batch.schema.names]
                schema = pa.schema([f.with_name(n) for f, n in zip(batch.schema, names, strict=True)])
                out.write((",".join(names) + "\n").encode())
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
