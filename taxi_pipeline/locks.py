"""One run at a time, so two runs (a backfill next to a scheduled slot) never interleave.

Two locks, taken in this order and held for the whole run:

1. the local dlt working folder (`<pipelines_dir>/taxi_pipeline_<dest>`): an exclusive `flock`, so two runs on
   one machine never rewrite each other's packages or state files, whatever database they target;
2. the destination: DuckDB, an exclusive `flock` keyed on the database file's real path (DuckDB admits one
   writing process per file anyway); Postgres, a session advisory lock keyed on the dataset.

Both kinds are released by the OS or the server when the process dies. A run that finds a lock taken says so
once and waits up to `taxi_pipeline.lock_timeout` seconds. The Postgres lock lives on an idle connection; if that
connection drops (idle timeout, server restart) the lock is gone, so `check()` before each month stops the run
instead of letting a second run in unnoticed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Callable, Iterator, Optional

import dlt

from taxi_pipeline.destinations import destination_error, destination_kind
from taxi_pipeline.errors import LoadError, one_line

DEFAULT_LOCK_TIMEOUT = 3600.0
_POLL_SECONDS = 0.5


class RunLock:
    """The held locks of a run; `check()` raises LoadError when the destination lock was lost."""

    def __init__(self, check: Callable[[], None] = lambda: None) -> None:
        self._check = check

    def check(self) -> None:
        """Fail if the destination lock is no longer held."""
        self._check()


@contextlib.contextmanager
def run_lock(
    pipeline: dlt.Pipeline, on_wait: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None
) -> Iterator[RunLock]:
    """Hold the local-folder lock and the destination lock for the block; LoadError after `timeout` s of waiting."""
    if timeout is None:
        timeout = float(dlt.config.get("taxi_pipeline.lock_timeout") or DEFAULT_LOCK_TIMEOUT)
    folder_lock = os.path.join(pipeline.pipelines_dir, f".{pipeline.pipeline_name}.lock")
    with _file_lock(folder_lock, f"the local dlt folder of {pipeline.pipeline_name}", timeout, on_wait):
        kind = destination_kind(pipeline)
        if kind == "postgres":
            with _postgres_lock(pipeline, timeout, on_wait) as lock:
                yield lock
        elif kind == "duckdb":
            database = pipeline.destination_client().config.credentials.database  # type: ignore[attr-defined]
            path = os.path.realpath(database)
            if not os.path.isdir(os.path.dirname(path)):
                raise destination_error(pipeline, FileNotFoundError(f"no folder for the DuckDB file {database}"))
            with _file_lock(f"{path}.lock", f"the DuckDB file {database}", timeout, on_wait):
                yield RunLock()
        else:
            yield RunLock()


def _wait(try_lock: Callable[[], bool], what: str, timeout: float, on_wait: Optional[Callable[[str], None]]) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while not try_lock():
        if not told and on_wait:
            on_wait(f"another taxi_pipeline run is using {what}; waiting for it (up to {timeout:.0f} s)")
            told = True
        if time.monotonic() >= deadline:
            raise LoadError(f"another taxi_pipeline run kept {what} busy for {timeout:.0f} s; try again later")
        time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def _postgres_lock(
    pipeline: dlt.Pipeline, timeout: float, on_wait: Optional[Callable[[str], None]]
) -> Iterator[RunLock]:
    key = f"taxi_pipeline:{pipeline.dataset_name}"
    try:
        client = pipeline.sql_client()
        client.open_connection()
    except Exception as exc:  # first contact with the server: credentials, host, database
        raise destination_error(pipeline, exc) from exc
    try:

        def try_lock() -> bool:
            return bool(client.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)[0][0])

        _wait(try_lock, f"postgres dataset {pipeline.dataset_name}", timeout, on_wait)

        def check() -> None:
            try:
                client.execute_sql("SELECT 1")
            except Exception as exc:
                raise LoadError(
                    f"lost the run lock (the lock connection to postgres dropped): {one_line(exc)}"
                ) from exc

        yield RunLock(check)
        with contextlib.suppress(Exception):  # a dropped connection has released the lock already
            client.execute_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)
    finally:
        with contextlib.suppress(Exception):
            client.close_connection()


@contextlib.contextmanager
def _file_lock(path: str, what: str, timeout: float, on_wait: Optional[Callable[[str], None]]) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as handle:

        def try_lock() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        _wait(try_lock, what, timeout, on_wait)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
