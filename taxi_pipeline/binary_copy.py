"""Postgres loads through binary COPY, the file parsed while the server ingests it.

A month's load file for Postgres is a small manifest naming the downloaded file (a one-line `jsonl`
file, written by `load_files.write_manifest`). Its load job (`BinaryCopyJob`, run by dlt's loader like any
other job) parses that file and streams the batches into one binary `COPY` on an ADBC connection, so the parse
overlaps the server's ingest instead of preceding it, and memory holds a few batches, not the month. The
transaction commits only when the server's count of copied rows equals the rows parsed; a bad value fails the
job before anything is committed.

Rows are known only once the job has run: it leaves them (or its error) for the run to take with
`take_copied`, which records the month in state after the load (see `pipeline`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.destination.client import LoadJob
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.destinations.impl.postgres.postgres import PostgresClient, PostgresParquetCopyJob

from taxi_pipeline.destinations import month_index_sql
from taxi_pipeline.errors import LoadError, TaxiPipelineError, one_line
from taxi_pipeline.load_files import dlt_schema
from taxi_pipeline.progress import DONE, ROWS, report
from taxi_pipeline.readers import read_file
from taxi_pipeline.schemas import SOURCE_MONTH, file_label, table_schema
from taxi_pipeline.settings import MANIFEST, READ_AHEAD_BATCHES
from taxi_pipeline.streams import read_ahead


@dataclass
class Copied:
    """What a load job did with one file: the rows it copied, or the error it failed with."""

    rows: int = 0
    checked: bool = False
    """The server reported its count of the rows copied, and it was `rows`."""
    error: Optional[BaseException] = None


_copied: Dict[Tuple[str, Optional[str]], Copied] = {}
_copied_lock = threading.Lock()


def take_copied(table: str, source_month: Optional[str]) -> Optional[Copied]:
    """What the load job of `table`'s file of `source_month` left (once), or None when no job ran for it."""
    with _copied_lock:
        return _copied.pop((table, source_month), None)


def _leave(key: Tuple[str, Optional[str]], copied: Copied) -> None:
    with _copied_lock:
        _copied[key] = copied


class BinaryCopyClient(PostgresClient):
    """dlt's Postgres job client; a `jsonl` file (our manifest) is loaded by `BinaryCopyJob`."""

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> LoadJob:
        """`BinaryCopyJob` for a manifest, dlt's jobs for everything else (state, the zone lookup)."""
        if file_path.endswith(f".{MANIFEST}"):
            return BinaryCopyJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)


class BinaryCopyJob(PostgresParquetCopyJob):
    """dlt's Postgres ADBC job, fed by our reader from the manifest's file instead of a parquet file.

    Its connection, catalog and schema (the staging dataset for a replacement) are dlt's.
    """

    def run(self) -> None:
        """Parse the file into one binary COPY; DestinationTerminalException (no retry) for any failure."""
        with open(self._file_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        key = (manifest["table"], manifest["month"])
        try:
            copied = self._copy(manifest)
        except Exception as exc:
            _leave(key, Copied(error=exc))
            raise DestinationTerminalException(one_line(exc)) from exc
        _leave(key, copied)

    def _copy(self, manifest: Mapping[str, Any]) -> Copied:
        schema = table_schema(manifest["table"])
        label = file_label(schema.table, manifest["month"])
        batches = read_file(manifest["path"], schema, manifest["file"], manifest["month"])
        parsed = 0
        failure: Optional[BaseException] = None
        with contextlib.closing(read_ahead(batches, READ_AHEAD_BATCHES)) as ahead:
            first = next(ahead)  # a file without rows raises here, before a connection is opened
            target = copy_schema(first.schema, self._load_table.get("columns", {}))

            def stream() -> Iterator[pa.RecordBatch]:
                nonlocal parsed, failure
                try:
                    for batch in itertools.chain([first], ahead):
                        parsed += batch.num_rows
                        report(ROWS, label, batch.num_rows)
                        yield cast_batch(batch, target)
                except BaseException as exc:  # the driver sees a failed stream; the run sees this error
                    failure = exc
                    raise
                report(ROWS, label, 0, message=DONE)

            with self._connect() as conn, conn.cursor() as cur:
                _, schema_name = self._set_catalog_and_schema()
                if schema.lineage and not self._job_client.in_staging_dataset_mode:
                    # on the table still empty it costs nothing; made after the load it would read the whole month
                    cur.execute(month_index_sql(self._job_client.sql_client, self.load_table_name, SOURCE_MONTH))
                try:
                    copied = cur.adbc_ingest(
                        self.load_table_name,
                        pa.RecordBatchReader.from_batches(target, stream()),
                        mode="append",
                        db_schema_name=schema_name,
                    )
                except Exception:
                    if isinstance(failure, TaxiPipelineError):
                        raise failure from None
                    raise
                if copied not in (-1, parsed):
                    raise LoadError(f"{manifest['file']}: the server copied {copied} rows of the {parsed} read")
                conn.commit()
        return Copied(rows=parsed, checked=copied == parsed)


_DLT_TO_ARROW = {"double": pa.float64(), "text": pa.string(), "bool": pa.bool_(), "date": pa.date32()}


def copy_schema(schema: pa.Schema, columns: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """The batches' schema as binary COPY must send it: dlt's column names and the table's exact types.

    Binary COPY does not convert: an int32 sent into a `bigint` column is refused. A column the table already
    has (`columns`: dlt's schema of it) is sent as its type; a new one as dlt will create it from the Arrow type
    (integers by width, floats as double). Columns without a type (all null, never created by dlt) are left out.
    """
    fields = []
    for field in dlt_schema(schema):
        known = arrow_type(columns.get(field.name, {}))
        type_ = known or _as_dlt_creates(field.type)
        if not pa.types.is_null(type_):
            fields.append(field.with_type(type_))
    return pa.schema(fields)


def arrow_type(column: Mapping[str, Any]) -> Optional[pa.DataType]:
    """The Arrow type Postgres's binary COPY takes for a dlt column, None when there is no simple one."""
    data_type = column.get("data_type")
    if data_type == "bigint":
        precision = column.get("precision") or 64
        return pa.int16() if precision <= 16 else pa.int32() if precision <= 32 else pa.int64()
    if data_type == "timestamp":
        return pa.timestamp("us", None if column.get("timezone") is False else "UTC")
    return _DLT_TO_ARROW.get(str(data_type))


def _as_dlt_creates(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_integer(type_):
        return arrow_type({"data_type": "bigint", "precision": type_.bit_width}) or type_
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
