"""Months spread over worker processes: `run(…, workers=N)`, `--workers N`.

The run's own process plans the months as a run on one worker does (a HEAD per month against the month records),
reports what it does not load and loads the zone lookup; each month to load or replace goes to a queue that up to
N worker processes take from. A worker opens the pipeline in a local working folder of its own
(`locks.working_folder`) and loads each month it takes as a run of its own would: its own dlt run, under its month
lock, checked again against the records first. Results, notes and progress come back over one queue, so the run
shows one progress display, one line per file and one summary, and exits as a run on one worker does.

Ctrl-C or SIGTERM stops the run and every worker with it (each drops the month it has in flight, as a stopped
run does); a worker that dies fails the month it had, and the others go on. Only where runs load side by side
(Postgres): a DuckDB file takes one writer, and Snowflake has no month lock yet.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from dlt.common.runtime.collector import Collector

from taxi_pipeline.errors import ConfigError, LoadError, one_line
from taxi_pipeline.helpers import MonthPlan
from taxi_pipeline.interrupts import STOP_GRACE, mark_reported, stop_on_signals
from taxi_pipeline.months import Month
from taxi_pipeline.pipeline import FAILED, MonthResult, _opened, _run_locked
from taxi_pipeline.progress import DOWNLOADED, ROWS
from taxi_pipeline.schemas import file_label, trip_schema

_SPAWN = multiprocessing.get_context("spawn")
"""Workers start as fresh interpreters: forking a process that holds threads, sockets and dlt's state is not safe."""
POLL = 0.2
"""Seconds between checks that the workers are alive while no event arrives."""


@dataclass(frozen=True)
class Work:
    """What every worker needs to load a month as the run would: the run's resolved settings."""

    destination: str
    first: Month
    file_format: str
    root: str
    today: Any
    overdue_after: int


