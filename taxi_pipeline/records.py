"""Month records: what each loaded month was, one row per month in a table of ours, next to the raw tables.

A record holds the file's fingerprint (ETag, Last-Modified, size), the rows loaded, the file's name and the load
time: what decides whether a month is loaded, unchanged, or republished. dlt keeps one state document per
pipeline, which two writers that each restore it, add their month and store it back can lose an entry of; a row
per month cannot be lost that way. So the records live in `_taxi_months` (in the raw dataset):

- a month appended by our load jobs (DuckDB's Arrow insert, Postgres' binary COPY) is recorded inside the load's
  own transaction: rows and record land together or not at all;
- a replaced month (staging table, then dlt's merge) and a Snowflake month are recorded right after they have
  reconciled, in a transaction of their own. Until then the month's rows are there without their record, so the
  next run replaces the month: never a duplicate.

The zone lookup is recorded the same way, as the month `-` of its table (`zones_record`). Months loaded before the
table existed are still in dlt state: `month_records` and `zones_record` read both, the table winning.

What dbt has built is kept the same way, for the same reason: a row per dbt schema, raw table and month in
`_taxi_dbt_built`, holding the version of the month's record the build read (`built_versions`, `write_built`).
Builds recorded before that table are in dlt state, read the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from taxi_pipeline.helpers import month_record
from taxi_pipeline.remote import Fingerprint
from taxi_pipeline.schemas import ZONES
from taxi_pipeline.state import DBT_BUILT_KEY, ZONES_KEY, month_entries, source_state

ZONES_RECORD = "-"
"""The month the zone lookup's record is kept under (it has no month)."""
RECORDS_TABLE = "_taxi_months"
"""The month records' table, in the raw dataset."""
BUILT_TABLE = "_taxi_dbt_built"
"""What each dbt schema's last successful build read: schema, raw table, month, the month record's version."""
_BUILT_COLUMNS = (
    ("dbt_schema", "varchar(255) NOT NULL"),
    ("table_name", "varchar(64) NOT NULL"),
    ("month", "varchar(7) NOT NULL"),
    ("version", "varchar(64) NOT NULL"),
)

_COLUMNS = (
    ("table_name", "varchar(64) NOT NULL"),
    ("month", "varchar(7) NOT NULL"),
    ("etag", "varchar(1024)"),
    ("last_modified", "varchar(64)"),
    ("size", "bigint"),
    ("row_count", "bigint NOT NULL"),
    ("file_name", "varchar(1024)"),
    ("loaded_at", "varchar(32)"),
)
_ENTRY_KEYS = {"row_count": "rows", "file_name": "file"}
"""Record columns named differently in a month entry (the dict kept in dlt state)."""


def record_statements(client: Any, table: str, month: str, entry: Mapping[str, Any]) -> List[str]:
    """The SQL that creates the records table if needed and makes `entry` the one record of a month.

    `client`: a dlt SQL client of the destination (names and literals are quoted its way); the statements run on
    whatever connection holds the transaction they belong to.
    """
    records = client.make_qualified_table_name(RECORDS_TABLE)
    names = [client.escape_column_name(name) for name, _ in _COLUMNS]
    literal = client.capabilities.escape_literal or _quoted
    values = [table, month] + [entry.get(_ENTRY_KEYS.get(name, name)) for name, _ in _COLUMNS[2:]]
    where = f"{names[0]} = {literal(table)} AND {names[1]} = {literal(month)}"
    return [
        records_table_sql(client),
        f"DELETE FROM {records} WHERE {where}",
        f"INSERT INTO {records} ({', '.join(names)}) VALUES ({', '.join(_literal(literal, v) for v in values)})",
    ]


