"""Months spread over worker processes: `run(…, workers=N)`, `--workers N`.

The run's own process plans the months as a run on one worker does (a HEAD per month against the month records),
reports what it does not load and loads the zone lookup; each month to load or replace is handed to the next of up
to N worker processes that asks for one. A worker opens the pipeline in a local working folder of its own
(`locking.working_folder`) and loads each month it is handed as a run of its own would: its own dlt run, under its
month lock, checked again against the records first. Results, notes and progress come back over each worker's
pipe, so the run shows one progress display, one line per file and one summary, and exits as a run on one worker
does.

Ctrl-C or SIGTERM stops the run and every worker with it (each drops the month it has in flight, as a stopped
run does); a worker that dies fails the month it had, and the others go on; a worker whose run is gone stops.
Only where runs load side by side (Postgres, Snowflake): a DuckDB file takes one writer.

Longer than 400 lines: the two sides of one protocol (the run's `Workers` and a worker's `_work`, the channel
between them, start-up, signals and stopping) read together; split, each half would only make sense beside the other.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Optional, Set, Tuple

from dlt.common.runtime.collector import Collector

from taxi_pipeline.errors import ConfigError, LoadError, one_line
from taxi_pipeline.helpers import MonthPlan
from taxi_pipeline.interrupts import SIGNALS, STOP_GRACE, adopt, disown, mark_reported, stop_on_signals
from taxi_pipeline.loading import load_months
from taxi_pipeline.months import Month
from taxi_pipeline.opening import opened
from taxi_pipeline.progress import DOWNLOADED, ROWS
from taxi_pipeline.results import FAILED, MonthResult
from taxi_pipeline.schemas import file_label, trip_schema

_SPAWN = multiprocessing.get_context("spawn")
"""Workers start as fresh interpreters: forking a process that holds threads, sockets and dlt's state is not safe."""
POLL = 0.2
"""Seconds the run waits for a worker's message before it hands out months that came meanwhile."""
PARENT_CHECK = 0.5
"""Seconds between a worker's checks that its run is still there (a run killed with -9 cannot stop it)."""


@dataclass(frozen=True)
class Work:
    """What every worker needs to load a month as the run would: the run's resolved settings."""

    destination: str
    first: Month
    file_format: str
    root: str
    today: Any
    overdue_after: int


class _Channel:
    """A worker's end of its own pipe to the run. Messages go from any of its threads, one at a time.

    A pipe per worker, not a queue shared by all: a worker killed while it holds a shared queue's lock (waiting
    for a month, or halfway through a message) would leave the lock held, and the other workers stuck on it.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, kind: str, payload: Any = None) -> None:
        with self.lock:
            self.conn.send((kind, payload))

    def next_month(self) -> Optional[Tuple[str, str]]:
        """Ask the run for a month to load: (taxi, month), or None when there are no more."""
        self.send("ready")
        return self.conn.recv()


class _Forward(Collector):
    """A worker's progress collector: the file counters (`progress.DOWNLOADED`, `ROWS`) go to the run's display."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

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
            self.channel.send("progress", (name, inc, total, message, label))

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


def _work(index: int, work: Work, conn: Any) -> None:
    """A worker process: load the months the run hands it until it hands it None; tell the run all it does.

    It starts with SIGINT and SIGTERM blocked (the run blocks them while it starts a worker), so a Ctrl-C during
    its start-up is taken once it can stop cleanly. It stops itself if its run is gone.
    """
    mark_reported()  # the run's own process prints the one line of a stopped run
    channel = _Channel(conn)
    try:
        with stop_on_signals():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            _watch_parent()
            with opened(work.destination, progress=_Forward(channel)) as (pipeline, lock):
                if pipeline.has_pending_data:
                    pipeline.abort_packages()  # left by a killed worker: its month is loaded again
                while (task := channel.next_month()) is not None:
                    _load_task(work, pipeline, lock, channel, *task)
    except KeyboardInterrupt:
        _last_word(channel, "stopped", "interrupted")
    except (EOFError, BrokenPipeError):  # the run is gone: nobody to tell
        return
    except Exception as exc:  # the destination could not be opened: the run's other workers go on
        _last_word(channel, "stopped", one_line(exc))
    else:
        _last_word(channel, "done")


