"""Destination factory: the dlt destination for a name, configured the dlt way (env / `.dlt` files)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Optional, Tuple, Type

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.reference import Destination
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

from taxi_pipeline.errors import ConfigError, find_cause, one_line
from taxi_pipeline.months import Month
from taxi_pipeline.schemas import SOURCE_MONTH
from taxi_pipeline.settings import DEFAULT_DUCKDB_FILE, DUCKDB_LOAD_SETTINGS, MANIFEST, duckdb_memory_limit

DESTINATIONS: Tuple[str, ...] = ("duckdb", "postgres", "snowflake")
_EXTRAS = {"postgres": ("psycopg2", "pgpq"), "snowflake": ("snowflake.connector",)}
_CREDENTIALS_FORM = {
    "duckdb": "give the path of the database file (default: taxi_pipeline.duckdb in the working directory)",
    "postgres": "give postgresql://user:password@host:port/database",
    "snowflake": "give snowflake://user:password@account/database?warehouse=…&role=…",
}


def make_destination(name: str, read_only: bool = False) -> Destination:
    """The dlt destination named `name`; credentials come from dlt config (`DESTINATION__<NAME>__CREDENTIALS`).

    DuckDB defaults to `taxi_pipeline.duckdb` in the working directory when no credentials are configured;
    `read_only`: its file is opened read-only (`status`, `report`), so it may sit in a read-only place.
    """
    if name not in DESTINATIONS:
        raise ConfigError(f"unknown destination {name!r}: choose from {', '.join(DESTINATIONS)}")
    for module in _EXTRAS.get(name, ()):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"destination {name} needs its driver: pip install 'taxi-pipeline[{name}]'") from None
    if name == "postgres":
        require_adbc_driver()
    configured = _configured_credentials(name)
    if name == "postgres":
        return postgres()
    if name == "duckdb":
        dest = duckdb() if configured is not None else duckdb(credentials=DEFAULT_DUCKDB_FILE)
        dest.read_only = read_only
        return dest
    return snowflake()


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


class _CatalogQualifiedSqlClient(DuckDbSqlClient):
    """DuckDB SQL that names every table `catalog.schema.table`, dlt's statements and ours alike.

    DuckDB names a file's catalog after the file (`taxi_raw.duckdb` → catalog `taxi_raw`), and `taxi_raw.t` is then
    ambiguous between that catalog and the schema `taxi_raw` ("Ambiguous reference to catalog or schema"). dlt
    leaves the catalog out of its names; with it, no file name can clash with a dataset or dbt schema name. The
    catalog is asked of the connection itself (DuckDB's naming rule stays DuckDB's).
    """

    _catalog: Optional[str] = None
    _opening = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The client, its connections opened with our load settings (`DUCKDB_LOAD_SETTINGS`) where needed.

        A setting in the credentials' `global_config` wins. Without them DuckDB keeps the blocks it writes cached
        up to 80 % of RAM, so a run's memory would grow with the month (`settings.duckdb_memory_limit`), and it
        inserts a month in file order, on one thread for the final write.
        """
        super().__init__(*args, **kwargs)
        configured = getattr(self.credentials, "global_config", None) or {}
        threads = int(configured.get("threads") or os.cpu_count() or 1)  # DuckDB's default: one per core
        defaults = {**DUCKDB_LOAD_SETTINGS, "memory_limit": duckdb_memory_limit(threads)}
        ours = {k: v for k, v in defaults.items() if k not in configured}
        self._global_config = {**ours, **self._global_config}

    def open_connection(self) -> Any:
        """Open as dlt does; it names the search path while opening, unqualified there as before."""
        self._opening = True
        try:
            return super().open_connection()
        finally:
            self._opening = False

    def catalog_name(self, quote: bool = True, casefold: bool = True) -> Optional[str]:
        """The database's catalog, asked of the connection once.

        One is opened for it if none is: dlt writes the SQL of merge jobs with a client that is not connected.
        """
        if self._catalog is None and not self._opening:
            with self if self._conn is None else contextlib.nullcontext():
                self._catalog = str(self._conn.execute("SELECT current_database()").fetchone()[0])
        if self._catalog is None or not quote:
            return self._catalog
        return self.capabilities.escape_identifier(self._catalog)


