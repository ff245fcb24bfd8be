"""Mechanics behind the source: deciding what each month needs, and turning a remote file into batches."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import dlt
import pyarrow as pa
from dlt.common.runtime.collector import Collector
from dlt.sources.helpers.requests import Client

from taxi_pipeline.errors import DownloadError
from taxi_pipeline.interrupts import scratch_folder
from taxi_pipeline.months import Month, month_spans, months_from
from taxi_pipeline.progress import DONE, DOWNLOADED, ROWS, report
from taxi_pipeline.remote import Fingerprint, download, file_name, probe, trip_url
from taxi_pipeline.schemas import TableSchema, file_label, trip_schema
from taxi_pipeline.settings import (
    CSV,
    CSV_MIRROR_MONTHS,
    MANIFEST,
    OVERDUE_AFTER_MONTHS,
    PARQUET,
    PROBE_THREADS,
    READ_AHEAD_BATCHES,
    ROWS_PER_ITEM,
)
from taxi_pipeline.streams import coalesce, read_ahead

LOAD = "load"
REPLACE = "replace"
SKIP = "skip"
NOT_PUBLISHED = "not published"
NOT_AVAILABLE = "not available"
"""A month before the first one the TLC publishes for a taxi type in this layout."""
UNREACHABLE = "unreachable"
"""The file's HEAD failed (5xx after retries, connection error): nothing is known about the month."""
CSV_MIRROR_LACKS = "not in the csv mirror (a fixed copy): use --format parquet"
"""The detail of a month that will never appear in the csv layout's mirror."""
MISSING = "missing"
"""A month long published in its layout answered 404: the root or the format is wrong (configuration)."""


def long_published(
    taxi: str,
    month: Month,
    file_format: str,
    today: Optional[dt.date] = None,
    overdue_after: int = OVERDUE_AFTER_MONTHS,
) -> bool:
    """Whether `month` of `taxi` is certainly published in a layout, so that a 404 means a wrong root or format.

    A month counts once it is `overdue_after` months old (the TLC publishes about two months late, now and
    then later; 0 turns the check off, for a mirror of your own that holds only some months), and only in the
    layout's range: parquet (the TLC's own layout) from the taxi type's first month on; csv (the DataTalksClub
    mirror) the months of its fixed copy (`CSV_MIRROR_MONTHS`), for the taxi types it is known to hold.
    """
    if overdue_after <= 0:
        return False
    if file_format == CSV:
        if not in_csv_mirror(taxi, str(month)):
            return False
    elif month < Month.parse(trip_schema(taxi).first_month):
        return False
    return month <= Month.of(today or dt.date.today()).minus(overdue_after)


def _missing_detail(client: Client, root: str, taxi: str, month: str, file_format: str, url: str) -> str:
    """Why a long-published month's 404 is configuration, and the other layout's URL if the file is there."""
    other = PARQUET if file_format == CSV else CSV
    other_url = trip_url(root, taxi, month, other)
    try:
        elsewhere = probe(client, other_url) is not None
    except DownloadError:
        elsewhere = False
    hint = (
        f"it is at {other_url}: use --format {other}"
        if elsewhere
        else f"check --base-url (sources.taxi.base_url) and --format: with root {root}, csv files are at "
        f"{root}/{taxi}/, parquet files at {root}/trip-data/"
    )
    published = f"{taxi} {month} was published long ago in the {file_format} layout"
    return f"{url} is not there (HTTP 404/403: not found), but {published}; {hint}"


@dataclass(frozen=True)
class MonthPlan:
    """What one month of one taxi type needs: `load` (new), `replace` (republished), `skip`, `not published`."""

    month: str
    url: str
    file_name: str
    action: str
    fingerprint: Optional[Fingerprint] = None
    detail: str = ""


def decide(remote: Optional[Fingerprint], entry: Optional[Mapping[str, Any]]) -> str:
    """The action for a file given its HEAD fingerprint (None: not published) and its state entry."""
    if remote is None:
        return NOT_PUBLISHED
    if entry is None:
        return LOAD
    return SKIP if remote.same_as(Fingerprint.from_state(entry)) else REPLACE


