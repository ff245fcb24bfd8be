"""The destinations: which there are, the dlt destination for a name, and the run's lock on it.

One module per destination holds all that is its own (modelled on dlt's `dlt/destinations/impl/<name>/`): its
dlt destination class, job client, month load job and run lock: `duckdb`, `postgres` (with `postgres_binary`,
the COPY encoding), `snowflake` and `bigquery` (their run locks are `leases`). `common` holds what they share:
first contact and its errors, the month index and month SQL. Destination modules are imported only when a
destination of theirs is used.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any, Callable, Iterator, Optional, Tuple

import dlt
from dlt.common.destination.reference import Destination

from taxi_pipeline.destinations.common import (
    MISSING,
    MONTH_INDEX_ONLY,
    NULLABLE,
    check_destination,
    counting_is_cheap,
    destination_error,
    destination_kind,
    destination_location,
    import_file_format,
    month_filter,
    month_index_only,
    month_index_sql,
    month_probe_sql,
    row_number_column,
    summarize_month_index,
)
from taxi_pipeline.destinations.locking import RunLock, lock_timeout
from taxi_pipeline.errors import ConfigError
from taxi_pipeline.settings import DEFAULT_DUCKDB_FILE

__all__ = [
    "DESTINATIONS",
    "MONTH_INDEX_ONLY",
    "check_destination",
    "counting_is_cheap",
    "destination_error",
    "destination_kind",
    "destination_location",
    "import_file_format",
    "make_destination",
    "number_legacy_rows",
    "month_filter",
    "month_index_only",
    "month_index_sql",
    "month_probe_sql",
    "read_lock",
    "run_lock",
    "summarize_month_index",
]


DESTINATIONS: Tuple[str, ...] = ("duckdb", "postgres", "snowflake", "bigquery")


_EXTRAS = {
    "postgres": ("psycopg2", "pgpq"),
    "snowflake": ("snowflake.connector",),
    "bigquery": ("google.cloud.bigquery", "gcsfs"),
}


_CREDENTIALS_FORM = {
    "duckdb": "give the path of the database file (default: taxi_pipeline.duckdb in the working directory)",
    "postgres": "give postgresql://user:password@host:port/database",
    "snowflake": "give snowflake://user:password@account/database?warehouse=…&role=…",
    "bigquery": "give a service account's JSON key, or unset it to use Application Default Credentials",
}


def make_destination(name: str, read_only: bool = False) -> Destination:
    """The dlt destination named `name`; credentials come from dlt config (`DESTINATION__<NAME>__CREDENTIALS`).

    DuckDB defaults to `taxi_pipeline.duckdb` in the working directory when no credentials are configured;
    `read_only`: its file is opened read-only (`status`, `report`), so it may sit in a read-only place.
    """
    if name not in DESTINATIONS:
        raise ConfigError(f"unknown destination {name!r}: choose from {', '.join(DESTINATIONS)}")
    for driver in _EXTRAS.get(name, ()):
        try:
            __import__(driver)
        except ImportError:
            raise ConfigError(f"destination {name} needs its driver: pip install 'taxi-pipeline[{name}]'") from None
    module = _module(name)
    if name == "postgres":
        module.require_adbc_driver()
    configured = _configured_credentials(name)
    if name == "duckdb":
        dest = module.duckdb() if configured is not None else module.duckdb(credentials=DEFAULT_DUCKDB_FILE)
        dest.read_only = read_only
        return dest
    return getattr(module, name)()


def _configured_credentials(name: str) -> Any:
    """The credentials value set for a destination (None: not set); an empty one is a ConfigError.

    An unset variable passed on as `DESTINATION__…__CREDENTIALS=""` must not fall back to a default database,
    nor reach the driver, whose parse error would not say which setting is empty.
    """
    key = f"destination.{name}.credentials"
    value = dlt.secrets.get(key)
    if value is None:
        value = dlt.config.get(key)
    if isinstance(value, str) and not value.strip():
        raise ConfigError(
            f"DESTINATION__{name.upper()}__CREDENTIALS ([destination.{name}] credentials) is empty: "
            + _CREDENTIALS_FORM[name]
            + ", or unset it"
        )
    return value


def _module(name: str) -> ModuleType:
    """The module of destination `name` (`taxi_pipeline.destinations.<name>`), imported when first used."""
    return importlib.import_module(f"{__name__}.{name}")


def number_legacy_rows(pipeline: dlt.Pipeline, table: str, lock: RunLock) -> bool:
    """Give the rows of a trip table loaded before `source_row` their row numbers, once; whether there were any.

    Runs before a month of the table is loaded: dlt would add the column `NOT NULL` to a table holding rows, which
    fails. One look at the information schema when there is nothing to do; else the destination's `number_rows`
    on the table's staging copy (a replacement's rows, kept by dlt's merge), then on the table, whose constraint
    comes last: until it is there, the next run takes the numbering up again. Under the table's staging lock, so
    two runs meeting an old table number it once.
    """
    if row_number_column(pipeline, table) not in (MISSING, NULLABLE):
        return False
    numbered = False
    with lock.staging(table):
        for staging in (True, False):
            state = row_number_column(pipeline, table, staging)  # again: another run may have numbered it meanwhile
            if state in (MISSING, NULLABLE):
                _module(destination_kind(pipeline)).number_rows(pipeline, table, staging, state)
                numbered = True
    return numbered


@contextlib.contextmanager
def run_lock(
    pipeline: dlt.Pipeline, on_wait: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None
) -> Iterator[RunLock]:
    """Hold the destination's lock for the run (DuckDB), or open the month locks' connection (Postgres, Snowflake).

    Each destination's module says how (its `run_lock`); LoadError after `timeout` s of waiting (default
    `taxi_pipeline.lock_timeout`).
    """
    kind = destination_kind(pipeline)
    if kind not in DESTINATIONS:
        yield RunLock()
        return
    with _module(kind).run_lock(pipeline, lock_timeout() if timeout is None else timeout, on_wait) as lock:
        yield lock


@contextlib.contextmanager
def read_lock(
    pipeline: dlt.Pipeline, on_wait: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None
) -> Iterator[None]:
    """Hold the block as a reader of the destination (`status`, `report`): nothing to hold but on DuckDB.

    See `duckdb.read_lock`: a run writing the file is waited for, saying so, up to `timeout` s.
    """
    if destination_kind(pipeline) != "duckdb":
        yield
        return
    with _module("duckdb").read_lock(pipeline, timeout, on_wait):
        yield
