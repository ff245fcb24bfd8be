"""Command line: `python -m taxi_pipeline [load options]`, and the `status`, `report` and `dbt` subcommands.

A thin shell over the library: parse, call, print, exit 0 (ok, including months not published yet), 1 (a load
failed) or 2 (bad input or config). Errors are one line on stderr; `--debug` adds the traceback.

What a load prints: progress on stderr (bars on a terminal, plain lines otherwise), a line per file as it is
done and a summary table on stdout. `--quiet` leaves only errors, `--json` prints one JSON document instead of
the lines and table, `--kestra` adds Kestra's `::{outputs, metrics}::` line and sends progress to stdout (Kestra
logs a task's stderr as warnings).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import logging
import os
import sys
import traceback
from typing import Any, Iterator, List, NoReturn, Optional, Sequence, TextIO, Tuple

from taxi_pipeline.destinations import DESTINATIONS
from taxi_pipeline.errors import ConfigError, TaxiPipelineError, one_line, redact
from taxi_pipeline.interrupts import interrupted_message, mark_reported, set_last_words, stop_on_signals
from taxi_pipeline.pipeline import LoadedMonth, MonthResult, RunResult, build_models, run, status, worker_count
from taxi_pipeline.progress import MonthProgress
from taxi_pipeline.schemas import file_label
from taxi_pipeline.settings import FILE_FORMATS
from taxi_pipeline.summary import (
    as_dict,
    failure_dict,
    kestra_failure_line,
    kestra_line,
    rows_loaded,
    summary_rows,
    totals,
)
from taxi_pipeline.transform import DbtResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SUBCOMMANDS = ("load", "status", "report", "dbt")
"""`load` is the default: `taxi-pipeline --taxi green` and `taxi-pipeline load --taxi green` are the same."""
PROGRESS_PERIOD = 10.0
"""Seconds between plain progress lines of a file that is still downloading or being read."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the load command (also used to check command lines in Kestra flows)."""
    parser = _Parser(
        prog="taxi-pipeline [load]",
        description="Load NYC TLC taxi trip months into DuckDB, Postgres or Snowflake (the default command, `load`).",
        epilog="other commands (each with its own --help): "
        "`taxi-pipeline status` lists what is loaded; "
        "`taxi-pipeline report` draws a PNG chart of trips (and revenue) per month; "
        "`taxi-pipeline dbt` rebuilds the dbt models without loading. "
        "Values of --dest, --taxi and --format are case-insensitive.",
    )
    _dest_argument(parser)
    parser.add_argument("--taxi", help="comma-separated taxi types: yellow,green,fhv,fhvhv (config: taxi_types)")
    parser.add_argument("--month", help="load one month, YYYY-MM")
    parser.add_argument("--start", help="first month to load, YYYY-MM (default: config start_month)")
    parser.add_argument("--end", help="last month to load, YYYY-MM, inclusive (default: newest published)")
    parser.add_argument(
        "--format", dest="file_format", type=str.lower, choices=FILE_FORMATS, help="csv (default) or parquet"
    )
    parser.add_argument("--base-url", help="root URL of the file layout (config: sources.taxi.base_url)")
    parser.add_argument(
        "--workers",
        type=_worker_count,
        help="months loaded at a time, each by a process of its own (Postgres; default 1, config: workers)",
    )
    parser.add_argument("--dbt", action="store_true", help="run `dbt build` on the destination after the load")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    output.add_argument("--json", action="store_true", help="print the run summary as one JSON document")
    parser.add_argument("--kestra", action="store_true", help="also emit the summary as Kestra outputs/metrics")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and dlt's log")
    return parser


def build_subcommand_parser(command: str = "status") -> argparse.ArgumentParser:
    """The argument parser of the `status`, `report` and `dbt` subcommands."""
    description = {
        "status": "List loaded months, rows, fingerprints and load times, read from the destination.",
        "report": "Draw a PNG chart of trips (and revenue, once dbt has run) per month and taxi type.",
        "dbt": "Run `dbt build` on the destination without loading anything: the months loaded or replaced "
        "since the last build, or every month with --full-refresh.",
    }[command]
    parser = _Parser(prog=f"taxi-pipeline {command}", description=description)
    _dest_argument(parser)
    if command == "status":
        parser.add_argument("--json", action="store_true", help="print the list as JSON")
    if command == "report":
        parser.add_argument("--out", default="trips.png", help="PNG file to write (default: trips.png)")
    if command == "dbt":
        parser.add_argument(
            "--full-refresh", action="store_true", help="rebuild every model from all months and test every row"
        )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _worker_count(value: str) -> int:
    try:
        return worker_count(value)
    except ValueError as exc:  # argparse would replace the message with its own
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dest_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dest", default="duckdb", type=str.lower, choices=DESTINATIONS, help="destination (default: duckdb)"
    )


