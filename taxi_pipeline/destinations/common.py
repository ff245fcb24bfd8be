"""What every destination shares: first contact and its errors, the month index and month SQL, kinds.

The month SQL is written once for all (each client quotes it its own way); what is one destination's own lives
in its module beside this one.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, List, Optional

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.reference import Destination

from taxi_pipeline.errors import ConfigError, find_cause, one_line
from taxi_pipeline.months import Month
from taxi_pipeline.schemas import SOURCE_FILE, SOURCE_MONTH, SOURCE_ROW
from taxi_pipeline.settings import MANIFEST


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Connect to the destination once; a failure is configuration to fix (exit 2) naming the setting."""
    try:
        with pipeline.sql_client() as client:
            client.execute_sql("SELECT 1")
    except Exception as exc:
        raise destination_error(pipeline, exc) from exc


def destination_location(dest: Destination) -> str:
    """Where a destination writes: the DuckDB file's real path, or host:port/database ("" when not configured)."""
    try:
        credentials = dest.configuration(dest.spec(), accept_partial=True).credentials
    except Exception:  # unreadable config surfaces later, with the setting named, at first contact
        return ""
    if dest.destination_name == "duckdb":
        database = getattr(credentials, "database", None) or str(credentials or "")
        return os.path.realpath(database) if database else ""
    parts = [getattr(credentials, name, None) for name in ("host", "port", "database")]
    return "/".join(str(p) for p in parts if p is not None)


def summarize_month_index(pipeline: dlt.Pipeline, table: str, column: str) -> None:
    """Postgres, before a month is loaded: the trip table's BRIN month index covers every row already there.

    A load leaves its page ranges unsummarized, as Postgres does: VACUUM (autovacuum, after a big insert)
    summarizes them in the background, setting the rows' hint bits in the same pass, so the load itself does not
    read the month a second time. Until then a month probe or a replacement's DELETE would read those ranges too,
    so the next load summarizes what autovacuum has not (nothing, usually, on a monthly schedule; the previous
    month in a backfill). The binary COPY job makes the index on the table still empty; a table first loaded
    without it gets it here.
    """
    if destination_kind(pipeline) != "postgres":
        return
    with pipeline.sql_client() as client:
        index = month_index_regclass(client, table, column)
        exists = "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL"
        has_table, has_index = client.execute_sql(exists, client.make_qualified_table_name(table), index)[0]
        if not has_table:
            return
        if not has_index:
            client.execute_sql(month_index_sql(client, table, column))
        client.execute_sql("SELECT brin_summarize_new_values(%s::regclass)", index)


MISSING, NULLABLE, NUMBERED = "missing", "nullable", "numbered"
"""The states of a trip table's `source_row` column (`row_number_column`)."""


def row_number_column(pipeline: dlt.Pipeline, table: str, staging: bool = False) -> Optional[str]:
    """The state of a trip table's `source_row` (of its staging copy: `staging`); None when there is no table.

    `MISSING`: rows loaded before the column existed. `NULLABLE`: added, maybe numbered, not yet `NOT NULL` (a
    numbering cut short, taken up again). `NUMBERED`: `NOT NULL`, as a table this version creates has it from the
    start. One look at the information schema.
    """
    with pipeline.destination_client() as client:
        with client.with_staging_dataset() if staging else contextlib.nullcontext():  # type: ignore[attr-defined]
            exists, columns = client.get_storage_table(table)  # type: ignore[attr-defined]
    if not exists:
        return None
    column = next((c for name, c in columns.items() if name.lower() == SOURCE_ROW), None)
    if column is None:
        return MISSING
    return NULLABLE if column.get("nullable", True) else NUMBERED


def number_rows_sql(client: Any, table: str, row_id: str) -> List[str]:
    """The statements that number a trip table's rows loaded before `source_row`: add the column, then number them.

    Each file's rows are numbered 0, 1, … in `row_id` order (DuckDB's `rowid`, Postgres' `ctid`): the order they
    are stored in, which is the file's on DuckDB (one insert per month, insertion order kept) and usually but not
    surely on Postgres. The numbers are stored, so they never change after; a reloaded month gets its file's.
    Rows already numbered are left as they are, so the statements can run again after one was cut short.
    """
    qualified = client.make_qualified_table_name(table)
    row, file = client.escape_column_name(SOURCE_ROW), client.escape_column_name(SOURCE_FILE)
    return [
        f"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {row} BIGINT",
        f"UPDATE {qualified} AS raw SET {row} = numbered.n FROM ("
        f"SELECT {row_id} AS id, row_number() OVER (PARTITION BY {file} ORDER BY {row_id}) - 1 AS n "
        f"FROM {qualified} WHERE {row} IS NULL) AS numbered WHERE raw.{row_id} = numbered.id",
    ]


