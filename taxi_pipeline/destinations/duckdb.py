"""DuckDB: the destination, its catalog-qualified job client, the month's insert, the run's lock on the file.

A month's load file for DuckDB is the manifest of the downloaded file (`load_files.write_manifest`), as for
Postgres. Its load job (`duckdb_insert.MonthInsertJob`, run by dlt's loader like any other job) inserts the file
in one `INSERT … BY NAME`: a parquet month is read by DuckDB's own parquet reader, row groups in parallel, through a
`SELECT` written from the column map (`duckdb_parquet`); a CSV month is parsed by the package's reader on a
background thread and handed to DuckDB as an Arrow stream, so parsing, conversion and the write overlap, and
memory holds a few batches, not the month.

The insert runs in one transaction with a probe before it (an append never lands on a month that has rows) and
commits only when DuckDB stored exactly the file's rows; a bad value fails the job before anything is
committed. An appended month's record (`records`) is written in the same transaction. The job leaves the rows
(or its error) for the run to take with `load_files.take_copied`; the run reconciles the month and records a
replaced one after dlt's merge (see `loading`).

DuckDB admits one writing process per file: a run holds an exclusive `flock` on a lock file beside the database
for the whole run (`run_lock`); `status` and `report` hold it shared (`read_lock`), since DuckDB opens no file
read-only while another process writes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from typing import Any, Callable, Iterator, Optional, Tuple, Type

import dlt
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

from taxi_pipeline.destinations.common import destination_error, number_rows_sql, row_numbers_required_sql
from taxi_pipeline.destinations.locking import (
    RunLock,
    lock_timeout,
    open_lock_file,
    open_lock_file_to_read,
    try_flock,
    wait_for,
)
from taxi_pipeline.settings import DUCKDB_LOAD_SETTINGS, DUCKDB_PARQUET_MEMORY_LIMIT, MANIFEST, duckdb_memory_limit


class _CatalogQualifiedSqlClient(DuckDbSqlClient):
    """DuckDB SQL that names every table `catalog.schema.table`, dlt's statements and ours alike.

    DuckDB names a file's catalog after the file (`taxi_raw.duckdb` → catalog `taxi_raw`), and `taxi_raw.t` is then
    ambiguous between that catalog and the schema `taxi_raw` ("Ambiguous reference to catalog or schema"). dlt
    leaves the catalog out of its names; with it, no file name can clash with a dataset or dbt schema name. The
    catalog is asked of the connection itself (DuckDB's naming rule stays DuckDB's).
    """

    _catalog: Optional[str] = None
    _opening = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The client, its connections opened with our load settings (`DUCKDB_LOAD_SETTINGS`) where needed.

        A setting in the credentials' `global_config` wins. Without them DuckDB keeps the blocks it writes cached
        up to 80 % of RAM, so a run's memory would grow with the month (`settings.duckdb_memory_limit`), and it
        inserts a month in file order, on one thread for the final write.
        """
        super().__init__(*args, **kwargs)
        configured = getattr(self.credentials, "global_config", None) or {}
        threads = int(configured.get("threads") or os.cpu_count() or 1)  # DuckDB's default: one per core
        defaults = {**DUCKDB_LOAD_SETTINGS, "memory_limit": duckdb_memory_limit(threads)}
        ours = {k: v for k, v in defaults.items() if k not in configured}
        self._global_config = {**ours, **self._global_config}
        self.parquet_memory_limit = None if "memory_limit" in configured else DUCKDB_PARQUET_MEMORY_LIMIT
        """The `memory_limit` of a parquet month's insert (None: the connection's, which the user configured)."""

    def open_connection(self) -> Any:
        """Open as dlt does; it names the search path while opening, unqualified there as before."""
        self._opening = True
        try:
            return super().open_connection()
        finally:
            self._opening = False

    def catalog_name(self, quote: bool = True, casefold: bool = True) -> Optional[str]:
        """The database's catalog, asked of the connection once.

        One is opened for it if none is: dlt writes the SQL of merge jobs with a client that is not connected.
        """
        if self._catalog is None and not self._opening:
            with self if self._conn is None else contextlib.nullcontext():
                self._catalog = str(self._conn.execute("SELECT current_database()").fetchone()[0])
        if self._catalog is None or not quote:
            return self._catalog
        return self.capabilities.escape_identifier(self._catalog)


