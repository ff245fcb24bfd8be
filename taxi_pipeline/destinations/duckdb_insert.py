"""DuckDB's month load job: the manifest's file inserted by one `INSERT … BY NAME` in one transaction (see `duckdb`).

A parquet month is read by DuckDB itself (`duckdb_parquet.parquet_select`); a CSV month is parsed by the
package's reader into Arrow batches that DuckDB inserts as a stream. Imported by the job client only when a month
is loaded: it needs the readers.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Tuple

import duckdb
import pyarrow as pa
from dlt.common.destination.client import HasFollowupJobs, RunnableLoadJob

from taxi_pipeline.destinations.common import month_probe_sql
from taxi_pipeline.destinations.duckdb_parquet import ParquetSelect, parquet_select
from taxi_pipeline.errors import FileFormatError, LoadError
from taxi_pipeline.helpers import read_batches
from taxi_pipeline.load_files import Copied, ManifestJob, dlt_schema
from taxi_pipeline.progress import DONE, ROWS, report
from taxi_pipeline.records import job_record, record_statements
from taxi_pipeline.schemas import file_label, table_schema

Insert = Callable[[Any, str], Tuple[int, int]]
"""Inserts a month's rows on a connection into a table: (rows DuckDB stored, rows the file holds)."""


class MonthInsertJob(ManifestJob, RunnableLoadJob, HasFollowupJobs):
    """Load a manifest's file into its DuckDB table (the staging table for a replacement) by one insert."""

    def load_manifest(self, manifest: Mapping[str, Any]) -> Copied:
        """Insert the file's rows in a transaction that commits only when DuckDB stored each row of the file."""
        month = manifest["month"]
        client = self._job_client.sql_client
        table = client.make_qualified_table_name(self.load_table_name)
        with self._inserting(manifest) as insert:
            with client.begin_transaction():
                appending = not self._job_client.in_staging_dataset_mode  # else into the emptied staging table
                if month is not None and appending and self._has_rows_of(client, table, month):
                    raise LoadError(f"{manifest['file']}: the table already holds rows of {month}; nothing was loaded")
                inserted, rows = insert(client.native_connection, table)
                if inserted != rows:
                    raise LoadError(
                        f"{manifest['file']}: DuckDB stored {inserted} rows of the {rows} read; nothing was committed"
                    )
                entry = job_record(manifest, inserted) if appending else None  # a replacement: after dlt's merge
                for statement in record_statements(client, manifest["table"], month, entry) if entry else []:
                    client.execute_sql(statement)
        return Copied(rows=inserted, recorded=entry is not None)

    @contextlib.contextmanager
    def _inserting(self, manifest: Mapping[str, Any]) -> Iterator[Insert]:
        """How the manifest's file is inserted: read by DuckDB (parquet) or parsed here into Arrow batches (CSV).

        A file that cannot be read as its layout fails here, before the transaction.
        """
        schema, month = table_schema(manifest["table"]), manifest["month"]
        path, name = manifest["path"], manifest["file"]
        if name.endswith(".parquet"):
            memory_limit = self._job_client.sql_client.parquet_memory_limit
            label = file_label(schema.table, month)
            yield _ParquetInsert(parquet_select(path, schema, name, month), name, label, self._collector, memory_limit)
            return
        with read_batches(path, schema, name, month, collector=self._collector) as batches:
            first = next(batches)  # a file without rows raises here, before anything is written
            yield lambda conn, table: _insert_batches(conn, table, itertools.chain([first], batches))

    @staticmethod
    def _has_rows_of(client: Any, table: str, month: str) -> bool:
        """Whether the table holds rows of `month`, in the insert's transaction, before it (zone maps prune it)."""
        return bool(client.execute_sql(month_probe_sql(client, table, month))[0][0])


@dataclass
class _ParquetInsert:
    """Inserts what a `SELECT` over `read_parquet` gives; a value it cannot take fails with the file's name.

    It runs under `memory_limit` when one is given (`settings.DUCKDB_PARQUET_MEMORY_LIMIT`), the connection's own
    limit set back after it. Its rows are reported as progress once inserted (DuckDB reads the file in one
    statement).
    """

    select: ParquetSelect
    file_name: str
    label: str
    collector: Any
    memory_limit: Optional[str]

    def __call__(self, conn: Any, table: str) -> Tuple[int, int]:
        """(rows DuckDB stored, rows the file's metadata counts)."""
        before = conn.execute("SELECT current_setting('memory_limit')").fetchone()[0] if self.memory_limit else None
        try:
            if self.memory_limit:
                conn.execute(f"SET memory_limit = '{self.memory_limit}'")
            inserted = int(conn.execute(f"INSERT INTO {table} BY NAME {self.select.sql}").fetchone()[0])
        except duckdb.Error as exc:
            raise FileFormatError(_parquet_error(exc, self.file_name)) from exc
        finally:
            if before is not None:  # after a failed insert the transaction is rolled back: its error is the one
                with contextlib.suppress(duckdb.Error):
                    conn.execute(f"SET memory_limit = '{before}'")
        report(ROWS, self.label, inserted, collector=self.collector)
        report(ROWS, self.label, 0, message=DONE, collector=self.collector)
        return inserted, self.select.rows


def _parquet_error(exc: duckdb.Error, file_name: str) -> str:
    """DuckDB's message in one line, without its class prefix and query excerpt, naming the file."""
    text = str(exc).split("\n\nLINE ")[0]
    kind, _, message = text.partition(" Error: ")
    text = " ".join((message or kind).split())
    return text if text.startswith(f"{file_name}:") else f"{file_name}: {text}"


def _insert_batches(conn: Any, table: str, batches: Iterator[pa.RecordBatch]) -> Tuple[int, int]:
    """Insert parsed batches as an Arrow stream that DuckDB converts and writes while the next ones are parsed."""
    parsed = 0
    failure: BaseException | None = None
    first = next(batches)
    target = insert_schema(first.schema)

    def stream() -> Iterator[pa.RecordBatch]:
        nonlocal parsed, failure
        try:
            for batch in itertools.chain([first], batches):
                parsed += batch.num_rows
                yield pa.RecordBatch.from_arrays([batch.column(i) for i in _kept(batch.schema)], schema=target)
        except BaseException as exc:  # DuckDB sees a failed scan; the run sees this error
            failure = exc
            raise

    view = f"taxi_batches_{uuid.uuid4().hex}"
    conn.register(view, pa.RecordBatchReader.from_batches(target, stream()))
    try:
        inserted = int(conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {view}").fetchone()[0])
    except Exception as exc:
        if failure is not None:  # the parse failed: say that, not DuckDB's "arrow scan" error
            raise failure from exc
        raise
    finally:
        conn.unregister(view)
    return inserted, parsed


def _kept(schema: pa.Schema) -> list[int]:
    """The columns inserted: all but those of null type (dlt creates no column without a type)."""
    return [i for i, field in enumerate(schema) if not pa.types.is_null(field.type)]


def insert_schema(schema: pa.Schema) -> pa.Schema:
    """The inserted batches' schema: dlt's column names, columns of null type left out (see `_kept`)."""
    named = dlt_schema(schema)
    return pa.schema([named.field(i) for i in _kept(schema)])
