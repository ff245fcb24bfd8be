"""DuckDB reads a parquet month itself: the `SELECT … FROM read_parquet(…)` that its insert runs, from the column map.

DuckDB's parquet reader reads row groups on all its threads, straight into its own vectors; parsing the file in
Python and handing DuckDB the batches cost 2.8× its own speed on a 4M-row month (FACTS). The `SELECT` is written
from the column map and the file's metadata, with the readers' rules (`readers.conversion`), so both ways of
reading a file agree on every value (a test holds them to it):

- each file column the map knows becomes its raw column (`Airport_fee` → `airport_fee`), cast to the raw type;
- an `EXACT` conversion checks each value and fails the month with the file's name and the value where it would
  change it (`1.5` into an integer, a nanosecond into microseconds, text `2.5` that a cast would round);
- columns the map does not know keep DuckDB's type for them, under dlt's name; all-null columns of no type are
  left out (dlt makes no column without a type); columns a file lacks are null (`INSERT … BY NAME`);
- the lineage columns are constants, and the row's index in the file (`file_row_number`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import pyarrow as pa
from dlt.common.data_writers.escape import escape_duckdb_literal as _literal
from dlt.common.data_writers.escape import escape_postgres_identifier as _quote

from taxi_pipeline.errors import FileFormatError
from taxi_pipeline.load_files import dlt_name
from taxi_pipeline.readers import CAST, EXACT, SAME, ParquetLayout, parquet_layout
from taxi_pipeline.schemas import (
    FLOAT,
    INT,
    SOURCE_FILE,
    SOURCE_MONTH,
    SOURCE_ROW,
    TEXT,
    TIMESTAMP,
    Column,
    TableSchema,
)

SQL_TYPES = {INT: "BIGINT", FLOAT: "DOUBLE", TEXT: "VARCHAR", TIMESTAMP: "TIMESTAMP"}
"""DuckDB's type of each raw column type of the column maps."""


@dataclass(frozen=True)
class ParquetSelect:
    """The `SELECT` that reads a parquet file as raw-table rows, and the rows its metadata counts."""

    sql: str
    rows: int


def parquet_select(path: str, schema: TableSchema, file_name: str, source_month: Optional[str]) -> ParquetSelect:
    """The `SELECT` over `read_parquet` that gives the file's rows as the raw table's.

    FileFormatError for what the file's metadata shows is wrong (see `readers.parquet_layout`), and for a file
    without rows (a month is never emptied by one).
    """
    layout = parquet_layout(path, schema, file_name)
    if not layout.rows:
        raise FileFormatError(f"{file_name} has a header but no rows")
    names: List[str] = []
    expressions: List[str] = []
    for col, field, kind in layout.conversions():
        expressions.append(_expression(_quote(field.name), field.type, col, kind, layout))
        names.append(col.name)
    for name in layout.conformer.extra:
        if not pa.types.is_null(layout.source.field(name).type):
            expressions.append(_quote(name))
            names.append(dlt_name(name))
    if schema.lineage:
        expressions += [_literal(source_month or ""), _literal(file_name), "file_row_number"]
        names += [SOURCE_MONTH, SOURCE_FILE, SOURCE_ROW]
    select = ", ".join(f"{e} AS {_quote(n)}" for e, n in zip(expressions, names, strict=True))
    # binary_as_string: text written without its UTF-8 annotation (older writers) is text, as Arrow reads it;
    # file_row_number: the row's index in the file (the Arrow reader's count of the rows before it)
    sql = f"SELECT {select} FROM read_parquet({_literal(path)}, binary_as_string = true, file_row_number = true)"
    return ParquetSelect(sql, layout.rows)


def _expression(source: str, source_type: pa.DataType, col: Column, kind: str, layout: ParquetLayout) -> str:
    """The SQL giving the raw column `col` from the file column `source` (quoted), by its `conversion`."""
    sql_type = SQL_TYPES[col.type]
    if kind == SAME:
        return source
    if kind == CAST:
        return f"CAST({source} AS {sql_type})"
    assert kind == EXACT
    if pa.types.is_timestamp(col.type):
        exact, why = f"epoch_ns({source}) % 1000 = 0", "finer than a microsecond"
    elif pa.types.is_string(source_type) or pa.types.is_large_string(source_type) or pa.types.is_binary(source_type):
        exact, why = f"regexp_full_match({source}, '[+-]?[0-9]+')", "not an integer"
    else:
        exact, why = f"{source} = trunc({source})", "not a whole number"
    message = layout.conformer.misfit(col, "").args[0]
    fail = f"error({_literal(message)} || CAST({source} AS VARCHAR) || {_literal(' is ' + why)})"
    return f"CASE WHEN {source} IS NULL OR {exact} THEN CAST({source} AS {sql_type}) ELSE {fail} END"