def plan_months(
    client: Client,
    root: str,
    taxi: str,
    file_format: str,
    months: Optional[List[Month]],
    start: Month,
    loaded: Mapping[str, Mapping[str, Any]],
    force: bool = False,
    today: Optional[dt.date] = None,
    overdue_after: int = OVERDUE_AFTER_MONTHS,
) -> Iterator[MonthPlan]:
    """Plan a taxi type's months against its state (`loaded`: month → state entry).

    Every month is checked with a HEAD: new ones are loaded, unchanged ones skipped, republished ones replaced,
    404s reported as not published, or as `missing` where the month is `long_published` (a wrong root or
    format). Without `months` the run is open-ended, a catch-up: it walks from `start` (or the taxi type's first
    published month, if later) to the current month. In the parquet layout (the live TLC feed) it walks past a
    month not published yet, since the TLC now and then publishes a month after the ones that follow it; in
    the csv layout (a fixed mirror) it stops at the first month that is not there. Either stops at a month that
    cannot be checked or is `missing`. HEADs run `PROBE_THREADS` at a time, except in a walk that stops at the
    first gap. `force` loads explicit months without asking the server or the state. `overdue_after`: see
    `long_published`.
    """
    first = Month.parse(trip_schema(taxi).first_month)
    walk = months if months is not None else list(months_from(max(start, first), today))
    stop_at_gap = months is None and file_format == CSV
    forced = force and months is not None
    planned = [(m, trip_url(root, taxi, str(m), file_format), file_name(taxi, str(m), file_format)) for m in walk]
    to_probe = [url for m, url, _ in planned if m >= first and not forced]  # the months the loop below asks about
    probes = _probed(client, to_probe, 1 if stop_at_gap else PROBE_THREADS)
    with contextlib.closing(probes):
        for month, url, name in planned:
            key = str(month)
            if month < first:
                yield MonthPlan(key, url, name, NOT_AVAILABLE, detail=f"{taxi} trip data starts {first}")
                continue
            if forced:
                yield MonthPlan(key, url, name, LOAD)
                continue
            remote, error = next(probes)
            if error is not None:
                yield MonthPlan(key, url, name, UNREACHABLE, detail=str(error))
                if months is None:
                    return
                continue
            if remote is None and long_published(taxi, month, file_format, today, overdue_after):
                detail = _missing_detail(client, root, taxi, key, file_format, url)
                yield MonthPlan(key, url, name, MISSING, detail=detail)
                if months is None:
                    return
                continue
            action = decide(remote, loaded.get(key))
            never = action == NOT_PUBLISHED and file_format == CSV and not in_csv_mirror(taxi, key)
            plan = MonthPlan(key, url, name, action, remote, detail=CSV_MIRROR_LACKS if never else "")
            yield plan
            if stop_at_gap and plan.action == NOT_PUBLISHED:
                return


def walk_notice(taxi: str, plans: List[MonthPlan], walk: bool = True) -> Optional[str]:
    """What a run's months not published wait for, or None when every month it checked is there.

    CSV: a month outside the DataTalksClub mirror's fixed range will never appear there, and `--format parquet`
    has it (said for explicit months too, so a scheduled csv run does not say "not published" forever). Parquet,
    in a catch-up (`walk`): the newest published month and the months not published yet.
    """
    waiting = [p.month for p in plans if p.action == NOT_PUBLISHED]
    if not waiting:
        return None
    table = trip_schema(taxi).table
    outside = [p.month for p in plans if p.detail == CSV_MIRROR_LACKS]  # as `plan_months` found them
    if outside:
        mirror = CSV_MIRROR_MONTHS.get(taxi)
        held = f"{mirror[0]}..{mirror[1]}" if mirror else "some months of 2019-2021"
        return (
            f"{table}: {month_spans(outside)} {'is' if len(outside) == 1 else 'are'} not in the csv mirror, a fixed "
            f"copy of {held} where no new month will appear; the TLC publishes every month as parquet: use "
            "--format parquet (sources.taxi.file_format)"
        )
    if not walk:
        return None
    there = [p.month for p in plans if p.action in (LOAD, REPLACE, SKIP)]
    newest = max(there, key=Month.parse) if there else "none"
    return (
        f"{table}: newest published month {newest}; not published yet: {month_spans(waiting)} (the TLC publishes "
        "a month about two months after it ends; the next run loads it once it is there)"
    )


