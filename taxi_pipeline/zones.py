"""The zone lookup in a run: fetched once (12 KiB) when new or changed, loaded with the run's first month."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import dlt
from dlt.common import logger

from taxi_pipeline.errors import ConfigError, LoadError, one_line
from taxi_pipeline.helpers import SKIP, FetchedFile, decide, fetch
from taxi_pipeline.interrupts import make_scratch_folder, remove_scratch_folder
from taxi_pipeline.records import ZONES_RECORD, write_record, zones_record
from taxi_pipeline.remote import Fingerprint, probe, zones_url
from taxi_pipeline.results import FAILED, OUTCOMES, SKIPPED, MonthResult
from taxi_pipeline.schemas import ZONES, file_label
from taxi_pipeline.state import ZONES_KEY, source_state
from taxi_pipeline.table_months import count_rows


@dataclass
class ZoneFile:
    """The zone lookup fetched for a load, in a folder of its own that is removed on exit.

    12 KiB: fetched in full before the run that loads it, so a bad zone file fails as the zone lookup's own.
    """

    outcome: str
    file: FetchedFile
    folder: str
    seconds: float
    """How long it took to fetch: its own time in a month's run, which it rides along with (`zones_load_result`)."""

    def __enter__(self) -> ZoneFile:
        return self

    def __exit__(self, *exc: object) -> None:
        remove_scratch_folder(self.folder)


def fetch_zones(
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
    return ZoneFile(OUTCOMES[action], fetched, folder, time.monotonic() - started)


def zones_load_result(pipeline: dlt.Pipeline, zones: ZoneFile) -> Optional[MonthResult]:
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
