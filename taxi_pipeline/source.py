"""The dlt source: one resource per taxi type plus the zone lookup, incremental by month through dlt state.

Each trip resource keeps, in its resource state, one entry per loaded month: the file's fingerprint (ETag,
Last-Modified, size), its row count, name and load time. dlt stores that state in the destination with the data
(on DuckDB and Postgres the run stores it right after the data, see their `destinations` modules), so a
fresh working directory picks it up again.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.extract.resource import DltResource

from taxi_pipeline.errors import ConfigError, DownloadError
from taxi_pipeline.helpers import (
    LOAD,
    MISSING,
    REPLACE,
    SKIP,
    UNREACHABLE,
    FetchedFile,
    decide,
    plan_months,
    read_remote,
)
from taxi_pipeline.months import Month
from taxi_pipeline.prefetch import Prefetch
from taxi_pipeline.remote import http_client, probe, resolve_base_url, zones_url
from taxi_pipeline.schemas import SOURCE_MONTH, ZONES, parse_taxi_types, trip_schema
from taxi_pipeline.settings import (
    DEFAULT_FILE_FORMAT,
    DEFAULT_START_MONTH,
    DEFAULT_TAXI_TYPES,
    MANIFEST,
    OVERDUE_AFTER_MONTHS,
    PARQUET,
)
from taxi_pipeline.state import MONTHS_KEY, ZONES_KEY


@dlt.source(name="taxi", section="taxi", max_table_nesting=0)
def taxi_source(
    taxi_types: Sequence[str] = DEFAULT_TAXI_TYPES,
    months: Optional[Sequence[str]] = None,
    start_month: str = DEFAULT_START_MONTH,
    file_format: str = DEFAULT_FILE_FORMAT,
    base_url: Optional[str] = None,
    zones: bool = True,
    force: bool = False,
    load_files: Optional[str] = None,
    prefetched: Optional[Prefetch] = None,
    overdue_after_months: int = OVERDUE_AFTER_MONTHS,
    zones_file: Optional[FetchedFile] = None,
) -> List[DltResource]:
    """NYC TLC trip records, one resource per taxi type (`yellow_tripdata`, …) and `taxi_zone_lookup`.

    Args:
        taxi_types: taxi types to load (`yellow`, `green`, `fhv`, `fhvhv`); `sources.taxi.taxi_types`.
        months: explicit `YYYY-MM` months; None walks from `start_month` to the newest published month.
        start_month: first month of an open-ended run; `sources.taxi.start_month`.
        file_format: `parquet` (official TLC layout, the default) or `csv` (DataTalksClub CSV.gz layout).
        base_url: root URL of the layout; defaults to the format's public root. `sources.taxi.base_url`.
        zones: include the `taxi_zone_lookup` resource.
        force: load the given months even when state says they are loaded and unchanged.
        load_files: yield each file as one load file of this format, imported into the load package as it is,
            instead of Arrow tables (None): `parquet`, or `jsonl` for trip months on DuckDB and Postgres through
            our destinations (a manifest its load job parses into an Arrow insert or binary COPY; needs
            `prefetched`, and leaves recording the month in state to the caller, see `destinations.duckdb` and
            `destinations.postgres`); the zone lookup then goes as `parquet`.
        prefetched: a month of the (first) taxi type already being fetched with the same `load_files`, used
            instead of downloading it again (see `prefetch`).
        overdue_after_months: a month this many months old that answers 404 is a wrong `base_url` or
            `file_format` (ConfigError), not "not published yet"; 0 turns that off. `sources.taxi.overdue_after_months`.
        zones_file: the zone lookup already fetched (its load file, if any, written as `load_files` says for it),
            loaded instead of downloading it again.

    Trip rows are merged with delete-insert on `source_month`, so a month is replaced whole.
    """
    root = resolve_base_url(base_url, file_format)
    explicit = [Month.parse(m) for m in months] if months is not None else None
    start = Month.parse(start_month)
    resources = [
        trip_resource(taxi, root, file_format, explicit, start, force, load_files, prefetched, overdue_after_months)
        for taxi in (parse_taxi_types(taxi_types) if taxi_types else [])
    ]
    if zones:
        resources.append(zone_lookup(root, force, zones_load_file(load_files), zones_file))
    return resources


def zones_load_file(load_files: Optional[str]) -> Optional[str]:
    """The load file of the zone lookup in a source whose trip months go as `load_files`.

    265 rows are not worth a manifest's deferred state: as `parquet` to dlt's own job, its state goes with it.
    """
    return PARQUET if load_files == MANIFEST else load_files


def trip_resource(
    taxi: str,
    root: str,
    file_format: str,
    months: Optional[List[Month]],
    start: Month,
    force: bool = False,
    load_files: Optional[str] = None,
    prefetched: Optional[Prefetch] = None,
    overdue_after: int = OVERDUE_AFTER_MONTHS,
) -> DltResource:
    """The raw trip table of one taxi type, as Arrow batches with `source_month` and `source_file` lineage."""
    schema = trip_schema(taxi)

    @dlt.resource(
        name=schema.table,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        merge_key=SOURCE_MONTH,
        columns=schema.dlt_columns(),
    )
    def trips() -> Iterator[Any]:
        loaded: Dict[str, Any] = dlt.current.resource_state().setdefault(MONTHS_KEY, {})
        client = http_client()
        for plan in plan_months(
            client, root, taxi, file_format, months, start, loaded, force=force, overdue_after=overdue_after
        ):
            if plan.action == UNREACHABLE:
                raise DownloadError(plan.detail)
            if plan.action == MISSING:
                raise ConfigError(plan.detail)
            if plan.action in (LOAD, REPLACE):
                record: Dict[str, Any] = {}
                ready = prefetched.result() if prefetched and prefetched.plan.url == plan.url else None
                yield from read_remote(client, plan.url, plan.file_name, schema, plan.month, record, load_files, ready)
                if record:  # empty with manifest load files: the run records the month after the load
                    loaded[plan.month] = record

    return trips


def zone_lookup(
    root: str, force: bool = False, load_files: Optional[str] = None, fetched: Optional[FetchedFile] = None
) -> DltResource:
    """The taxi zone lookup (265 zones), replaced whenever the published file changes.

    `fetched`: its file already fetched (see `taxi_source`).
    """

    @dlt.resource(name=ZONES.table, write_disposition="replace", columns=ZONES.dlt_columns())
    def zones() -> Iterator[Any]:
        state: Dict[str, Any] = dlt.current.source_state()
        client = http_client()
        url = zones_url(root)
        if not force and decide(probe(client, url), state.get(ZONES_KEY)) == SKIP:
            return
        record: Dict[str, Any] = {}
        yield from read_remote(client, url, url.rsplit("/", 1)[-1], ZONES, None, record, load_files, fetched)
        state[ZONES_KEY] = record

    return zones
