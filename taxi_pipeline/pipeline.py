"""The library API of a run: `run` (load months, then dbt), `status`, `build_models`.

A month file is the unit of work (see `loading`); this module takes the settings, opens the destination under
its run lock (`opening`), spreads months over worker processes where the destination allows (`workers`), and
hands the loaded months to dbt (`transform`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, TextIO, Tuple

from dlt.common.runtime.collector import Collector

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.interrupts import remove_dead_scratch_folders
from taxi_pipeline.loading import load_months
from taxi_pipeline.months import Month, resolve_months
from taxi_pipeline.opening import make_pipeline, opened, reading, require_database, setting
from taxi_pipeline.records import month_records, zones_record
from taxi_pipeline.remote import Fingerprint, resolve_base_url
from taxi_pipeline.results import FAILED, LOADED, REPLACED, SKIPPED, MonthResult, RunResult
from taxi_pipeline.schemas import TRIP_SCHEMAS, ZONES, parse_taxi_types, trip_schema
from taxi_pipeline.settings import DEFAULT_FILE_FORMAT, DEFAULT_START_MONTH, DEFAULT_TAXI_TYPES, OVERDUE_AFTER_MONTHS
from taxi_pipeline.table_months import count_rows, month_counts
from taxi_pipeline.transform import DbtResult, build_changed, dbt_schema, require_dbt

__all__ = [
    "FAILED",
    "LOADED",
    "REPLACED",
    "SKIPPED",
    "LoadedMonth",
    "MonthResult",
    "RunResult",
    "build_models",
    "make_pipeline",
    "reading",
    "require_database",
    "run",
    "setting",
    "status",
    "worker_count",
]

ONE_WRITER = {"duckdb": "a DuckDB file takes one writer"}
"""Why a destination loads one month at a time, whatever `workers` says."""


def run(
    destination: str = "duckdb",
    taxi_types: Optional[Sequence[str] | str] = None,
    month: Optional[str] = None,
    start: Optional[str] = None,
    end: Optional[str] = None,
    file_format: Optional[str] = None,
    base_url: Optional[str] = None,
    on_result: Optional[Callable[[MonthResult], None]] = None,
    on_notice: Optional[Callable[[str], None]] = None,
    today: Optional[dt.date] = None,
    dbt: bool = False,
    progress: Optional[Collector] = None,
    dbt_output: Optional[TextIO] = None,
    workers: Optional[int] = None,
) -> RunResult:
    """Load the zone lookup and the requested trip months into `destination`, each month atomically.

    Months: `month`, or `start`..`end` inclusive, or (neither) every month from `start` (default
    `sources.taxi.start_month`) up to the newest published one, skipping months already loaded. Unset options
    come from dlt config (`sources.taxi.*`). Raises ConfigError for bad input or a destination that cannot be
    opened; failed months are reported in the result (and through `on_result` as they happen), the others still
    load. Runs on one destination dataset are serialized; `on_notice` hears when this one has to wait.
    With `dbt`, `dbt build` runs against the destination after every month loaded (not after a failed load).
    `progress`: a dlt collector hearing each file's bytes and rows (`taxi_pipeline.progress.MonthProgress`);
    `dbt_output`: where dbt's log goes (default: stdout). `workers` (default `sources.taxi.workers`, 1): months
    loaded at a time, each by a process of its own (`taxi_pipeline.workers`), where runs can load side by side
    (Postgres, Snowflake); DuckDB loads one month at a time, and says so.
    """
    if dbt:
        require_dbt()  # before anything is loaded: a missing extra is configuration to fix, not a failed load
    try:
        # an empty --taxi (an unset shell variable) is an error, not the configured default
        taxis = parse_taxi_types(setting("taxi_types", DEFAULT_TAXI_TYPES) if taxi_types is None else taxi_types)
        months, first = resolve_months(month, start, end, setting("start_month", DEFAULT_START_MONTH))
        fmt = (file_format or setting("file_format", DEFAULT_FILE_FORMAT)).lower()
        root = resolve_base_url(setting("base_url", None) if base_url is None else base_url, fmt)
        overdue_after = _whole_number("overdue_after_months", setting("overdue_after_months", OVERDUE_AFTER_MONTHS))
        workers = worker_count(setting("workers", 1) if workers is None else workers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    current = Month.of(today or dt.date.today())
    if months is None and first > current and on_notice:
        on_notice(f"start month {first} is after the current month {current}: no month to load yet")

    with opened(destination, on_notice, progress) as (pipeline, lock):
        if pipeline.has_pending_data:
            # a package left by a killed run: discard it (and the state it carried); the month counts tell the rest
            pipeline.abort_packages()
        remove_dead_scratch_folders()  # downloads left by a killed run of this package (`interrupts`)
        if workers > 1 and not lock.shared:
            if on_notice:
                why = ONE_WRITER.get(destination, "its runs do not load side by side")
                on_notice(f"{destination} loads one month at a time (--workers {workers} runs as 1): {why}")
            workers = 1
        pool = None
        if workers > 1:
            from taxi_pipeline.workers import Work, Workers  # only runs that spread their months need it

            pool = Workers(
                workers, Work(destination, first, fmt, root, today, overdue_after), on_result, on_notice, progress
            )
        with pool or contextlib.nullcontext():
            result = load_months(
                pipeline,
                lock,
                taxis,
                months,
                first,
                fmt,
                root,
                pool.report if pool else on_result,
                on_notice,
                today,
                overdue_after,
                dispatch=pool.dispatch if pool else None,
            )
            if pool:
                result.results.extend(pool.wait())
                result.results.sort(key=_result_order(taxis))
        if dbt and not result.ok:
            if on_notice:
                on_notice("dbt build skipped: the load failed")
        elif dbt:
            with lock.dbt_build(dbt_schema()):  # one build into a schema at a time, whichever run makes it
                # months loaded without dbt, or left by a failed build, are taken as well as this run's; none: skipped
                result.dbt = build_changed(pipeline, output=dbt_output, on_notice=on_notice)
        return result


def worker_count(value: Any) -> int:
    """A number of workers (`--workers`, `sources.taxi.workers`): a whole number ≥ 1, else ValueError."""
    return _whole_number("workers", value, least=1, expected="a whole number ≥ 1 (--workers)")


def _result_order(taxis: Sequence[str]) -> Callable[[MonthResult], Tuple[int, int, Month]]:
    """Results in the order a run on one worker reports them: the zone lookup, then each taxi type's months."""
    tables = {trip_schema(taxi).table: i for i, taxi in enumerate(taxis)}

    def key(res: MonthResult) -> Tuple[int, int, Month]:
        if res.month is None:
            return (0, 0, Month(0, 1))
        return (1, tables.get(res.table, len(tables)), Month.parse(res.month))

    return key


