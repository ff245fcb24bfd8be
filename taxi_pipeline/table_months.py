"""A raw table's months in the destination: which have rows, how many, and which recorded months a run trusts.

The month records themselves (what each load was) are in `records`; this module checks them against the rows.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from taxi_pipeline.destinations import counting_is_cheap, destination_kind, month_index_only
from taxi_pipeline.records import month_records
from taxi_pipeline.schemas import SOURCE_MONTH


class TableMonths:
    """A trip table's months in the destination as a run plans with them.

    `loaded`: the state entries it trusts (month → entry); `has_rows(month)`: whether a month has any rows.

    Where counting is cheap (DuckDB, Snowflake: columnar) the requested months are counted and an entry is
    trusted only where the count agrees with it, so rows lost in the destination are loaded again. On Postgres
    a count reads every row of the month (about 10 s for a 7.7M-row month from a cold cache, on every run), so
    an entry is trusted where its month has rows at all (a BRIN index probe): a month that was deleted or never
    landed is loaded again, a month partly deleted by hand is not noticed (`status` shows both counts). Loads
    stay exact either way: each is counted against its file right after it lands.
    """

    def __init__(self, pipeline: dlt.Pipeline, table: str, months: Optional[Sequence[str]]) -> None:
        self.pipeline, self.table = pipeline, table
        entries = month_records(pipeline, table)
        self._counts: Optional[Dict[str, int]] = None
        if counting_is_cheap(pipeline):
            self._counts = month_counts(pipeline, table, months)
            self.loaded = {m: e for m, e in entries.items() if self._counts.get(m, 0) == e.get("rows")}
        else:
            asked = [m for m in entries if months is None or m in months]
            present = months_present(pipeline, table, asked)
            self.loaded = {m: entries[m] for m in asked if m in present}

    def has_rows(self, month: str) -> bool:
        """Whether the destination holds any row of `month` (a new month is appended, not merged)."""
        if self._counts is not None:
            return bool(self._counts.get(month))
        return month in self.loaded or bool(months_present(self.pipeline, self.table, [month]))


def months_present(pipeline: dlt.Pipeline, table: str, months: Sequence[str]) -> Set[str]:
    """Which of `months` have at least one row in a raw trip table (none when there is no table yet).

    Each month is one index probe on Postgres (the BRIN index on `source_month`; sequential scans are ruled out
    for the query, as they would read the whole table to prove a month absent), one row read elsewhere (a month's
    first row, found by the zone maps or clustering).
    """
    if not months:
        return set()
    try:
        with pipeline.sql_client() as client:
            col, qualified = client.escape_column_name(SOURCE_MONTH), client.make_qualified_table_name(table)
            if destination_kind(pipeline) == "postgres":
                sql = f"SELECT m FROM unnest(%s::text[]) AS m WHERE EXISTS (SELECT 1 FROM {qualified} WHERE {col} = m)"
                args: List[Any] = [list(months)]
            else:  # one probe per month, in SQL that every warehouse reads (BigQuery wants a FROM for a WHERE)
                probe = f"SELECT %s AS m FROM (SELECT 1 AS one FROM {qualified} WHERE {col} = %s LIMIT 1) AS probe"
                sql = " UNION ALL ".join([probe] * len(months))
                args = [value for month in months for value in (month, month)]
            with month_index_only(pipeline, client):
                rows = client.execute_sql(sql, *args)
    except DatabaseUndefinedRelation:
        return set()
    return {str(m) for (m,) in rows or []}


def month_counts(pipeline: dlt.Pipeline, table: str, months: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """Rows per `source_month` in a raw trip table, for `months` only when given ({} when no table yet).

    Naming the months keeps a rerun of one month from counting every month ever loaded.
    """
    if months is not None and not months:
        return {}
    try:
        with pipeline.sql_client() as client:
            col = client.escape_column_name(SOURCE_MONTH)
            sql = f"SELECT {col}, COUNT(*) FROM {client.make_qualified_table_name(table)}"
            if months is not None:
                sql += f" WHERE {col} IN ({', '.join(['%s'] * len(months))})"
            rows = client.execute_sql(f"{sql} GROUP BY {col}", *(months or []))
    except DatabaseUndefinedRelation:
        return {}
    return {str(m): int(n) for m, n in rows or []}


def count_rows(pipeline: dlt.Pipeline, table: str, month: Optional[str] = None) -> int:
    """Rows of a raw table, of one `source_month` when given (0 when there is no table yet)."""
    try:
        with pipeline.sql_client() as client:
            sql = f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}"
            if month is None:
                rows = client.execute_sql(sql)
            else:
                sql += f" WHERE {client.escape_column_name(SOURCE_MONTH)} = %s"
                with month_index_only(pipeline, client):
                    rows = client.execute_sql(sql, month)
    except DatabaseUndefinedRelation:
        return 0
    # no result at all: the BigQuery emulator's answer for a table that is not there (BigQuery raises NotFound)
    return int(rows[0][0]) if rows else 0
