"""Exclusion between runs: by month on Postgres, Snowflake and BigQuery, by database file on DuckDB.

A run holds two kinds of locks:

1. **its local dlt working folder** (`<pipelines_dir>/taxi_pipeline_<dest>-…`): an exclusive `flock`, so two runs
   never rewrite each other's packages or state files. Where runs may load side by side (all but DuckDB), a
   run that finds the folder busy takes the first free sibling (`…~1`, `…~2`, …) instead of waiting; dlt state
   is restored there from the destination, and months are known from their records (`records`), not the folder.
2. **the destination**:
   - Postgres: session advisory locks on the run's own connection, by month. A month is loaded under the lock of
     `(table, month)`; a run that meets a month another run is loading waits for it, then looks at its record
     again (`RunLock.shared`) and skips it if it is now loaded. A replacement also holds its table's staging lock
     (dlt's merge goes through one staging table per table); the zone lookup is loaded by one run at a time,
     and a run that finds it taken leaves it to that run. Schema changes (a new table, a new column) are made
     under a dataset lock by the job client (`destinations.postgres.BinaryCopyClient`).
   - DuckDB: an exclusive `flock` keyed on the database file's real path for the whole run: DuckDB admits one
     writing process per file, so runs on one DuckDB file take turns. `status` and `report` hold it shared
     (`destinations.read_lock`): DuckDB opens no file read-only while another process writes it.
   - Snowflake and BigQuery: the same month, staging and zone lookup locks as leases, rows of a table of ours with
     an expiry that the run renews (`destinations.leases`: neither has advisory locks); schema changes under the
     dataset's lease.

Every lock but a lease is released by the OS or the server when its process dies (a lease expires).
A run that finds a lock taken says so once and waits up to `taxi_pipeline.lock_timeout` seconds. The Postgres
locks live on an idle connection; if it drops (idle timeout, server restart) they are gone, so `check()` before
each month stops the run instead of letting a second run in unnoticed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from typing import IO, Any, Callable, Iterable, Iterator, Optional

import dlt

from taxi_pipeline.destinations.common import destination_error
from taxi_pipeline.errors import ConfigError, LoadError
from taxi_pipeline.records import records_table_sql

DEFAULT_LOCK_TIMEOUT = 3600.0


_POLL_SECONDS = 0.5


SIDE_BY_SIDE = ("postgres", "snowflake", "bigquery")
"""Destinations whose runs load side by side, month by month (each month under its own lock)."""


SCHEMA_LOCK = "schema"
"""The key of the dataset's lock under which schema changes are made (`SchemaChangesLocked`)."""


MAX_FOLDERS = 64
"""Working folders one destination dataset may have on one machine: runs beyond that wait for one."""


class RunLock:
    """The locks of a run. This base holds the destination for the whole run (DuckDB) or nothing (Snowflake).

    `shared`: other runs may load into the dataset meanwhile, so a month planned as new is looked at again once
    its lock is held (`month`).
    """

    shared = False

    def check(self) -> None:
        """Fail if the destination locks are no longer held."""

    @contextlib.contextmanager
    def month(self, table: str, month: str) -> Iterator[None]:
        """Hold `table`'s `month` for the block, waiting for another run that holds it."""
        yield

    @contextlib.contextmanager
    def staging(self, table: str) -> Iterator[None]:
        """Hold `table`'s staging table (a replacement) for the block, waiting for another run that holds it."""
        yield

    def dbt_build(self, schema: str) -> contextlib.AbstractContextManager[None]:
        """Hold the dbt build into `schema` for the block (two builds at once could both insert a month's rows)."""
        return contextlib.nullcontext()

    def busy(self, table: str, month: str) -> bool:
        """Whether another run holds `table`'s `month` now (it is loading it: no use fetching it ahead)."""
        return False

    def try_take(self, table: str) -> bool:
        """Take `table` (the zone lookup) if no other run holds it; `release` gives it back."""
        return True

    def release(self, table: str) -> None:
        """Give back what `try_take` took."""