def _whole_number(
    key: str, value: Any, least: int = 0, expected: str = "a whole number of months (0 turns it off)"
) -> int:
    """A `sources.taxi.<key>` setting that counts: an int ≥ `least` (dlt passes env values as text)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or number < least:
        raise ValueError(f"bad sources.taxi.{key} {value!r}: expected {expected}")
    return number


def build_models(
    destination: str = "duckdb",
    on_notice: Optional[Callable[[str], None]] = None,
    full_refresh: bool = False,
    output: Optional[TextIO] = None,
) -> Optional[DbtResult]:
    """`dbt build` on a destination without loading anything (under the same run lock as a load).

    Builds the months loaded or replaced since the last successful build, or every month with `full_refresh`;
    nothing changed: no build, None and a note, as `--dbt` after a load decides (`transform.build_changed`).
    Raises ConfigError when dbt is missing or no trip month is loaded there (dbt would only fail its tests).
    """
    require_dbt("the dbt command")
    require_database(destination)
    with opened(destination, on_notice) as (pipeline, lock):
        if not any(month_records(pipeline, s.table) for s in TRIP_SCHEMAS.values()):
            raise ConfigError(f"nothing is loaded into {destination} yet: load some months first, then run dbt")
        with lock.dbt_build(dbt_schema()):
            return build_changed(pipeline, output=output, full_refresh=full_refresh, on_notice=on_notice)


@dataclass
class LoadedMonth:
    """One loaded file as `status` reports it."""

    table: str
    month: Optional[str]
    rows: Optional[int]
    rows_in_destination: int
    fingerprint: str
    loaded_at: Optional[str]


def status(destination: str = "duckdb", on_notice: Optional[Callable[[str], None]] = None) -> List[LoadedMonth]:
    """What is loaded where: every month in state (restored from the destination) with its destination count.

    Read as `reading` reads: ConfigError for a DuckDB database that does not exist (nothing is created) or a
    destination that cannot be opened; `on_notice` hears when a run writing the DuckDB file is waited for.
    """
    with reading(destination, on_notice) as pipeline:
        out: List[LoadedMonth] = []
        zones = zones_record(pipeline)
        if zones:
            out.append(_loaded(ZONES.table, None, zones, count_rows(pipeline, ZONES.table)))
        for schema in TRIP_SCHEMAS.values():
            entries = month_records(pipeline, schema.table)
            counts = month_counts(pipeline, schema.table) if entries else {}
            for m in sorted(entries, key=Month.parse):
                out.append(_loaded(schema.table, m, entries[m], counts.get(m, 0)))
        return out


def _loaded(table: str, month: Optional[str], entry: Mapping[str, Any], actual: int) -> LoadedMonth:
    return LoadedMonth(
        table, month, entry.get("rows"), actual, str(Fingerprint.from_state(entry)), entry.get("loaded_at")
    )
