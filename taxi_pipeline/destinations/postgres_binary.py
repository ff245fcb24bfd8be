"""Arrow batches in PostgreSQL's binary COPY format: the target columns' Arrow types, casts, the `pgpq` encoder.

What `postgres.BinaryCopyJob` sends: each batch cast to the table's own column types (as the ADBC driver reads
them), encoded by `pgpq` a chunk at a time.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pgpq import ArrowToPostgresBinaryEncoder
from pgpq.encoders import StringEncoderBuilder
from pgpq.schema import Jsonb

from taxi_pipeline.errors import LoadError
from taxi_pipeline.load_files import dlt_schema


class Chunks:
    """A file-like object for psycopg2's `copy_expert`: each `read` is the next non-empty encoded chunk.

    psycopg2 sends whatever `read` returns (its size argument is a hint), and ends the COPY at the first `b""`.
    An error raised here reaches psycopg2, which cancels the COPY (`QueryCanceled`); `load_manifest` raises the
    error itself instead.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, size: int = -1) -> bytes:
        """The next non-empty chunk (`size` is only a hint), `b""` at the end."""
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b""


_PG_TYPES: Dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "json": pa.string(),  # json's binary form is its text
    "jsonb": pa.string(),  # sent with pgpq's jsonb encoder (`copy_encoder`)
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", "UTC"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "bool": pa.bool_(),
    "bytea": pa.binary(),
}
"""Arrow types of the PostgreSQL types binary COPY can send (as the ADBC driver reads them, numeric aside)."""


PG_TYPE = b"POSTGRESQL:type"
"""Field metadata: the column's PostgreSQL type name (`pg_type.typname`), as the ADBC driver tags it."""


def table_arrow_schema(cur: Any, table: str) -> pa.Schema:
    """The table's columns as Arrow fields of the types binary COPY must send them as (`table`: qualified).

    `numeric(p, s)` is a `decimal128(p, s)` where p ≤ 38; any other type binary COPY cannot send here is an
    opaque type naming it, which `copy_encoder` refuses where the file has the column (LoadError naming both).
    """
    cur.execute(
        "SELECT a.attname, t.typname, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        f" WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )
    fields = []
    for name, typname, typmod in cur.fetchall():
        type_ = _PG_TYPES.get(typname)
        if typname == "numeric" and typmod >= 4:  # numeric(p, s): typmod - 4 = p << 16 | s (11 bits, signed)
            precision, scale = (typmod - 4) >> 16, (((typmod - 4) & 0x7FF) ^ 1024) - 1024
            type_ = pa.decimal128(precision, scale) if precision <= 38 else None
        if type_ is None:
            type_ = pa.opaque(pa.null(), typname, "PostgreSQL")
        fields.append(pa.field(name, type_, metadata={PG_TYPE: typname}))
    return pa.schema(fields)


def copy_encoder(target: pa.Schema, table: pa.Schema) -> Any:
    """The binary COPY encoder (`pgpq`) of batches of schema `target` (`copy_schema`) into `table`'s columns.

    LoadError naming the column where the table's type is one binary COPY cannot send here.
    """
    encoders = {}
    for field in target:
        if isinstance(field.type, pa.OpaqueType):
            raise LoadError(f"column {field.name!r}: binary COPY cannot send the table's type {field.type.type_name}")
        if (table.field(field.name).metadata or {}).get(PG_TYPE) == b"jsonb":
            encoders[field.name] = StringEncoderBuilder.new_with_output(field, Jsonb())
        else:
            encoders[field.name] = ArrowToPostgresBinaryEncoder.infer_encoder(field)
    return ArrowToPostgresBinaryEncoder.new_with_encoders(target, encoders)


def copy_schema(schema: pa.Schema, table: pa.Schema) -> pa.Schema:
    """The batches' schema as binary COPY must send it: dlt's column names and the table's exact types.

    Binary COPY does not convert: an int32 sent into a `bigint` column is refused. Each column goes as the
    table has it (`table`: the table's schema, `table_arrow_schema`), whatever dlt's schema says now; one the
    table lacks as dlt would create it (integers by width, floats as double). Columns that are all null and
    that the table lacks (dlt creates no column without a type) are left out.
    """
    fields = []
    for field in dlt_schema(schema):
        if field.name in table.names:
            fields.append(field.with_type(table.field(field.name).type))
        elif not pa.types.is_null(field.type):
            fields.append(field.with_type(_as_dlt_creates(field.type)))
    return pa.schema(fields)


def _as_dlt_creates(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_integer(type_):
        return pa.int16() if type_.bit_width <= 16 else pa.int32() if type_.bit_width <= 32 else pa.int64()
    if pa.types.is_floating(type_):
        return pa.float64()
    if pa.types.is_large_string(type_):
        return pa.string()
    if pa.types.is_timestamp(type_):
        return pa.timestamp("us", type_.tz)
    return type_


def cast_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """`batch` with dlt's names, its columns cast where `target` differs (values that do not fit: LoadError)."""
    by_name = dict(zip(dlt_schema(batch.schema).names, batch.columns, strict=True))
    arrays = []
    for field in target:
        array = by_name[field.name]
        if array.type != field.type:
            try:
                array = pc.cast(array, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise LoadError(f"column {field.name!r} does not fit the table's {field.type}: {exc}") from None
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=target)
