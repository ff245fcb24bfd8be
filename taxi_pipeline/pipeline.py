"""Running loads: the dlt pipeline per destination, the month plan, one atomic load per month, reconciliation.

A month file is the unit of work: each (taxi, month) that is new, republished or found incomplete in the
destination is loaded by its own `pipeline.run` (delete-insert on `source_month`, one transaction), then the
destination's row count for that month is checked against the file's. State (dlt resource state, stored in the
destination) is trusted only where the destination agrees with it, so a month whose load never landed is
loaded again on the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, TextIO, Tuple

import dlt
from dlt.common import logger
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.runtime.collector import NULL_COLLECTOR, Collector
from dlt.pipeline.exceptions import PipelineStepFailed

from taxi_pipeline.destinations import (
    check_destination,
    counting_is_cheap,
    destination_error,
    destination_kind,
    destination_location,
    import_file_format,
    make_destination,
    summarize_month_index,
)
from taxi_pipeline.errors import ConfigError, LoadError, find_cause, one_line
from taxi_pipeline.helpers import (
    LOAD,
    MISSING,
    NOT_AVAILABLE,
    NOT_PUBLISHED,
    REPLACE,
    SKIP,
    UNREACHABLE,
    FetchedFile,
    MonthPlan,
    decide,
    fetch,
    month_record,
    plan_months,
    walk_notice,
)
from taxi_pipeline.interrupts import (
    make_scratch_folder,
    remove_dead_scratch_folders,
    remove_scratch_folder,
    scratch_folder,
)
from taxi_pipeline.locks import SIDE_BY_SIDE, RunLock, read_lock, run_lock, working_folder
from taxi_pipeline.months import Month, resolve_months
from taxi_pipeline.prefetch import Prefetch, Prefetcher
from taxi_pipeline.records import ZONES_RECORD, forget_record, month_records, write_record, zones_record
from taxi_pipeline.remote import Fingerprint, http_client, probe, resolve_base_url, zones_url
from taxi_pipeline.schemas import SOURCE_MONTH, TRIP_SCHEMAS, ZONES, file_label, parse_taxi_types, trip_schema
from taxi_pipeline.settings import (
    CSV,
    DEFAULT_DATASET,
    DEFAULT_START_MONTH,
    DEFAULT_TAXI_TYPES,
    MANIFEST,
    OVERDUE_AFTER_MONTHS,
    PIPELINE_NAME_PREFIX,
)
from taxi_pipeline.source import taxi_source, zones_load_file
from taxi_pipeline.state import ZONES_KEY, month_entries, source_state
from taxi_pipeline.table_months import TableMonths, count_rows, month_counts, months_present
from taxi_pipeline.transform import DbtResult, build_changed, dbt_schema, require_dbt

LOADED = "loaded"
REPLACED = "replaced"
SKIPPED = "skipped"
FAILED = "failed"
LOADED_BY_ANOTHER_RUN = "loaded by another run meanwhile"
ONE_WRITER = {"duckdb": "a DuckDB file takes one writer"}
"""Why a destination loads one month at a time, whatever `workers` says."""
_ZONES_PENDING: Any = object()
"""The zone lookup rode along with a month that did not land: the next month's run takes it."""
_OUTCOME = {LOAD: LOADED, REPLACE: REPLACED, SKIP: SKIPPED, NOT_PUBLISHED: NOT_PUBLISHED, NOT_AVAILABLE: NOT_AVAILABLE}


@dataclass
class MonthResult:
    """The outcome of one file in a run: `loaded`, `replaced`, `skipped`, `not published` or `failed`."""

    table: str
    month: Optional[str]
    outcome: str
    rows: Optional[int] = None
    seconds: float = 0.0
    detail: str = ""
    error: Optional[BaseException] = field(default=None, repr=False, compare=False)