def records_table_sql(client: Any, table: str = RECORDS_TABLE) -> str:
    """`CREATE TABLE IF NOT EXISTS` of the month records' table (or `BUILT_TABLE`) in the client's dataset."""
    spec = _BUILT_COLUMNS if table == BUILT_TABLE else _COLUMNS
    script = runs_scripts(client)
    columns = ", ".join(
        f"{client.escape_column_name(name)} {type_.replace('varchar', 'STRING') if script else type_}"
        for name, type_ in spec
    )
    return f"CREATE TABLE IF NOT EXISTS {client.make_qualified_table_name(table)} ({columns})"


def runs_scripts(client: Any) -> bool:
    """Whether a transaction on this client is one script (`BEGIN TRANSACTION; …; COMMIT TRANSACTION;`): BigQuery.

    BigQuery keeps a transaction to one script (or a session, which dlt opens but its emulator does not serve), and
    rolls the script's open transaction back when a statement in it fails. It names text `STRING`, not `varchar`.
    """
    return getattr(client.capabilities, "sqlglot_dialect", None) == "bigquery"


def in_one_transaction(client: Any, statements: Sequence[Tuple[str, Tuple[Any, ...]]]) -> None:
    """Run `statements` (SQL, its `%s` arguments) in one transaction of `client`.

    On BigQuery (`runs_scripts`) that is one script; a `CREATE TABLE IF NOT EXISTS` among them runs first, on its
    own, as BigQuery admits no DDL on a permanent table inside a transaction.
    """
    if not runs_scripts(client):
        with client.begin_transaction():
            for sql, args in statements:
                client.execute_sql(sql, *args)
        return
    creates = [(sql, args) for sql, args in statements if sql.lstrip().upper().startswith("CREATE ")]
    for sql, args in creates:
        client.execute_sql(sql, *args)
    literal = client.capabilities.escape_literal or _quoted
    # arguments as literals: query parameters in a script are ignored by the BigQuery emulator
    body = [sql % tuple(_literal(literal, a) for a in args) for sql, args in statements if (sql, args) not in creates]
    client.execute_sql(";\n".join(["BEGIN TRANSACTION", *body, "COMMIT TRANSACTION"]) + ";")


def _quoted(value: str) -> str:
    """A text literal where dlt has no escaping of its own (Snowflake: quotes doubled, backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _literal(escape: Callable[[Any], str], value: Any) -> str:
    return "NULL" if value is None else str(value) if isinstance(value, int) else escape(str(value))


def write_record(pipeline: dlt.Pipeline, table: str, month: str, entry: Mapping[str, Any]) -> None:
    """Record a month that has reconciled, in a transaction of its own."""
    with pipeline.sql_client() as client:
        in_one_transaction(client, [(statement, ()) for statement in record_statements(client, table, month, entry)])


def forget_record(pipeline: dlt.Pipeline, table: str, month: str) -> None:
    """Remove a month's record (a load that did not reconcile), so the next run loads the month again."""
    try:
        with pipeline.sql_client() as client:
            names = [client.escape_column_name(name) for name, _ in _COLUMNS[:2]]
            records = client.make_qualified_table_name(RECORDS_TABLE)
            client.execute_sql(f"DELETE FROM {records} WHERE {names[0]} = %s AND {names[1]} = %s", table, month)
    except DatabaseUndefinedRelation:
        pass


def month_records(pipeline: dlt.Pipeline, table: str) -> Dict[str, Mapping[str, Any]]:
    """A trip table's month records, `YYYY-MM` → entry (as kept in dlt state): the table's over dlt state's."""
    entries: Dict[str, Mapping[str, Any]] = dict(month_entries(pipeline, table))
    entries.update(_read(pipeline, table))
    return entries


def zones_record(pipeline: dlt.Pipeline) -> Optional[Mapping[str, Any]]:
    """The zone lookup's record (as kept in dlt state): the table's over dlt state's; None when never loaded."""
    return _read(pipeline, ZONES.table).get(ZONES_RECORD) or source_state(pipeline).get(ZONES_KEY)


