"""Fault suite: `kill -9` at every point of a backfill, disk full, destination down, bad files, secrets.

Each case runs the CLI as a separate process the way a scheduler does, breaks it, then runs it again normally
and checks the destination holds every month exactly once (`source_month` counts equal the files' rows) and
that a further rerun downloads and loads nothing. DuckDB and Postgres (a real server) both go through it; the
cases of the run's mechanics (`any_format`) also run on DuckDB with parquet months and on BigQuery (emulated).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import tlc_files
from tests.conftest import Postgres, messages, month_counts

REPO = Path(__file__).resolve().parents[1]
MONTHS = {"2019-01": 30, "2019-02": 20, "2019-03": 10}
BACKFILL = ["--taxi", "green", "--start", "2019-01", "--end", "2019-03"]
PASSWORD = "Fault5ecret"


class Target:
    """One destination for the fault suite: its CLI flag, month counts and a raw query."""

    def __init__(
        self, name: str, counts: Callable[[], Dict[str, int]], query: Callable[..., list], fmt: str = "csv"
    ) -> None:
        self.name, self.counts, self.query, self.fmt = name, counts, query, fmt


def with_password(dsn: str) -> str:
    """`dsn` carrying PASSWORD, which no output may show (the test server trusts local connections: any works).

    A server of your own (`TAXI_TEST_PG_DSN`) keeps its own password, and output is checked against that one.
    """
    global PASSWORD
    parts = urlsplit(dsn)
    if os.environ.get("TAXI_TEST_PG_DSN") and parts.password:
        PASSWORD = parts.password
        return dsn
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


ANY_FORMAT = pytest.mark.any_format
"""A case of the run's mechanics (kills, signals, concurrency, records): also run on DuckDB with parquet months,
which DuckDB reads itself (the csv and Postgres cases parse the files in Python)."""


BIGQUERY_FAULTS = {
    "test_kill_9_at_any_point_of_a_backfill_then_rerun_is_exact[bigquery-commit]",
    "test_kill_9_at_any_point_of_a_backfill_then_rerun_is_exact[bigquery-reconcile]",
    "test_sigterm_while_replacing_a_month_keeps_its_previous_rows[bigquery]",
    "test_kill_9_while_replacing_a_republished_month_keeps_one_version[bigquery-commit]",
    "test_a_backfill_and_a_scheduled_slot_at_once_never_duplicate[bigquery]",
    "test_a_replaced_month_gets_its_new_record[bigquery]",
}
"""The BigQuery cases a test run takes (10–35 s each on the emulator); all of them with
`TAXI_TEST_BIGQUERY_FAULTS=all` (tests/conftest.py deselects the others)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        kinds = ["duckdb", "postgres"]
        if metafunc.definition.get_closest_marker("any_format"):
            kinds += ["duckdb-parquet", "bigquery"]
        metafunc.parametrize("target", kinds, indirect=True)


@pytest.fixture
def target(request, workdir) -> Target:
    if request.param == "duckdb-parquet":
        request.getfixturevalue("monkeypatch").setenv("SOURCES__TAXI__FILE_FORMAT", "parquet")
        mirror = "parallel_mirror" if "parallel_mirror" in request.fixturenames else "mirror"
        request.getfixturevalue(mirror).fmt = "parquet"
    if request.param.startswith("duckdb"):
        duck = request.getfixturevalue("duck")

        def duck_counts() -> Dict[str, int]:
            if not (workdir / "taxi_pipeline.duckdb").exists():
                return {}
            try:
                return month_counts(duck, "green_tripdata")
            except Exception as exc:  # no table yet
                if "does not exist" in str(exc):
                    return {}
                raise

        return Target("duckdb", duck_counts, duck, request.param.partition("-")[2] or "csv")
    if request.param == "bigquery":
        bigquery = request.getfixturevalue("bigquery")

        def bq_counts() -> Dict[str, int]:
            try:
                return bigquery.month_counts("green_tripdata")
            except Exception as exc:  # no dataset or table yet
                if "Not found" in str(exc) or "not found" in str(exc):
                    return {}
                raise

        return Target("bigquery", bq_counts, bigquery.query, "csv")
    pg = request.getfixturevalue("pg")
    monkeypatch = request.getfixturevalue("monkeypatch")
    # a password in the DSN (the test server trusts local connections, so any password works): it must never show
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", with_password(pg.dsn))

    def pg_counts() -> Dict[str, int]:
        exists = pg.query("select to_regclass('taxi_raw.green_tripdata') is not null")[0][0]
        return pg.month_counts("green_tripdata") if exists else {}

    return Target("postgres", pg_counts, pg.query, "csv")