class _DuckDbClient(DuckDbClient):
    """dlt's DuckDB job client with catalog-qualified names (see `_CatalogQualifiedSqlClient`).

    A `jsonl` file (our manifest) is loaded by `MonthInsertJob`.
    """

    def __init__(self, schema: Any, config: Any, capabilities: Any) -> None:
        super().__init__(schema, config, capabilities)
        sql = self.sql_client
        self.sql_client = _CatalogQualifiedSqlClient(
            sql.dataset_name, sql.staging_dataset_name, config.credentials, capabilities
        )

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> Any:
        """`MonthInsertJob` for a manifest, dlt's jobs for everything else (state, the zone lookup)."""
        if file_path.endswith(f".{MANIFEST}"):
            from taxi_pipeline.destinations.duckdb_insert import MonthInsertJob  # the readers: only runs that load

            return MonthInsertJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)


class duckdb(dlt.destinations.duckdb):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's DuckDB destination whose statements name the catalog, so a file named like a schema still works."""

    read_only = False
    """Open the file read-only (DuckDB's `read_only`): nothing is written there, not even a WAL beside it."""

    @property
    def client_class(self) -> Type[DuckDbClient]:
        """Our job client."""
        return _DuckDbClient

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        """The resolved configuration (dlt's), its credentials read-only where this destination is `read_only`."""
        config = super().configuration(initial_config, accept_partial)
        if self.read_only and config.credentials is not None:
            config.credentials.read_only = True
        return config


@contextlib.contextmanager
def run_lock(pipeline: dlt.Pipeline, timeout: float, on_wait: Optional[Callable[[str], None]]) -> Iterator[RunLock]:
    """The DuckDB file for the whole run: an exclusive `flock` of a lock file beside it (waited for up to `timeout`)."""
    database, path = _duckdb_file(pipeline)
    if not os.path.isdir(os.path.dirname(path)):
        raise destination_error(pipeline, FileNotFoundError(f"no folder for the DuckDB file {database}"))
    handle = open_lock_file(f"{path}.lock")
    with handle:
        wait_for(lambda: try_flock(handle), f"the DuckDB file {database}", timeout, on_wait)
        try:
            yield RunLock()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def read_lock(
    pipeline: dlt.Pipeline, timeout: Optional[float], on_wait: Optional[Callable[[str], None]]
) -> Iterator[None]:
    """Hold the block as a reader of the DuckDB file (`status`, `report`).

    DuckDB refuses a read-only open of a file another process writes: the block waits (saying so, up to
    `timeout` s, default `taxi_pipeline.lock_timeout`, then LoadError) for a run writing the file, and holds its
    lock file shared, so readers do not wait for each other and a run waits for them. A lock file that cannot be
    made (a read-only folder) is not needed: no run can write the DuckDB file there either.
    """
    database, path = _duckdb_file(pipeline)
    handle = open_lock_file_to_read(f"{path}.lock")
    if handle is None:
        yield
        return
    with handle:
        shared = functools.partial(try_flock, handle, fcntl.LOCK_SH)
        wait = lock_timeout() if timeout is None else timeout
        wait_for(shared, f"the DuckDB file {database}", wait, on_wait, "writing")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def number_rows(pipeline: dlt.Pipeline, table: str, staging: bool, state: str) -> None:
    """Number the rows of `table` (its staging copy: `staging`) loaded before `source_row`, by their `rowid`.

    See `common.number_rows_sql`. The numbering commits first: DuckDB makes no `NOT NULL` constraint in a
    transaction with updates outstanding. `state`: the column's (`common.row_number_column`).
    """
    with pipeline.sql_client() as client, client.with_staging_dataset() if staging else contextlib.nullcontext():
        with client.begin_transaction():
            for sql in number_rows_sql(client, table, "rowid"):
                client.execute_sql(sql)
        client.execute_sql(row_numbers_required_sql(client, table))


def _duckdb_file(pipeline: dlt.Pipeline) -> Tuple[str, str]:
    """The DuckDB database as configured, and its real path."""
    database = pipeline.destination_client().config.credentials.database  # type: ignore[attr-defined]
    return database, os.path.realpath(database)
