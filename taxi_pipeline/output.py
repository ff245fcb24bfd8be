"""Where the CLI's output goes: per-file lines, the summary table, the one document of `--json` / `--kestra`.

The standard streams are wrapped so that a reader going away cannot turn into a failed load (`Forgiving`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import sys
from typing import Iterator, List, Optional, Sequence, TextIO

from taxi_pipeline.errors import redact
from taxi_pipeline.progress import MonthProgress
from taxi_pipeline.results import MonthResult, RunResult
from taxi_pipeline.schemas import file_label
from taxi_pipeline.summary import (
    as_dict,
    failure_dict,
    kestra_failure_line,
    kestra_line,
    rows_loaded,
    summary_rows,
    totals,
)

PROGRESS_PERIOD = 10.0
"""Seconds between plain progress lines of a file that is still downloading or being read."""


@contextlib.contextmanager
def forgiving_streams() -> Iterator[None]:
    """Standard streams that a reader gone away (`| head -1`) cannot turn into a failed load (see `Forgiving`)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Forgiving(out), Forgiving(err)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):  # what could not be written has been reported already
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = out, err


_GONE = (errno.EPIPE, errno.ECONNRESET, errno.EIO)
"""Write errors meaning the reader has gone (a closed pipe or socket, a closed terminal)."""


class Forgiving(io.TextIOBase):
    """A standard stream whose reader going away (a closed pipe, a closed terminal) stops the output, not the run.

    After that it drops what it is given; the descriptor underneath is pointed at /dev/null, so that Python's own
    flush at exit does not fail on it either. Other write errors (a full disk under `> file`) are raised as ever.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        """Write `text`, or drop it once the reader has gone."""
        if not self.broken:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as exc:
                self._break(exc)
        return len(text)

    def flush(self) -> None:
        """Flush, unless the reader has gone."""
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._break(exc)

    def isatty(self) -> bool:
        """Whether the stream underneath is a terminal (False when that cannot be told)."""
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        """The descriptor underneath."""
        return self._stream.fileno()

    def writable(self) -> bool:
        """Always: writes never fail here."""
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The encoding of the stream underneath."""
        return getattr(self._stream, "encoding", None) or "utf-8"

    def _break(self, exc: BaseException) -> None:
        """Stop the output for good if `exc` says the reader has gone (a closed stream too); else raise it."""
        if isinstance(exc, OSError) and exc.errno not in _GONE:
            raise exc
        self.broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)


class Document:
    """The one document `--json` and `--kestra` promise on stdout: the summary, or in its place the failure.

    A scheduler reading stdout gets it whatever happens: bad arguments, a destination that cannot be opened,
    Ctrl-C or SIGTERM (also when the run is stopped past its grace: `interrupts.set_last_words`).
    """

    def __init__(self, as_json: bool, kestra: bool, destination: str) -> None:
        self.as_json, self.kestra, self.destination = as_json, kestra, destination
        self.done = False

    @classmethod
    def asked(cls, args_list: Sequence[str]) -> Document:
        """What a command line asks for, read from its words (for a line that does not parse)."""
        destination = "duckdb"
        for word, following in zip(args_list, [*args_list[1:], ""], strict=True):
            if word == "--dest" and following:
                destination = following.lower()
            elif word.startswith("--dest="):
                destination = word.split("=", 1)[1].lower()
        return cls("--json" in args_list, "--kestra" in args_list, destination)

    def summary(self, result: RunResult) -> None:
        """Print the run's summary document(s)."""
        self.done = True
        if self.as_json:
            print(json.dumps(as_dict(result, self.destination), indent=2))
        if self.kestra:
            print(kestra_line(result, self.destination), flush=True)

    def failed(self, message: str) -> None:
        """Print the failure document(s) of a run that stopped before its summary (once)."""
        text = self.failure(message)
        if text:
            with contextlib.suppress(OSError, ValueError):  # stdout itself may be what failed: stderr says why
                print(text, end="", flush=True)
        self.done = True  # after printing: a forced stop meanwhile still prints it whole (`failure`)

    def failure(self, message: str) -> Optional[str]:
        """The failure document's text; None where none was asked for or a document is out already."""
        if self.done:
            return None
        parts = [json.dumps(failure_dict(message, self.destination), indent=2) + "\n"] if self.as_json else []
        if self.kestra:
            parts.append(kestra_failure_line(message, self.destination) + "\n")
        return "".join(parts) or None


class Output:
    """Where a load's progress, per-file lines and summary go, by `--quiet`, `--json` and `--kestra`."""

    def __init__(self, args: argparse.Namespace, doc: Document) -> None:
        self.args, self.doc = args, doc
        self.lines = not (args.quiet or args.json)
        # Kestra logs stderr as warnings: progress and notes go to stdout there, unless stdout is for --json
        self.log: TextIO = sys.stdout if args.kestra else sys.stderr
        # dbt's own log: off stdout when it carries JSON, held back under --quiet (shown only if dbt fails)
        self.dbt_log: Optional[TextIO] = sys.stderr if args.json else io.StringIO() if args.quiet else None

    def progress(self) -> Optional[MonthProgress]:
        """The progress display: bars on a terminal, plain lines elsewhere, none with `--quiet`."""
        if self.args.quiet:
            return None
        bars = self.log.isatty() and not self.args.kestra
        return MonthProgress(self.log, bars=bars, period=PROGRESS_PERIOD)

    def notice(self, message: str) -> None:
        """A note, unless `--quiet`."""
        if not self.args.quiet:
            print(f"note: {message}", file=self.log, flush=True)

    def result(self, res: MonthResult) -> None:
        """A file's line as it is done, unless `--quiet` or `--json`."""
        if self.lines:
            print_result(res)

    def summary(self, result: RunResult) -> None:
        """The run's summary: the document(s) asked for, the table, dbt's held-back log if dbt failed."""
        self.doc.summary(result)
        if self.lines:
            print_summary(result)
        if isinstance(self.dbt_log, io.StringIO) and result.dbt is not None and not result.dbt.success:
            print(self.dbt_log.getvalue(), file=sys.stderr, end="")


def print_result(res: MonthResult) -> None:
    """One file's line: label, outcome, rows, seconds, why."""
    what = file_label(res.table, res.month)
    rows = f"{res.rows:,} rows" if res.rows is not None else ""
    secs = f"{res.seconds:.1f}s" if res.seconds else ""
    tail = f" — {redact(res.detail)}" if res.detail else ""
    print(f"{what:<32} {res.outcome:<14} {rows:>16} {secs:>8}{tail}".rstrip(), flush=True)


def print_summary(result: RunResult) -> None:
    """A table of month ranges per table and outcome (one screen even for years of months), then totals."""
    table = [["table", "months", "outcome", "files", "rows", "seconds"]]
    for row in summary_rows(result.results):
        rows = f"{row.rows:,}" if row.rows is not None else "-"
        table.append([row.table, row.span, row.outcome, str(row.months), rows, f"{row.seconds:.1f}"])
    if len(table) > 1:
        print()
        print_table(table, right=(3, 4, 5), indent="  ")  # indented: apart from the per-file lines above
    parts = ", ".join(f"{n} {outcome}" for outcome, n in totals(result).items()) or "nothing to do"
    dbt = "" if result.dbt is None else f"; dbt build {'passed' if result.dbt.success else 'FAILED'}"
    print(f"summary: {parts}; {rows_loaded(result):,} rows loaded{dbt}")


def print_table(rows: List[List[str]], right: Sequence[int] = (), indent: str = "") -> None:
    """Rows as aligned columns (`right`: the right-aligned ones)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print(indent + "  ".join(cells).rstrip())