def _read(pipeline: dlt.Pipeline, table: str) -> Dict[str, Mapping[str, Any]]:
    return {str(row[0]): _entry(row[1:]) for row in _rows_keyed(pipeline, RECORDS_TABLE, _COLUMNS, table)}


def _rows_keyed(pipeline: dlt.Pipeline, table: str, spec: Sequence[Tuple[str, str]], key: str) -> List[Any]:
    """The rows of one of our tables (`spec`: its columns) whose first column is `key`, without that column.

    [] when the table is not there yet.
    """
    try:
        with pipeline.sql_client() as client:
            names = [client.escape_column_name(name) for name, _ in spec]
            sql = f"SELECT {', '.join(names[1:])} FROM {client.make_qualified_table_name(table)} WHERE {names[0]} = %s"
            return list(client.execute_sql(sql, key) or [])
    except DatabaseUndefinedRelation:
        return []


def _entry(values: Any) -> Dict[str, Any]:
    entry: Dict[str, Any] = {}
    for (name, _), value in zip(_COLUMNS[2:], values, strict=True):
        if name in ("size", "row_count") and value is not None:
            value = int(value)
        entry[_ENTRY_KEYS.get(name, name)] = value
    return entry


def job_record(manifest: Mapping[str, Any], rows: int) -> Optional[Dict[str, Any]]:
    """The entry a load job records for the month its manifest names (None: not a month, e.g. no fingerprint)."""
    fingerprint = manifest.get("fingerprint")
    if manifest.get("month") is None or fingerprint is None:
        return None
    return month_record(Fingerprint.from_state(fingerprint), rows, manifest["file"])


def built_versions(pipeline: dlt.Pipeline, schema: str) -> Dict[str, Dict[str, str]]:
    """Raw table → month → the version of the month's record that the last successful build into `schema` read.

    The zone lookup is the month `-` of its table. Builds recorded in dlt state (before `_taxi_dbt_built`) are
    read too, the table winning. {} when no build into `schema` is recorded.
    """
    legacy = source_state(pipeline).get(DBT_BUILT_KEY, {}).get(schema, {})
    built: Dict[str, Dict[str, str]] = {}
    for table, versions in legacy.items():  # table → {month: version}; the zone lookup: table → version
        built[table] = dict(versions) if isinstance(versions, dict) else {ZONES_RECORD: str(versions)}
    for table, month, version in _rows_keyed(pipeline, BUILT_TABLE, _BUILT_COLUMNS, schema):
        built.setdefault(str(table), {})[str(month)] = str(version)
    return built


def write_built(pipeline: dlt.Pipeline, schema: str, versions: Mapping[str, Mapping[str, str]]) -> None:
    """Record that a successful build into `schema` read these months' records (raw table → month → version).

    One transaction: each month's row replaced. Runs building into one schema take turns (`locking`), so rows are
    never written for one schema by two runs at once; other schemas have rows of their own.
    """
    rows = [
        (schema, table, month, version) for table, by_month in versions.items() for month, version in by_month.items()
    ]
    if not rows:
        return
    with pipeline.sql_client() as client:
        names = [client.escape_column_name(name) for name, _ in _BUILT_COLUMNS]
        built = client.make_qualified_table_name(BUILT_TABLE)
        statements: List[Tuple[str, Tuple[Any, ...]]] = [(records_table_sql(client, BUILT_TABLE), ())]
        for table, by_month in versions.items():
            months = list(by_month)
            if not months:
                continue
            marks = ", ".join(["%s"] * len(months))
            where = f"{names[0]} = %s AND {names[1]} = %s AND {names[2]} IN ({marks})"
            statements.append((f"DELETE FROM {built} WHERE {where}", (schema, table, *months)))
        values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
        insert = f"INSERT INTO {built} ({', '.join(names)}) VALUES {values}"
        statements.append((insert, tuple(value for row in rows for value in row)))
        in_one_transaction(client, statements)
