"""One run at a time per destination dataset, so two runs (a backfill and a scheduled slot) never interleave.

Postgres: a session advisory lock keyed on the dataset (released by the server if the process dies).
DuckDB: an exclusive `flock` on a file beside the database (released by the OS if the process dies).
A run that finds the lock taken says so once and waits up to `taxi_pipeline.lock_timeout` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from typing import Callable, Iterator, Optional

import dlt

from taxi_pipeline.errors import LoadError

DEFAULT_LOCK_TIMEOUT = 3600.0
_POLL_SECONDS = 0.5


@contextlib.contextmanager
def destination_lock(
    pipeline: dlt.Pipeline, on_wait: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None
) -> Iterator[None]:
    """Hold the dataset's run lock for the duration of the block; LoadError after `timeout` seconds of waiting."""
    if timeout is None:
        timeout = float(dlt.config.get("taxi_pipeline.lock_timeout") or DEFAULT_LOCK_TIMEOUT)
    kind = pipeline.destination.destination_type.rsplit(".", 1)[-1]
    what = f"{kind} dataset {pipeline.dataset_name}"
    if kind == "postgres":
        with _postgres_lock(pipeline, what, timeout, on_wait):
            yield
    elif kind == "duckdb":
        path = pipeline.destination_client().config.credentials.database  # type: ignore[attr-defined]
        with _file_lock(f"{path}.{pipeline.dataset_name}.lock", what, timeout, on_wait):
            yield
    else:
        yield


def _wait(try_lock: Callable[[], bool], what: str, timeout: float, on_wait: Optional[Callable[[str], None]]) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while not try_lock():
        if not told and on_wait:
            on_wait(f"another taxi_pipeline run is loading {what}; waiting for it (up to {timeout:.0f} s)")
            told = True
        if time.monotonic() >= deadline:
            raise LoadError(f"another taxi_pipeline run kept {what} busy for {timeout:.0f} s; try again later")
        time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def _postgres_lock(
    pipeline: dlt.Pipeline, what: str, timeout: float, on_wait: Optional[Callable[[str], None]]
) -> Iterator[None]:
    key = f"taxi_pipeline:{pipeline.dataset_name}"
    with pipeline.sql_client() as client:

        def try_lock() -> bool:
            return bool(client.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)[0][0])

        _wait(try_lock, what, timeout, on_wait)
        try:
            yield
        finally:
            client.execute_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)


@contextlib.contextmanager
def _file_lock(path: str, what: str, timeout: float, on_wait: Optional[Callable[[str], None]]) -> Iterator[None]:
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
