"""Destination factory: the dlt destination for a name, configured the dlt way (env / `.dlt` files)."""

from __future__ import annotations

from typing import Tuple

import dlt
from dlt.common.destination.reference import Destination

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.settings import DEFAULT_DUCKDB_FILE

DESTINATIONS: Tuple[str, ...] = ("duckdb", "postgres", "snowflake")
_EXTRAS = {"postgres": "psycopg2", "snowflake": "snowflake.connector"}


def make_destination(name: str) -> Destination:
    """The dlt destination named `name`; credentials come from dlt config (`DESTINATION__<NAME>__CREDENTIALS`).

    DuckDB defaults to `taxi_pipeline.duckdb` in the working directory when no credentials are configured.
    """
    if name not in DESTINATIONS:
        raise ConfigError(f"unknown destination {name!r}: choose from {', '.join(DESTINATIONS)}")
    module = _EXTRAS.get(name)
    if module:
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"destination {name} needs its driver: pip install 'taxi-pipeline[{name}]'") from None
    if name == "duckdb":
        if dlt.secrets.get("destination.duckdb.credentials") or dlt.config.get("destination.duckdb.credentials"):
            return dlt.destinations.duckdb()
        return dlt.destinations.duckdb(credentials=DEFAULT_DUCKDB_FILE)
    return Destination.from_reference(name)
