"""Command line: `python -m taxi_pipeline [load options]` and `python -m taxi_pipeline status`.

A thin shell over `taxi_pipeline.pipeline`: parse, call, print, exit 0 (ok, including months not published
yet), 1 (a load failed) or 2 (bad input or config). Errors are one line; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import traceback
from typing import Iterator, List, NoReturn, Optional, Sequence, Tuple

from taxi_pipeline.destinations import DESTINATIONS
from taxi_pipeline.errors import ConfigError, TaxiPipelineError
from taxi_pipeline.pipeline import MonthResult, RunResult, build_models, run, status
from taxi_pipeline.settings import FILE_FORMATS
from taxi_pipeline.transform import DbtResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SUBCOMMANDS = ("status", "dbt")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the load command (also used to check command lines in Kestra flows)."""
    parser = _Parser(
        prog="taxi-pipeline",
        description="Load NYC TLC taxi trip months into DuckDB, Postgres or Snowflake. "
        "Subcommands: `status` lists what is loaded, `dbt` rebuilds the dbt models.",
    )
    parser.add_argument("--dest", default="duckdb", choices=DESTINATIONS, help="destination (default: duckdb)")
    parser.add_argument("--taxi", help="comma-separated taxi types: yellow,green,fhv,fhvhv (config: taxi_types)")
    parser.add_argument("--month", help="load one month, YYYY-MM")
    parser.add_argument("--start", help="first month to load, YYYY-MM (default: config start_month)")
    parser.add_argument("--end", help="last month to load, YYYY-MM, inclusive (default: newest published)")
    parser.add_argument("--format", dest="file_format", choices=FILE_FORMATS, help="csv (default) or parquet")
    parser.add_argument("--base-url", help="root URL of the file layout (config: sources.taxi.base_url)")
    parser.add_argument("--dbt", action="store_true", help="run `dbt build` on the destination after the load")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def build_subcommand_parser(command: str = "status") -> argparse.ArgumentParser:
    """The argument parser of the `status` and `dbt` subcommands (both take only a destination)."""
    description = {
        "status": "List loaded months, rows and fingerprints.",
        "dbt": "Run `dbt build` on the destination without loading anything.",
    }[command]
    parser = _Parser(prog=f"taxi-pipeline {command}", description=description)
    parser.add_argument("--dest", default="duckdb", choices=DESTINATIONS, help="destination (default: duckdb)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_command_line(argv: Sequence[str]) -> Tuple[str, argparse.Namespace]:
    """Parse any command line of the CLI: `(command, args)` with command `load`, `status` or `dbt`."""
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return argv[0], build_subcommand_parser(argv[0]).parse_args(list(argv[1:]))
    return "load", build_parser().parse_args(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    with _dlt_log_level(None if debug else "CRITICAL"):
        return _main(args_list, debug)


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
    try:
        command, args = parse_command_line(args_list)
        if command == "status":
            _print_status(args.dest)
            return EXIT_OK
        if command == "dbt":
            built = build_models(args.dest, on_notice=_notice)
            if not built.success:
                print(f"error: {_dbt_failure(built)}", file=sys.stderr)
                return EXIT_FAILED
            print("dbt build passed")
            return EXIT_OK
        result = run(
            destination=args.dest,
            taxi_types=args.taxi,
            month=args.month,
            start=args.start,
            end=args.end,
            file_format=args.file_format,
            base_url=args.base_url,
            on_result=_print_result,
            on_notice=_notice,
            dbt=args.dbt,
        )
    except TaxiPipelineError as exc:
        return _fail(exc, exc.exit_code, debug)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # anything unexpected is still one line unless --debug
        return _fail(exc, EXIT_FAILED, debug)
    _print_summary(result)
    if not result.ok:
        for failure in result.failures:
            if debug and failure.error is not None:
                _print_traceback(failure.error)
            print(f"error: {redact(failure.detail)}", file=sys.stderr)
        if result.dbt is not None and not result.dbt.success:
            print(f"error: {_dbt_failure(result.dbt)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


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


_SECRETS = (
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),  # scheme://user:password@host
    (
        re.compile(r"(?i)\b(password|passwd|pwd|private_key_passphrase|token)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"),
        r"\1\2***",
    ),
)


def redact(text: str) -> str:
    """Mask passwords in connection strings and `password=…` pairs before anything is printed."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _print_result(res: MonthResult) -> None:
    what = f"{res.table} {res.month}" if res.month else res.table
    rows = f"{res.rows:,} rows" if res.rows is not None else ""
    secs = f"{res.seconds:.1f}s" if res.seconds else ""
    tail = f" — {redact(res.detail)}" if res.detail else ""
    print(f"{what:<32} {res.outcome:<14} {rows:>16} {secs:>8}{tail}".rstrip(), flush=True)


def _print_summary(result: RunResult) -> None:
    counts: dict[str, int] = {}
    for res in result.results:
        counts[res.outcome] = counts.get(res.outcome, 0) + 1
    loaded_rows = sum(r.rows or 0 for r in result.results if r.outcome in ("loaded", "replaced"))
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "nothing to do"
    dbt = "" if result.dbt is None else f"; dbt build {'passed' if result.dbt.success else 'FAILED'}"
    print(f"summary: {parts}; {loaded_rows:,} rows loaded{dbt}")


def _print_status(destination: str) -> None:
    rows: List[List[str]] = [["table", "month", "rows", "in destination", "loaded at", "fingerprint"]]
    for item in status(destination):
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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
