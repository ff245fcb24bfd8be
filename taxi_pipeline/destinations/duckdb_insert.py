"""DuckDB's month load job: the manifest's file parsed into one Arrow `INSERT … BY NAME` (see `duckdb`).

Imported by the job client only when a month is loaded: it needs the readers.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any, Iterator, Mapping

import pyarrow as pa
from dlt.common.destination.client import HasFollowupJobs, RunnableLoadJob

from taxi_pipeline.destinations.common import month_probe_sql
from taxi_pipeline.errors import LoadError
from taxi_pipeline.helpers import read_batches
from taxi_pipeline.load_files import Copied, ManifestJob, dlt_schema
from taxi_pipeline.records import job_record, record_statements
from taxi_pipeline.schemas import table_schema


class ArrowInsertJob(ManifestJob, RunnableLoadJob, HasFollowupJobs):
    """Load a manifest's file into its DuckDB table (the staging table for a replacement) by one Arrow insert."""

    def load_manifest(self, manifest: Mapping[str, Any]) -> Copied:
        """Parse the file into one `INSERT`, in a transaction that commits only the rows parsed."""
        schema = table_schema(manifest["table"])
        month = manifest["month"]
        client = self._job_client.sql_client
        table = client.make_qualified_table_name(self.load_table_name)
        parsed = 0
        failure: BaseException | None = None
        with read_batches(manifest["path"], schema, manifest["file"], month, collector=self._collector) as batches:
            first = next(batches)  # a file without rows raises here, before anything is written
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
            with client.begin_transaction():
                conn = client.native_connection
                appending = not self._job_client.in_staging_dataset_mode  # else into the emptied staging table
                if month is not None and appending and self._has_rows_of(client, table, month):
                    raise LoadError(f"{manifest['file']}: the table already holds rows of {month}; nothing was loaded")
                conn.register(view, pa.RecordBatchReader.from_batches(target, stream()))
                try:
                    inserted = int(conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {view}").fetchone()[0])
                except Exception as exc:
                    if failure is not None:  # the parse failed: say that, not DuckDB's "arrow scan" error
                        raise failure from exc
                    raise
                finally:
                    conn.unregister(view)
                if inserted != parsed:
                    raise LoadError(
                        f"{manifest['file']}: DuckDB stored {inserted} rows of the {parsed} read; nothing was committed"
                    )
                entry = job_record(manifest, inserted) if appending else None  # a replacement: after dlt's merge
                for statement in record_statements(client, manifest["table"], month, entry) if entry else []:
                    client.execute_sql(statement)
        return Copied(rows=inserted, recorded=entry is not None)

    @staticmethod
    def _has_rows_of(client: Any, table: str, month: str) -> bool:
        """Whether the table holds rows of `month`, in the insert's transaction, before it (zone maps prune it)."""
        return bool(client.execute_sql(month_probe_sql(client, table, month))[0][0])


def _kept(schema: pa.Schema) -> list[int]:
    """The columns inserted: all but those of null type (dlt creates no column without a type)."""
    return [i for i, field in enumerate(schema) if not pa.types.is_null(field.type)]


def insert_schema(schema: pa.Schema) -> pa.Schema:
    """The inserted batches' schema: dlt's column names, columns of null type left out (see `_kept`)."""
    named = dlt_schema(schema)
    return pa.schema([named.field(i) for i in _kept(schema)])
