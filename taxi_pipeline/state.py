"""The pipeline's state as this package keeps it: month entries, the zone file's entry, what dbt had built.

dlt keeps the state in the destination (`_dlt_pipeline_state`) and restores it into a fresh working folder. Month
entries are kept here only for months loaded without a load job of ours (Snowflake) and for months loaded before
the month records table (`records`, the source of truth now). dbt builds were recorded here before their table
(`records.built_versions`), which still reads them.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import dlt

SOURCE = "taxi"
"""The dlt source's name: its state is `state["sources"]["taxi"]`."""
MONTHS_KEY = "months"
"""Resource-state key of a trip resource: month → {etag, last_modified, size, rows, file, loaded_at}."""
ZONES_KEY = "zone_lookup"
"""Source-state key of the zone file's entry (dlt resets resource state of `replace` resources every run)."""
DBT_BUILT_KEY = "dbt_built"
"""Source-state key, read only (builds recorded before `_taxi_dbt_built`): dbt schema → raw table → month → the
version of its entry the last dbt build read (and `taxi_zone_lookup` → the zone file entry's version)."""


def source_state(pipeline: dlt.Pipeline) -> Dict[str, Any]:
    """A copy of the taxi source's state."""
    return dict(pipeline.state.get("sources", {}).get(SOURCE, {}))


def resource_state(pipeline: dlt.Pipeline, table: str) -> Dict[str, Any]:
    """A copy of one resource's state (a trip table's)."""
    return dict(source_state(pipeline).get("resources", {}).get(table, {}))


def month_entries(pipeline: dlt.Pipeline, table: str) -> Dict[str, Mapping[str, Any]]:
    """A trip table's month entries: month `YYYY-MM` → entry."""
    return dict(resource_state(pipeline, table).get(MONTHS_KEY, {}))