class SchemaChangesLocked:
    """dlt's schema steps of a SQL job client under the dataset's schema lock (`_schema_lock`), then the records table.

    Mixed into the job clients of destinations whose runs load side by side (Postgres, Snowflake, BigQuery): two
    runs can meet the same schema change (a first load creating the tables, a file with a new column); dlt looks
    up the stored schema, then creates or alters what is missing, and the second run's `CREATE TABLE` would fail
    on the first one's. Under the lock, the second run finds the change made. The month records table is made there
    too: a `CREATE TABLE IF NOT EXISTS` in two load transactions at once can fail the same way.
    """

    sql_client: Any
    in_staging_dataset_mode: bool

    def _schema_lock(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def initialize_storage(self, truncate_tables: Optional[Iterable[str]] = None) -> None:
        """dlt's, under the dataset's schema lock (`CREATE SCHEMA` and dlt's own tables)."""
        with self._schema_lock():
            super().initialize_storage(truncate_tables)  # type: ignore[misc]

    def update_stored_schema(self, *args: Any, **kwargs: Any) -> Any:
        """dlt's, under the dataset's schema lock, then the month records table where it is missing."""
        with self._schema_lock():
            applied = super().update_stored_schema(*args, **kwargs)  # type: ignore[misc]
            if not self.in_staging_dataset_mode:
                self.sql_client.execute_sql(records_table_sql(self.sql_client))
            return applied


class KeyedLock(RunLock):
    """Month locks by key (`table:month`, `table:staging`, a table), each taken by `_try` and given back by `_release`.

    `shared`: runs load side by side; a month planned as new is looked at again once its lock is held.
    """

    shared = True
    poll_seconds = _POLL_SECONDS
    """How often a run waiting for a key tries it again."""

    def __init__(self, timeout: float, on_wait: Optional[Callable[[str], None]]) -> None:
        self._timeout, self._on_wait = timeout, on_wait

    def _try(self, key: str) -> bool:
        raise NotImplementedError

    def _release(self, key: str) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def held(self, key: str, what: str, doing: str = "loading") -> Iterator[None]:
        """Hold `key` for the block, waiting (up to the lock timeout) for another run that holds it."""
        wait_for(lambda: self._try(key), what, self._timeout, self._on_wait, doing, self.poll_seconds)
        try:
            yield
        finally:
            self._release(key)

    def month(self, table: str, month: str) -> contextlib.AbstractContextManager[None]:
        """The lock of `table`'s `month`, by its key `table:month`."""
        return self.held(f"{table}:{month}", f"{table} {month}")

    def staging(self, table: str) -> contextlib.AbstractContextManager[None]:
        """The lock of `table`'s staging table, by its key `table:staging`."""
        return self.held(f"{table}:staging", f"the staging table of {table} (replacing a month)")

    def dbt_build(self, schema: str) -> contextlib.AbstractContextManager[None]:
        """The lock of the dbt build into `schema`, by its key `dbt:schema`."""
        return self.held(f"dbt:{schema}", f"the dbt build into schema {schema}", "running")

    def busy(self, table: str, month: str) -> bool:
        """Whether another run holds `table`'s `month`: taken and given back at once if not."""
        if not self._try(f"{table}:{month}"):
            return True
        self._release(f"{table}:{month}")
        return False

    def try_take(self, table: str) -> bool:
        """Take the key `table` if free."""
        return self._try(table)

    def release(self, table: str) -> None:
        """Give back the key `table`."""
        self._release(table)


@contextlib.contextmanager
def working_folder(
    pipelines_dir: str,
    name: str,
    shared: bool,
    on_wait: Optional[Callable[[str], None]] = None,
    timeout: Optional[float] = None,
) -> Iterator[str]:
    """Hold a local dlt working folder for the block and yield its path.

    That is `pipelines_dir`, or, where runs may load side by side (`shared`) and it is busy, the first free
    sibling `pipelines_dir~N`; when all are busy, the run waits for `pipelines_dir`.
    """
    timeout = _timeout(timeout)
    siblings = [f"{pipelines_dir}~{n}" for n in range(1, MAX_FOLDERS)] if shared else []
    for folder in [pipelines_dir, *siblings]:
        handle = open_lock_file(os.path.join(folder, f".{name}.lock"))
        if try_flock(handle):
            break
        handle.close()
    else:  # every folder busy: wait for the first
        folder = pipelines_dir
        handle = open_lock_file(os.path.join(folder, f".{name}.lock"))
        wait_for(functools.partial(try_flock, handle), f"the local dlt folder of {name}", timeout, on_wait)
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _timeout(timeout: Optional[float]) -> float:
    return lock_timeout() if timeout is None else timeout


def lock_timeout() -> float:
    """How long a run waits for a lock another run holds (`taxi_pipeline.lock_timeout`, seconds)."""
    return seconds_setting("lock_timeout", DEFAULT_LOCK_TIMEOUT, zero=True)  # 0: do not wait


def seconds_setting(key: str, default: float, zero: bool = False) -> float:
    """A `taxi_pipeline.<key>` setting in seconds (a number > 0, or ≥ 0 with `zero`), else ConfigError."""
    value = dlt.config.get(f"taxi_pipeline.{key}")
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not (seconds >= 0 if zero else seconds > 0):
        least = "≥ 0" if zero else "> 0"
        raise ConfigError(f"bad taxi_pipeline.{key} {value!r}: expected a number of seconds {least}")
    return seconds


def wait_for(
    try_lock: Callable[[], bool],
    what: str,
    timeout: float,
    on_wait: Optional[Callable[[str], None]],
    doing: str = "using",
    poll_seconds: float = _POLL_SECONDS,
) -> None:
    """Call `try_lock` until it succeeds, saying once through `on_wait` that another run has it.

    LoadError after `timeout` s.
    """
    deadline = time.monotonic() + timeout
    told = False
    while not try_lock():
        if not told and on_wait:
            on_wait(f"another taxi_pipeline run is {doing} {what}; waiting for it (up to {timeout:.0f} s)")
            told = True
        if time.monotonic() >= deadline:
            raise LoadError(f"another taxi_pipeline run kept {what} busy for {timeout:.0f} s; try again later")
        time.sleep(poll_seconds)


def open_client(pipeline: dlt.Pipeline) -> Any:
    """A connection of the run's own to the destination; failing is configuration to fix (exit 2)."""
    try:
        client = pipeline.sql_client()
        client.open_connection()
    except Exception as exc:  # first contact with the server: credentials, host, database
        raise destination_error(pipeline, exc) from exc
    return client


def open_lock_file(path: str) -> IO[str]:
    """A lock file opened to write, its folder made if missing."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, "a+")


def open_lock_file_to_read(path: str) -> Optional[IO[str]]:
    """The lock file, made if missing where that can be; opened to read only in a read-only place; else None."""
    try:
        return open(path, "a+")
    except OSError:
        pass
    try:
        return open(path)  # a shared flock needs no write access
    except OSError:
        return None


def try_flock(handle: IO[str], kind: int = fcntl.LOCK_EX) -> bool:
    """Take a `flock` of `kind` on `handle` if free (True), without waiting."""
    try:
        fcntl.flock(handle, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
