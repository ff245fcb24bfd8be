"""Snowflake: the destination, its job client, and the run's leases (rows of a table of ours, see `leases`).

Snowflake has no advisory or session locks (`SELECT … FOR UPDATE` is for hybrid tables only). What it does have
(docs: Transactions, "Resource locking" and "Read committed isolation"):

- UPDATE, DELETE and MERGE lock their table until their transaction ends, so two of them on one table do not run
  side by side: the second waits;
- each statement sees what was committed before it began.

So a lease is taken in one short transaction:

1. an UPDATE of the table's guard row takes the table's lock: a second run taking a lease waits there until the
   first one commits;
2. a SELECT, begun after that, sees every lease committed before it: a live lease of another owner means the key
   is held (the transaction is rolled back, the run polls again);
3. otherwise the key's expired lease, if any, is deleted, ours inserted, and the transaction commits.

The lease connections wait for a table lock at most a sixth of a lease and run a statement at most a third of
one (`LOCK_TIMEOUT`, `STATEMENT_TIMEOUT_IN_SECONDS`; Snowflake's default lock wait is 12 hours): a run killed
inside a lease transaction leaves it open, holding the table's lock, until Snowflake aborts it; meanwhile the
others' statements give up and poll again instead of hanging past their own leases' expiry.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Type

import dlt
from dlt.destinations.impl.snowflake.snowflake import SnowflakeClient
from dlt.destinations.impl.snowflake.sql_client import SnowflakeSqlClient

from taxi_pipeline.destinations.common import MISSING, row_numbers_required_sql
from taxi_pipeline.destinations.leases import GUARD, LOCKS_TABLE, Leases, run_leases, schema_lease
from taxi_pipeline.destinations.locking import RunLock, SchemaChangesLocked
from taxi_pipeline.schemas import SOURCE_FILE, SOURCE_ROW

__all__ = ["LOCKS_TABLE", "SnowflakeLeases", "run_lock", "number_rows", "snowflake"]


class snowflake(dlt.destinations.snowflake):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's Snowflake destination whose schema changes are made under a lease of the dataset (`SnowflakeLeases`)."""

    @property
    def client_class(self) -> Type[Any]:
        """Our job client."""
        return LeasedSnowflakeClient


class SnowflakeLeases(Leases):
    """The run's leases on a Snowflake dataset (see the module's docstring and `leases`).

    The lease session's lock and statement timeouts are set on `client` and on the renewing thread's.
    """

    destination = "snowflake"
    now = "SYSDATE()"
    column_types = ("varchar(512)", "timestamp_ntz")

    def _take(self, key: str) -> bool:
        client, table = self._client, self._table
        try:
            with client.begin_transaction():
                # a real write (a no-op UPDATE may take no lock): waits for another run's lease transaction
                client.execute_sql(f"UPDATE {table} SET {self._expires} = SYSDATE() WHERE {self._key} = %s", GUARD)
                if self._holders(client, key) - {self.owner}:
                    raise _Held()  # rolls the transaction back
                client.execute_sql(f"DELETE FROM {table} WHERE {self._key} = %s", key)
                client.execute_sql(
                    f"INSERT INTO {table} ({self._key}, {self._owner}, {self._expires})"
                    f" VALUES (%s, %s, {self._expiry()})",
                    key,
                    self.owner,
                )
                self._taking(key)  # before the commit: an interrupt after it still gives the lease back at close
        except _Held:
            return False
        return True

    def _limit_waits(self, client: Any) -> None:
        """Lock waits and statements of a lease session end well within a lease (Snowflake waits 12 h by default)."""
        lock_wait, statement = max(int(self._seconds / 6), 1), max(int(self._seconds / 3), 1)
        client.execute_sql(f"ALTER SESSION SET LOCK_TIMEOUT = {lock_wait}, STATEMENT_TIMEOUT_IN_SECONDS = {statement}")

    def _expiry(self) -> str:
        return f"DATEADD(millisecond, {int(self._seconds * 1000)}, SYSDATE())"


class _Held(Exception):
    """The key is held by another run (raised inside the lease transaction to roll it back)."""


class LeasedSnowflakeClient(SchemaChangesLocked, SnowflakeClient):
    """dlt's Snowflake job client, its schema changes made under the dataset's schema lease (`SchemaChangesLocked`).

    The lease is taken on a connection of its own (its lock and statement timeouts are not the load's).
    """

    def _schema_lock(self) -> contextlib.AbstractContextManager[None]:
        return schema_lease(SnowflakeLeases, self._another_sql_client, self.sql_client.dataset_name)

    def _another_sql_client(self) -> SnowflakeSqlClient:
        sql, config = self.sql_client, self.config
        return SnowflakeSqlClient(
            sql.dataset_name, sql.staging_dataset_name, config.credentials, self.capabilities, config.query_tag
        )


def run_lock(
    pipeline: dlt.Pipeline, timeout: float, on_wait: Optional[Callable[[str], None]]
) -> contextlib.AbstractContextManager[RunLock]:
    """The run's leases (`SnowflakeLeases`), taken on a connection of its own, given back after."""
    return run_leases(pipeline, SnowflakeLeases, timeout, on_wait)


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
