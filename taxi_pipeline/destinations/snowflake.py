"""Snowflake: the destination, its job client, and the run's locks: leases, rows of a table of ours.

Leases stand where Postgres has advisory locks.

Snowflake has no advisory or session locks (`SELECT … FOR UPDATE` is for hybrid tables only). What it does have
(docs: Transactions, "Resource locking" and "Read committed isolation"):

- UPDATE, DELETE and MERGE lock their table until their transaction ends, so two of them on one table do not run
  side by side: the second waits;
- each statement sees what was committed before it began.

So a lease is a row of `_taxi_locks` in the raw dataset (key, owner, expiry in server time), taken in one short
transaction:

1. an UPDATE of the table's guard row takes the table's lock: a second run taking a lease waits there until the
   first one commits;
2. a SELECT, begun after that, sees every lease committed before it: a live lease of another owner means the key
   is held (the transaction is rolled back, the run polls again);
3. otherwise the key's expired lease, if any, is deleted, ours inserted, and the transaction commits.

A key another run holds is seen with a plain SELECT first, so waiting runs poll without taking the table's lock.

A lease lasts `taxi_pipeline.lease_seconds` (default 120 s) and is renewed every third of that by a thread on a
connection of its own, so a run that dies (`kill -9`, a lost worker) leaves its months to another run once its
leases expire, with no one to release them. A run that could not renew for two thirds of a lease counts its
leases lost: `check()` stops it before its next month. A lease lost in the middle of a month (a run frozen for
longer than a lease) can let a second run load that month too; the reconciliation after each load counts the
month, finds it doubled, fails it, and the next run replaces it.

The lease connections wait for a table lock at most a sixth of a lease and run a statement at most a third of
one (`LOCK_TIMEOUT`, `STATEMENT_TIMEOUT_IN_SECONDS`; Snowflake's default lock wait is 12 hours): a run killed
inside a lease transaction leaves it open, holding the table's lock, until Snowflake aborts it; meanwhile the
others' statements give up and poll again instead of hanging past their own leases' expiry.

A key's waiting, timeouts and messages are the same as on Postgres (`locking.KeyedLock`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, Optional, Set, Type

import dlt
from dlt.common import logger
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.impl.snowflake.snowflake import SnowflakeClient
from dlt.destinations.impl.snowflake.sql_client import SnowflakeSqlClient

from taxi_pipeline.destinations.common import MISSING, row_numbers_required_sql
from taxi_pipeline.destinations.locking import (
    SCHEMA_LOCK,
    KeyedLock,
    RunLock,
    SchemaChangesLocked,
    lock_timeout,
    open_client,
    seconds_setting,
)
from taxi_pipeline.errors import LoadError, one_line
from taxi_pipeline.schemas import SOURCE_FILE, SOURCE_ROW

LOCKS_TABLE = "_taxi_locks"
"""The leases' table, in the raw dataset."""


DEFAULT_LEASE_SECONDS = 120.0


POLL_SECONDS = 2.0
"""How often a run waiting for a key looks again (each look is a query on the warehouse)."""


_MAKE_ATTEMPTS = 5


_GUARD = "*"
"""The key of the guard row, whose UPDATE takes the leases table's lock while a lease is taken."""


_BUSY = ("conflict", "has locked table", "waiters for this lock", "lock wait", "lock timeout", "timeout")
"""Words of errors that only mean another run's lease transaction was in the way: the key is polled again.

Snowflake aborts a statement that waited for a lock longer than `LOCK_TIMEOUT` or behind too many others
("… number of waiters for this lock exceeds …"); DuckDB under fakesnow reports a write-write "Conflict".
"""


class snowflake(dlt.destinations.snowflake):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's Snowflake destination whose schema changes are made under a lease of the dataset (`SnowflakeLeases`)."""

    @property
    def client_class(self) -> Type[Any]:
        """Our job client."""
        return LeasedSnowflakeClient


