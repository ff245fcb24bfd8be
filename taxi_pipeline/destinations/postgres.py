"""Postgres: the destination, its job client, the month's binary COPY load job, the run's advisory locks.

A month loads through binary COPY, the file parsed while the server ingests it.

A month's load file for Postgres is a small manifest naming the downloaded file (a one-line `jsonl`
file, written by `load_files.write_manifest`). Its load job (`BinaryCopyJob`, run by dlt's loader like any
other job) parses that file, encodes the batches in PostgreSQL's binary COPY format (`pgpq`) and streams them
into one `COPY … FROM STDIN (FORMAT binary)` on dlt's own psycopg2 connection of the job, so the parse overlaps
the server's ingest instead of preceding it, and memory holds a few batches, not the month. The transaction
commits only when the month's rows in the table, counted inside it, are the rows parsed; a bad value fails the
job before anything is committed.

An appended month's record (`records`) is written in the COPY's transaction. The job leaves the rows (or its
error) for the run to take with `load_files.take_copied`; the run reconciles the month and records a replaced
one after dlt's merge (see `loading`).

A run's month, staging, zone lookup and dbt locks are session advisory locks on one connection of its own
(`AdvisoryLocks`); schema changes are made under the dataset's lock on the connection that makes them. A failed
statement keeps them (`SessionKeepingSqlClient`).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Type

import dlt
import pyarrow as pa
from dlt.common import logger
from dlt.common.destination.client import HasFollowupJobs, LoadJob, RunnableLoadJob
from dlt.destinations.impl.postgres.postgres import PostgresClient
from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from taxi_pipeline.destinations.common import (
    MONTH_INDEX_ONLY,
    month_filter,
    month_index_regclass,
    month_index_sql,
    month_probe_sql,
    number_rows_sql,
    row_numbers_required_sql,
)
from taxi_pipeline.destinations.locking import SCHEMA_LOCK, KeyedLock, RunLock, SchemaChangesLocked, open_client
from taxi_pipeline.destinations.postgres_binary import (
    Chunks,
    cast_batch,
    copy_encoder,
    copy_schema,
    table_arrow_schema,
)
from taxi_pipeline.errors import ConfigError, LoadError, one_line
from taxi_pipeline.helpers import read_batches
from taxi_pipeline.load_files import Copied, ManifestJob
from taxi_pipeline.records import job_record, record_statements
from taxi_pipeline.schemas import SOURCE_MONTH, table_schema
from taxi_pipeline.settings import COPY_CHUNK_ROWS, MANIFEST


def require_adbc_driver() -> None:
    """ConfigError naming the install command when the ADBC PostgreSQL driver is missing or does not load."""
    from dlt.destinations._adbc_jobs import has_adbc_driver
    from dlt.destinations.impl.postgres.factory import get_adbc_driver_location

    found, why = has_adbc_driver(get_adbc_driver_location(), disable_adbc_detection=False)
    if not found:
        raise ConfigError(
            "destination postgres loads through binary COPY and needs the ADBC PostgreSQL driver: "
            f"pip install 'taxi-pipeline[postgres]' ({one_line(Exception(why or 'not found'))})"
        )


class postgres(dlt.destinations.postgres):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's Postgres destination that also loads `jsonl` files: our manifests, by binary COPY (`BinaryCopyJob`)."""

    def _raw_capabilities(self) -> Any:
        caps = super()._raw_capabilities()
        caps.supported_loader_file_formats = [*caps.supported_loader_file_formats, MANIFEST]
        return caps

    @property
    def client_class(self) -> Type[Any]:
        """Our job client."""
        return BinaryCopyClient


SCHEMA_LOCK_SQL = "SELECT pg_advisory{scope}_lock(hashtext(%s), hashtext(%s))"
"""The dataset's schema lock (`schema_lock_key`): for the session (`scope` "") or the transaction (`_xact`)."""