@dataclass
class RunResult:
    """Every file's outcome in a run; `ok` is False when any month failed."""

    results: List[MonthResult] = field(default_factory=list)
    dbt: Optional[DbtResult] = None
    """The dbt build after the load, when one was asked for and the load succeeded."""

    @property
    def ok(self) -> bool:
        """True when no month failed and dbt, if it ran, succeeded."""
        return all(r.outcome != FAILED for r in self.results) and (self.dbt is None or self.dbt.success)

    @property
    def failures(self) -> List[MonthResult]:
        """The failed months."""
        return [r for r in self.results if r.outcome == FAILED]

    @property
    def exit_code(self) -> int:
        """0 ok; 2 when a failure is configuration to fix (a month long published answered 404); 1 otherwise."""
        if self.ok:
            return 0
        return 2 if any(isinstance(r.error, ConfigError) for r in self.failures) else 1


def setting(key: str, default: Any) -> Any:
    """A `sources.taxi.<key>` value from dlt config (env `SOURCES__TAXI__<KEY>`, `.dlt/config.toml`)."""
    try:
        value = dlt.config.get(f"sources.taxi.{key}")
    except ConfigurationException as exc:
        raise ConfigError(
            f"cannot read dlt config (.dlt/config.toml, .dlt/secrets.toml, env): {one_line(exc)}"
        ) from None
    return default if value is None else value


