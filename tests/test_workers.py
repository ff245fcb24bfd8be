"""`--workers N`: a run's months spread over worker processes, on a real Postgres server.

One display, one line per file and one summary; Ctrl-C / SIGTERM stop every worker; a worker that dies fails
its month and the others go on; DuckDB keeps one writer and says so.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from taxi_pipeline.errors import ConfigError, LoadError
from taxi_pipeline.pipeline import FAILED, MonthResult
from taxi_pipeline.workers import _portable
from tests.conftest import PROGRESS_LINE, messages
from tests.test_postgres import GREEN_JAN, cli_command, done, pg_load, spawn_run, wait_until

FOUR_MONTHS = (("2019-01", 30), ("2019-02", 20), ("2019-03", 10), ("2019-04", 15))
BACKFILL = ("--taxi", "green", "--start", "2019-01", "--end", "2019-04")


def publish(mirror, months=FOUR_MONTHS) -> None:
    for month, n in months:
        mirror.trips("green", month, n)


def workers_of(pid: int) -> List[int]:
    """The worker processes of a run (its children started by multiprocessing's spawn, not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_load_months_side_by_side(parallel_mirror, pg, workdir):
    """With January's download held, the second worker loads February to April meanwhile; one summary after."""
    mirror = parallel_mirror
    publish(mirror)
    mirror.delay[GREEN_JAN] = 120
    run = spawn_run(workdir, mirror, "a", *BACKFILL, "--workers", "2")
    wait_until(
        lambda: run.poll() is not None or len(pg.month_counts_if_any("green_tripdata")) == 3,
        "February to April to load while January is held",
    )
    assert run.poll() is None and mirror.gets("2019-01") == 1, "January was to be still held"
    mirror.released.set()
    result = done(run)
    assert result.returncode == 0, result
    assert pg.month_counts("green_tripdata") == dict(FOUR_MONTHS)
    lines = result.stdout.splitlines()
    assert sorted(line.split()[1] for line in lines if line.startswith("green_tripdata")) == [m for m, _ in FOUR_MONTHS]
    assert re.search(r"green_tripdata +2019-01\.\.2019-04 +loaded", result.stdout)  # one range in the summary
    assert "summary: 5 loaded" in result.stdout  # the zone lookup (loaded by the run itself) and four months
    # the workers' progress shows in the run's display
    assert "green_tripdata 2019-03: 10 rows read in" in result.stderr
    assert all(PROGRESS_LINE.match(line) for line in result.stderr.splitlines()), result.stderr
    gets = mirror.gets()
    rerun = done(spawn_run(workdir, mirror, "a", *BACKFILL, "--workers", "2"))
    assert rerun.returncode == 0 and mirror.gets() == gets, rerun
    assert "summary: 5 skipped" in rerun.stdout


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_a_stopped_run_stops_every_worker(parallel_mirror, pg, workdir, how):
    """Ctrl-C (SIGINT to the whole process group) or SIGTERM to the run alone (a scheduler's kill): the run and
    both workers end, nothing of the held months is kept, one error line, exit 1; a rerun loads them exactly."""
    mirror = parallel_mirror
    publish(mirror, FOUR_MONTHS[:2])
    mirror.delay[GREEN_JAN] = mirror.delay["/green/green_tripdata_2019-02.csv.gz"] = 120
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt_a")}
    cmd = [*cli_command(mirror), "--taxi", "green", "--start", "2019-01", "--end", "2019-02", "--workers", "2"]
    run = subprocess.Popen(cmd, cwd=workdir, env=env, text=True, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)  # fmt: skip
    wait_until(lambda: mirror.gets("2019-01") and mirror.gets("2019-02") or run.poll() is not None, "both months")
    workers = workers_of(run.pid)
    assert len(workers) == 2
    if how == "Ctrl-C":
        os.killpg(run.pid, signal.SIGINT)
    else:
        run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 1, (out, err)
    assert len(messages(err)) == 1 and "interrupted by" in messages(err)[0], err
    wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to end", timeout=10)
    assert pg.month_counts_if_any("green_tripdata") == {}
    mirror.released.set()
    del mirror.delay[GREEN_JAN]
    rerun = done(spawn_run(workdir, mirror, "a", "--taxi", "green", "--start", "2019-01", "--end", "2019-02"))
    assert rerun.returncode == 0, rerun
    assert pg.month_counts("green_tripdata") == {"2019-01": 30, "2019-02": 20}


def test_a_worker_that_dies_fails_its_month_and_the_others_load(parallel_mirror, pg, workdir):
    """`kill -9` of the worker that holds January: January fails naming the worker, the other months load,
    exit 1; the next run loads January alone."""
    mirror = parallel_mirror
    publish(mirror)
    mirror.delay[GREEN_JAN] = 120
    run = spawn_run(workdir, mirror, "a", *BACKFILL, "--workers", "2")
    wait_until(lambda: run.poll() is not None or len(pg.month_counts_if_any("green_tripdata")) == 3, "the other months")
    wait_until(lambda: len(workers_of(run.pid)) == 1, "the worker with nothing left to end")
    os.kill(workers_of(run.pid)[0], signal.SIGKILL)
    result = done(run)
    assert result.returncode == 1, result
    assert len(messages(result.stderr)) == 1, result.stderr
    assert re.fullmatch(
        r"error: green_tripdata 2019-01: worker \d died \(exit code -9\) while loading it; run again to load it",
        messages(result.stderr)[0],
    )
    assert "summary: 4 loaded, 1 failed" in result.stdout
    mirror.released.set()
    del mirror.delay[GREEN_JAN]
    rerun = done(spawn_run(workdir, mirror, "a", *BACKFILL, "--workers", "2"))
    assert rerun.returncode == 0, rerun
    assert "summary: 1 loaded, 4 skipped" in rerun.stdout
    assert pg.month_counts("green_tripdata") == dict(FOUR_MONTHS)


def test_a_worker_killed_while_it_waits_for_a_month_leaves_the_others_going(parallel_mirror, pg, workdir):
    """`kill -9` of a worker that has no month (the run is still planning): the other worker takes the months that
    come after; nothing fails, a note names the dead worker."""
    mirror = parallel_mirror
    publish(mirror)
    mirror.head_delay["/green/green_tripdata_2019-04.csv.gz"] = 120  # the run's plan stops at April until released
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt_a")}
    out, err = open(workdir / "run.out", "w+"), open(workdir / "run.err", "w+")  # noqa: SIM115 - closed below
    run = subprocess.Popen([*cli_command(mirror), *BACKFILL, "--workers", "2"], cwd=workdir, env=env, stdout=out,
                           stderr=err, text=True)  # fmt: skip
    try:
        loaded = re.compile(r"^green_tripdata 2019-0[12] +loaded", re.M)
        wait_until(lambda: len(loaded.findall(Path(out.name).read_text())) == 2 or run.poll() is not None, "Jan, Feb")
        wait_until(lambda: len(workers_of(run.pid)) == 2, "both workers")
        time.sleep(0.5)  # both ask for a month and wait
        os.kill(workers_of(run.pid)[0], signal.SIGKILL)
        wait_until(lambda: "died (exit code -9); 1 worker(s) left" in Path(err.name).read_text(), "the note")
        mirror.released.set()
        assert run.wait(timeout=120) == 0, Path(err.name).read_text()
    finally:
        mirror.released.set()
        out.close()
        err.close()
    assert pg.month_counts("green_tripdata") == dict(FOUR_MONTHS)
    assert "summary: 5 loaded" in Path(out.name).read_text()


def test_a_month_that_fails_in_a_worker_is_reported_and_the_others_load(mirror, cli, pg):
    """A file that is not gzip fails in its worker: the error crosses to the run's summary, the exit code is 1."""
    publish(mirror, FOUR_MONTHS[:3])
    mirror.put("/green/green_tripdata_2019-02.csv.gz", b"not a gzip file at all")
    r = pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-03", "--workers", "3")
    assert r.code == 1, r
    assert pg.month_counts("green_tripdata") == {"2019-01": 30, "2019-03": 10}
    failures = [m for m in messages(r.err) if m.startswith("error:")]
    assert len(failures) == 1 and failures[0].startswith("error: green_tripdata 2019-02:"), r.err
    assert "summary: 3 loaded, 1 failed" in r.out


def test_a_worker_result_crosses_to_the_run_with_its_error():
    """dlt's exceptions may not survive pickling: they cross as a LoadError with their line; a ConfigError stays
    one (it makes the exit code 2)."""

    class Unpicklable(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} {b}")

    for error, kind in ((Unpicklable("copy", "failed"), LoadError), (ConfigError("wrong root"), ConfigError)):
        res = _portable(MonthResult("green_tripdata", "2019-01", FAILED, detail="x", error=error))
        crossed = pickle.loads(pickle.dumps(res))
        assert type(crossed.error) is kind and str(crossed.error) == str(error)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_worker_counts_are_one_line_exit_2(mirror, cli, value):
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--workers", value)
    assert r.code == 2 and "--workers" in r.err and r.err.count("\n") == 1, r


def test_bad_workers_setting_is_exit_2(mirror, cli, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__WORKERS", "many")
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2 and "sources.taxi.workers" in r.err and r.err.count("\n") == 1, r


def test_duckdb_keeps_one_writer_and_says_so(mirror, cli, duck):
    publish(mirror, FOUR_MONTHS[:2])
    r = cli("--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02", "--workers", "4")
    assert r.code == 0, r
    assert "note: duckdb loads one month at a time (--workers 4 runs as 1): a DuckDB file takes one writer" in r.err
    assert dict(duck("select source_month, count(*) from taxi_raw.green_tripdata group by 1")) == {
        "2019-01": 30,
        "2019-02": 20,
    }