def parse_command_line(argv: Sequence[str]) -> Tuple[str, argparse.Namespace]:
    """Parse any command line of the CLI: `(command, args)` with command `load`, `status`, `report` or `dbt`."""
    if list(argv[:1]) == ["load"]:
        return "load", build_parser().parse_args(list(argv[1:]))
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return argv[0], build_subcommand_parser(argv[0]).parse_args(list(argv[1:]))
    return "load", build_parser().parse_args(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    with _dlt_log_level(None if debug else "CRITICAL"), _forgiving_streams(), stop_on_signals():
        return _main(args_list, debug)


@contextlib.contextmanager
def _forgiving_streams() -> Iterator[None]:
    """Standard streams that a reader gone away (`| head -1`) cannot turn into a failed load (see `_Forgiving`)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Forgiving(out), _Forgiving(err)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):  # what could not be written has been reported already
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = out, err


_GONE = (errno.EPIPE, errno.ECONNRESET, errno.EIO)
"""Write errors meaning the reader has gone (a closed pipe or socket, a closed terminal)."""


class _Forgiving(io.TextIOBase):
    """A standard stream whose reader going away (a closed pipe, a closed terminal) stops the output, not the run.

    After that it drops what it is given; the descriptor underneath is pointed at /dev/null, so that Python's own
    flush at exit does not fail on it either. Other write errors (a full disk under `> file`) are raised as ever.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as exc:
                self._break(exc)
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._break(exc)

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
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


@contextlib.contextmanager
def _dlt_log_level(level: Optional[str]) -> Iterator[None]:
    """Keep dlt's own logger (which logs failed jobs with tracebacks) quiet unless --debug or set by the user.

    dlt sets its logger up from `RUNTIME__LOG_LEVEL` once per process, so both the env var (for that set-up) and
    the logger itself are set, and both restored afterwards.
    """
    if level is None or "RUNTIME__LOG_LEVEL" in os.environ:
        yield
        return
    logger = logging.getLogger("dlt")
    previous = logger.level
    os.environ["RUNTIME__LOG_LEVEL"] = level
    logger.setLevel(level)
    try:
        yield
    finally:
        os.environ.pop("RUNTIME__LOG_LEVEL", None)
        logger.setLevel(previous)


def _main(args_list: List[str], debug: bool) -> int:
    out: Optional[_Output] = None
    doc = _Document.asked(args_list)  # read before parsing: a command line that does not parse gets one too
    set_last_words(doc.failure)
    try:
        command, args = parse_command_line(args_list)
        doc = _Document(getattr(args, "json", False), getattr(args, "kestra", False), args.dest)
        set_last_words(doc.failure)
        if command == "status":
            _print_status(args.dest, args.json)
            return EXIT_OK
        if command == "report":
            _write_report(args.dest, args.out)
            return EXIT_OK
        if command == "dbt":
            built = build_models(args.dest, on_notice=_notice, full_refresh=args.full_refresh)
            if built is None:  # nothing changed since the last build: skipped, with a note
                return EXIT_OK
            if not built.success:
                print(f"error: {_dbt_failure(built)}", file=sys.stderr)
                return EXIT_FAILED
            print("dbt build passed")
            return EXIT_OK
        if args.json and args.kestra:
            raise ConfigError("--json and --kestra both write the summary to stdout: use one of them")
        out = _Output(args, doc)
        result = run(
            destination=args.dest,
            taxi_types=args.taxi,
            month=args.month,
            start=args.start,
            end=args.end,
            file_format=args.file_format,
            base_url=args.base_url,
            on_result=out.result,
            on_notice=out.notice,
            dbt=args.dbt,
            progress=out.progress(),
            dbt_output=out.dbt_log,
            workers=args.workers,
        )
        return _finish(out, result, debug)  # inside the try: a signal while printing is still one line
    except TaxiPipelineError as exc:
        doc.failed(redact(one_line(exc)))
        return _fail(exc, exc.exit_code, debug)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (see `interrupts`)
        message = interrupted_message(exc)
        doc.failed(message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        mark_reported()
        return EXIT_FAILED
    except Exception as exc:  # anything unexpected is still one line unless --debug
        doc.failed(redact(one_line(exc)))
        return _fail(exc, EXIT_FAILED, debug)
    finally:
        set_last_words(None)


def _finish(out: _Output, result: RunResult, debug: bool) -> int:
    """Print a finished run's summary and its failures; the exit code."""
    out.summary(result)
    for failure in result.failures:
        if debug and failure.error is not None:
            _print_traceback(failure.error)
        print(f"error: {redact(failure.detail)}", file=sys.stderr)
    if result.dbt is not None and not result.dbt.success:
        print(f"error: {_dbt_failure(result.dbt)}", file=sys.stderr)
    return result.exit_code


def _notice(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


class _Document:
    """The one document `--json` and `--kestra` promise on stdout: the summary, or in its place the failure.

    A scheduler reading stdout gets it whatever happens: bad arguments, a destination that cannot be opened,
    Ctrl-C or SIGTERM (also when the run is stopped past its grace: `interrupts.set_last_words`).
    """

    def __init__(self, as_json: bool, kestra: bool, destination: str) -> None:
        self.as_json, self.kestra, self.destination = as_json, kestra, destination
        self.done = False

    @classmethod
    def asked(cls, args_list: Sequence[str]) -> _Document:
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


class _Output:
    """Where a load's progress, per-file lines and summary go, by `--quiet`, `--json` and `--kestra`."""

    def __init__(self, args: argparse.Namespace, doc: _Document) -> None:
        self.args, self.doc = args, doc
        self.lines = not (args.quiet or args.json)
        # Kestra logs stderr as warnings: progress and notes go to stdout there, unless stdout is for --json
        self.log: TextIO = sys.stdout if args.kestra else sys.stderr
        # dbt's own log: off stdout when it carries JSON, held back under --quiet (shown only if dbt fails)
        self.dbt_log: Optional[TextIO] = sys.stderr if args.json else io.StringIO() if args.quiet else None

    def progress(self) -> Optional[MonthProgress]:
        if self.args.quiet:
            return None
        bars = self.log.isatty() and not self.args.kestra
        return MonthProgress(self.log, bars=bars, period=PROGRESS_PERIOD)

    def notice(self, message: str) -> None:
        if not self.args.quiet:
            print(f"note: {message}", file=self.log, flush=True)

    def result(self, res: MonthResult) -> None:
        if self.lines:
            _print_result(res)

    def summary(self, result: RunResult) -> None:
        self.doc.summary(result)
        if self.lines:
            _print_summary(result)
        if isinstance(self.dbt_log, io.StringIO) and result.dbt is not None and not result.dbt.success:
            print(self.dbt_log.getvalue(), file=sys.stderr, end="")


def _dbt_failure(result: DbtResult) -> str:
    failed = ", ".join(result.failures[:5]) + (" …" if len(result.failures) > 5 else "")
    return f"dbt build failed: {len(result.failures)} failing node(s): {failed}"


def _print_traceback(exc: BaseException) -> None:
    print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")


def _fail(exc: BaseException, code: int, debug: bool) -> int:
    if debug:
        _print_traceback(exc)
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {redact(message)}", file=sys.stderr)
    return code


def _print_result(res: MonthResult) -> None:
    what = file_label(res.table, res.month)
    rows = f"{res.rows:,} rows" if res.rows is not None else ""
    secs = f"{res.seconds:.1f}s" if res.seconds else ""
    tail = f" — {redact(res.detail)}" if res.detail else ""
    print(f"{what:<32} {res.outcome:<14} {rows:>16} {secs:>8}{tail}".rstrip(), flush=True)


def _print_summary(result: RunResult) -> None:
    """A table of month ranges per table and outcome (one screen even for years of months), then totals."""
    table = [["table", "months", "outcome", "files", "rows", "seconds"]]
    for row in summary_rows(result.results):
        rows = f"{row.rows:,}" if row.rows is not None else "-"
        table.append([row.table, row.span, row.outcome, str(row.months), rows, f"{row.seconds:.1f}"])
    if len(table) > 1:
        print()
        _print_table(table, right=(3, 4, 5), indent="  ")  # indented: apart from the per-file lines above
    parts = ", ".join(f"{n} {outcome}" for outcome, n in totals(result).items()) or "nothing to do"
    dbt = "" if result.dbt is None else f"; dbt build {'passed' if result.dbt.success else 'FAILED'}"
    print(f"summary: {parts}; {rows_loaded(result):,} rows loaded{dbt}")


def _print_table(rows: List[List[str]], right: Sequence[int] = (), indent: str = "") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print(indent + "  ".join(cells).rstrip())


def _write_report(destination: str, out: str) -> None:
    from taxi_pipeline.report import output_path, render, report_data

    path = output_path(out)  # before reading the destination: a bad --out fails fast and writes nothing
    data = report_data(destination, on_notice=_notice)
    render(data, path, title=f"NYC TLC taxi trips loaded into {destination}")
    months = sorted({m for by_month in data.trips.values() for m in by_month})
    span = f"{months[0]}..{months[-1]}" if months else "-"
    revenue = f", revenue of {', '.join(data.revenue)}" if data.revenue else ", no revenue (run dbt for it)"
    rides = ", taxis beside app-based rides" if data.rides else ""
    print(f"wrote {path}: trips of {', '.join(data.trips)} over {span}{revenue}{rides}")


def _status_dict(item: LoadedMonth) -> dict[str, Any]:
    return {
        "table": item.table,
        "month": item.month,
        "rows": item.rows,
        "rows_in_destination": item.rows_in_destination,
        "loaded_at": item.loaded_at,
        "fingerprint": item.fingerprint,
    }


def _print_status(destination: str, as_json: bool = False) -> None:
    items = status(destination, on_notice=_notice)
    if as_json:
        print(json.dumps({"destination": destination, "files": [_status_dict(i) for i in items]}, indent=2))
        return
    rows: List[List[str]] = [["table", "month", "rows", "in destination", "loaded at", "fingerprint"]]
    for item in items:
        rows.append(
            [
                item.table,
                item.month or "-",
                f"{item.rows:,}" if item.rows is not None else "?",
                f"{item.rows_in_destination:,}",
                item.loaded_at or "?",
                item.fingerprint,
            ]
        )
    if len(rows) == 1:
        print(f"nothing loaded into {destination} yet")
        return
    _print_table(rows, right=(2, 3))
