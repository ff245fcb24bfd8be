"""Readers: a downloaded CSV.gz or parquet file → Arrow record batches typed by the taxi's column map.

Types are never inferred: each header name is matched (case-insensitively, with the historic spellings) to the
column map, read with an explicit type and cast safely to the raw table's type, so a value that does not fit
fails the month instead of loading silently wrong. Quirks of the real files handled here:

- a trailing empty column (a header or rows ending in `,`) is dropped;
- integers written as decimals (`1.00`, `2.0`) are read as floats and cast to integers only when exact;
- blank values (ids, `ehail_fee`, …) become nulls;
- parquet dtype drift across years (`passenger_count` int vs float, `airport_fee` vs `Airport_fee`, int32 vs
  int64 ids, ns vs us timestamps) is cast to the one raw type;
- optional columns a file lacks (`congestion_surcharge` before 2019, `cbd_congestion_fee` before 2025) are null;
- columns the map does not know are kept (as text for CSV, as read for parquet), so new TLC columns evolve the
  schema instead of vanishing.
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from taxi_pipeline.errors import FileFormatError
from taxi_pipeline.lineage import lineage_arrays
from taxi_pipeline.schemas import (
    INT,
    LINEAGE,
    TEXT,
    Column,
    TableSchema,
)
from taxi_pipeline.settings import CSV_BLOCK_SIZE, PARQUET_BATCH_ROWS, PARQUET_BUFFER_BYTES

_PEEK_BYTES = 1 << 16


class Conformer:
    """Maps one file's columns onto a column map and turns its batches into raw-table batches."""

    def __init__(self, schema: TableSchema, source_names: List[str], file_name: str) -> None:
        self.schema = schema
        self.file_name = file_name
        self.matched: Dict[str, str] = {}  # raw column name -> source column name
        self.extra: List[str] = []
        for name in source_names:
            if not name.strip():
                continue
            col = schema.lookup(name)
            if col is None:
                self.extra.append(name)
            elif col.name in self.matched:
                raise FileFormatError(
                    f"{file_name}: columns {self.matched[col.name]!r} and {name!r} both map to {col.name!r}"
                )
            else:
                self.matched[col.name] = name
        missing = [c.name for c in schema.columns if c.required and c.name not in self.matched]
        if missing:
            raise FileFormatError(f"{file_name}: missing required column(s) {', '.join(missing)}")

    def columns(self, source_types: Dict[str, pa.DataType]) -> pa.Schema:
        """The schema of the conformed batches, given the types the reader gives the file's columns."""
        fields = [pa.field(col.name, col.type) for col in self.schema.columns]
        fields += [pa.field(name, source_types[name]) for name in self.extra]
        if self.schema.lineage:
            fields += LINEAGE
        return pa.schema(fields)

    def conform(self, batch: pa.RecordBatch, source_month: Optional[str], first_row: int = 0) -> pa.RecordBatch:
        """A batch in the raw table's column order and types, plus unknown columns and lineage.

        `first_row`: the index in the file of the batch's first row (the batches before it held that many rows).
        """
        arrays: List[pa.Array] = []
        fields: List[pa.Field] = []
        for col in self.schema.columns:
            source = self.matched.get(col.name)
            if source is None:
                arrays.append(pa.nulls(batch.num_rows, col.type))
            else:
                arrays.append(self._cast(batch.column(source), col))
            fields.append(pa.field(col.name, col.type))
        for name in self.extra:
            arrays.append(batch.column(name))
            fields.append(pa.field(name, batch.schema.field(name).type))
        if self.schema.lineage:
            arrays += lineage_arrays(source_month or "", self.file_name, first_row, batch.num_rows)
            fields += LINEAGE
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    def _cast(self, array: pa.Array, col: Column) -> pa.Array:
        try:
            if conversion(array.type, col.type) == SAME:
                return array
            return pc.cast(array, col.type, safe=True)  # safe: EXACT conversions fail a value they would change
        except (ValueError, pa.ArrowNotImplementedError) as exc:  # pa.ArrowInvalid is a ValueError
            raise self.misfit(col, str(exc)) from None

    def misfit(self, col: Column, why: str) -> FileFormatError:
        """The error of a file column whose values do not fit the raw column `col`."""
        return FileFormatError(f"{self.file_name}: column {self.matched[col.name]!r} does not fit {col.type}: {why}")


