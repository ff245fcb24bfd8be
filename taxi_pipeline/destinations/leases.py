"""Leases: a run's month locks as rows of a table of ours, where the warehouse has no advisory locks.

Snowflake and BigQuery have no advisory or session locks. What both do have is a transaction that writes a table
(an `UPDATE` of one row) conflicting with another that writes it at the same moment: Snowflake makes the second
wait until the first commits, BigQuery aborts one of them. So a lease is a row of `_taxi_locks` in the raw
dataset (key, owner, expiry in server time), taken in one short transaction that first writes the table's guard
row: two runs taking a lease never both see it free. Each destination's subclass says how it runs that
transaction (`_take`) and names its SQL (`now`, `_expiry`, column types).

A key another run holds is seen with a plain SELECT first, so waiting runs poll without writing the table.

A lease lasts `taxi_pipeline.lease_seconds` (default 120 s) and is renewed every third of that by a thread on a
connection of its own, so a run that dies (`kill -9`, a lost worker) leaves its months to another run once its
leases expire, with no one to release them. A run that could not renew for two thirds of a lease counts its
leases lost: `check()` stops it before its next month. A lease lost in the middle of a month (a run frozen for
longer than a lease) can let a second run load that month too; the reconciliation after each load counts the
month, finds it doubled, fails it, and the next run replaces it.

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
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple, Type

import dlt
from dlt.common import logger
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from taxi_pipeline.destinations.locking import (
    SCHEMA_LOCK,
    KeyedLock,
    RunLock,
    lock_timeout,
    open_client,
    seconds_setting,
)
from taxi_pipeline.errors import LoadError, one_line

LOCKS_TABLE = "_taxi_locks"
"""The leases' table, in the raw dataset."""


DEFAULT_LEASE_SECONDS = 120.0


POLL_SECONDS = 2.0
"""How often a run waiting for a key looks again (each look is a query on the warehouse)."""


_MAKE_ATTEMPTS = 5


GUARD = "*"
"""The key of the guard row, whose UPDATE takes the leases table's lock while a lease is taken."""


_BUSY = (
    "conflict",
    "has locked table",
    "waiters for this lock",
    "lock wait",
    "lock timeout",
    "timeout",
    "concurrent update",
    "aborted due to concurrent",
)
"""Words of errors that only mean another run's lease transaction was in the way: the key is polled again.

Snowflake aborts a statement that waited for a lock longer than `LOCK_TIMEOUT` or behind too many others
("… number of waiters for this lock exceeds …"); DuckDB under fakesnow reports a write-write "Conflict"; BigQuery
aborts one of two transactions writing one table ("Transaction is aborted due to concurrent update").
"""


class Leases(KeyedLock):
    """The run's leases on a dataset (see the module's docstring); a destination's subclass names its SQL.

    `client`: an open dlt SQL client of the dataset, the leases' own; `open_client` makes another one, for the
    renewing thread. `close()` gives back every lease still held; the caller closes `client`.
    """

    poll_seconds = POLL_SECONDS
    now = "CURRENT_TIMESTAMP()"
    """The server's time, in the destination's SQL."""
    column_types: Tuple[str, str] = ("varchar(512)", "timestamp")
    """The SQL types of the key and owner, and of the expiry."""
    one_row = ""
    """What makes `SELECT … WHERE …` a query of one row (BigQuery needs a FROM for a WHERE)."""
    destination = "the warehouse"
    """The destination's name, in errors."""

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

    # --- what a destination says its own way

    def _take(self, key: str) -> bool:
        """Take `key` in one transaction that writes the guard row first; whether it was free.

        Calls `_taking(key)` before the transaction commits (an interrupt after the commit still gives it back).
        """
        raise NotImplementedError

    def _limit_waits(self, client: Any) -> None:
        """Bound a lease session's lock waits and statements within a lease (where the destination can)."""

    def _expiry(self) -> str:
        """The SQL of the time a lease taken or renewed now expires."""
        raise NotImplementedError

    # --- taking and giving back

    def _try(self, key: str) -> bool:
        self._make_table()
        if self._holders(self._client, key) - {self.owner}:
            return False  # held: seen without writing the table
        try:
            taken = self._take(key)
        except BaseException as exc:
            with self._mutex:
                self._held.pop(key, None)
            if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM: dlt rolls back on errors only
                self._roll_back()
                raise
            if _is_busy(exc):
                return False
            raise
        if not taken:
            with self._mutex:
                self._held.pop(key, None)
            return False
        self._start_renewing()
        return True

    def _taking(self, key: str) -> None:
        with self._mutex:
            self._held[key] = next(self._takes)

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
            raise LoadError(
                f"lost the run lock (the lock connection to {self.destination} dropped): {one_line(exc)}"
            ) from exc
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
            self._client.execute_sql(sql, self.owner, GUARD)

    def _lost_of(self, held: Dict[str, int], ours: Set[str]) -> Set[str]:
        """Keys of `held` (a snapshot taken before `ours` was read) still held by the same take and not live."""
        with self._mutex:
            return {key for key, take in held.items() if self._held.get(key) == take and key not in ours}

    def _roll_back(self) -> None:
        with contextlib.suppress(Exception):
            self._client.rollback_transaction()

    # --- the table

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
        if not client.has_dataset():  # made only where missing: making one needs the privilege even where it exists
            client.create_dataset()
        text, timestamp = self.column_types
        client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {table} ({self._key} {text} NOT NULL,"
            f" {self._owner} {text} NOT NULL, {self._expires} {timestamp} NOT NULL)"
        )
        client.execute_sql(
            f"INSERT INTO {table} ({self._key}, {self._owner}, {self._expires}) SELECT %s, '', {self.now}{self.one_row}"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {self._key} = %s)",
            GUARD,
            GUARD,
        )
        self._made = True

    def _holders(self, client: Any, key: str) -> Set[str]:
        sql = f"SELECT {self._owner} FROM {self._table} WHERE {self._key} = %s AND {self._expires} > {self.now}"
        return {str(row[0]) for row in client.execute_sql(sql, key) or []}

    def _live_keys(self, client: Any) -> Set[str]:
        sql = f"SELECT {self._key} FROM {self._table} WHERE {self._owner} = %s AND {self._expires} > {self.now}"
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
                        GUARD,
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


@contextlib.contextmanager
def run_leases(
    pipeline: dlt.Pipeline, kind: Type[Leases], timeout: float, on_wait: Optional[Callable[[str], None]]
) -> Iterator[RunLock]:
    """The run's leases (of class `kind`), taken on a connection of their own, given back after."""
    client = open_client(pipeline)
    leases = kind(client, pipeline.sql_client, timeout, on_wait)
    try:
        yield leases
    finally:
        leases.close()
        with contextlib.suppress(Exception):
            client.close_connection()


@contextlib.contextmanager
def schema_lease(kind: Type[Leases], new_client: Callable[[], Any], dataset_name: str) -> Iterator[None]:
    """Hold the dataset's schema lease for the block (`locking.SchemaChangesLocked`), on a connection of its own.

    `new_client()` makes a dlt SQL client of the dataset (its lock and statement timeouts are not the load's).
    """
    client = new_client()
    client.open_connection()
    try:
        leases = kind(client, new_client, lock_timeout())
        try:
            with leases.held(SCHEMA_LOCK, f"the schema of {dataset_name}"):
                yield
        finally:
            leases.close()
    finally:
        with contextlib.suppress(Exception):
            client.close_connection()


def _lost_error(lost: Set[str]) -> LoadError:
    return LoadError(f"lost the run lock: the lease of {', '.join(sorted(lost))} expired or was taken over")


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _BUSY)