def spawn(workdir: Path, mirror, target: Target, *args: str, via: Optional[List[str]] = None, **popen):
    """The CLI as its own process (optionally through `tests.killpoint`), stdout and stderr captured."""
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt"), "PYTHONPATH": str(REPO)}
    entry = ["-m", "tests.killpoint", *via, "--"] if via else ["-m", "taxi_pipeline"]
    cmd = [sys.executable, *entry, "--dest", target.name, "--base-url", mirror.url, *args]
    return subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    assert PASSWORD not in out + err, "a secret was printed"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(workdir: Path, mirror, target: Target, *args: str, **popen) -> subprocess.CompletedProcess:
    return finish(spawn(workdir, mirror, target, *args, **popen))


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def publish_backfill(mirror) -> None:
    for month, rows in MONTHS.items():
        mirror.trips("green", month, rows)


def assert_exact_and_settled(workdir: Path, mirror, target: Target, expected: Dict[str, int]) -> None:
    """The destination holds exactly `expected`; one more rerun downloads nothing and loads nothing."""
    assert target.counts() == expected
    gets = mirror.gets("tripdata")
    again = run_cli(workdir, mirror, target, *BACKFILL)
    assert again.returncode == 0, again
    assert mirror.gets("tripdata") == gets, "a loaded month was downloaded again"
    month_lines = [line for line in again.stdout.splitlines() if line.startswith("green_tripdata")]
    assert len(month_lines) == len(expected) and all(" skipped " in line for line in month_lines), again.stdout
    assert target.counts() == expected


# --- kill -9 ---------------------------------------------------------------------------------------------------

# The zone lookup loads in January's dlt run, and a month is recorded in its own load (no state package after it),
# so every point's 2nd call is February's: January is loaded, February is somewhere in flight, March not loaded
# (from normalize on, it may be downloading: it is fetched while February loads). `job` counts trip tables' load
# jobs only.
FEBRUARY_CALL = 2


@ANY_FORMAT
@pytest.mark.parametrize("point", ["extract", "normalize", "load", "commit", "reconcile"])
def test_kill_9_at_any_point_of_a_backfill_then_rerun_is_exact(mirror, workdir, target, point):
    publish_backfill(mirror)
    marker = workdir / "frozen"
    proc = spawn(workdir, mirror, target, *BACKFILL, via=[point, str(FEBRUARY_CALL), str(marker)])
    wait_for(lambda: marker.exists() or proc.poll() is not None, f"the run to reach {point}")
    assert proc.poll() is None, finish(proc)
    proc.send_signal(signal.SIGKILL)
    killed = finish(proc)
    assert killed.returncode == -signal.SIGKILL
    assert "2019-03" not in target.counts()
    if point == "extract":
        assert mirror.gets("2019-03") == 0  # fetched ahead only once February is extracted

    rerun = run_cli(workdir, mirror, target, *BACKFILL)
    assert rerun.returncode == 0, rerun
    assert_exact_and_settled(workdir, mirror, target, MONTHS)