SAME = "same"
CAST = "cast"
EXACT = "exact"
"""How a file's column becomes its raw-table type (`conversion`): as it is; by a cast that cannot change a value
(int32 → int64, µs → µs, text → number, which fails on what is not a number); or by one that could change a value
and must fail the month instead: a fraction into an integer (`1.5`; `2.0` is exact), a nanosecond timestamp
into microseconds (`…:00.000000500`), text into an integer (`2.5` would round)."""


def conversion(source: pa.DataType, target: pa.DataType) -> str:
    """`SAME`, `CAST` or `EXACT`: how a file column of type `source` becomes the raw column's `target` type.

    The one statement of the rules, for every reader: Arrow's safe cast applies them to batches, and DuckDB's
    `INSERT … SELECT` over a parquet file is written from them (`destinations.duckdb_parquet`). Raises
    ValueError for a timestamp with a time zone: TLC times are naive local wall-clock times, a zone would shift
    them.
    """
    if source == target:
        return SAME
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source):
        if source.tz:
            raise ValueError(f"timestamp with time zone {source.tz} where naive local time expected")
        return EXACT if _UNIT_STEPS[source.unit] > _UNIT_STEPS[target.unit] else CAST
    if pa.types.is_integer(target) and not pa.types.is_integer(source) and not pa.types.is_null(source):
        return EXACT
    return CAST


_UNIT_STEPS = {"s": 0, "ms": 1, "us": 2, "ns": 3}


def _csv_read_type(col: Optional[Column]) -> pa.DataType:
    """How a CSV column is parsed: integers via float64 (files write `1.0`), unknown columns as text."""
    if col is None:
        return TEXT
    return pa.float64() if col.type == INT else col.type


def _peek(path: str, gzipped: bool, file_name: str) -> Tuple[List[str], int]:
    """The header names and the field count of the first data row (0 for a file without rows)."""
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
            head = fh.read(_PEEK_BYTES)
            while head.count(b"\n") < 2:
                more = fh.read(_PEEK_BYTES)
                if not more:
                    break
                head += more
    except (OSError, EOFError, zlib.error) as exc:
        raise FileFormatError(f"{file_name} is not a readable gzip file: {exc}") from None
    lines = [ln for ln in head.decode("utf-8-sig", errors="replace").splitlines()[:3] if ln.strip()]
    if not lines:
        raise FileFormatError(f"{file_name}: empty file, no CSV header")
    header = next(csv.reader(lines[:1]))
    first_row = next(csv.reader(lines[1:2]), [])
    return [h.strip() for h in header], len(first_row)


def read_file(path: str, schema: TableSchema, file_name: str, source_month: Optional[str]) -> Iterator[pa.RecordBatch]:
    """Stream a downloaded file as raw-table batches: `read_parquet` for `*.parquet`, else `read_csv_gz`."""
    reader = read_parquet if file_name.endswith(".parquet") else read_csv_gz
    return reader(path, schema, file_name, source_month)


def file_columns(path: str, schema: TableSchema, file_name: str) -> pa.Schema:
    """The schema of the batches `read_file` yields for a file, from its header or metadata (no row is read).

    Raises FileFormatError for what can be told without the rows: not the format, an HTML page, a missing
    required column.
    """
    if file_name.endswith(".parquet"):
        layout = parquet_layout(path, schema, file_name)
        return layout.conformer.columns({f.name: f.type for f in layout.source})
    conformer, _ = _csv_header(path, schema, file_name, _is_gzip(path))
    return conformer.columns(dict.fromkeys(conformer.extra, TEXT))


