"""Progress of a run: bytes downloaded and rows read per month, shown while the month loads.

The source reports through dlt's collector protocol (`pipeline.collector.update(name, inc, total, label=…)`), so
any dlt progress collector shows these counters (`dlt.pipeline(…, progress="log")`). The CLI uses
`MonthProgress`, a dlt collector that shows only them: tqdm bars on a terminal, plain lines everywhere else
(pipes, cron logs, Kestra).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, TextIO

from dlt.common import logger
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.common.runtime.collector import Collector

DOWNLOADED = "downloaded"
"""Counter of bytes downloaded, labelled with the file (`green_tripdata 2019-01`)."""
ROWS = "rows"
"""Counter of rows read from the file, same label."""
DONE = "done"
"""The message of the `downloaded` update that ends a file's download, and of the `rows` one ends its reading."""


def current_collector() -> Optional[Collector]:
    """The collector of the pipeline that is running on this thread (None: no pipeline is active)."""
    context = Container()[PipelineContext]
    return context.pipeline().collector if context.is_active() else None


def report(
    counter: str,
    label: str,
    inc: int,
    total: Optional[int] = None,
    message: Optional[str] = None,
    collector: Optional[Collector] = None,
) -> None:
    """Add `inc` to `counter` of `label` on `collector` (default: the running pipeline's; none: nothing).

    `message=DONE` ends the file's download (`downloaded`) or its reading (`rows`). Showing progress never fails
    a load: a collector that raises is logged and the load goes on.
    """
    collector = collector or current_collector()
    if collector is None:
        return
    try:
        collector.update(counter, inc=inc, total=total, message=message, label=label)
    except Exception as exc:
        logger.debug(f"progress not shown: {exc}")


@dataclass
class _File:
    started: float
    downloaded: int = 0
    size: Optional[int] = None
    rows: int = 0
    download_done: bool = False
    read_started: float = 0.0


class MonthProgress(Collector):
    """A dlt collector for people: per file, bytes downloaded and rows read; dlt's own counters are left out.

    `bars`: tqdm progress bars (on a terminal), cleared when the file's download or reading ends, or when a dlt
    step ends (a file still going on, such as the next month fetched while this one loads, gets its bar back
    at its next update). Otherwise plain lines: one when a download completes, one with the rows when the file
    is read, and a line per file at most every `period` seconds in between, so a long month shows it is alive
    in a log without flooding it. Files may report from another thread than dlt's steps.
    """

    def __init__(self, stream: TextIO, bars: bool = False, period: float = 10.0) -> None:
        if bars:
            try:
                import tqdm  # noqa: F401
            except ImportError:  # a dependency, but a trimmed environment still gets lines
                bars = False
        self.stream, self.bars, self.period = stream, bars, period
        self.step: Optional[str] = None
        self._files: Dict[str, _File] = {}
        self._bars: Dict[tuple, Any] = {}
        self._last_line = time.monotonic()
        self._lock = threading.Lock()
        self.broken = False
        """Set when the stream failed (closed, broken pipe): nothing more is shown, the run goes on."""

    def update(
        self,
        name: str,
        inc: int = 1,
        total: Optional[int] = None,
        inc_total: Optional[int] = None,
        message: Optional[str] = None,
        label: Optional[str] = None,
    ) -> None:
        """Count `inc` for a file's `downloaded` bytes or `rows` (`label`: the file); other counters are ignored."""
        if name not in (DOWNLOADED, ROWS) or not label or self.broken:
            return
        with self._lock:
            try:
                self._update(name, inc, total, message, label)
            except (OSError, ValueError):  # a closed or broken stream: stop showing, never fail the load
                self.broken = True

    def _update(self, name: str, inc: int, total: Optional[int], message: Optional[str], label: str) -> None:
        file = self._files.setdefault(label, _File(time.monotonic()))
        if name == DOWNLOADED:
            file.downloaded += inc
            file.size = total if total is not None else file.size
            if message == DONE:
                self._download_done(label, file)
                return
        else:
            if not file.download_done:
                self._download_done(label, file)
            file.rows += inc
            if message == DONE:
                self._read_done(label, file)
                return
        if self.bars:
            self._bar(label, name, file, total)
        elif time.monotonic() - self._last_line >= self.period:
            self._line(label, file)

    def _download_done(self, label: str, file: _File) -> None:
        file.download_done = True
        file.read_started = time.monotonic()
        if self.bars:
            self._close_bar((label, DOWNLOADED))
        else:
            secs = time.monotonic() - file.started
            self._print(f"{label}: downloaded {_size(file.downloaded)} in {secs:.1f}s")

    def _read_done(self, label: str, file: _File) -> None:
        del self._files[label]
        if self.bars:
            self._close_bar((label, ROWS))
        else:
            secs = time.monotonic() - file.read_started
            self._print(f"{label}: {file.rows:,} rows read in {secs:.1f}s")

    def _line(self, label: str, file: _File) -> None:
        if file.download_done:
            self._print(f"{label}: {file.rows:,} rows read so far")
        elif file.size:
            share = f"{file.downloaded / file.size:.0%} of {_size(file.size)}"
            self._print(f"{label}: {_size(file.downloaded)} downloaded so far ({share})")
        else:
            self._print(f"{label}: {_size(file.downloaded)} downloaded so far")

    def _print(self, line: str) -> None:
        self._last_line = time.monotonic()
        print(line, file=self.stream, flush=True)

    def _bar(self, label: str, name: str, file: _File, total: Optional[int]) -> None:
        from tqdm import tqdm

        count = file.downloaded if name == DOWNLOADED else file.rows
        bar = self._bars.get((label, name))
        if bar is None:
            unit = {"unit": "B", "unit_scale": True, "unit_divisor": 1024} if name == DOWNLOADED else {"unit": " rows"}
            if name == ROWS:
                unit["unit_scale"] = True
            bar = tqdm(desc=f"{label} {name}", total=total, leave=False, file=self.stream, **unit)
            self._bars[(label, name)] = bar
        bar.update(count - bar.n)

    def _close_bar(self, key: tuple) -> None:
        bar = self._bars.pop(key, None)
        if bar is not None:
            bar.close()

    def _start(self, step: str) -> None:
        with self._lock:
            self._last_line = time.monotonic()  # the first "so far" line comes after a period, not at once

    def _stop(self) -> None:
        with self._lock:
            try:
                for key in list(self._bars):
                    self._close_bar(key)
            except (OSError, ValueError):
                self.broken = True
            finally:
                self._bars = {}


def _size(n: int) -> str:
    """Bytes for people: `849 B`, `6.0 MiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
