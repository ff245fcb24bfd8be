"""The lineage columns of a raw-table batch (`schemas.LINEAGE`), built from buffers of Arrow's memory pool.

Any pyarrow conversion of a Python object (`pa.scalar`, `pa.array`) imports pandas when it is installed, half a
second of every run. Buffers made from Python bytes (a month's worth, batch after batch) fragment the C heap, so
peak memory grew with the month's rows; Arrow's pool reuses its blocks.
"""

from __future__ import annotations

from typing import List

import numpy as np
import pyarrow as pa

from taxi_pipeline.schemas import INT


def lineage_arrays(source_month: str, file_name: str, first_row: int, rows: int) -> List[pa.Array]:
    """`source_month`, `source_file` and `source_row` of `rows` rows, the first being the file's `first_row`."""
    return [constant_text(source_month, rows), constant_text(file_name, rows), row_numbers(first_row, rows)]


def row_numbers(first: int, rows: int) -> pa.Array:
    """`first`, `first + 1`, … (`rows` of them) as int64."""
    buffer = pa.allocate_buffer(rows * 8)
    np.add(np.arange(rows, dtype=np.int64), first, out=np.frombuffer(buffer, dtype=np.int64))
    return pa.Array.from_buffers(INT, rows, [None, buffer])


def constant_text(value: str, rows: int) -> pa.Array:
    """A text column holding one value."""
    data = np.frombuffer(value.encode(), dtype=np.uint8)
    offsets = pa.allocate_buffer((rows + 1) * 4)
    np.multiply(np.arange(rows + 1, dtype=np.int32), np.int32(data.size), out=np.frombuffer(offsets, dtype=np.int32))
    values = pa.allocate_buffer(data.size * rows)
    if data.size and rows:
        np.frombuffer(values, dtype=np.uint8).reshape(rows, data.size)[:] = data
    return pa.StringArray.from_buffers(rows, offsets, values)