class SnowflakeLeases(KeyedLock):
    """The run's leases on a Snowflake dataset (see the module's docstring).

    `client`: an open dlt SQL client of the dataset, the leases' own (its session's lock and statement timeouts
    are set here); `open_client` makes another one, for the renewing thread. `close()` gives back every lease
    still held; the caller closes `client`.
    """

    poll_seconds = POLL_SECONDS

    def __init__(
        self,
        client: Any,
        open_client: Callable[[], Any],
        timeout: float,
        on_wait: Optional[Callable[[str], None]] = None,
        lease_seconds: Optional[float] = None,
    ) -> None:
        super().__init__(timeout, on_wait)
        if lease_seconds is None:
            lease_seconds = seconds_setting("lease_seconds", DEFAULT_LEASE_SECONDS)
        self._client, self._open_client, self._seconds = client, open_client, max(float(lease_seconds), 1.0)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: Dict[str, int] = {}
        """Keys held → the number of the take, so a key given back and taken again is not the one renewed before."""
        self._takes = itertools.count(1)
        self._mutex = threading.Lock()
        self._lost: Optional[LoadError] = None
        self._stopping = threading.Event()
        self._renewer: Optional[threading.Thread] = None
        self._made = False
        names = [client.escape_column_name(n) for n in ("lock_key", "owner", "expires_at")]
        self._key, self._owner, self._expires = names
        self._table = client.make_qualified_table_name(LOCKS_TABLE)
        self._limit_waits(client)

    # --- taking and giving back

    def _try(self, key: str) -> bool:
        self._make_table()
        client, table = self._client, self._table
        if self._holders(client, key) - {self.owner}:
            return False  # held: seen without the table's lock
        try:
            with client.begin_transaction():
                # a real write (a no-op UPDATE may take no lock): waits for another run's lease transaction
                client.execute_sql(f"UPDATE {table} SET {self._expires} = SYSDATE() WHERE {self._key} = %s", _GUARD)
                if self._holders(client, key) - {self.owner}:
                    raise _Held()  # rolls the transaction back
                client.execute_sql(f"DELETE FROM {table} WHERE {self._key} = %s", key)
                client.execute_sql(
                    f"INSERT INTO {table} ({self._key}, {self._owner}, {self._expires})"
                    f" VALUES (%s, %s, {self._expiry()})",
                    key,
                    self.owner,
                )
                with self._mutex:  # before the commit: an interrupt after it still gives the lease back at close
                    self._held[key] = next(self._takes)
        except _Held:
            return False
        except BaseException as exc:
            with self._mutex:
                self._held.pop(key, None)
            if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM: dlt rolls back on errors only
                self._roll_back()
                raise
            if _is_busy(exc):
                return False
            raise
        self._start_renewing()
        return True

    def _release(self, key: str) -> None:
        with self._mutex:
            self._held.pop(key, None)
        try:
            sql = f"DELETE FROM {self._table} WHERE {self._key} = %s AND {self._owner} = %s"
            self._client.execute_sql(sql, key, self.owner)
        except Exception as exc:  # it expires on its own
            logger.warning(f"lease {key} not given back (it expires in {self._seconds:.0f} s): {one_line(exc)}")

    def busy(self, table: str, month: str) -> bool:
        """Whether another run holds a live lease of `table`'s `month` (a look, nothing taken)."""
        try:
            return bool(self._holders(self._client, f"{table}:{month}") - {self.owner})
        except DatabaseUndefinedRelation:
            return False

    def check(self) -> None:
        """Fail if a lease held has been lost: not renewed in time, or taken over after it expired."""
        if self._lost is not None:
            raise self._lost
        with self._mutex:
            held = dict(self._held)
        if not held:
            return
        try:
            ours = self._live_keys(self._client)
        except Exception as exc:
            raise LoadError(f"lost the run lock (the lock connection to snowflake dropped): {one_line(exc)}") from exc
        lost = self._lost_of(held, ours)
        if lost:
            raise _lost_error(lost)

    def close(self) -> None:
        """Stop renewing and give back every lease of this run (one left by an interrupted take too)."""
        self._stopping.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5.0)  # between two renewals: at once
        with self._mutex:
            self._held = {}
        if not self._made:
            return
        self._roll_back()  # a take interrupted inside its transaction
        with contextlib.suppress(Exception):  # they expire on their own
            sql = f"DELETE FROM {self._table} WHERE {self._owner} = %s AND {self._key} <> %s"
            self._client.execute_sql(sql, self.owner, _GUARD)

    def _lost_of(self, held: Dict[str, int], ours: Set[str]) -> Set[str]:
        """Keys of `held` (a snapshot taken before `ours` was read) still held by the same take and not live."""
        with self._mutex:
            return {key for key, take in held.items() if self._held.get(key) == take and key not in ours}

    def _roll_back(self) -> None:
        with contextlib.suppress(Exception):
            self._client.rollback_transaction()

    # --- the table and the sessions

    def _limit_waits(self, client: Any) -> None:
        """Lock waits and statements of a lease session end well within a lease (Snowflake waits 12 h by default)."""
        lock_wait, statement = max(int(self._seconds / 6), 1), max(int(self._seconds / 3), 1)
        client.execute_sql(f"ALTER SESSION SET LOCK_TIMEOUT = {lock_wait}, STATEMENT_TIMEOUT_IN_SECONDS = {statement}")

    def _expiry(self) -> str:
        return f"DATEADD(millisecond, {int(self._seconds * 1000)}, SYSDATE())"

    def _make_table(self) -> None:
        """The leases table and its guard row, where missing (two runs may both add a guard row: harmless).

        Runs that make it at the same moment can trip over each other's DDL on some engines (DuckDB under fakesnow
        reports a catalog conflict): the statements are tried again, `IF NOT EXISTS` finding what the other made.
        """
        for attempt in range(_MAKE_ATTEMPTS):
            try:
                self._make_table_once()
                return
            except Exception:
                if attempt + 1 == _MAKE_ATTEMPTS:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _make_table_once(self) -> None:
        if self._made:
            return
        client, table = self._client, self._table
        if not client.has_dataset():  # CREATE SCHEMA IF NOT EXISTS needs the privilege even where it exists
            client.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {client.fully_qualified_dataset_name()}")
        client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {table} ({self._key} varchar(512) NOT NULL,"
            f" {self._owner} varchar(512) NOT NULL, {self._expires} timestamp_ntz NOT NULL)"
        )
        client.execute_sql(
            f"INSERT INTO {table} ({self._key}, {self._owner}, {self._expires}) SELECT %s, '', SYSDATE()"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {self._key} = %s)",
            _GUARD,
            _GUARD,
        )
        self._made = True

    def _holders(self, client: Any, key: str) -> Set[str]:
        sql = f"SELECT {self._owner} FROM {self._table} WHERE {self._key} = %s AND {self._expires} > SYSDATE()"
        return {str(row[0]) for row in client.execute_sql(sql, key) or []}

    def _live_keys(self, client: Any) -> Set[str]:
        sql = f"SELECT {self._key} FROM {self._table} WHERE {self._owner} = %s AND {self._expires} > SYSDATE()"
        return {str(row[0]) for row in client.execute_sql(sql, self.owner) or []}

    # --- renewing

    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew, name="taxi-pipeline-leases", daemon=True)
            self._renewer.start()

    def _renew(self) -> None:
        """Every third of a lease: push the expiry of every lease held; note a lease lost, or too long unrenewed."""
        client: Any = None
        renewed = time.monotonic()
        try:
            while not self._stopping.wait(self._seconds / 3):
                with self._mutex:
                    held = dict(self._held)  # committed before they were added: renewed below, or lost
                if not held:
                    renewed = time.monotonic()
                    continue
                try:
                    if client is None:
                        client = self._open_client()
                        client.open_connection()
                        self._limit_waits(client)
                    client.execute_sql(
                        f"UPDATE {self._table} SET {self._expires} = {self._expiry()}"
                        f" WHERE {self._owner} = %s AND {self._key} <> %s",
                        self.owner,
                        _GUARD,
                    )
                    ours = self._live_keys(client)
                except Exception as exc:
                    if client is not None:
                        with contextlib.suppress(Exception):
                            client.close_connection()
                    client = None
                    if time.monotonic() - renewed > self._seconds * 2 / 3:  # before the server lets them go
                        why = one_line(exc)
                        self._lost = LoadError(f"lost the run lock: its leases were not renewed in time ({why})")
                    continue
                renewed = time.monotonic()
                lost = self._lost_of(held, ours)
                if lost:
                    self._lost = _lost_error(lost)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close_connection()