class _DuckDbClient(DuckDbClient):
    """dlt's DuckDB job client with catalog-qualified names (see `_CatalogQualifiedSqlClient`).

    A `jsonl` file (our manifest) is loaded by `duckdb_insert.ArrowInsertJob`.
    """

    def __init__(self, schema: Any, config: Any, capabilities: Any) -> None:
        super().__init__(schema, config, capabilities)
        sql = self.sql_client
        self.sql_client = _CatalogQualifiedSqlClient(
            sql.dataset_name, sql.staging_dataset_name, config.credentials, capabilities
        )

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> Any:
        """`ArrowInsertJob` for a manifest, dlt's jobs for everything else (state, the zone lookup)."""
        if file_path.endswith(f".{MANIFEST}"):
            from taxi_pipeline.duckdb_insert import ArrowInsertJob  # imports the readers: only runs that load

            return ArrowInsertJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)


class duckdb(dlt.destinations.duckdb):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's DuckDB destination whose statements name the catalog, so a file named like a schema still works."""

    read_only = False
    """Open the file read-only (DuckDB's `read_only`): nothing is written there, not even a WAL beside it."""

    @property
    def client_class(self) -> Type[DuckDbClient]:
        """Our job client."""
        return _DuckDbClient

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        """The resolved configuration (dlt's), its credentials read-only where this destination is `read_only`."""
        config = super().configuration(initial_config, accept_partial)
        if self.read_only and config.credentials is not None:
            config.credentials.read_only = True
        return config


def require_adbc_driver() -> None:
    """ConfigError naming the install command when the ADBC PostgreSQL driver is missing or does not load."""
    from dlt.destinations._adbc_jobs import has_adbc_driver
    from dlt.destinations.impl.postgres.factory import get_adbc_driver_location

    found, why = has_adbc_driver(get_adbc_driver_location(), disable_adbc_detection=False)
    if not found:
        raise ConfigError(
            "destination postgres loads through binary COPY and needs the ADBC PostgreSQL driver: "
            f"pip install 'taxi-pipeline[postgres]' ({one_line(Exception(why or 'not found'))})"
        )


class postgres(dlt.destinations.postgres):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's Postgres destination that also loads `jsonl` files: our manifests, by binary COPY (`binary_copy`)."""

    def _raw_capabilities(self) -> Any:
        caps = super()._raw_capabilities()
        caps.supported_loader_file_formats = [*caps.supported_loader_file_formats, MANIFEST]
        return caps

    @property
    def client_class(self) -> Type[Any]:
        """Our job client (imported here: it needs psycopg2, which DuckDB-only installs lack)."""
        from taxi_pipeline.binary_copy import BinaryCopyClient

        return BinaryCopyClient


class snowflake(dlt.destinations.snowflake):  # noqa: N801 - dlt takes the destination's name from the class name
    """dlt's Snowflake destination whose schema changes are made under a lease of the dataset (`leases`)."""

    @property
    def client_class(self) -> Type[Any]:
        """Our job client (imported here: it needs the Snowflake connector, which other installs lack)."""
        from taxi_pipeline.leases import LeasedSnowflakeClient

        return LeasedSnowflakeClient


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
    on Postgres (`binary_copy`), an Arrow insert on DuckDB (`duckdb_insert`). None (Snowflake) leaves Arrow
    tables to dlt's own parquet writer.
    """
    return MANIFEST if destination_kind(pipeline) in ("postgres", "duckdb") else None


def counting_is_cheap(pipeline: dlt.Pipeline) -> bool:
    """Whether counting a month's rows is cheap: DuckDB and Snowflake (columnar), not Postgres (reads each row)."""
    return destination_kind(pipeline) != "postgres"


def destination_kind(pipeline: dlt.Pipeline) -> str:
    """`duckdb`, `postgres` or `snowflake` for a pipeline's destination."""
    return pipeline.destination.destination_type.rsplit(".", 1)[-1]


def destination_error(pipeline: dlt.Pipeline, exc: BaseException) -> ConfigError:
    """A one-line ConfigError naming the credentials setting of the pipeline's destination."""
    kind = destination_kind(pipeline)
    setting_name = f"DESTINATION__{kind.upper()}__CREDENTIALS"
    if find_cause(exc, ConfigFieldMissingException):
        return ConfigError(
            f"no credentials for the {kind} destination: set {setting_name} or [destination.{kind}] credentials "
            "in .dlt/secrets.toml"
        )
    return ConfigError(f"cannot open the {kind} destination (check {setting_name}): {one_line(exc)}")