def in_csv_mirror(taxi: str, month: str) -> bool:
    """Whether the DataTalksClub CSV mirror holds `month` of `taxi` (`CSV_MIRROR_MONTHS`)."""
    span = CSV_MIRROR_MONTHS.get(taxi)
    return span is not None and Month.parse(span[0]) <= Month.parse(month) <= Month.parse(span[1])


def _probed(
    client: Client, urls: List[str], at_once: int
) -> Iterator[Tuple[Optional[Fingerprint], Optional[DownloadError]]]:
    """`(fingerprint, error)` of a HEAD of each URL, in order, with up to `at_once` requests in flight.

    The next request starts only when the walk asks for more, so a walk that stops (a missing month, Ctrl-C)
    starts no more; requests already in flight run on daemon threads that nobody waits for. With 1, each
    request is sent when its answer is asked for.
    """

    def one(url: str) -> Tuple[Optional[Fingerprint], Optional[DownloadError]]:
        try:
            return probe(client, url), None
        except DownloadError as exc:
            return None, exc

    if at_once <= 1 or len(urls) <= 1:
        yield from map(one, urls)
        return
    answers: List[Tuple[Optional[Fingerprint], Optional[DownloadError]]] = [(None, None)] * len(urls)
    ready = [threading.Event() for _ in urls]

    def ask(i: int) -> None:
        try:
            answers[i] = one(urls[i])
        finally:
            ready[i].set()

    started = 0
    for i in range(len(urls)):
        while started < min(i + at_once, len(urls)):
            threading.Thread(target=ask, args=(started,), name=f"taxi-head-{started}", daemon=True).start()
            started += 1
        ready[i].wait()
        yield answers[i]


@dataclass
class FetchedFile:
    """A downloaded file in a local folder, and the load file written from it when one was asked for."""

    path: str
    fingerprint: Fingerprint
    load_path: Optional[str] = None
    rows: int = 0
    columns: Optional[pa.Schema] = None


def fetch(
    client: Client,
    url: str,
    name: str,
    schema: TableSchema,
    source_month: Optional[str],
    folder: str,
    load_file: Optional[str] = None,
    stop: Optional[threading.Event] = None,
    collector: Optional[Collector] = None,
) -> FetchedFile:
    """Download a file into `folder` and, with `load_file`, write its load file there.

    `parquet`: the file is parsed a few batches ahead on a background thread while the load file is written.
    `jsonl`: only the manifest naming the file, and its columns from the header (the load job parses it, see the
    destinations' jobs). `stop`, when set, ends the work early with `Cancelled`; progress goes to
    `collector` (default: the running pipeline's). Raises DownloadError / FileFormatError for a file that cannot
    be had or read.
    """
    if load_file not in (None, PARQUET, MANIFEST):
        raise ValueError(f"no load file format {load_file!r}: choose from {PARQUET}, {MANIFEST}")
    path = os.path.join(folder, name)
    label = file_label(schema.table, source_month)

    def downloaded(n: int, size: Optional[int]) -> None:
        if stop is not None and stop.is_set():
            raise Cancelled(url)
        report(DOWNLOADED, label, n, size, collector=collector)

    report(DOWNLOADED, label, 0, collector=collector)  # the clock starts at the request, not the first byte
    fingerprint = download(client, url, path, downloaded)
    report(DOWNLOADED, label, 0, message=DONE, collector=collector)
    if fingerprint is None:
        raise DownloadError(f"{url} is not published (HTTP 404)")
    fetched = FetchedFile(path, fingerprint)
    if load_file:
        # not needed by runs that load nothing: start-up
        from taxi_pipeline.load_files import dlt_schema, write_manifest, write_parquet
        from taxi_pipeline.readers import file_columns

        fetched.load_path = os.path.join(folder, f"load.{load_file}")
        if load_file == MANIFEST:
            fetched.columns = dlt_schema(file_columns(path, schema, name))
            write_manifest(fetched.load_path, path, name, schema.table, source_month, fingerprint.as_dict())
        elif load_file == PARQUET:
            with read_batches(path, schema, name, source_month, stop, collector) as batches:
                fetched.rows, fetched.columns = write_parquet(batches, fetched.load_path)
    return fetched