def row_numbers_required_sql(client: Any, table: str) -> str:
    """`ALTER TABLE … SET NOT NULL` of `source_row`: the last step of a numbering (see `row_number_column`)."""
    qualified = client.make_qualified_table_name(table)
    return f"ALTER TABLE {qualified} ALTER COLUMN {client.escape_column_name(SOURCE_ROW)} SET NOT NULL"


MONTH_INDEX_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL jit = off"
"""Postgres, first in the transaction of statements that select months of a trip table: they read the month
index's ranges, never the whole table.

Until autovacuum has analyzed a table (a backfill's next month, a month replaced right after its load) the planner
has no statistics and takes a month's rows to be everywhere: it would read every loaded month to prove a new one
absent, or to count or delete a replaced one. `jit` off: the cost that rules sequential scans out would otherwise
have each of these statements compiled.
"""


@contextlib.contextmanager
def month_index_only(pipeline: dlt.Pipeline, client: Any) -> Iterator[None]:
    """Postgres: the block in a transaction of `client` that begins with `MONTH_INDEX_ONLY`.

    Elsewhere the block as it is: DuckDB's and Snowflake's zone maps prune by themselves.
    """
    if destination_kind(pipeline) != "postgres":
        yield
        return
    with client.begin_transaction():
        client.execute_sql(MONTH_INDEX_ONLY)
        yield


def month_index_sql(client: Any, table: str, column: str) -> str:
    """`CREATE INDEX IF NOT EXISTS` of the BRIN index on a trip table's month column.

    Months arrive in order and whole, so a block-range index (a few pages, nearly free to maintain) lets a
    rerun probe a month and a replacement's DELETE read only that month's blocks instead of the whole table.
    DuckDB and Snowflake prune by their own min/max zone maps.
    """
    name = client.escape_column_name(month_index_name(table, column))
    qualified = client.make_qualified_table_name(table)
    return f"CREATE INDEX IF NOT EXISTS {name} ON {qualified} USING brin ({client.escape_column_name(column)})"


def month_filter(client: Any, month: str) -> str:
    """The SQL condition that selects one month of a trip table (`source_month = 'YYYY-MM'`, the month validated)."""
    return f"{client.escape_column_name(SOURCE_MONTH)} = '{Month.parse(month)}'"


def month_probe_sql(client: Any, table: str, month: str) -> str:
    """Whether the qualified `table` holds any row of `month`: one row, one boolean (an index or zone-map probe)."""
    return f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {month_filter(client, month)})"


def month_index_name(table: str, column: str) -> str:
    """The name of a trip table's BRIN month index."""
    return f"{table}_{column}_brin"


def month_index_regclass(client: Any, table: str, column: str) -> str:
    """The month index's name qualified by the client's dataset, as `regclass` takes it."""
    return f"{client.fully_qualified_dataset_name()}.{client.escape_column_name(month_index_name(table, column))}"


def import_file_format(pipeline: dlt.Pipeline) -> Optional[str]:
    """The load file the source writes itself for a destination's trip months (see `load_files`).

    `jsonl`, a manifest of the downloaded file, parsed by the load job as the destination ingests it: binary COPY
    on Postgres (`postgres.BinaryCopyJob`), one insert on DuckDB (`duckdb_insert.MonthInsertJob`). None
    (Snowflake) leaves Arrow tables to dlt's own parquet writer.
    """
    return MANIFEST if destination_kind(pipeline) in ("postgres", "duckdb") else None


def counting_is_cheap(pipeline: dlt.Pipeline) -> bool:
    """Whether counting a month's rows is cheap: DuckDB and Snowflake (columnar), not Postgres (reads each row)."""
    return destination_kind(pipeline) != "postgres"


def destination_kind(pipeline: dlt.Pipeline) -> str:
    """`duckdb`, `postgres` or `snowflake` for a pipeline's destination."""
    return pipeline.destination.destination_type.rsplit(".", 1)[-1]


_DEFAULT_CREDENTIALS = {
    "bigquery": ", or Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS=key.json, or gcloud auth "
    "application-default login)"
}
"""Where a destination's client library finds credentials by itself, said after the setting."""


def destination_error(pipeline: dlt.Pipeline, exc: BaseException) -> ConfigError:
    """A one-line ConfigError naming the credentials setting of the pipeline's destination."""
    kind = destination_kind(pipeline)
    setting_name = f"DESTINATION__{kind.upper()}__CREDENTIALS"
    if find_cause(exc, ConfigFieldMissingException):
        default = _DEFAULT_CREDENTIALS.get(kind, "")
        return ConfigError(
            f"no credentials for the {kind} destination: set {setting_name} or [destination.{kind}] credentials "
            f"in .dlt/secrets.toml{default}"
        )
    return ConfigError(f"cannot open the {kind} destination (check {setting_name}): {one_line(exc)}")