def _csv_header(path: str, schema: TableSchema, file_name: str, gzipped: bool) -> Tuple[Conformer, List[str]]:
    """The CSV's conformer and the column names pyarrow reads it with (unnamed trailing fields named `__empty_i`)."""
    _refuse_html(path, file_name, gzipped)
    names, row_fields = _peek(path, gzipped, file_name)
    # A trailing separator on data rows adds an unnamed field: give it a name so pyarrow accepts it, then drop it.
    names = [n if n else f"__empty_{i}" for i, n in enumerate(names)]
    names += [f"__empty_{i}" for i in range(len(names), row_fields)]
    return Conformer(schema, [n for n in names if not n.startswith("__empty_")], file_name), names


def read_csv_gz(
    path: str, schema: TableSchema, file_name: str, source_month: Optional[str]
) -> Iterator[pa.RecordBatch]:
    """Stream a gzip CSV (or a plain CSV when the file is not gzip) as raw-table batches."""
    gzipped = _is_gzip(path)
    conformer, names = _csv_header(path, schema, file_name, gzipped)
    read_options = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=CSV_BLOCK_SIZE)
    convert_options = pacsv.ConvertOptions(
        column_types={n: _csv_read_type(schema.lookup(n)) if not n.startswith("__empty_") else TEXT for n in names},
        include_columns=[n for n in names if not n.startswith("__empty_")],
        strings_can_be_null=True,
        null_values=[""],  # only blanks: "NA" / "N/A" are real values (zone 264/265 service_zone)
        timestamp_parsers=[pacsv.ISO8601],
    )
    stream = pa.CompressedInputStream(pa.OSFile(path), "gzip") if gzipped else pa.OSFile(path)
    try:
        with pacsv.open_csv(stream, read_options=read_options, convert_options=convert_options) as reader:
            yield from _non_empty(conformer, reader, source_month)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _csv_error(exc, path, gzipped, names, file_name) from None


_CONVERSION_ERROR = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (.+?): invalid value '(.*)'$", re.S
)
"""pyarrow's message for a value that does not parse as its column's type; the column index is zero-based."""

_TYPE_WORDS = (("double", "a number"), ("float", "a number"), ("int", "an integer"), ("timestamp", "a date-time"))


def _csv_error(exc: Exception, path: str, gzipped: bool, names: List[str], file_name: str) -> FileFormatError:
    """A one-line FileFormatError for a CSV read error; a bad value names its header column and its line."""
    text = " ".join(str(exc).split())
    match = _CONVERSION_ERROR.search(str(exc).strip())
    if match is None or int(match.group(1)) >= len(names):
        return FileFormatError(f"{file_name}: {text}")
    index, type_name, value = int(match.group(1)), match.group(2), match.group(3)
    line = _line_of(path, gzipped, index, value)
    where = f"line {line}, " if line else ""
    words = next((w for prefix, w in _TYPE_WORDS if type_name.startswith(prefix)), type_name)
    return FileFormatError(
        f"{file_name}: {where}column {names[index]!r} ({_ordinal(index + 1)}): cannot read {value!r} as {words}"
    )


def _line_of(path: str, gzipped: bool, index: int, value: str) -> Optional[int]:
    """The line of the file (the header is line 1) where the first row holding `value` at `index` starts.

    pyarrow counts rows, not lines (blank lines and quoted line breaks are not counted), and its multi-threaded
    reader gives no row at all, so the file is read again; None when the value is not found as it was given.
    """
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
            rows = csv.reader(fh)
            next(rows, None)
            start = rows.line_num + 1
            for row in rows:
                if index < len(row) and row[index] == value:
                    return start
                start = rows.line_num + 1
    except (OSError, EOFError, zlib.error, csv.Error):
        return None
    return None


