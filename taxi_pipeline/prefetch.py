"""The next month, fetched while the current one loads.

A month's load step parses the file into the destination (DuckDB's Arrow insert, Postgres' binary COPY), so the
next month's download (and the writing of its load file, where one is written from the rows) runs meanwhile on a
background thread. The month's own extract then only imports the file that is ready.
"""

from __future__ import annotations

import threading
from typing import Optional

from taxi_pipeline.helpers import FetchedFile, MonthPlan, fetch
from taxi_pipeline.interrupts import make_scratch_folder, remove_scratch_folder
from taxi_pipeline.progress import current_collector
from taxi_pipeline.remote import http_client
from taxi_pipeline.schemas import TableSchema

CLOSE_WAIT = 5.0
"""Seconds `Prefetch.close` waits for a fetch to stop (a Ctrl-C must not wait for a stalled download)."""
UNWIND_WAIT = 0.2
"""Seconds a month being loaded waits for its fetch when an exception closes it (Ctrl-C during the zone lookup's
load while the first month still downloads): the run stops within its grace."""


class Prefetch:
    """One month's file fetched (and its load file written) on a background thread, into its own folder.

    `result()` waits for it (raising what the fetch raised); `close()` stops it if it still runs and removes
    its folder. Use it as a context manager, or call `close()`, in every case.
    """

    def __init__(self, plan: MonthPlan, schema: TableSchema, load_file: Optional[str]) -> None:
        self.plan = plan
        self._folder = make_scratch_folder()
        self._stop = threading.Event()
        self._fetched: Optional[FetchedFile] = None
        self._error: Optional[BaseException] = None
        collector = current_collector()  # the pipeline is the running one on this thread, not on the fetch's

        def run() -> None:
            try:
                self._fetched = fetch(
                    http_client(),
                    plan.url,
                    plan.file_name,
                    schema,
                    plan.month,
                    self._folder,
                    load_file,
                    self._stop,
                    collector,
                )
            except BaseException as exc:  # raised in the consumer by result()
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"taxi-prefetch-{plan.month}", daemon=True)
        self._thread.start()

    def result(self) -> FetchedFile:
        """The fetched file, once ready; raises the fetch's error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._fetched is not None
        return self._fetched

    def close(self, wait: Optional[float] = None) -> None:
        """Stop the fetch if it still runs, remove its folder.

        The fetch stops at its next chunk or batch; a download stalled on the network is not waited for longer
        than `wait` seconds (default `CLOSE_WAIT`; its daemon thread then fails on the removed folder, or ends
        with the process).
        """
        self._stop.set()
        self._thread.join(CLOSE_WAIT if wait is None else wait)
        remove_scratch_folder(self._folder)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(None if exc_type is None else UNWIND_WAIT)


class Prefetcher:
    """At most one month of one taxi type fetched ahead: started by `start`, claimed by `take`."""

    def __init__(self, schema: TableSchema, load_file: Optional[str]) -> None:
        self.schema, self.load_file = schema, load_file
        self._pending: Optional[Prefetch] = None

    def start(self, plan: Optional[MonthPlan]) -> None:
        """Fetch `plan`'s file in the background (nothing for None); any earlier one not taken is stopped."""
        self.close()
        if plan is not None:
            self._pending = Prefetch(plan, self.schema, self.load_file)

    def take(self, plan: MonthPlan) -> Optional[Prefetch]:
        """The prefetch of `plan` if it is the one running (the caller closes it); any other is stopped."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.plan == plan:
            return pending
        if pending is not None:
            pending.close()
        return None

    def close(self) -> None:
        """Stop and remove the month fetched ahead, if any."""
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
