"""Bad input and config: one line on stderr, exit 2, nothing loaded; --debug shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from taxi_pipeline.cli import build_parser
from taxi_pipeline.errors import LoadError


@pytest.mark.parametrize(
    "args, message",
    [
        (["--taxi", "blue", "--month", "2019-01"], "unknown taxi type 'blue'"),
        (["--taxi", ",", "--month", "2019-01"], "no taxi type given"),
        (["--taxi", "", "--month", "2019-01"], "no taxi type given"),  # an unset "$TYPES": not the default types
        (["--dest", "redshift", "--taxi", "green"], "invalid choice: 'redshift'"),
        (["--taxi", "green", "--month", "2019-1"], "bad month '2019-1'"),
        (["--taxi", "green", "--month", "2019-13"], "bad month '2019-13'"),
        (["--taxi", "green", "--start", "2019-03", "--end", "2019-01"], "--start 2019-03 is after --end 2019-01"),
        (["--taxi", "green", "--month", "2019-01", "--start", "2019-01"], "either --month or --start/--end"),
        (["--taxi", "green", "--format", "xlsx"], "invalid choice: 'xlsx'"),
        (["--taxi", "green", "--base-url", "ftp://x"], "bad base URL 'ftp://x'"),
        (["--taxi", "green", "--bogus"], "unrecognized arguments: --bogus"),
        # an unset "$MONTH" in a scheduled script: an error, not a catch-up of every month since the start
        (["--taxi", "green", "--month", ""], "--month is empty"),
        (["--taxi", "green", "--month", " "], "--month is empty"),
        (["--taxi", "green", "--start", ""], "--start is empty"),
        (["--taxi", "green", "--start", "2019-01", "--end", ""], "--end is empty"),
        (["--taxi", "green", "--month", "2019-01", "--base-url", ""], "base URL is empty"),
        (["--taxi", "green", "--month", "2008-12"], "--month: bad month '2008-12': the TLC trip data starts 2009-01"),
        (["--taxi", "green", "--start", "2019-1"], "--start: bad month '2019-1': expected YYYY-MM"),
        (["status", "--dest", "oracle"], "invalid choice: 'oracle'"),
        (["load", "--dest", "oracle"], "invalid choice: 'oracle'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli, workdir, args, message):
    r = cli(*args)
    assert r.code == 2, r
    assert r.out == ""
    assert r.err.count("\n") == 1 and r.err.startswith("error: ") and message in r.err, r.err
    assert not (workdir / "taxi_pipeline.duckdb").exists()


@pytest.mark.parametrize(
    "dest, module", [("postgres", "psycopg2"), ("postgres", "pgpq"), ("bigquery", "google.cloud.bigquery")]
)
def test_missing_driver_names_the_extra(cli, monkeypatch, dest, module):
    import builtins

    real_import = builtins.__import__

    def without_module(name, *a, **kw):
        if name == module:
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", without_module)
    r = cli("--dest", dest, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2 and f"pip install 'taxi-pipeline[{dest}]'" in r.err


@pytest.mark.parametrize("value, message", [("January", "bad month 'January'"), ("", "is empty")])
def test_bad_start_month_in_config_is_exit_2_naming_the_setting(cli, monkeypatch, value, message):
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", value)
    r = cli("--taxi", "green")
    assert r.code == 2 and message in r.err, r
    assert "sources.taxi.start_month (SOURCES__TAXI__START_MONTH)" in r.err


def test_empty_base_url_in_config_is_exit_2(cli, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__BASE_URL", "")
    r = cli("--taxi", "green", "--month", "2019-01")
    assert r.code == 2 and "base URL is empty" in r.err and "sources.taxi.base_url" in r.err, r


def test_a_start_month_in_the_future_says_why_nothing_loads(cli, mirror):
    mirror.trips("green", "2019-01", 5)
    r = cli("--taxi", "green", "--start", "2999-01", "--base-url", mirror.url)
    assert r.code == 0, r
    assert "start month 2999-01 is after the current month" in r.err, r
    assert mirror.gets("green") == 0


def _run_module(args, cwd, **env):
    full_env = {**os.environ, "DLT_DATA_DIR": str(cwd / "dlt"), **env}
    return subprocess.run(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=cwd, env=full_env, capture_output=True, text=True
    )


def test_unreadable_config_file_is_exit_2(workdir):
    (workdir / ".dlt").mkdir()
    (workdir / ".dlt" / "config.toml").write_text('[sources.taxi\nbase_url = "http://x\n')
    r = _run_module(["--taxi", "green", "--month", "2019-01"], workdir)
    assert r.returncode == 2, r
    assert r.stderr.startswith("error: cannot read dlt config") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_config_file_settings_are_used(workdir, mirror):
    (workdir / ".dlt").mkdir()
    config = f'[sources.taxi]\nbase_url = "{mirror.url}"\ntaxi_types = ["green"]\n'
    (workdir / ".dlt" / "config.toml").write_text(config)
    mirror.trips("green", "2019-01", 5)
    r = _run_module(["--month", "2019-01"], workdir)
    assert r.returncode == 0, r.stderr
    assert "green_tripdata 2019-01" in r.stdout and "5 rows" in r.stdout


def test_traceback_only_with_debug(workdir, mirror):
    mirror.put("/green/green_tripdata_2019-01.csv.gz", b"\x1f\x8b\x08\x00broken")
    plain = _run_module(["--base-url", mirror.url, "--taxi", "green", "--month", "2019-01"], workdir)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = _run_module(["--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--debug"], workdir)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "green_tripdata 2019-01" in debug.stderr


def test_console_script_is_installed(workdir):
    exe = os.path.join(os.path.dirname(sys.executable), "taxi-pipeline")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, cwd=workdir)
    assert r.returncode == 0 and "--base-url" in r.stdout


def test_contract_command_lines_parse():
    """The command lines other parts (Kestra flows, README) rely on parse with the package's parser."""
    args = build_parser().parse_args(
        "--dest duckdb --taxi green,yellow --start 2019-01 --end 2019-03 --format parquet --base-url http://h".split()
    )
    assert (args.dest, args.taxi, args.start, args.end, args.file_format) == (
        "duckdb", "green,yellow", "2019-01", "2019-03", "parquet",
    )  # fmt: skip


