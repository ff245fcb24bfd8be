"""Mechanics behind the source: deciding what each month needs, and turning a remote file into batches."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional

import dlt
from dlt.sources.helpers.requests import Client

from taxi_pipeline.copy_files import write_copy_csv
from taxi_pipeline.errors import DownloadError
from taxi_pipeline.months import Month, months_from
from taxi_pipeline.progress import DONE, DOWNLOADED, ROWS, report
from taxi_pipeline.readers import read_csv_gz, read_parquet
from taxi_pipeline.remote import Fingerprint, download, file_name, probe, trip_url
from taxi_pipeline.schemas import TableSchema, file_label, trip_schema
from taxi_pipeline.settings import READ_AHEAD_BATCHES, ROWS_PER_ITEM
from taxi_pipeline.streams import coalesce, read_ahead

LOAD = "load"
REPLACE = "replace"
SKIP = "skip"
NOT_PUBLISHED = "not published"
NOT_AVAILABLE = "not available"
"""A month before the first one the TLC publishes for a taxi type in this layout."""
UNREACHABLE = "unreachable"
"""The file's HEAD failed (5xx after retries, connection error): nothing is known about the month."""


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
) -> Iterator[MonthPlan]:
    """Plan a taxi type's months against its state (`loaded`: month → state entry).

    Every month is checked with a HEAD: new ones are loaded, unchanged ones skipped, republished ones replaced,
    404s reported as not published. Without `months` the run is open-ended: it walks from `start` (or the taxi
    type's first published month, if later) to the current month and stops at the first month that is not
    published or cannot be checked. `force` loads explicit months without asking the server or the state.
    """
    first = Month.parse(trip_schema(taxi).first_month)
    for month in months if months is not None else months_from(max(start, first), today):
        key = str(month)
        url = trip_url(root, taxi, key, file_format)
        name = file_name(taxi, key, file_format)
        if month < first:
            yield MonthPlan(key, url, name, NOT_AVAILABLE, detail=f"{taxi} trip data starts {first}")
            continue
        if force and months is not None:
            yield MonthPlan(key, url, name, LOAD)
            continue
        try:
            remote = probe(client, url)
        except DownloadError as exc:
            yield MonthPlan(key, url, name, UNREACHABLE, detail=str(exc))
            if months is None:
                return
            continue
        plan = MonthPlan(key, url, name, decide(remote, loaded.get(key)), remote)
        yield plan
        if months is None and plan.action == NOT_PUBLISHED:
            return


def read_remote(
    client: Client,
    url: str,
    name: str,
    schema: TableSchema,
    source_month: Optional[str],
    record: Dict[str, Any],
    copy_file: bool = False,
) -> Iterator[Any]:
    """Download a file to a temporary folder and stream it as typed Arrow tables.

    The file is parsed a few batches ahead on a background thread while dlt writes the current table. With
    `copy_file` the batches are written to one CSV file for Postgres `COPY` instead, imported into dlt's load
    package as it is (see `copy_files`). When everything has been yielded, `record` receives the state entry of
    the file: its fingerprint (from the GET itself), row count, name and load time. A failure raises before
    that, so state never runs ahead of data.
    """
    with tempfile.TemporaryDirectory(prefix="taxi_pipeline_") as tmp:
        path = os.path.join(tmp, name)
        label = file_label(schema.table, source_month)
        report(DOWNLOADED, label, 0)  # the clock starts at the request, not the first byte
        fingerprint = download(client, url, path, lambda n, size: report(DOWNLOADED, label, n, size))
        report(DOWNLOADED, label, 0, message=DONE)
        if fingerprint is None:
            raise DownloadError(f"{url} is not published (HTTP 404)")
        reader = read_parquet if name.endswith(".parquet") else read_csv_gz
        # closed on any exit, so the reader thread has stopped before the folder is removed
        with contextlib.closing(read_ahead(reader(path, schema, name, source_month), READ_AHEAD_BATCHES)) as ahead:
            batches = _counted(ahead, label)
            if copy_file:
                csv_path = os.path.join(tmp, "copy.csv")
                rows, columns = write_copy_csv(batches, csv_path)
                if rows:  # dlt hard-links (or copies) the file into the load package before this generator resumes
                    yield dlt.mark.with_file_import(csv_path, "csv", rows, hints=columns.empty_table())
            else:
                rows = 0
                for table in coalesce(batches, ROWS_PER_ITEM):
                    rows += table.num_rows
                    yield table
    record.update(fingerprint.as_dict())
    record.update(rows=rows, file=name, loaded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def _counted(batches: Iterator[Any], label: str) -> Iterator[Any]:
    """`batches` as they are, each one's rows reported to the run's progress."""
    for batch in batches:
        report(ROWS, label, batch.num_rows)
        yield batch