def _ordinal(n: int) -> str:
    """`1st`, `2nd`, `3rd`, `4th`, … `11th`, `12th`, `13th`, … `21st`."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def read_parquet(
    path: str, schema: TableSchema, file_name: str, source_month: Optional[str]
) -> Iterator[pa.RecordBatch]:
    """Stream a parquet file as raw-table batches, row group by row group, in memory that does not grow with the file.

    pyarrow's default pre-buffering keeps the bytes of every row group an `iter_batches` call covers until the file
    is closed (apache/arrow#39808): the whole file, ~0.9 GB of a 20M-row fhvhv month, and a run's peak memory grew
    with the month (1.8 GB). Without it, and one row group per call, only the row group being decoded is read.
    """
    _refuse_html(path, file_name)
    pf = _parquet_file(path, file_name)
    conformer = Conformer(schema, pf.schema_arrow.names, file_name)
    try:
        yield from _non_empty(conformer, _row_group_batches(pf), source_month)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(f"{file_name}: {' '.join(str(exc).split())}") from None
    finally:
        pf.close()


def _row_group_batches(pf: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    """The file's batches, one row group per read (nothing of the next row group is held before it is read)."""
    for i in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[i])


@dataclass(frozen=True)
class ParquetLayout:
    """A parquet file's columns matched to a column map, and its row count, from its metadata alone."""

    conformer: Conformer
    source: pa.Schema
    """The file's own Arrow schema (names and types as written)."""
    rows: int

    def conversions(self) -> Iterator[Tuple[Column, pa.Field, str]]:
        """Each raw column the file has: the column, the file's field for it and its `conversion`."""
        for col in self.conformer.schema.columns:
            source = self.conformer.matched.get(col.name)
            if source is not None:
                field = self.source.field(source)
                yield col, field, conversion(field.type, col.type)


def parquet_layout(path: str, schema: TableSchema, file_name: str) -> ParquetLayout:
    """The layout of a downloaded parquet file; FileFormatError for what its metadata shows is wrong.

    Not parquet (an HTML page, a file cut short), a required column missing, two columns for one, a column of a
    type that cannot become its raw column's (a timestamp with a time zone).
    """
    _refuse_html(path, file_name)
    pf = _parquet_file(path, file_name)
    try:
        source, rows = pf.schema_arrow, pf.metadata.num_rows
    finally:
        pf.close()
    layout = ParquetLayout(Conformer(schema, source.names, file_name), source, rows)
    for col in schema.columns:
        name = layout.conformer.matched.get(col.name)
        if name is not None:
            try:
                conversion(source.field(name).type, col.type)
            except ValueError as exc:
                raise layout.conformer.misfit(col, str(exc)) from None
    return layout


def _parquet_file(path: str, file_name: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(f"{file_name} is not a readable parquet file: {exc}") from None


def _non_empty(
    conformer: Conformer, batches: Iterable[pa.RecordBatch], source_month: Optional[str]
) -> Iterator[pa.RecordBatch]:
    """Conformed non-empty batches; a file without a single row is refused (a month is never emptied by one)."""
    rows = 0
    for batch in batches:
        if batch.num_rows:
            yield conformer.conform(batch, source_month, rows)
            rows += batch.num_rows
    if not rows:
        raise FileFormatError(f"{conformer.file_name} has a header but no rows")


HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<?xml")
"""How an error or login page starts (no trip file does: CSV starts with its header, parquet with `PAR1`)."""


def _refuse_html(path: str, file_name: str, gzipped: bool = False) -> None:
    """FileFormatError for an HTML page where data was expected (a mirror's error or login page sent with 200).

    A gzip file is looked at decompressed (a server may gzip its error page too); one that does not decompress
    is left to the reader, which says so.
    """
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
            head = fh.read(512)
    except (OSError, EOFError):
        return
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if head.startswith(HTML_STARTS):
        raise FileFormatError(
            f"{file_name} is an HTML or XML page, not data: the server sent an error or login page; check the base URL "
            "or try again later"
        )


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"