def make_pipeline(
    destination: str = "duckdb",
    dataset_name: Optional[str] = None,
    progress: Optional[Collector] = None,
    folder: Optional[str] = None,
    read_only: bool = False,
) -> dlt.Pipeline:
    """The dlt pipeline `taxi_pipeline_<destination>` writing to the raw dataset (`taxi_raw` by default).

    The name stays the same for every database (state in the destination is found by it), but each destination
    location and dataset gets its own local working folder: dlt's local schema and state assume one destination,
    so a dev and a prod database must not share one. `progress`: a dlt collector (see `taxi_pipeline.progress`);
    `folder`: another working folder for the same destination and dataset (`locks.working_folder`);
    `read_only`: a DuckDB file is opened read-only (`reading`).
    """
    dest = make_destination(destination, read_only)
    name = f"{PIPELINE_NAME_PREFIX}_{destination}"
    dataset = dataset_name or dlt.config.get("taxi_pipeline.dataset_name") or DEFAULT_DATASET
    key = hashlib.sha1(f"{destination}|{destination_location(dest)}|{dataset}".encode()).hexdigest()[:10]
    pipelines_dir = folder or os.path.join(get_dlt_pipelines_dir(), f"{name}-{dataset}-{key}")
    if dlt.config.get("data_writer.disable_compression") is None:
        # dlt gzips its own short-lived intermediate files by default: most of a Postgres load's time (FACTS.md).
        # Scoped to this pipeline's config section, so other dlt pipelines in the process are not affected.
        dlt.config[f"{name}.data_writer.disable_compression"] = True
    if destination == "duckdb":
        if dlt.config.get("data_writer.compression") is None:
            # the parquet file is read once from local disk: snappy only costs time
            dlt.config[f"{name}.data_writer.compression"] = "none"
    # optional external stage for Snowflake (e.g. "filesystem" with [destination.filesystem] bucket_url = "s3://…")
    staging = (dlt.config.get("taxi_pipeline.staging") or None) if destination == "snowflake" else None
    pipeline = dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=pipelines_dir,
        destination=dest,
        staging=staging,
        dataset_name=dataset,
        progress=progress or NULL_COLLECTOR,
    )
    # dlt would hold a SIGINT/SIGTERM that arrives while a month is normalized or loaded until its step ends, then
    # forget it: the run would go on as if nothing happened. Signals stay with the caller (see `interrupts`).
    pipeline.runtime_config.intercept_signals = False
    return pipeline


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
        fmt = (file_format or setting("file_format", CSV)).lower()
        root = resolve_base_url(setting("base_url", None) if base_url is None else base_url, fmt)
        overdue_after = _whole_number("overdue_after_months", setting("overdue_after_months", OVERDUE_AFTER_MONTHS))
        workers = worker_count(setting("workers", 1) if workers is None else workers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    current = Month.of(today or dt.date.today())
    if months is None and first > current and on_notice:
        on_notice(f"start month {first} is after the current month {current}: no month to load yet")

    with _opened(destination, on_notice, progress) as (pipeline, lock):
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
            result = _run_locked(
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


def _run_locked(
    pipeline: dlt.Pipeline,
    lock: RunLock,
    taxis: List[str],
    months: Optional[List[Month]],
    first: Month,
    fmt: str,
    root: str,
    on_result: Optional[Callable[[MonthResult], None]],
    on_notice: Optional[Callable[[str], None]],
    today: Optional[dt.date],
    overdue_after: int,
    dispatch: Optional[Callable[[str, MonthPlan], None]] = None,
    zones: bool = True,
) -> RunResult:
    """The run's months in order, with the zone lookup (unless not `zones`); see `run`.

    `dispatch(taxi, plan)`: hands each month to load or replace to a worker instead of loading it here
    (`taxi_pipeline.workers`); the zone lookup is still loaded here.
    """
    result = RunResult()

    def report(res: MonthResult) -> None:
        result.results.append(res)
        if on_result:
            on_result(res)

    client = http_client()
    load_file = import_file_format(pipeline)
    zones_pending = zones

    def take_zones() -> Optional[ZoneFile]:
        """The zone lookup to load, fetched, once per run (None when unchanged, failed or already taken)."""
        nonlocal zones_pending
        if not zones_pending:
            return None
        zones_pending = False
        if not lock.try_take(ZONES.table):
            return None  # another run is loading it
        lock.check()
        zones = _fetch_zones(pipeline, client, root, zones_load_file(load_file), report)
        if zones is None:
            lock.release(ZONES.table)
        return zones

    def load_zones() -> None:
        """The zone lookup in a run of its own, when no month's run took it."""
        zones = take_zones()
        if zones is not None:
            with zones:
                source = taxi_source(
                    [], file_format=fmt, base_url=root, force=True, load_files=load_file, zones_file=zones.file
                )
                report(_load(pipeline, source.with_resources(ZONES.table), ZONES.table, None, zones.outcome))
            lock.release(ZONES.table)

    for taxi in taxis:
        schema = trip_schema(taxi)
        known = TableMonths(pipeline, schema.table, [str(m) for m in months] if months is not None else None)
        loaded = known.loaded
        plans = plan_months(client, root, taxi, fmt, months, first, loaded, today=today, overdue_after=overdue_after)
        walked: List[MonthPlan] = []
        with Prefetcher(schema, load_file) as ahead:  # the next month to load, fetched while this one loads
            for plan, following in _with_next_load(_recorded(plans, walked)):
                if plan.action in (UNREACHABLE, MISSING):
                    detail = f"{schema.table} {plan.month}: {plan.detail}"
                    error = ConfigError(detail) if plan.action == MISSING else None  # a wrong root or format: exit 2
                    report(MonthResult(schema.table, plan.month, FAILED, detail=detail, error=error))
                elif plan.action in (LOAD, REPLACE) and dispatch is not None:
                    dispatch(taxi, plan)
                elif plan.action in (LOAD, REPLACE):
                    with lock.month(schema.table, plan.month):
                        # another run may have loaded the month since it was planned: it is looked at again
                        entry = _loaded_meanwhile(pipeline, lock, schema.table, plan)
                        if entry is not None:
                            rows = _rows({plan.month: entry}, plan.month)
                            report(MonthResult(schema.table, plan.month, SKIPPED, rows, detail=LOADED_BY_ANOTHER_RUN))
                            continue
                        loaded_month, zones_result = _load_month(
                            pipeline, lock, plan, following, ahead, known, take_zones, zones_pending, (taxi, fmt, root)
                        )
                    if zones_result is _ZONES_PENDING:  # not loaded with the month: the next month's run takes it
                        zones_pending = True
                    elif zones_result is not None:
                        report(zones_result)
                    report(loaded_month)
                else:
                    rows = _rows(loaded, plan.month)
                    report(MonthResult(schema.table, plan.month, _OUTCOME[plan.action], rows, detail=plan.detail))
        notice = walk_notice(taxi, fmt, walked, walk=months is None)
        if notice and on_notice:
            on_notice(notice)
    load_zones()  # a run with no month to load still keeps the zone lookup current
    return result


def _load_month(
    pipeline: dlt.Pipeline,
    lock: RunLock,
    plan: MonthPlan,
    following: Optional[MonthPlan],
    ahead: Prefetcher,
    known: TableMonths,
    take_zones: Callable[[], Optional[ZoneFile]],
    zones_pending: bool,
    where: Tuple[str, str, str],
) -> Tuple[MonthResult, Any]:
    """Fetch (unless fetched ahead) and load one planned month, with the zone lookup if the run still has to.

    Returns the month's result and the zone lookup's: None when it did not ride along, `_ZONES_PENDING` when it
    did but did not land (the next month's run takes it). `following` is fetched once this month is extracted,
    unless another run has loaded it meanwhile. `where`: the taxi type, the file format and the root URL.
    """
    taxi, fmt, root = where
    schema, load_file = ahead.schema, ahead.load_file
    current = ahead.take(plan)
    # fetched on a thread: the first month while the zone lookup is fetched; on DuckDB and Postgres every month,
    # since their load jobs read the file after extract
    if current is None and (zones_pending or load_file == MANIFEST):
        current = Prefetch(plan, schema, load_file)
    zones_result: Any = None
    with current if current is not None else contextlib.nullcontext():
        # the run's first month takes the zone lookup into its own load: one dlt run, not two
        zones = take_zones()
        with zones if zones is not None else contextlib.nullcontext():
            lock.check()
            source = taxi_source(
                taxi_types=[taxi],
                months=[plan.month],
                file_format=fmt,
                base_url=root,
                zones=zones is not None,
                force=True,
                load_files=load_file,
                prefetched=current,
                zones_file=zones.file if zones is not None else None,
            )
            # the rows the last load left unsummarized are read once, here, not once more by the probe below
            _summarize_month_index(pipeline, schema.table)
            appended = not known.has_rows(plan.month)
            if appended:
                # nothing of this month in the destination: one COPY/INSERT into the table is already atomic, so
                # skip the staging table and delete-insert a replacement needs (half the load)
                source.resources[schema.table].apply_hints(write_disposition="append")

            def after_extract() -> None:
                # not a month another run is loading, or has loaded since the plan
                if following is None or lock.busy(schema.table, following.month):
                    return
                if _loaded_meanwhile(pipeline, lock, schema.table, following) is None:
                    ahead.start(following)

            deferred = current if load_file == MANIFEST else None
            # dlt's merge goes through one staging table per table: one replacement of a table at a time
            with contextlib.nullcontext() if appended else lock.staging(schema.table):
                # what the month's rows went through, not what the plan expected: rows another run loaded since
                # the plan (or a load whose record was lost) are replaced
                outcome = LOADED if appended else REPLACED
                loaded_month = _load(
                    pipeline, source, schema.table, plan.month, outcome, after_extract, deferred, appended
                )
        if zones is not None:
            zones_result = _zones_result(pipeline, zones) or _ZONES_PENDING
            lock.release(ZONES.table)
    return loaded_month, zones_result


def _summarize_month_index(pipeline: dlt.Pipeline, table: str) -> None:
    """`summarize_month_index` on a trip table before its month is probed and loaded; a failure is only logged.

    It is only a speed-up (a role that does not own the table may not summarize): it never fails the load.
    """
    try:
        summarize_month_index(pipeline, table, SOURCE_MONTH)
    except Exception as exc:
        logger.warning(f"month index on {table} not summarized: {one_line(exc)}")


def _loaded_meanwhile(pipeline: dlt.Pipeline, lock: RunLock, table: str, plan: MonthPlan) -> Optional[Dict[str, Any]]:
    """The record of a planned month that another run has loaded since, file unchanged (None: still to load).

    Only where runs load side by side (`RunLock.shared`); elsewhere the plan stands.
    """
    if not lock.shared or plan.fingerprint is None:
        return None
    entry = month_records(pipeline, table).get(plan.month)
    if entry is None or decide(plan.fingerprint, entry) != SKIP:
        return None
    # a record whose rows are gone (deleted by hand) was planned as a load, as `TableMonths` does: it stays one
    return dict(entry) if months_present(pipeline, table, [plan.month]) else None


def _recorded(plans: Iterable[MonthPlan], into: List[MonthPlan]) -> Iterator[MonthPlan]:
    """`plans` as they are, each also appended to `into`."""
    for plan in plans:
        into.append(plan)
        yield plan


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


def _with_next_load(plans: Iterable[MonthPlan]) -> Iterator[Tuple[MonthPlan, Optional[MonthPlan]]]:
    """Each plan, in order, with the next plan that loads a file after it (None for plans that load nothing).

    Reads the plans (their HEAD requests) only as far ahead as the next month to load.
    """
    current: Optional[MonthPlan] = None
    between: List[MonthPlan] = []
    for plan in plans:
        if plan.action not in (LOAD, REPLACE):
            if current is None:
                yield plan, None
            else:
                between.append(plan)
            continue
        if current is not None:
            yield current, plan
            yield from ((p, None) for p in between)
            between = []
        current = plan
    if current is not None:
        yield current, None
        yield from ((p, None) for p in between)


@dataclass
class ZoneFile:
    """The zone lookup fetched for a load, in a folder of its own that is removed on exit.

    12 KiB: fetched in full before the run that loads it, so a bad zone file fails as the zone lookup's own.
    """

    outcome: str
    file: FetchedFile
    folder: str
    seconds: float
    """How long it took to fetch: its own time in a month's run, which it rides along with (`_zones_result`)."""

    def __enter__(self) -> ZoneFile:
        return self

    def __exit__(self, *exc: object) -> None:
        remove_scratch_folder(self.folder)


def _fetch_zones(
    pipeline: dlt.Pipeline, client: Any, root: str, load_file: Optional[str], report: Callable[[MonthResult], None]
) -> Optional[ZoneFile]:
    """The zone lookup fetched for loading when it is new or changed; None (reported) when unchanged or failed.

    `load_file`: the zone lookup's load file, if any, written with it (see `source.zones_load_file`).

    A zone file that cannot be had or read fails here, as the zone lookup's own result, before any month's run
    takes it in. No zone lookup at the root at all is a wrong base URL (ConfigError).
    """
    url = zones_url(root)
    try:
        remote = probe(client, url)
    except LoadError as exc:
        report(MonthResult(ZONES.table, None, FAILED, detail=f"{ZONES.table}: {exc}", error=exc))
        return None
    if remote is None:
        raise ConfigError(f"no taxi zone lookup at {url}: check --base-url / sources.taxi.base_url")
    entry = zones_record(pipeline)
    if entry and count_rows(pipeline, ZONES.table) != entry.get("rows"):
        entry = None
    action = decide(remote, entry)
    if action == SKIP:
        report(MonthResult(ZONES.table, None, SKIPPED, entry.get("rows") if entry else None))
        return None
    folder = make_scratch_folder()
    started = time.monotonic()
    try:
        fetched = fetch(client, url, url.rsplit("/", 1)[-1], ZONES, None, folder, load_file)
    except (LoadError, OSError) as exc:
        remove_scratch_folder(folder)
        detail = f"{file_label(ZONES.table, None)}: {one_line(exc)}"
        report(MonthResult(ZONES.table, None, FAILED, seconds=time.monotonic() - started, detail=detail, error=exc))
        return None
    except BaseException:
        remove_scratch_folder(folder)
        raise
    return ZoneFile(_OUTCOME[action], fetched, folder, time.monotonic() - started)


def _zones_result(pipeline: dlt.Pipeline, zones: ZoneFile) -> Optional[MonthResult]:
    """The zone lookup's result after the run that took it in with a month, timed by its fetch (not the month's).

    None when that run did not load it (it failed before its package landed): the zone lookup is still to load.
    """
    seconds = zones.seconds
    entry = source_state(pipeline).get(ZONES_KEY)
    if not entry or not zones.file.fingerprint.same_as(Fingerprint.from_state(entry)):
        return None
    rows, actual = entry.get("rows"), count_rows(pipeline, ZONES.table)
    if actual != rows:
        label = file_label(ZONES.table, None)
        detail = f"{label}: destination has {actual} rows but the file has {rows}; it will be reloaded next run"
        return MonthResult(ZONES.table, None, FAILED, rows, seconds, detail)
    try:
        write_record(pipeline, ZONES.table, ZONES_RECORD, entry)
    except Exception as exc:  # loaded all the same: the next run finds no record and loads it again
        logger.warning(f"{ZONES.table} loaded but not recorded: {one_line(exc)}")
    return MonthResult(ZONES.table, None, zones.outcome, rows, seconds)


def _load(
    pipeline: dlt.Pipeline,
    source: Any,
    table: str,
    month: Optional[str],
    outcome: str,
    after_extract: Optional[Callable[[], None]] = None,
    deferred: Optional[Prefetch] = None,
    appended: bool = False,
) -> MonthResult:
    """Run one file's load and reconcile it; a failure is returned as a `failed` result, not raised.

    `after_extract` is called once the file is in the load package, before it is loaded. `deferred`: the month's
    file, loaded through a manifest load file whose job counts the rows (Postgres and DuckDB, see `binary_copy`
    and `duckdb_insert`) and records an appended month in its own transaction. A month its job did not record
    (a replacement, Snowflake) is recorded here once it has reconciled (`records`). `appended`: the month had no
    rows before.

    The month's rows are counted in the destination, except for a month appended by binary COPY: its job
    counted the month's rows in the table inside its own transaction and committed only if they were the
    rows it parsed (a count on Postgres reads the whole month again).
    """
    label = file_label(table, month)
    started = time.monotonic()
    try:
        pipeline.extract(source)
        if after_extract:
            after_extract()
        pipeline.normalize()
        pipeline.load()
    except PipelineStepFailed as exc:
        if pipeline.has_pending_data:
            pipeline.abort_packages()  # also rolls local state back to before this month
        interrupt = find_cause(exc, KeyboardInterrupt)
        if interrupt is not None:  # Ctrl-C / SIGTERM: stop the run, the month in flight is not kept
            raise interrupt from None
        copied = _copied(deferred) if deferred is not None else None
        cause = copied.error if copied is not None and copied.error is not None else exc
        detail = f"{label}: {one_line(cause)}"
        return MonthResult(table, month, FAILED, seconds=time.monotonic() - started, detail=detail, error=cause)
    copied = _copied(deferred) if deferred is not None else None
    if deferred is not None:
        fetched = deferred.result()
        entry = month_record(fetched.fingerprint, copied.rows, os.path.basename(fetched.path)) if copied else None
    elif month:
        entry = month_entries(pipeline, table).get(month)  # the state entry that travelled with this load
    else:
        entry = source_state(pipeline).get(ZONES_KEY)
    rows = entry.get("rows") if entry else None
    if month:
        # the binary COPY job counted an appended month in its own transaction before committing; where counting
        # is cheap (DuckDB) the month is counted again all the same
        counted = copied.rows if appended and copied is not None and not counting_is_cheap(pipeline) else None
        actual = _month_rows_after_load(pipeline, table, month, counted)
    else:
        actual = count_rows(pipeline, table)
    recorded = copied is not None and copied.recorded  # by the load job, in the month's own transaction
    if rows is None or actual != rows:
        if month and recorded:
            forget_record(pipeline, table, month)  # so that the next run loads the month again
        detail = f"{label}: destination has {actual} rows but the file has {rows}; the month will be reloaded next run"
        return MonthResult(table, month, FAILED, rows, time.monotonic() - started, detail)
    if entry is not None and not recorded:
        try:
            write_record(pipeline, table, month or ZONES_RECORD, entry)
        except Exception as exc:
            interrupt = find_cause(exc, KeyboardInterrupt)
            if interrupt is not None:
                raise interrupt from None
            detail = f"{label}: loaded but not recorded ({one_line(exc)}); the month will be replaced next run"
            return MonthResult(table, month, FAILED, rows, time.monotonic() - started, detail, error=exc)
    return MonthResult(table, month, outcome, rows, time.monotonic() - started)


def _month_rows_after_load(pipeline: dlt.Pipeline, table: str, month: str, counted: Optional[int]) -> int:
    """A loaded month's rows in the destination: `counted` where its load job counted them, else counted here."""
    return counted if counted is not None else count_rows(pipeline, table, month)


def _copied(deferred: Prefetch) -> Any:
    """What the load job of a fetched file left (`load_files.take_copied`)."""
    from taxi_pipeline.load_files import take_copied  # not needed by runs that load nothing: start-up

    try:
        path = deferred.result().path
    except Exception:  # the fetch failed: no job ran for it
        return None
    return take_copied(path)


@contextlib.contextmanager
def _opened(
    destination: str, on_notice: Optional[Callable[[str], None]] = None, progress: Optional[Collector] = None
) -> Iterator[Tuple[dlt.Pipeline, RunLock]]:
    """The destination's pipeline under the run lock, reachable, state restored from the destination.

    State is taken from the destination when the local folder is new or behind. Failing to reach the destination
    is configuration to fix (exit 2), naming the credentials setting.
    """
    pipeline = make_pipeline(destination, progress=progress)
    shared = destination_kind(pipeline) in SIDE_BY_SIDE  # runs load side by side, month by month (`locks`)
    with working_folder(pipeline.pipelines_dir, pipeline.pipeline_name, shared, on_notice) as folder:
        if folder != pipeline.pipelines_dir:
            pipeline = make_pipeline(destination, progress=progress, folder=folder)
        with run_lock(pipeline, on_wait=on_notice) as lock:
            _connect(pipeline)
            yield pipeline, lock


def _connect(pipeline: dlt.Pipeline, restore_state: bool = True) -> None:
    """Reach the destination once and (`restore_state`) restore dlt state from it; ConfigError when it fails."""
    check_destination(pipeline)
    if restore_state:
        try:
            pipeline.sync_destination()
        except Exception as exc:
            raise destination_error(pipeline, exc) from exc


def _rows(loaded: Mapping[str, Mapping[str, Any]], month: str) -> Optional[int]:
    entry = loaded.get(month)
    return int(entry["rows"]) if entry and "rows" in entry else None


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
    with _opened(destination, on_notice) as (pipeline, lock):
        if not any(month_records(pipeline, s.table) for s in TRIP_SCHEMAS.values()):
            raise ConfigError(f"nothing is loaded into {destination} yet: load some months first, then run dbt")
        with lock.dbt_build(dbt_schema()):
            return build_changed(pipeline, output=output, full_refresh=full_refresh, on_notice=on_notice)


def require_database(destination: str) -> None:
    """Raise ConfigError naming the path when a DuckDB database to read does not exist (instead of creating it).

    `status`, `report` and `dbt` read what is loaded: an empty new file and its lock would only hide a wrong path.
    """
    if destination != "duckdb":
        return
    path = destination_location(make_destination(destination))
    if path and not os.path.exists(path):
        raise ConfigError(
            f"no DuckDB database at {path}: nothing is loaded there (check DESTINATION__DUCKDB__CREDENTIALS, "
            "or the working directory for the default taxi_pipeline.duckdb)"
        )


@contextlib.contextmanager
def reading(
    destination: str = "duckdb", on_notice: Optional[Callable[[str], None]] = None, restore_state: bool = True
) -> Iterator[dlt.Pipeline]:
    """The destination's pipeline to read what is loaded (`status`, `report`), writing nothing there.

    A DuckDB file must exist (`require_database`) and is opened read-only, so it may sit in a read-only place;
    a run writing it is waited for, saying so through `on_notice`, up to `taxi_pipeline.lock_timeout` (LoadError
    then, as a load gives up; `locks.read_lock`). The pipeline's working folder is a scratch folder of its own,
    never a load's, so no run is waited for there; `restore_state`: dlt state is restored into it from the
    destination (months recorded there before the month records table). A destination that cannot be opened is
    configuration to fix (ConfigError, exit 2), naming the credentials setting.
    """
    require_database(destination)
    with scratch_folder() as folder:
        pipeline = make_pipeline(destination, folder=folder, read_only=True)
        with read_lock(pipeline, on_wait=on_notice):
            _connect(pipeline, restore_state)
            yield pipeline


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
