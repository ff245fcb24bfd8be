"""BigQuery: the destination, its job client (months clustered, a replacement in one transaction) and run lock.

BigQuery's unit of atomicity is a job. What that means for a month:

- **A new month** is appended by dlt's load job(s): each of the month's load files is one job, from the GCS
  bucket (`gs://…` staging, the course's way) or uploaded from the worker (no bucket). A month is one file
  unless it is larger than dlt's file size limit (1 GiB); a month cut short between two files has rows and no
  record, so the next run replaces it, as on the other destinations.
- **A republished month** is loaded into the staging dataset, then dlt's merge (`DELETE` of the month, `INSERT`
  from staging) runs as **one script in one transaction** (`BEGIN TRANSACTION … COMMIT TRANSACTION`): BigQuery
  rolls a script's open transaction back when a statement fails, so the month's old rows stay until the new
  ones commit. dlt runs BigQuery's merge statements without a transaction (`supports_transactions` is unset for
  BigQuery): `AtomicMergeJob` adds it.
- **Trip tables are clustered on `source_month`**, so a month's probe, count and `DELETE` read that month's
  blocks, not the table. (Partitioning needs a DATE or integer column; the month is text, `YYYY-MM`.)

**Runs side by side** take leases (rows of `_taxi_locks`, see `leases`) as on Snowflake: by month, a
replacement's staging table, the zone lookup, and schema changes under the dataset's lease. A lease is taken by
one script in one transaction that first writes the table's guard row; BigQuery aborts one of two transactions
writing a table at once ("concurrent update"), and the aborted run polls again. Inside it an expired lease (or
our own) is deleted and ours inserted only where no live one is left; the run then reads whose lease it is.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, List, Optional, Sequence, Type

import dlt
from dlt.destinations.impl.bigquery.bigquery import BigQueryClient, BigQueryMergeJob
from dlt.destinations.impl.bigquery.bigquery_adapter import CLUSTER_COLUMNS_HINT
from dlt.destinations.impl.bigquery.sql_client import BigQuerySqlClient

from taxi_pipeline.destinations.leases import GUARD, Leases, run_leases, schema_lease
from taxi_pipeline.destinations.locking import RunLock, SchemaChangesLocked
from taxi_pipeline.errors import LoadError
from taxi_pipeline.schemas import SOURCE_MONTH

# google-cloud-bigquery warns on every result it reads without the optional BigQuery Storage client; results here
# are a few rows (counts, records), read over REST
warnings.filterwarnings("ignore", message="Cannot create BigQuery Storage client", category=UserWarning)


class bigquery(dlt.destinations.bigquery):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's BigQuery destination with our job client (`MonthBigQueryClient`)."""

    @property
    def client_class(self) -> Type[Any]:
        """Our job client."""
        return MonthBigQueryClient


class AtomicMergeJob(BigQueryMergeJob):
    """dlt's BigQuery merge (delete-insert from the staging dataset) as one script in one transaction."""

    @classmethod
    def gen_merge_sql(cls, table_chain: Sequence[Any], sql_client: Any) -> List[str]:
        """The merge's statements (dlt's) between `BEGIN TRANSACTION` and `COMMIT TRANSACTION`, run as one script."""
        statements = super().gen_merge_sql(table_chain, sql_client)
        return ["BEGIN TRANSACTION", *statements, "COMMIT TRANSACTION"]


class MonthBigQueryClient(SchemaChangesLocked, BigQueryClient):
    """dlt's BigQuery job client: trip tables clustered on `source_month`, replacements in one transaction.

    Schema changes are made under the dataset's lease (`SchemaChangesLocked`).
    """

    def prepare_load_table(self, table_name: str) -> Any:
        """The table as dlt prepares it; a trip table (it has `source_month`) clustered on it unless told otherwise."""
        table = super().prepare_load_table(table_name)
        if SOURCE_MONTH in table.get("columns", {}) and not table.get(CLUSTER_COLUMNS_HINT):
            table[CLUSTER_COLUMNS_HINT] = [SOURCE_MONTH]  # type: ignore[typeddict-unknown-key]
        return table

    def _create_merge_followup_jobs(self, table_chain: Sequence[Any]) -> List[Any]:
        return [AtomicMergeJob.from_table_chain(table_chain, self.sql_client)]

    def _schema_lock(self) -> contextlib.AbstractContextManager[None]:
        return schema_lease(BigQueryLeases, self._another_sql_client, self.sql_client.dataset_name)

    def _another_sql_client(self) -> BigQuerySqlClient:
        sql, config = self.sql_client, self.config
        return BigQuerySqlClient(
            sql.dataset_name,
            sql.staging_dataset_name,
            config.credentials,
            self.capabilities,
            config.get_location(),
            config.project_id,
            config.http_timeout,
            config.retry_deadline,
        )


class BigQueryLeases(Leases):
    """The run's leases on a BigQuery dataset (see the module's docstring and `leases`)."""

    destination = "bigquery"
    column_types = ("STRING", "TIMESTAMP")
    one_row = " FROM UNNEST([1])"

    def _take(self, key: str) -> bool:
        table, now = self._table, self.now
        guard, key_, owner = (self._client.capabilities.escape_literal(v) for v in (GUARD, key, self.owner))
        self._taking(key)  # before the commit: an interrupt after it still gives the lease back at close
        self._client.execute_sql(  # literals: a script's query parameters are not served by the emulator
            f"BEGIN TRANSACTION;\n"
            f"UPDATE {table} SET {self._expires} = {now} WHERE {self._key} = {guard};\n"
            f"DELETE FROM {table} WHERE {self._key} = {key_}"
            f" AND ({self._owner} = {owner} OR {self._expires} <= {now});\n"
            f"INSERT INTO {table} ({self._key}, {self._owner}, {self._expires})"
            f" SELECT {key_}, {owner}, {self._expiry()}{self.one_row}"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {self._key} = {key_});\n"
            f"COMMIT TRANSACTION;"
        )
        return self._holders(self._client, key) == {self.owner}

    def _expiry(self) -> str:
        return f"TIMESTAMP_ADD({self.now}, INTERVAL {int(self._seconds * 1000)} MILLISECOND)"


def run_lock(
    pipeline: dlt.Pipeline, timeout: float, on_wait: Optional[Callable[[str], None]]
) -> contextlib.AbstractContextManager[RunLock]:
    """The run's leases (`BigQueryLeases`), taken on a connection of its own, given back after."""
    return run_leases(pipeline, BigQueryLeases, timeout, on_wait)


def number_rows(pipeline: dlt.Pipeline, table: str, staging: bool, state: str) -> None:
    """Never needed: every BigQuery trip table was made with `source_row` (the destination came after it)."""
    raise LoadError(
        f"{table} has rows without source_row: it was not made by taxi_pipeline; drop it, or load another dataset"
    )