@ANY_FORMAT
def test_kill_9_during_download_then_rerun_is_exact(mirror, workdir, target):
    publish_backfill(mirror)
    mirror.delay[mirror.path("green", "2019-02")] = 30
    # February is fetched while January loads; its own extract then waits for that download: kill it there
    # (frozen at February's extract, see FEBRUARY_CALL), with January in and the GET running.
    # The destination is not read while the run is alive: a DuckDB reader would lock the run out of its file.
    marker = workdir / "frozen"
    proc = spawn(workdir, mirror, target, *BACKFILL, via=["extract", str(FEBRUARY_CALL), str(marker)])
    wait_for(lambda: (marker.exists() and mirror.gets("2019-02")) or proc.poll() is not None, "February's download")
    assert proc.poll() is None, finish(proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert target.counts() == {"2019-01": 30}
    del mirror.delay[mirror.path("green", "2019-02")]
    rerun = run_cli(workdir, mirror, target, *BACKFILL)
    assert rerun.returncode == 0, rerun
    assert_exact_and_settled(workdir, mirror, target, MONTHS)


@ANY_FORMAT
@pytest.mark.parametrize("point", ["load", "commit"])
def test_kill_9_while_replacing_a_republished_month_keeps_one_version(mirror, workdir, target, point):
    """Killed mid-replacement: the month holds either its old or its new rows, never both; the rerun ends new."""
    publish_backfill(mirror)
    assert run_cli(workdir, mirror, target, *BACKFILL).returncode == 0
    mirror.trips("green", "2019-02", 25, seed=1)  # republished with other rows
    marker = workdir / "frozen"
    # no zone load this time (unchanged), so February's replacement is the first dlt run
    proc = spawn(workdir, mirror, target, *BACKFILL, via=[point, "1", str(marker)])
    wait_for(lambda: marker.exists() or proc.poll() is not None, f"the run to reach {point}")
    assert proc.poll() is None, finish(proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert target.counts()["2019-02"] in (20, 25)

    rerun = run_cli(workdir, mirror, target, *BACKFILL)
    assert rerun.returncode == 0, rerun
    assert_exact_and_settled(workdir, mirror, target, {**MONTHS, "2019-02": 25})


# --- Ctrl-C and SIGTERM -------------------------------------------------------------------------------------------

# A real signal while February is at each step: in the main thread (extract … reconcile) and on dlt's loader thread
# while the month is written (`job`, where dlt used to swallow the signal and finish the month). Both signals at the
# step that matters most, one of them at each other step.
SIGNAL_CASES = [
    ("extract", signal.SIGINT),
    ("normalize", signal.SIGTERM),
    ("load", signal.SIGINT),
    ("job", signal.SIGINT),
    ("job", signal.SIGTERM),
    ("commit", signal.SIGTERM),
    ("reconcile", signal.SIGINT),
]
FROZEN_SECONDS = 60
"""How long a step stays frozen: a run that waited for the step instead of stopping would outlive `STOPPED_WITHIN`."""
STOPPED_WITHIN = 30


def stop_with_signal(workdir: Path, mirror, target: Target, monkeypatch, args, point: str, nth: int, sig: int):
    """Run the CLI frozen at the `nth` call of `point`, send `sig` there; the finished process."""
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(tmp))  # where the run's downloads and load files go
    monkeypatch.setenv("KILLPOINT_SECONDS", str(FROZEN_SECONDS))
    marker = workdir / "frozen"
    marker.unlink(missing_ok=True)
    proc = spawn(workdir, mirror, target, *args, via=[point, str(nth), str(marker)])
    wait_for(lambda: marker.exists() or proc.poll() is not None, f"the run to reach {point}")
    assert proc.poll() is None, finish(proc)
    proc.send_signal(sig)
    stopped = finish(proc, timeout=STOPPED_WITHIN)  # long before the frozen step would have gone on
    name = signal.Signals(sig).name
    assert stopped.returncode == 1, stopped
    errors = messages(stopped.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: interrupted by {name}"), stopped
    assert "Traceback" not in stopped.stderr
    assert not list(tmp.iterdir()), "downloads and load files of the stopped run were left behind"
    return stopped


@ANY_FORMAT
@pytest.mark.parametrize("point, sig", SIGNAL_CASES, ids=[f"{p}-{signal.Signals(s).name}" for p, s in SIGNAL_CASES])
def test_ctrl_c_or_sigterm_at_any_step_of_a_month_stops_at_once(mirror, workdir, target, monkeypatch, point, sig):
    """Exit 1 at once, one line; January kept, February absent or whole, March never loaded; the rerun is exact."""
    publish_backfill(mirror)
    nth = FEBRUARY_CALL
    stopped = stop_with_signal(workdir, mirror, target, monkeypatch, BACKFILL, point, nth, sig)
    counts = target.counts()
    assert counts.get("2019-01") == 30 and counts.get("2019-02") in (None, 20) and "2019-03" not in counts, counts
    assert "2019-03" not in stopped.stdout, "a month after the signal was started"

    rerun = run_cli(workdir, mirror, target, *BACKFILL)
    assert rerun.returncode == 0, rerun
    assert_exact_and_settled(workdir, mirror, target, MONTHS)


def test_sigterm_during_a_stalled_download_stops_at_once(mirror, workdir, target, monkeypatch):
    """February's GET hangs (fetched ahead while January loads): SIGTERM ends the run at once all the same."""
    publish_backfill(mirror)
    mirror.delay[mirror.path("green", "2019-02")] = FROZEN_SECONDS
    tmp = workdir / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    proc = spawn(workdir, mirror, target, *BACKFILL)
    wait_for(lambda: mirror.gets("2019-02") or proc.poll() is not None, "February's download")
    assert proc.poll() is None, finish(proc)
    proc.send_signal(signal.SIGTERM)
    stopped = finish(proc, timeout=STOPPED_WITHIN)
    errors = messages(stopped.stderr)
    assert stopped.returncode == 1 and len(errors) == 1, stopped
    assert errors[0].startswith("error: interrupted by SIGTERM"), stopped
    assert not list(tmp.iterdir()), "the stopped run's downloads were left behind"
    assert target.counts() in ({}, {"2019-01": 30})
    del mirror.delay[mirror.path("green", "2019-02")]
    mirror.released.set()
    rerun = run_cli(workdir, mirror, target, *BACKFILL)
    assert rerun.returncode == 0, rerun
    assert_exact_and_settled(workdir, mirror, target, MONTHS)


def kestra_outputs(stdout: str) -> List[dict]:
    """The outputs of every `::{…}::` line Kestra would read."""
    return [json.loads(line[2:-2])["outputs"] for line in stdout.splitlines() if line.startswith("::{")]


@pytest.mark.parametrize("flag", ["--json", "--kestra"])
@pytest.mark.parametrize("stalled", [True, False], ids=["stopped-past-its-grace", "unwinding"])
def test_a_stopped_run_still_gives_its_one_document(mirror, workdir, monkeypatch, flag, stalled):
    """A scheduler reading stdout gets `ok: false` whether the run unwinds or is ended past its grace."""
    publish_backfill(mirror)
    duckdb_target = Target("duckdb", dict, list)
    if stalled:  # February's GET hangs: the run cannot unwind within its grace and ends itself
        mirror.delay[mirror.path("green", "2019-02")] = FROZEN_SECONDS
        proc = spawn(workdir, mirror, duckdb_target, *BACKFILL, flag)
        wait_for(lambda: mirror.gets("2019-02") or proc.poll() is not None, "February's download")
        proc.send_signal(signal.SIGTERM)
        stopped = finish(proc, timeout=STOPPED_WITHIN)
        mirror.released.set()
    else:
        stopped = stop_with_signal(workdir, mirror, duckdb_target, monkeypatch, [*BACKFILL, flag], "normalize", 2,
                                   signal.SIGTERM)  # fmt: skip
    assert stopped.returncode == 1, stopped
    documents = [json.loads(stopped.stdout)] if flag == "--json" else kestra_outputs(stopped.stdout)
    assert len(documents) == 1, stopped
    assert documents[0]["ok"] is False and documents[0]["destination"] == "duckdb", documents
    assert documents[0]["error"].startswith("interrupted by SIGTERM"), documents


@ANY_FORMAT
def test_sigterm_while_replacing_a_month_keeps_its_previous_rows(mirror, workdir, target, monkeypatch):
    publish_backfill(mirror)
    assert run_cli(workdir, mirror, target, *BACKFILL).returncode == 0
    mirror.trips("green", "2019-02", 25, seed=1)  # republished: February's replacement is the first trip job
    stop_with_signal(workdir, mirror, target, monkeypatch, BACKFILL, "job", 1, signal.SIGTERM)
    assert target.counts() == MONTHS
    rerun = run_cli(workdir, mirror, target, *BACKFILL)
    assert rerun.returncode == 0, rerun
    assert_exact_and_settled(workdir, mirror, target, {**MONTHS, "2019-02": 25})


# --- two runs at once ---------------------------------------------------------------------------------------------


@ANY_FORMAT
def test_a_backfill_and_a_scheduled_slot_at_once_never_duplicate(parallel_mirror, workdir, target):
    """A Kestra backfill and the monthly slot start together on one machine. On DuckDB (one writer per file) the
    slot waits for the backfill, and says so; on Postgres it loads its month beside it, and the backfill finds
    that month loaded. Either way, no duplicate, and March is downloaded once.

    On Postgres, February's download is held until the slot has fetched March, so the backfill meets March
    loading or loaded whatever the machine's speed (it fetches March ahead only once February is extracted).
    The mirror answers in parallel: a held download holds only itself."""
    mirror = parallel_mirror
    publish_backfill(mirror)
    mirror.delay[mirror.path("green", "2019-01")] = 1.0  # the backfill is mid-January when the slot starts
    side_by_side = target.name != "duckdb"
    if side_by_side:
        mirror.delay[mirror.path("green", "2019-02")] = 90  # until `released` is set
    backfill = spawn(workdir, mirror, target, *BACKFILL)
    wait_for(lambda: mirror.gets("2019-01") or backfill.poll() is not None, "the backfill to start January")
    slot = spawn(workdir, mirror, target, "--taxi", "green", "--month", "2019-03")
    if side_by_side:
        wait_for(lambda: mirror.gets("2019-03") or slot.poll() is not None, "the slot to fetch March")
        mirror.released.set()
    done = [finish(backfill), finish(slot)]
    assert [d.returncode for d in done] == [0, 0], done
    assert ("waiting for it" in done[1].stderr) == (not side_by_side), done[1]
    assert mirror.gets("2019-03") == 1, "the slot must find March loaded by the backfill, or load it itself: once"
    assert_exact_and_settled(workdir, mirror, target, MONTHS)


# --- month records --------------------------------------------------------------------------------------------


def write_sql(workdir: Path, target: Target, sql: str) -> None:
    """Run a writing statement on the destination (the `duck` fixture reads only)."""
    if target.name == "duckdb":
        import duckdb

        with duckdb.connect(str(workdir / "taxi_pipeline.duckdb")) as con:
            con.execute(sql)
    else:
        target.query(sql)


@ANY_FORMAT
def test_months_are_known_from_their_records_when_dlt_state_is_lost(mirror, workdir, target):
    """Each month is a row of its own in `_taxi_months`, written with the month: a run that restores no dlt state
    (a fresh working folder, the destination's state rows gone, as a lost concurrent update would leave it) still
    downloads nothing that is loaded."""
    publish_backfill(mirror)
    assert run_cli(workdir, mirror, target, *BACKFILL).returncode == 0
    records = target.query("select table_name, month, row_count, file_name from taxi_raw._taxi_months order by 2")
    assert [tuple(r) for r in records] == [
        ("taxi_zone_lookup", "-", 265, "taxi_zone_lookup.csv"),  # the zone lookup: a record like a month's
        *(("green_tripdata", m, n, mirror.path("green", m).rsplit("/", 1)[1]) for m, n in MONTHS.items()),
    ]
    write_sql(workdir, target, "delete from taxi_raw._dlt_pipeline_state")
    shutil.rmtree(workdir / "dlt")
    assert_exact_and_settled(workdir, mirror, target, MONTHS)


@ANY_FORMAT
def test_a_replaced_month_gets_its_new_record(mirror, workdir, target):
    """A republished month goes through staging and dlt's merge; its record is replaced once it has reconciled."""
    publish_backfill(mirror)
    assert run_cli(workdir, mirror, target, *BACKFILL).returncode == 0
    mirror.trips("green", "2019-02", 25, seed=1)
    assert run_cli(workdir, mirror, target, *BACKFILL).returncode == 0
    records = target.query("select month, row_count from taxi_raw._taxi_months where month <> '-' order by 1")
    assert [tuple(r) for r in records] == [("2019-01", 30), ("2019-02", 25), ("2019-03", 10)]
    assert_exact_and_settled(workdir, mirror, target, {**MONTHS, "2019-02": 25})


# --- disk full, destination down --------------------------------------------------------------------------------


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec hook: writes past `limit` bytes fail with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@ANY_FORMAT
def test_disk_full_fails_the_month_keeps_the_loaded_ones_and_retries(mirror, workdir, target):
    mirror.trips("green", "2019-01", 30)
    assert run_cli(workdir, mirror, target, "--taxi", "green", "--month", "2019-01").returncode == 0
    size = len(mirror.trips("green", "2019-02", 20_000))
    full = run_cli(
        workdir, mirror, target, "--taxi", "green", "--month", "2019-02", preexec_fn=_file_size_limit(size // 4)
    )
    assert full.returncode == 1, full
    assert len(messages(full.stderr)) == 1 and "Traceback" not in full.stderr, full
    assert "2019-02" in full.stderr and "free disk space" in full.stderr, full
    assert target.counts() == {"2019-01": 30}
    retried = run_cli(workdir, mirror, target, "--taxi", "green", "--month", "2019-02")
    assert retried.returncode == 0, retried
    assert target.counts() == {"2019-01": 30, "2019-02": 20_000}


def test_postgres_going_down_mid_load_fails_keeps_data_and_retries(mirror, workdir, pg, monkeypatch):
    """The server stops taking connections while February's COPY runs: exit 1, January intact, rerun loads."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", with_password(pg.dsn))
    target = Target("postgres", lambda: pg.month_counts("green_tripdata"), pg.query)
    publish_backfill(mirror)
    assert run_cli(workdir, mirror, target, "--taxi", "green", "--month", "2019-01").returncode == 0
    import psycopg2

    server, database = pg.dsn.rsplit("/", 1)
    admin = Postgres(f"{server}/postgres")  # a database's connections are switched off from another one
    blocker = psycopg2.connect(pg.dsn)  # holds the table so that February's COPY waits, mid-load
    try:
        with blocker.cursor() as cur:
            cur.execute("lock table taxi_raw.green_tripdata in share mode")  # COPY waits, reads do not
            proc = spawn(workdir, mirror, target, "--taxi", "green", "--month", "2019-02")
            waiting = "select pid from pg_stat_activity where datname = %s and wait_event_type = 'Lock' and pid <> %s"
            wait_for(lambda: pg.query(waiting, database, blocker.get_backend_pid()), "the COPY to wait on the lock")
            admin.query(f"alter database {database} allow_connections false")
            admin.query(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> %s",
                database,
                blocker.get_backend_pid(),
            )
        blocker.rollback()
        down = finish(proc)
    finally:
        blocker.close()
    assert down.returncode == 1, down
    assert len(messages(down.stderr)) == 1 and "2019-02" in down.stderr and "Traceback" not in down.stderr, down
    admin.query(f"alter database {database} allow_connections true")
    assert target.counts() == {"2019-01": 30}
    retried = run_cli(workdir, mirror, target, "--taxi", "green", "--month", "2019-02")
    assert retried.returncode == 0, retried
    assert target.counts() == {"2019-01": 30, "2019-02": 20}


# --- bad files ---------------------------------------------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><head><title>Rate limited</title></head><body>Try again later</body></html>\n"


def _csv_lines(month: str, rows: int, seed: int = 0) -> List[str]:
    return gzip.decompress(tlc_files.trip_csv("green", month, rows, seed, trailing_comma=False)).decode().splitlines()


def _drop_csv_column(month: str, rows: int, column: str, seed: int = 0) -> bytes:
    lines = _csv_lines(month, rows, seed)
    index = lines[0].split(",").index(column)
    cut = [",".join(v for i, v in enumerate(line.split(",")) if i != index) for line in lines]
    return gzip.compress(("\n".join(cut) + "\n").encode())


def _parquet_with(month: str, rows: int, seed: int = 0, **columns: pa.Array) -> bytes:
    """A TLC parquet with `columns` replaced (same name) or appended (new name)."""
    table = pq.read_table(io.BytesIO(tlc_files.trip_parquet("green", month, rows, seed=seed)))
    for name, values in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, values)
        else:
            table = table.append_column(name, values)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _half(content: bytes) -> bytes:
    return content[: len(content) // 2]


BAD_FILES: Dict[str, Callable[[str, int, int], bytes]] = {
    "csv: HTML error page served with 200": lambda m, n, s: HTML,
    "csv: gzip cut in half": lambda m, n, s: _half(tlc_files.trip_csv("green", m, n, s)),
    "csv: required column missing": lambda m, n, s: _drop_csv_column(m, n, "fare_amount", s),
    "csv: a row with a field too many": lambda m, n, s: gzip.compress(
        "\n".join(ln + (",x,y" if i == 3 else "") for i, ln in enumerate(_csv_lines(m, n, s))).encode() + b"\n"
    ),
    "parquet: HTML error page served with 200": lambda m, n, s: HTML,
    "parquet: cut in half": lambda m, n, s: _half(tlc_files.trip_parquet("green", m, n, seed=s)),
    "parquet: amount column holding text": lambda m, n, s: _parquet_with(
        m, n, s, fare_amount=pa.array(["12.50 USD"] * n)
    ),
}


def _publish(mirror, kind: str, month: str, content: bytes) -> None:
    if kind.startswith("csv"):
        mirror.put(f"/green/green_tripdata_{month}.csv.gz", content)
    else:
        mirror.put(f"/trip-data/green_tripdata_{month}.parquet", content)


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_fails_its_month_cleanly_and_is_retried(mirror, workdir, target, kind):
    """A republished month that is bad keeps its old rows; a new month that is bad stays out; both load later."""
    fmt = ["--format", kind.split(":")[0]]
    args = [*fmt, "--taxi", "green", "--start", "2019-01", "--end", "2019-02"]
    make = BAD_FILES[kind]

    def good(month: str, rows: int, seed: int) -> bytes:
        if fmt[1] == "csv":
            return tlc_files.trip_csv("green", month, rows, seed)
        return tlc_files.trip_parquet("green", month, rows, seed=seed)

    _publish(mirror, kind, "2019-01", good("2019-01", 30, 0))
    assert run_cli(workdir, mirror, target, *fmt, "--taxi", "green", "--month", "2019-01").returncode == 0

    _publish(mirror, kind, "2019-01", make("2019-01", 25, 1))  # a bad republication
    _publish(mirror, kind, "2019-02", make("2019-02", 20, 0))  # a bad new month
    bad = run_cli(workdir, mirror, target, *args)
    assert bad.returncode == 1, bad
    errors = messages(bad.stderr)
    assert len(errors) == 2 and "Traceback" not in bad.stderr, bad
    assert "2019-01" in errors[0] and "2019-02" in errors[1], bad
    if "HTML" in kind:
        assert all("is an HTML or XML page, not data" in line for line in errors), bad
    assert target.counts() == {"2019-01": 30}

    again = run_cli(workdir, mirror, target, *args)  # still bad: tried again, still nothing changes
    assert again.returncode == 1 and target.counts() == {"2019-01": 30}, again

    _publish(mirror, kind, "2019-01", good("2019-01", 25, 1))
    _publish(mirror, kind, "2019-02", good("2019-02", 20, 0))
    fixed = run_cli(workdir, mirror, target, *args)
    assert fixed.returncode == 0, fixed
    assert target.counts() == {"2019-01": 25, "2019-02": 20}


def test_csv_changes_that_are_not_errors_load_exactly(mirror, workdir, target):
    """An optional column missing loads as nulls; a new column evolves the table (as text) with its values."""
    lines = _csv_lines("2019-01", 12)
    lines = [lines[0] + ",surge_note"] + [ln + f",note {i}" for i, ln in enumerate(lines[1:])]
    mirror.put("/green/green_tripdata_2019-01.csv.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    mirror.put("/green/green_tripdata_2019-02.csv.gz", _drop_csv_column("2019-02", 8, "congestion_surcharge"))
    r = run_cli(workdir, mirror, target, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.returncode == 0, r
    assert target.counts() == {"2019-01": 12, "2019-02": 8}
    notes = "select source_month, count(surge_note), count(congestion_surcharge) from taxi_raw.green_tripdata"
    (jan, *_), (feb, *_) = counted = sorted(target.query(notes + " group by 1"))
    assert counted[0][1:2] == (12,) and counted[0][2] > 0 and counted[1] == ("2019-02", 0, 0), counted
    assert target.query("select surge_note from taxi_raw.green_tripdata where surge_note = 'note 3'")


def test_parquet_with_an_unknown_new_column_evolves_the_table_typed(mirror, workdir, target):
    """New columns keep their width (int32 stays int32, float32 becomes double), and a later month's wider ints
    still load into the column made from the first (Postgres's binary COPY takes only the column's exact type)."""
    mirror.put("/trip-data/green_tripdata_2019-01.parquet", tlc_files.trip_parquet("green", "2019-01", 10))
    mirror.put(
        "/trip-data/green_tripdata_2019-02.parquet",
        _parquet_with(
            "2019-02",
            6,
            surge_fee=pa.array([1.25] * 6, pa.float64()),
            surge_count=pa.array([2] * 6, pa.int32()),
            surge_ratio=pa.array([0.5] * 6, pa.float32()),
        ),
    )
    mirror.put("/trip-data/green_tripdata_2019-03.parquet", _parquet_with("2019-03", 4, surge_count=pa.array([3] * 4)))
    args = ["--format", "parquet", "--taxi", "green", "--start", "2019-01", "--end", "2019-03"]
    r = run_cli(workdir, mirror, target, *args)
    assert r.returncode == 0, r
    assert target.counts() == {"2019-01": 10, "2019-02": 6, "2019-03": 4}
    sums = "sum(surge_fee), sum(surge_count), sum(surge_ratio)"
    fees = f"select source_month, {sums} from taxi_raw.green_tripdata group by 1 order by 1"
    got = [(m, *(None if v is None else float(v) for v in vs)) for m, *vs in target.query(fees)]
    assert got == [("2019-01", None, None, None), ("2019-02", 7.5, 12.0, 3.0), ("2019-03", None, 12.0, None)]


# --- secrets -----------------------------------------------------------------------------------------------------


def test_status_and_failures_never_show_the_password(mirror, workdir, pg, monkeypatch):
    dsn = with_password(pg.dsn)
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", dsn)
    target = Target("postgres", lambda: pg.month_counts("green_tripdata"), pg.query)
    mirror.trips("green", "2019-01", 5)
    mirror.put("/green/green_tripdata_2019-02.csv.gz", HTML)
    r = run_cli(workdir, mirror, target, "--taxi", "green", "--start", "2019-01", "--end", "2019-02", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr, r  # finish() asserts the password is not in it
    as_json = run_cli(workdir, mirror, target, "--taxi", "green", "--start", "2019-01", "--end", "2019-02", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["files"][-1]["outcome"] == "failed", as_json
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt")}
    shown = subprocess.run(
        [sys.executable, "-m", "taxi_pipeline", "status", "--dest", "postgres", "--debug", "--json"],
        cwd=workdir, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0 and "green_tripdata" in shown.stdout, shown
    assert json.loads(shown.stdout)["destination"] == "postgres"
    assert PASSWORD not in shown.stdout + shown.stderr