def schema_lock_key(client: Any) -> tuple[str, str]:
    """The advisory lock key of schema changes in the dataset a SQL client is on (staging mode: its staging one)."""
    return (client.dataset_name, SCHEMA_LOCK)


class SessionKeepingSqlClient(Psycopg2SqlClient):
    """dlt's psycopg2 SQL client whose session outlives a failed statement, advisory locks included.

    After a statement fails, dlt resets the connection with psycopg2's `reset()`, which sends `DISCARD ALL`: every
    session advisory lock of the connection is released on the spot, silently. The first failed lookup inside the
    schema lock (dlt asks a fresh dataset for its `_dlt_version` table, which is not there yet) let the next run in,
    and runs started together failed on each other's `CREATE TABLE`. A rollback ends the failed transaction, if
    any, and keeps the session: its locks, and nothing else dlt relies on (its settings come with the connection).
    """

    def _reset_connection(self) -> None:
        self._conn.rollback()
        self._conn.autocommit = True


class BinaryCopyClient(SchemaChangesLocked, PostgresClient):
    """dlt's Postgres job client; a `jsonl` file (our manifest) is loaded by `BinaryCopyJob`.

    Schema changes are made under an advisory lock of the dataset (`locking.SchemaChangesLocked`), held on the
    connection that makes them: runs load side by side on Postgres. Its SQL client keeps that lock (and the
    run's month locks) through a failed statement (`SessionKeepingSqlClient`).
    """

    def __init__(self, schema: Any, config: Any, capabilities: Any) -> None:
        super().__init__(schema, config, capabilities)
        sql = self.sql_client
        self.sql_client = SessionKeepingSqlClient(
            sql.dataset_name, sql.staging_dataset_name, config.credentials, capabilities
        )

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        key = schema_lock_key(self.sql_client)
        self.sql_client.execute_sql(SCHEMA_LOCK_SQL.format(scope=""), *key)
        try:
            yield
        finally:
            self.sql_client.execute_sql("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", *key)

    def _create_merge_followup_jobs(self, table_chain: Sequence[Any]) -> List[Any]:
        """The merge of a replaced month: `MonthMergeJob`."""
        return [MonthMergeJob.from_table_chain(table_chain, self.sql_client)]

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> LoadJob:
        """`BinaryCopyJob` for a manifest, dlt's jobs for everything else (state, the zone lookup)."""
        if file_path.endswith(f".{MANIFEST}"):
            return BinaryCopyJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)


class MonthMergeJob(SqlMergeFollowupJob):
    """dlt's delete-insert merge of a replaced month, whose DELETE finds the month's rows through the month index.

    dlt deletes the rows whose month is in the staging table; `MONTH_INDEX_ONLY` first in its transaction keeps
    the planner from reading every loaded month for that while the table has no statistics.
    """

    @classmethod
    def generate_sql(cls, table_chain: Sequence[Any], sql_client: Any) -> List[str]:
        """The statements of dlt's merge, after `MONTH_INDEX_ONLY`."""
        return [MONTH_INDEX_ONLY, *super().generate_sql(table_chain, sql_client)]