def _load_task(work: Work, pipeline: Any, lock: Any, channel: _Channel, taxi: str, month: str) -> None:
    """Load one month as a run of its own would (its month lock, checked again against the records first)."""
    try:
        load_months(
            pipeline,
            lock,
            [taxi],
            [Month.parse(month)],
            work.first,
            work.file_format,
            work.root,
            lambda res: channel.send("result", _portable(res)),
            lambda message: channel.send("notice", message),
            work.today,
            work.overdue_after,
            zones=False,
        )
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the run is gone, or stopping
        raise
    except Exception as exc:  # this month failed as a whole: the worker takes the next one
        table = trip_schema(taxi).table
        detail = f"{file_label(table, month)}: {one_line(exc)}"
        channel.send("result", _portable(MonthResult(table, month, FAILED, detail=detail, error=exc)))


def _last_word(channel: _Channel, kind: str, payload: Any = None) -> None:
    with contextlib.suppress(OSError, EOFError):
        channel.send(kind, payload)


def _watch_parent() -> None:
    """SIGTERM this worker once its run has gone (a run killed with -9 could not stop its workers)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="taxi-worker-parent", daemon=True).start()


@dataclass
class _Worker:
    """The run's side of one worker process."""

    index: int
    process: Any
    conn: Any
    idle: bool = False
    """Asked for a month and has none yet."""
    taken: Optional[Tuple[str, str]] = None
    """(table, month) it was handed and has not reported yet."""
    ended: Optional[str] = None
    """Why it ended ("" when it ran out of months); None while it runs."""


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
        self.workers: List[_Worker] = []
        self.results: List[MonthResult] = []
        self._pending: Deque[Tuple[str, str]] = collections.deque()
        """(taxi, month) handed out by the run and not yet to a worker."""
        self._outstanding: Set[Tuple[str, str]] = set()
        """(table, month) handed out and not yet reported."""
        self._lock = threading.Lock()
        self._closed = False
        """Set by `wait`: no more months come, the workers end once they have none left."""
        self._stopping = False
        self._error: Optional[BaseException] = None
        """The first error of a callback (`on_result`, `on_notice`, progress): raised by `wait`."""
        self._pump: Optional[threading.Thread] = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.stop()
        for worker in self.workers:
            worker.conn.close()
            disown(worker.process.pid)

    def report(self, res: MonthResult) -> None:
        """Pass one of the run's own results on to `on_result`, never at the same time as a worker's."""
        with self._lock:
            if self.on_result:
                self.on_result(res)

    def dispatch(self, taxi: str, plan: MonthPlan) -> None:
        """Hand a planned month to the workers, starting one more if fewer than `count` run."""
        with self._lock:
            self._outstanding.add((trip_schema(taxi).table, plan.month))
            self._pending.append((taxi, plan.month))
        if len(self.workers) < self.count:
            self._start()
        if self._pump is None:
            self._pump = threading.Thread(target=self._read, name="taxi-workers", daemon=True)
            self._pump.start()

    def _start(self) -> None:
        index = len(self.workers)
        conn, child_conn = _SPAWN.Pipe()
        process = _SPAWN.Process(target=_work, args=(index, self.work, child_conn), name=f"taxi-worker-{index + 1}")
        # the worker inherits the blocked signals and unblocks them once it can stop cleanly (`_work`)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            process.start()
            adopt(process.pid)  # a forced stop of the run kills it too (`interrupts`)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child_conn.close()  # the worker's end: the run reads EOF once the worker is gone
        with self._lock:
            self.workers.append(_Worker(index, process, conn))

    def wait(self) -> List[MonthResult]:
        """Tell the workers no more months come, wait until each has ended; every handed-out month's result."""
        with self._lock:
            self._closed = True
        while self._pump is not None and self._pump.is_alive():
            self._pump.join(POLL)  # in steps: a signal reaches the main thread while it waits
        for worker in self.workers:
            worker.process.join(STOP_GRACE)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        with self._lock:
            ended = {w.ended for w in self.workers if w.ended}
            why = "; ".join(sorted(ended)) or "no worker was left to take it"
            for table, month in sorted(self._outstanding):
                detail = f"{file_label(table, month)}: not loaded, the workers stopped ({why}); run again to load it"
                self._result(MonthResult(table, month, FAILED, detail=detail, error=LoadError(detail)))
        if self._error is not None:
            raise self._error
        return list(self.results)

    def stop(self) -> None:
        """Stop every worker that is still running: SIGTERM (it drops its month in flight), then SIGKILL."""
        self._stopping = True
        for worker in self.workers:
            if worker.process.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE / 2  # within the run's own grace (`interrupts.STOP_GRACE`)
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
        if self._pump is not None:
            self._pump.join(POLL * 2)

    def _read(self) -> None:
        """The run's side of the pipes, on a thread: hand out months, take messages, until every worker ended."""
        try:
            self._read_until_ended()
        except Exception as exc:  # the pipes closed under it as the run stops; anything else is raised by `wait`
            if not self._stopping:
                self._error = self._error or exc

    def _read_until_ended(self) -> None:
        while not self._stopping:
            with self._lock:
                live = [w for w in self.workers if w.ended is None]
                closed = self._closed
            if closed and not live:
                return
            self._hand_out(live, closed)
            waiting = [w.conn for w in live] + [w.process.sentinel for w in live]
            ready = set(multiprocessing.connection.wait(waiting, timeout=POLL)) if waiting else set()
            if not waiting:
                time.sleep(POLL)
            for worker in live:
                if worker.conn in ready and not self._take(worker):
                    self._died(worker)
                elif worker.process.sentinel in ready and worker.ended is None:
                    self._take(worker)  # what it sent before it ended comes first
                    if worker.ended is None:
                        self._died(worker)

    def _hand_out(self, live: List[_Worker], closed: bool) -> None:
        for worker in live:
            if not worker.idle:
                continue
            with self._lock:
                task = self._pending.popleft() if self._pending else None
            if task is None and not closed:
                continue
            try:
                worker.conn.send(task)
            except OSError:
                if task is not None:
                    with self._lock:
                        self._pending.appendleft(task)
                continue
            worker.idle = False
            worker.taken = (trip_schema(task[0]).table, task[1]) if task else None

    def _take(self, worker: _Worker) -> bool:
        """Every message the worker has sent so far; False when its pipe broke (it died)."""
        try:
            while worker.conn.poll():
                kind, payload = worker.conn.recv()
                self._event(worker, kind, payload)
        except Exception:  # EOF, a broken pipe or half a message: the worker is gone
            return False
        return True

    def _event(self, worker: _Worker, kind: str, payload: Any) -> None:
        try:
            if kind == "ready":
                worker.idle = True
            elif kind == "progress":
                if self.progress is not None:
                    name, inc, total, message, label = payload
                    self.progress.update(name, inc=inc, total=total, message=message, label=label)
            elif kind == "result":
                with self._lock:
                    self._result(payload)
                if worker.taken == (payload.table, payload.month):
                    worker.taken = None
            elif kind == "notice":
                with self._lock:
                    if self.on_notice:
                        self.on_notice(payload)
            elif kind == "done":
                self._end(worker, "")
            else:  # "stopped": interrupted (the run is stopping too, or it alone was), or its destination failed
                self._end(worker, f"worker {worker.index + 1} stopped: {payload}", notice=payload != "interrupted")
        except Exception as exc:  # a callback failed (a closed stdout): keep reading, raise it from `wait`
            self._error = self._error or exc

    def _result(self, res: MonthResult) -> None:
        self._outstanding.discard((res.table, res.month or ""))
        self.results.append(res)
        if self.on_result:
            self.on_result(res)

    def _died(self, worker: _Worker) -> None:
        """A worker that ended without a word (killed, out of memory): its month fails, the others go on."""
        worker.process.join(1)
        if worker.process.is_alive():  # its pipe broke but it lives on: it cannot be reached, so it is ended
            worker.process.kill()
            worker.process.join(1)
        self._end(worker, f"worker {worker.index + 1} died (exit code {worker.process.exitcode})")

    def _end(self, worker: _Worker, why: str, notice: bool = True) -> None:
        worker.ended = why
        disown(worker.process.pid)
        taken, worker.taken = worker.taken, None
        with self._lock:
            if taken is not None and taken in self._outstanding:
                table, month = taken
                detail = f"{file_label(table, month)}: {why} while loading it; run again to load it"
                try:
                    self._result(MonthResult(table, month, FAILED, detail=detail, error=LoadError(detail)))
                except Exception as exc:
                    self._error = self._error or exc
            elif why and notice and self.on_notice and not self._stopping:
                left = sum(1 for w in self.workers if w.ended is None)
                try:
                    self.on_notice(f"{why}; {left} worker(s) left")
                except Exception as exc:
                    self._error = self._error or exc