class _Forward(Collector):
    """A worker's progress collector: the file counters (`progress.DOWNLOADED`, `ROWS`) go to the run's display."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def update(
        self,
        name: str,
        inc: int = 1,
        total: Optional[int] = None,
        inc_total: Optional[int] = None,
        message: Optional[str] = None,
        label: Optional[str] = None,
    ) -> None:
        """Send a file's bytes or rows to the run's process (dlt's own counters stay here)."""
        if name in (DOWNLOADED, ROWS) and label:
            self.events.put(("progress", None, (name, inc, total, message, label)))

    def _start(self, step: str) -> None:
        pass

    def _stop(self) -> None:
        pass


def _portable(res: MonthResult) -> MonthResult:
    """`res` with an error that survives pickling (dlt's exceptions may not).

    The error's type is kept where it decides the exit code (`ConfigError`); any other becomes a `LoadError`.
    """
    if res.error is None:
        return res
    try:
        pickle.loads(pickle.dumps(res.error))
        return res
    except Exception:
        kind = ConfigError if isinstance(res.error, ConfigError) else LoadError
        res.error = kind(one_line(res.error))
        return res


def _work(index: int, work: Work, tasks: Any, events: Any) -> None:
    """A worker process: load the months it takes from `tasks` until it takes None; tell `events` all it does."""
    mark_reported()  # the run's own process prints the one line of a stopped run
    try:
        with stop_on_signals(), _opened(work.destination, progress=_Forward(events)) as (pipeline, lock):
            if pipeline.has_pending_data:
                pipeline.abort_packages()  # left by a killed worker: its month is loaded again
            while True:
                task = tasks.get()
                if task is None:
                    break
                taxi, month = task
                events.put(("taken", index, (trip_schema(taxi).table, month)))
                try:
                    _run_locked(
                        pipeline,
                        lock,
                        [taxi],
                        [Month.parse(month)],
                        work.first,
                        work.file_format,
                        work.root,
                        lambda res: events.put(("result", index, _portable(res))),
                        lambda message: events.put(("notice", index, message)),
                        work.today,
                        work.overdue_after,
                        zones=False,
                    )
                except Exception as exc:  # this month failed as a whole: the worker takes the next one
                    table = trip_schema(taxi).table
                    detail = f"{file_label(table, month)}: {one_line(exc)}"
                    failed = MonthResult(table, month, FAILED, detail=detail, error=exc)
                    events.put(("result", index, _portable(failed)))
    except KeyboardInterrupt:
        events.put(("stopped", index, "interrupted"))
    except Exception as exc:  # the destination could not be opened: the run's other workers go on
        events.put(("stopped", index, one_line(exc)))
    else:
        events.put(("done", index, None))


class Workers:
    """Up to `count` worker processes loading the months `dispatch` hands them, started as months come.

    `report` is the run's `on_result` for its own results, made safe to call beside the workers' (one lock);
    `wait` returns the workers' results once every month handed out has one. Used as a context manager: a run
    that stops (Ctrl-C, SIGTERM, an error) stops every worker on its way out.
    """

    def __init__(
        self,
        count: int,
        work: Work,
        on_result: Optional[Callable[[MonthResult], None]] = None,
        on_notice: Optional[Callable[[str], None]] = None,
        progress: Optional[Collector] = None,
    ) -> None:
        self.count, self.work = count, work
        self.on_result, self.on_notice, self.progress = on_result, on_notice, progress
        self.tasks = _SPAWN.Queue()
        self.events = _SPAWN.Queue()
        self.processes: List[Any] = []
        self.results: List[MonthResult] = []
        self._outstanding: Set[Tuple[str, str]] = set()
        """(table, month) handed out and not yet reported."""
        self._taken: Dict[int, Tuple[str, str]] = {}
        self._ended: Dict[int, str] = {}
        """Worker index → why it ended ("" for a worker that ran out of months)."""
        self._lock = threading.Lock()
        self._closed = False
        """Set by `wait`: no more months come, the workers end once they have none left."""
        self._pump: Optional[threading.Thread] = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.stop()
        for q in (self.tasks, self.events):
            q.close()
            q.cancel_join_thread()  # a stopped run does not wait to flush months nobody will take

    def report(self, res: MonthResult) -> None:
        """Pass one of the run's own results on to `on_result`, never at the same time as a worker's."""
        with self._lock:
            if self.on_result:
                self.on_result(res)

    def dispatch(self, taxi: str, plan: MonthPlan) -> None:
        """Hand a planned month to the workers, starting one more if fewer than `count` run."""
        with self._lock:
            self._outstanding.add((trip_schema(taxi).table, plan.month))
        self.tasks.put((taxi, plan.month))
        if len(self.processes) < self.count:
            index = len(self.processes)
            process = _SPAWN.Process(
                target=_work, args=(index, self.work, self.tasks, self.events), name=f"taxi-worker-{index + 1}"
            )
            process.start()
            self.processes.append(process)
        if self._pump is None:
            self._pump = threading.Thread(target=self._read_events, name="taxi-workers", daemon=True)
            self._pump.start()

    def wait(self) -> List[MonthResult]:
        """Tell the workers no more months come, wait until each has ended; every handed-out month's result."""
        self._closed = True
        for _ in self.processes:
            self.tasks.put(None)
        while self._pump is not None and self._pump.is_alive():
            self._pump.join(POLL)  # in steps: a signal reaches the main thread while it waits
        for process in self.processes:
            process.join()
        with self._lock:
            left = sorted(self._outstanding)
            why = "; ".join(sorted({r for r in self._ended.values() if r})) or "no worker was left to take it"
            for table, month in left:
                detail = f"{file_label(table, month)}: not loaded, the workers stopped ({why}); run again to load it"
                self._result(MonthResult(table, month, FAILED, detail=detail, error=LoadError(detail)))
        return list(self.results)

    def stop(self) -> None:
        """Stop every worker that is still running: SIGTERM (it drops its month in flight), then SIGKILL."""
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(STOP_GRACE / 2)
            if process.is_alive():
                process.kill()
                process.join()

    def _read_events(self) -> None:
        """The run's side of the event queue, on a thread: until every worker has ended."""
        while not self._closed or len(self._ended) < len(self.processes):
            try:
                kind, index, payload = self.events.get(timeout=POLL)
            except queue.Empty:
                self._check_alive()
                continue
            except (EOFError, OSError):  # the queue was closed: the run is stopping
                return
            self._event(kind, index, payload)

    def _event(self, kind: str, index: int, payload: Any) -> None:
        if kind == "progress":
            if self.progress is not None:
                name, inc, total, message, label = payload
                self.progress.update(name, inc=inc, total=total, message=message, label=label)
        elif kind == "taken":
            self._taken[index] = payload
        elif kind == "result":
            with self._lock:
                self._result(payload)
        elif kind == "notice":
            with self._lock:
                if self.on_notice:
                    self.on_notice(payload)
        else:  # "done" or "stopped"
            self._taken.pop(index, None)
            self._ended[index] = payload or ""

    def _result(self, res: MonthResult) -> None:
        self._outstanding.discard((res.table, res.month or ""))
        self.results.append(res)
        if self.on_result:
            self.on_result(res)

    def _check_alive(self) -> None:
        """A worker that died without a word (killed, out of memory) fails the month it had; the others go on."""
        for index, process in enumerate(self.processes):
            if index in self._ended or process.is_alive():
                continue
            while True:  # what it sent before it died comes first
                try:
                    kind, i, payload = self.events.get_nowait()
                except queue.Empty:
                    break
                self._event(kind, i, payload)
            if index in self._ended:
                continue
            reason = f"worker {index + 1} died (exit code {process.exitcode})"
            self._ended[index] = reason
            taken = self._taken.pop(index, None)
            with self._lock:
                if taken is not None and taken in self._outstanding:
                    table, month = taken
                    detail = f"{file_label(table, month)}: {reason} while loading it; run again to load it"
                    self._result(MonthResult(table, month, FAILED, detail=detail, error=LoadError(detail)))