class BinaryCopyJob(ManifestJob, RunnableLoadJob, HasFollowupJobs):
    """A dlt load job of our own, fed by our reader from the manifest's file, encoded by `pgpq`.

    It runs on the job client's psycopg2 connection (dlt opens one per job, in autocommit, for the job's run);
    the table is qualified by dlt's SQL client (the staging dataset for a replacement).
    """

    _job_client: PostgresClient  # set by dlt as the job runs

    def load_manifest(self, manifest: Mapping[str, Any]) -> Copied:
        """Parse the file into one binary COPY, in a transaction that commits only the rows parsed."""
        schema = table_schema(manifest["table"])
        month = manifest["month"]
        parsed = 0
        failure: Optional[BaseException] = None
        with read_batches(manifest["path"], schema, manifest["file"], month, collector=self._collector) as batches:
            first = next(batches)  # a file without rows raises here, before the connection is used

            def stream(target: pa.Schema, encoder: Any) -> Iterator[bytes]:
                nonlocal parsed, failure
                try:
                    yield encoder.write_header()
                    for batch in itertools.chain([first], batches):
                        parsed += batch.num_rows
                        cast = cast_batch(batch, target)
                        for offset in range(0, cast.num_rows, COPY_CHUNK_ROWS):  # each chunk held whole once encoded
                            yield encoder.write_batch(cast.slice(offset, COPY_CHUNK_ROWS))
                    yield encoder.finish()
                except BaseException as exc:  # the server sees a cancelled COPY; the run sees this error
                    failure = exc
                    raise

            client = self._job_client.sql_client
            with _transaction(client.native_connection) as conn, conn.cursor() as cur:
                appending = not self._job_client.in_staging_dataset_mode  # else into the emptied staging table
                if schema.lineage and appending:
                    self._ensure_month_index(conn, cur)
                table = table_arrow_schema(cur, self._table())
                target = copy_schema(first.schema, table)
                encoder = copy_encoder(target, table)
                if month is not None and appending and self._has_rows_of(cur, month):
                    raise LoadError(f"{manifest['file']}: the table already holds rows of {month}; nothing was copied")
                columns = ", ".join(client.escape_column_name(name) for name in target.names)
                try:
                    cur.copy_expert(
                        f"COPY {self._table()} ({columns}) FROM STDIN (FORMAT binary)", Chunks(stream(target, encoder))
                    )
                except Exception as exc:
                    if failure is not None:  # the parse failed: say that, not the server's "COPY from stdin failed"
                        raise failure from exc
                    raise
                rows = self._rows_inserted(cur, month)
                if rows != parsed:
                    raise LoadError(
                        f"{manifest['file']}: the server stored {rows} rows after copying the {parsed} read; "
                        "nothing was committed"
                    )
                entry = job_record(manifest, rows) if appending else None  # a replacement: after dlt's merge
                for statement in (
                    record_statements(self._job_client.sql_client, manifest["table"], month, entry) if entry else []
                ):
                    cur.execute(statement)
                conn.commit()
        return Copied(rows=rows, recorded=entry is not None)

    def _has_rows_of(self, cur: Any, month: str) -> bool:
        """Whether the table holds rows of `month` (an index probe), in the COPY's transaction, before it.

        A month is appended only where it has none; rows found here (another writer since the run planned the
        month) fail the load before anything is copied.
        """
        cur.execute(MONTH_INDEX_ONLY)  # for the rest of the transaction: the fallback count reads the month too
        cur.execute(month_probe_sql(self._job_client.sql_client, self._table(), month))
        return bool(cur.fetchone()[0])

    def _rows_inserted(self, cur: Any, month: Optional[str]) -> int:
        """The rows this transaction inserted into the table, as the server counted them (not the driver).

        Read from the transaction's own statistics, so the month is not read again; only where the server keeps
        no counts (`track_counts` off) are the month's rows counted.
        """
        cur.execute(
            "SELECT CASE WHEN current_setting('track_counts')::boolean"
            f" THEN pg_stat_get_xact_tuples_inserted('{self._table()}'::regclass) END"
        )
        inserted = cur.fetchone()[0]
        if inserted is not None:
            return int(inserted)
        where = f" WHERE {month_filter(self._job_client.sql_client, month)}" if month is not None else ""
        cur.execute(f"SELECT count(*) FROM {self._table()}{where}")
        return int(cur.fetchone()[0])

    def _table(self) -> str:
        """The table the COPY goes into, qualified (in the staging dataset for a replacement)."""
        return self._job_client.sql_client.make_qualified_table_name(self.load_table_name)

    def _ensure_month_index(self, conn: Any, cur: Any) -> None:
        """The BRIN month index, made in its own transaction where it is missing (a lock-free look first).

        Made under the dataset's schema lock, as every schema change (two runs creating it at once would trip over
        each other's catalog rows), taken for the transaction only. Made on the table still empty, it costs
        nothing; made after the load, it would read the whole month. A role that may not create it (not the
        table's owner) loads without it: it only speeds things up.
        """
        client = self._job_client.sql_client
        cur.execute(f"SELECT to_regclass('{month_index_regclass(client, self.load_table_name, SOURCE_MONTH)}') IS NULL")
        if not cur.fetchone()[0]:
            return
        try:
            cur.execute(SCHEMA_LOCK_SQL.format(scope="_xact"), schema_lock_key(client))
            cur.execute(month_index_sql(client, self.load_table_name, SOURCE_MONTH))
            conn.commit()
        except Exception as exc:
            conn.rollback()
            logger.warning(f"no month index on {self.load_table_name}: {one_line(exc)}")


