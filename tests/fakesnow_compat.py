"""A small compatibility layer so dlt's real Snowflake loader runs on fakesnow (a DuckDB-backed emulator).

Only what dlt sends and fakesnow 0.12 does not understand is adapted; everything else is the real dlt
Snowflake destination and the real fakesnow. Each shim names the gap it closes (numbers as in FACTS.md):

1. dlt connects with a quoted schema (`schema='"TAXI_RAW"'`); fakesnow upper-cases the quotes into the name,
   misses the existing schema and collides on CREATE SCHEMA → strip the quotes at connect.
2. dlt reads `cursor.description` after DDL; fakesnow answers by running `DESCRIBE <ddl>`, which fails → no
   description for statements that cannot be described.
3. dlt's PUT target / COPY source are quoted stage literals `'@"S"."%T"/"<load_id>"/f'`; fakesnow expects a bare
   stage path → unquote them.
4. `FILE_FORMAT = (TYPE = 'PARQUET', BINARY_AS_TEXT = FALSE, …)`: sqlglot turns the commas into
   `SequenceProperties`, which fakesnow's option parser rejects → options separated by spaces, as Snowflake also
   accepts.
5. `MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE'` (quoted) is "not implemented"; unquoted is accepted.
6. dlt loads its own tables (`_dlt_pipeline_state`, `_dlt_loads`, …) from `jsonl`; fakesnow's JSON COPY ignores
   MATCH_BY_COLUMN_NAME and reads one VARIANT column → JSON COPY with match-by-name reads the file with DuckDB's
   `read_json` and inserts by column name.
7. dbt-snowflake's incremental models stage their new rows in `create or replace temporary table DB.SCHEMA.x`;
   DuckDB keeps temporary tables in its own `temp` catalog and refuses the qualified name → a plain table of
   that name (replaced by the next build, as Snowflake's would be at session end).
8. `ALTER SESSION SET LOCK_TIMEOUT = …, STATEMENT_TIMEOUT_IN_SECONDS = …` (the lease sessions' limits,
   taxi_pipeline/destinations/snowflake.py) is "not implemented"; DuckDB never waits for a lock (a conflict fails
   at once), so the statement becomes a no-op.
"""

from __future__ import annotations

import re
from typing import Any

import fakesnow.copy_into as copy_into
import fakesnow.cursor
import fakesnow.instance
from sqlglot import exp

_STAGE_LITERAL = re.compile(r"'(@[^']*)'")
_FILE_FORMAT = re.compile(r"FILE_FORMAT\s*=\s*\(([^)]*)\)", re.IGNORECASE)
_MATCH_QUOTED = re.compile(r"MATCH_BY_COLUMN_NAME\s*=\s*'(\w+)'", re.IGNORECASE)


_TEMPORARY_TABLE = re.compile(r"^(\s*create\s+or\s+replace\s+)temporary\s+(table\s)", re.IGNORECASE)


_SESSION_TIMEOUTS = re.compile(r"^\s*ALTER\s+SESSION\s+SET\s+(LOCK_TIMEOUT|STATEMENT_TIMEOUT_IN_SECONDS)\b", re.I)


def _rewrite(command: str) -> str:
    if _SESSION_TIMEOUTS.match(command):  # 8
        return "SELECT 1"
    command = _TEMPORARY_TABLE.sub(r"\1\2", command)  # 7
    if not command.lstrip().upper().startswith(("PUT", "COPY", "REMOVE")):
        return command
    command = _STAGE_LITERAL.sub(lambda m: m.group(1).replace('"', ""), command)  # 3
    command = _FILE_FORMAT.sub(lambda m: "FILE_FORMAT = (" + m.group(1).replace(",", " ") + ")", command)  # 4
    return _MATCH_QUOTED.sub(r"MATCH_BY_COLUMN_NAME=\1", command)  # 5


class _ReadJSONColumns(copy_into.ReadParquet):
    """6: newline-delimited JSON read as named columns, so fakesnow's parquet match-by-name path applies."""

    def read_expression(self, url: str) -> exp.Expression:
        return exp.func("read_json", self.file_literal(url), self.make_eq("format", "newline_delimited"))


_applied = False


def apply() -> None:
    """Install the shims into fakesnow (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True

    connect = fakesnow.instance.FakeSnow.connect

    def unquoted_connect(self: Any, database: Any = None, schema: Any = None, *args: Any, **kwargs: Any) -> Any:  # 1
        if isinstance(schema, str):
            schema = schema.split(".")[-1].strip('"')  # '"DB"."SCHEMA"' → SCHEMA
        if isinstance(database, str):
            database = database.strip('"')
        return connect(self, database, schema, *args, **kwargs)

    fakesnow.instance.FakeSnow.connect = unquoted_connect  # type: ignore[method-assign]

    cursor_cls = fakesnow.cursor.FakeSnowflakeCursor
    description = cursor_cls.description

    def safe_description(self: Any) -> Any:  # 2
        try:
            return description.fget(self)  # type: ignore[attr-defined]
        except Exception:
            return None

    cursor_cls.description = property(safe_description)  # type: ignore[assignment,method-assign]

    execute = cursor_cls.execute

    def patched_execute(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:  # 3, 4, 5, 7, 8
        return execute(self, _rewrite(command), *args, **kwargs)

    cursor_cls.execute = patched_execute  # type: ignore[method-assign]

    copy_params = copy_into._params

    def json_by_name_params(*args: Any, **kwargs: Any) -> Any:  # 6
        params = copy_params(*args, **kwargs)
        if isinstance(params.file_format, copy_into.ReadJSON) and params.match_by_column_name.value != "NONE":
            params.file_format = _ReadJSONColumns()
        return params

    copy_into._params = json_by_name_params

    column_names = copy_into._get_parquet_column_names

    def json_or_parquet_column_names(url: str, duck_conn: Any) -> list[str]:  # 6
        if ".json" not in url:
            return column_names(url, duck_conn)
        read = _ReadJSONColumns().read_expression(url).sql(dialect="duckdb")
        return [row[0] for row in duck_conn.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()]

    copy_into._get_parquet_column_names = json_or_parquet_column_names
