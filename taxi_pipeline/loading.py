"""Loading a run's months: the month plan, one atomic load per month, reconciliation.

A month file is the unit of work: each (taxi, month) that is new, republished or found incomplete in the
destination is loaded by its own `pipeline.run` (delete-insert on `source_month`, one transaction), then the
destination's row count for that month is checked against the file's. State (dlt resource state, stored in the
destination) is trusted only where the destination agrees with it, so a month whose load never landed is
loaded again on the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import dlt
from dlt.common import logger
from dlt.pipeline.exceptions import PipelineStepFailed

from taxi_pipeline.destinations import (
    counting_is_cheap,
    import_file_format,
    number_legacy_rows,
    summarize_month_index,
)
from taxi_pipeline.destinations.locking import RunLock
from taxi_pipeline.errors import ConfigError, LoadError, find_cause, one_line
from taxi_pipeline.helpers import (
    LOAD,
    MISSING,
    REPLACE,
    SKIP,
    UNREACHABLE,
    MonthPlan,
    decide,
    month_record,
    plan_months,
    walk_notice,
)
from taxi_pipeline.interrupts import stopping
from taxi_pipeline.months import Month
from taxi_pipeline.prefetch import Prefetch, Prefetcher
from taxi_pipeline.records import ZONES_RECORD, forget_record, month_records, write_record
from taxi_pipeline.remote import http_client
from taxi_pipeline.results import FAILED, LOADED, OUTCOMES, REPLACED, SKIPPED, MonthResult, RunResult
from taxi_pipeline.schemas import SOURCE_MONTH, ZONES, file_label, trip_schema
from taxi_pipeline.settings import MANIFEST
from taxi_pipeline.source import taxi_source, zones_load_file
from taxi_pipeline.state import ZONES_KEY, month_entries, source_state
from taxi_pipeline.table_months import TableMonths, count_rows, months_present
from taxi_pipeline.zones import ZoneFile, fetch_zones, zones_load_result

LOADED_BY_ANOTHER_RUN = "loaded by another run meanwhile"


_ZONES_PENDING: Any = object()
"""The zone lookup rode along with a month that did not land: the next month's run takes it."""


def load_months(
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
    """The run's months in order, with the zone lookup (unless not `zones`); see `pipeline.run`.

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
        zones = fetch_zones(pipeline, client, root, zones_load_file(load_file), report)
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
                    report(MonthResult(schema.table, plan.month, OUTCOMES[plan.action], rows, detail=plan.detail))
        notice = walk_notice(taxi, walked, walk=months is None)
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
            _number_legacy_rows(pipeline, schema.table, lock)
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
            zones_result = zones_load_result(pipeline, zones) or _ZONES_PENDING
            lock.release(ZONES.table)
    return loaded_month, zones_result


def _number_legacy_rows(pipeline: dlt.Pipeline, table: str, lock: RunLock) -> None:
    """`number_legacy_rows` before a month of `table` is loaded, said in the log; LoadError if it fails."""
    try:
        if number_legacy_rows(pipeline, table, lock):
            logger.info(f"{table}: rows loaded before source_row existed were numbered (once)")
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"{table}: numbering the rows loaded before source_row failed: {one_line(exc)}") from exc


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
    file, loaded through a manifest load file whose job counts the rows (Postgres and DuckDB, see their
    `destinations` modules) and records an appended month in its own transaction. A month its job did not record
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
        interrupt = find_cause(exc, KeyboardInterrupt) or stopping()
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
            interrupt = find_cause(exc, KeyboardInterrupt) or stopping()
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


def _rows(loaded: Mapping[str, Mapping[str, Any]], month: str) -> Optional[int]:
    entry = loaded.get(month)
    return int(entry["rows"]) if entry and "rows" in entry else None