def test_ctrl_c_stops_the_run_and_keeps_nothing_of_the_month(workdir, mirror):
    import signal
    import time

    mirror.trips("green", "2019-01", 10)
    mirror.trips("green", "2019-02", 10)
    mirror.delay["/green/green_tripdata_2019-01.csv.gz"] = 3
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt")}
    args = ["--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=workdir, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not mirror.gets("2019-01") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mirror.gets("2019-01"), "the download never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "interrupted" in err and "Traceback" not in err
    assert mirror.gets("2019-02") == 0, "months after an interrupt must not be loaded"


def test_load_is_an_explicit_command_with_the_same_options(mirror, cli, duck):
    mirror.trips("green", "2019-01", 5)
    r = cli("load", "--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "-q")
    assert r.code == 0 and r.out == "", r  # -q is --quiet
    assert duck("select count(*) from taxi_raw.green_tripdata") == [(5,)]


def test_option_values_are_case_insensitive_alike(mirror, cli, duck):
    mirror.trips("green", "2019-01", 5, fmt="parquet")
    r = cli(
        "--base-url", mirror.url, "--dest", "DuckDB", "--format", "PARQUET", "--taxi", "GREEN", "--month", "2019-01"
    )
    assert r.code == 0, r
    assert duck("select count(*) from taxi_raw.green_tripdata") == [(5,)]
    assert cli("status", "--dest", "DUCKDB").code == 0


def test_top_level_help_lists_every_command(capsys):
    from taxi_pipeline.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert all(f"taxi-pipeline {command}" in out for command in ("status", "report", "dbt")), out
    assert "[load]" in out


def test_dbt_without_the_extra_fails_before_loading_anything(mirror, cli, workdir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("dbt") else real(name, *a)
    )
    mirror.trips("green", "2019-01", 5)
    load = ["--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--dbt"]
    for args, needed_by in ((load, "--dbt"), (["dbt"], "the dbt command")):  # named as the user asked for it
        r = cli(*args)
        assert r.code == 2, r
        assert r.err == f"error: {needed_by} needs dbt: pip install 'taxi-pipeline[dbt]'\n", r
    assert not mirror.requests, "nothing is downloaded"
    assert not (workdir / "taxi_pipeline.duckdb").exists()


def test_dbt_on_a_database_without_trips_says_so_instead_of_building(mirror, cli, workdir):
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-05")  # only the zones load
    assert r.code == 0 and "not published" in r.out, r
    r = cli("dbt")
    assert r.code == 2, r
    assert r.err == "error: nothing is loaded into duckdb yet: load some months first, then run dbt\n", r
    assert "dbt" not in r.out.lower()  # dbt never started


def test_an_interrupted_call_in_process_leaves_its_process_alive(workdir, mirror, capsys):
    """`main()` in a process of its own caller (tests, embedders): Ctrl-C stops the run, not the caller."""
    import signal
    import threading
    import time

    from taxi_pipeline import interrupts
    from taxi_pipeline.cli import main

    mirror.trips("green", "2019-01", 10)
    mirror.delay["/green/green_tripdata_2019-01.csv.gz"] = 3

    def ctrl_c_during_the_download() -> None:
        deadline = time.monotonic() + 60
        while not mirror.gets("2019-01") and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    threading.Thread(target=ctrl_c_during_the_download, daemon=True).start()
    code = main(["--base-url", mirror.url, "--taxi", "green", "--month", "2019-01"])
    assert code == 1 and "error: interrupted by SIGINT" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before
    time.sleep(interrupts.STOP_GRACE + 1)  # a stop timer left armed would have ended this process by now


@pytest.mark.parametrize("error", [RuntimeError("Query interrupted"), LoadError("green 2019-01: Query interrupted")])
def test_ctrl_c_a_library_turned_into_its_own_error_is_reported_as_interrupted(workdir, monkeypatch, capsys, error):
    """DuckDB answers a signal during its statement with its own "Query interrupted" error (CI once printed
    `error: Query interrupted`): the run still ends with the interrupted line, as for any Ctrl-C."""
    import signal

    from taxi_pipeline import cli

    def run_interrupted_inside_a_library(**_kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises `Interrupted` here, inside the "library"
            time.sleep(20)
        except KeyboardInterrupt:
            raise error from None  # what the library raises in its place

    monkeypatch.setattr(cli, "run", run_interrupted_inside_a_library)
    code = cli.main(["--taxi", "green", "--month", "2019-01"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: interrupted by SIGINT") and "Query interrupted" not in err, err


@pytest.mark.parametrize("dest", ["duckdb", "postgres", "snowflake"])
@pytest.mark.parametrize("command", [["--taxi", "green", "--month", "2019-01"], ["status"]])
def test_empty_credentials_variable_is_exit_2_naming_it(cli, workdir, monkeypatch, dest, command):
    monkeypatch.setenv(f"DESTINATION__{dest.upper()}__CREDENTIALS", "")
    r = cli(*command, "--dest", dest)
    assert r.code == 2, r
    assert r.err.startswith(f"error: DESTINATION__{dest.upper()}__CREDENTIALS") and "is empty" in r.err, r
    assert "SQLAlchemy" not in r.err and r.err.count("\n") == 1
    assert not (workdir / "taxi_pipeline.duckdb").exists()  # not the default file instead