def _lost_error(lost: Set[str]) -> LoadError:
    return LoadError(f"lost the run lock: the lease of {', '.join(sorted(lost))} expired or was taken over")


class _Held(Exception):
    """The key is held by another run (raised inside the lease transaction to roll it back)."""


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _BUSY)


class LeasedSnowflakeClient(SchemaChangesLocked, SnowflakeClient):
    """dlt's Snowflake job client, its schema changes made under the dataset's schema lease (`SchemaChangesLocked`).

    The lease is taken on a connection of its own (its lock and statement timeouts are not the load's).
    """

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        client = self._another_sql_client()
        client.open_connection()
        try:
            leases = SnowflakeLeases(client, self._another_sql_client, lock_timeout())
            try:
                with leases.held(SCHEMA_LOCK, f"the schema of {self.sql_client.dataset_name}"):
                    yield
            finally:
                leases.close()
        finally:
            with contextlib.suppress(Exception):
                client.close_connection()

    def _another_sql_client(self) -> SnowflakeSqlClient:
        sql, config = self.sql_client, self.config
        return SnowflakeSqlClient(
            sql.dataset_name, sql.staging_dataset_name, config.credentials, self.capabilities, config.query_tag
        )


@contextlib.contextmanager
def run_lock(pipeline: dlt.Pipeline, timeout: float, on_wait: Optional[Callable[[str], None]]) -> Iterator[RunLock]:
    """The run's leases (`SnowflakeLeases`), taken on a connection of its own, given back after."""
    client = open_client(pipeline)
    leases = SnowflakeLeases(client, pipeline.sql_client, timeout, on_wait)
    try:
        yield leases
    finally:
        leases.close()
        with contextlib.suppress(Exception):
            client.close_connection()


def number_rows(pipeline: dlt.Pipeline, table: str, staging: bool, state: str) -> None:
    """Number the rows of `table` (its staging copy: `staging`) loaded before `source_row`: Snowflake's way.

    See `common.number_rows_sql`. Snowflake has no row id to update rows by: a table without the column (`state`
    `MISSING`) is made again with it (`CREATE OR REPLACE … AS SELECT`, one atomic statement), each file's rows
    numbered 0, 1, … in no particular order; then the column is made `NOT NULL` (all there is left to do for one
    still `NULLABLE`, a numbering cut short between the two statements).
    """
    with pipeline.sql_client() as client, client.with_staging_dataset() if staging else contextlib.nullcontext():
        if state == MISSING:
            qualified = client.make_qualified_table_name(table)
            row, file = client.escape_column_name(SOURCE_ROW), client.escape_column_name(SOURCE_FILE)
            client.execute_sql(
                f"CREATE OR REPLACE TABLE {qualified} AS SELECT *, "
                f"CAST(row_number() OVER (PARTITION BY {file} ORDER BY {file}) - 1 AS BIGINT) AS {row} FROM {qualified}"
            )
        client.execute_sql(row_numbers_required_sql(client, table))
