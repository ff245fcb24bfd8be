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
import json
import logging
import os
import sys
import traceback
from typing import Any, Iterator, List, NoReturn, Optional, Sequence, Tuple

from taxi_pipeline.destinations import DESTINATIONS
from taxi_pipeline.errors import ConfigError, TaxiPipelineError, one_line, redact
from taxi_pipeline.interrupts import interrupted_message, mark_reported, set_last_words, stop_on_signals, stopping
from taxi_pipeline.output import Document, Output, forgiving_streams, print_table
from taxi_pipeline.pipeline import LoadedMonth, RunResult, build_models, run, status, worker_count
from taxi_pipeline.settings import FILE_FORMATS
from taxi_pipeline.transform import DbtResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SUBCOMMANDS = ("load", "status", "report", "dbt")
"""`load` is the default: `taxi-pipeline --taxi green` and `taxi-pipeline load --taxi green` are the same."""
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
        "--format",
        dest="file_format",
        type=str.lower,
        choices=FILE_FORMATS,
        help="parquet (the TLC's live feed, default) or csv (the course's 2019-01..2021-07 mirror)",
    )
    parser.add_argument("--base-url", help="root URL of the file layout (config: sources.taxi.base_url)")
    parser.add_argument(
        "--workers",
        type=_worker_count,
        help="months loaded at a time, each by a process of its own (Postgres, Snowflake; default 1, config: workers)",
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
    with _dlt_log_level(None if debug else "CRITICAL"), forgiving_streams(), stop_on_signals():
        return _main(args_list, debug)


"""Write errors meaning the reader has gone (a closed pipe or socket, a closed terminal)."""


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
    out: Optional[Output] = None
    doc = Document.asked(args_list)  # read before parsing: a command line that does not parse gets one too
    set_last_words(doc.failure)
    try:
        command, args = parse_command_line(args_list)
        doc = Document(getattr(args, "json", False), getattr(args, "kestra", False), args.dest)
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
        out = Output(args, doc)
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
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (see `interrupts`)
        return _interrupted(doc, exc)
    except Exception as exc:  # anything unexpected is still one line unless --debug
        interrupt = stopping()  # a library's own error for the signal (DuckDB's "Query interrupted")
        if interrupt is not None:
            return _interrupted(doc, interrupt)
        doc.failed(redact(one_line(exc)))
        return _fail(exc, exc.exit_code if isinstance(exc, TaxiPipelineError) else EXIT_FAILED, debug)
    finally:
        set_last_words(None)


def _interrupted(doc: Document, exc: BaseException) -> int:
    """Report a run stopped by Ctrl-C or SIGTERM in its one line; the exit code."""
    message = interrupted_message(exc)
    doc.failed(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    mark_reported()
    return EXIT_FAILED


def _finish(out: Output, result: RunResult, debug: bool) -> int:
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
    print_table(rows, right=(2, 3))