def number_rows(pipeline: dlt.Pipeline, table: str, staging: bool, state: str) -> None:
    """Number the rows of `table` (its staging copy: `staging`) loaded before `source_row`, by their `ctid`.

    See `common.number_rows_sql`. One transaction under the dataset's schema lock, as every schema change: the
    column, the numbers and its `NOT NULL` land together. `state`: the column's (`common.row_number_column`).
    """
    with (
        pipeline.sql_client() as client,
        client.with_staging_dataset() if staging else contextlib.nullcontext(),
        client.begin_transaction(),
    ):
        client.execute_sql(SCHEMA_LOCK_SQL.format(scope="_xact"), *schema_lock_key(client))
        for sql in number_rows_sql(client, table, "ctid"):
            client.execute_sql(sql)
        client.execute_sql(row_numbers_required_sql(client, table))


@contextlib.contextmanager
def _transaction(conn: Any) -> Iterator[Any]:
    """The job's psycopg2 connection (autocommit) in explicit transactions; what is not committed is rolled back.

    The connection goes back to autocommit for dlt. A rollback that fails (the server gone) leaves the error that
    ended the job as it was; the connection is closed by dlt as the job ends, and the server discards the rest.
    """
    conn.autocommit = False
    try:
        yield conn
    finally:
        if not conn.closed:
            with contextlib.suppress(Exception):
                conn.rollback()
                conn.autocommit = True


class AdvisoryLocks(KeyedLock):
    """Advisory locks on one connection of the run's own, keyed on `(dataset, what)`."""

    def __init__(self, client: Any, dataset: str, timeout: float, on_wait: Optional[Callable[[str], None]]) -> None:
        super().__init__(timeout, on_wait)
        self._client, self._dataset = client, dataset

    def check(self) -> None:
        """Fail (LoadError) if the locks' connection dropped: the server has released them then."""
        try:
            self._client.execute_sql("SELECT 1")
        except Exception as exc:
            raise LoadError(f"lost the run lock (the lock connection to postgres dropped): {one_line(exc)}") from exc

    def _try(self, key: str) -> bool:
        sql = "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))"
        return bool(self._client.execute_sql(sql, self._dataset, key)[0][0])

    def _release(self, key: str) -> None:
        with contextlib.suppress(Exception):  # a dropped connection has released it already
            self._client.execute_sql("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", self._dataset, key)


@contextlib.contextmanager
def run_lock(pipeline: dlt.Pipeline, timeout: float, on_wait: Optional[Callable[[str], None]]) -> Iterator[RunLock]:
    """The run's advisory locks (`AdvisoryLocks`), on a connection of its own, closed (and so released) after."""
    client = open_client(pipeline)
    try:
        yield AdvisoryLocks(client, pipeline.dataset_name, timeout, on_wait)
    finally:
        with contextlib.suppress(Exception):  # closing the session releases whatever it still holds
            client.close_connection()