class Cancelled(Exception):
    """A prefetch stopped before its file was ready (the run ended first)."""


def read_remote(
    client: Client,
    url: str,
    name: str,
    schema: TableSchema,
    source_month: Optional[str],
    record: Dict[str, Any],
    load_file: Optional[str] = None,
    fetched: Optional[FetchedFile] = None,
) -> Iterator[Any]:
    """Download a file to a temporary folder and stream it as typed Arrow tables.

    The file is parsed a few batches ahead on a background thread while dlt writes the current table. With
    `load_file` `parquet` (the zone lookup on DuckDB and Postgres) the batches are written to one parquet file
    instead, imported into dlt's load package as it is (see `load_files`). `fetched`: the file already fetched
    (and its load file written) ahead of time, see `prefetch`. When everything has been yielded, `record` receives
    the state entry of the file (`month_record`). A failure raises before that, so state never runs ahead of data.

    With `jsonl` (trip months on DuckDB and Postgres) only the manifest of the file is yielded: the load job reads
    the file later, so it must be `fetched` ahead into a folder that outlives the load, and the rows are known
    only after the load; `record` stays empty and the run records the month itself once the rows are in (see
    `destinations.duckdb`, `destinations.postgres`).
    """
    if load_file == MANIFEST:
        if fetched is None:
            raise ValueError("a manifest load file needs its file fetched ahead: the load job reads it later")
        yield dlt.mark.with_file_import(fetched.load_path, MANIFEST, hints=fetched.columns.empty_table())
        return
    with scratch_folder() as tmp:
        if fetched is None:
            fetched = fetch(client, url, name, schema, source_month, tmp, load_file)
        if load_file and fetched.load_path:
            rows = fetched.rows
            if rows:  # dlt hard-links (or copies) the file into the load package before this generator resumes
                hints = fetched.columns.empty_table() if fetched.columns is not None else None
                yield dlt.mark.with_file_import(fetched.load_path, load_file, rows, hints=hints)
        else:
            rows = 0
            with read_batches(fetched.path, schema, name, source_month) as batches:
                for table in coalesce(batches, ROWS_PER_ITEM):
                    rows += table.num_rows
                    yield table
    record.update(month_record(fetched.fingerprint, rows, name))


def month_record(fingerprint: Fingerprint, rows: int, name: str) -> Dict[str, Any]:
    """The state entry of a loaded file: its fingerprint, row count, name and load time."""
    loaded_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {**fingerprint.as_dict(), "rows": rows, "file": name, "loaded_at": loaded_at}


@contextlib.contextmanager
def read_batches(
    path: str,
    schema: TableSchema,
    name: str,
    source_month: Optional[str],
    stop: Optional[threading.Event] = None,
    collector: Optional[Collector] = None,
) -> Iterator[Iterator[pa.RecordBatch]]:
    """A downloaded file's batches, parsed ahead on a thread that has stopped when the block exits.

    Rows read and the end of reading are reported as progress (see `_counted`).
    """
    from taxi_pipeline.readers import read_file  # not needed by runs that load nothing: start-up

    batches = read_file(path, schema, name, source_month)
    # closed on any exit, so the reader thread has stopped before the folder is removed
    with contextlib.closing(read_ahead(batches, READ_AHEAD_BATCHES)) as ahead:
        yield _counted(ahead, file_label(schema.table, source_month), stop, collector)


def _counted(
    batches: Iterator[Any], label: str, stop: Optional[threading.Event] = None, collector: Optional[Collector] = None
) -> Iterator[Any]:
    """`batches` as they are, their rows and the end of reading reported; `Cancelled` once `stop` is set.

    Progress goes to `collector`, by default the running pipeline's.
    """
    for batch in batches:
        if stop is not None and stop.is_set():
            raise Cancelled(label)
        report(ROWS, label, batch.num_rows, collector=collector)
        yield batch
    report(ROWS, label, 0, message=DONE, collector=collector)
