"""`status` and `report` only read: a read-only DuckDB file or folder, a run writing meanwhile, a database missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from tests.conftest import messages

GREEN_JAN = "/green/green_tripdata_2019-01.csv.gz"
DUCKDB_SETTING = "DESTINATION__DUCKDB__CREDENTIALS"
READS = [["status", "--json"], ["report", "--out", "trips.png"]]


def load(cli, mirror, *args: str):
    return cli("--base-url", mirror.url, *args)


def loaded_months(status_json: str) -> Dict[str, int]:
    """`status --json`'s trip months → rows in the destination."""
    return {f["month"]: f["rows_in_destination"] for f in json.loads(status_json)["files"] if f["month"]}


@pytest.fixture
def read_only_mount() -> Iterator[Callable[[Path, Path], None]]:
    """`mount(source, target)`: a folder or file seen read-only at `target` (made if missing), unmounted after.

    The tests run as root, whom file permissions do not stop: only a read-only mount refuses root's writes.
    """
    mounted: List[Path] = []

    def run(*cmd: str) -> None:
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"no read-only bind mount here ({' '.join(cmd)}: {getattr(exc, 'stderr', '') or exc})")

    def mount(source: Path, target: Path) -> None:
        if not target.exists():
            target.mkdir() if source.is_dir() else target.touch()
        run("mount", "--bind", str(source), str(target))
        mounted.append(target)
        run("mount", "-o", "remount,bind,ro", str(target))
        probe = target / ".probe" if target.is_dir() else target
        try:
            with open(probe, "a"):
                pass
        except OSError:
            return  # refused: read-only indeed
        pytest.skip("the bind mount is still writable")

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], capture_output=True)


def load_green_january(cli, mirror, monkeypatch, database: Path) -> None:
    database.parent.mkdir(exist_ok=True)
    monkeypatch.setenv(DUCKDB_SETTING, str(database))
    mirror.trips("green", "2019-01", 11)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0


# --- item 7: a DuckDB file in a read-only place is opened read-only ---------------------------------------------


@pytest.mark.parametrize("lock_file", [True, False], ids=["lock-file-left-by-a-load", "copied-database"])
def test_status_and_report_read_a_duckdb_file_in_a_read_only_folder(
    mirror, cli, workdir, monkeypatch, read_only_mount, lock_file
):
    load_green_january(cli, mirror, monkeypatch, workdir / "loaded" / "taxi.duckdb")
    if not lock_file:
        (workdir / "loaded" / "taxi.duckdb.lock").unlink()
    read_only_mount(workdir / "loaded", workdir / "shared")
    before = sorted(os.listdir(workdir / "shared"))
    monkeypatch.setenv(DUCKDB_SETTING, str(workdir / "shared" / "taxi.duckdb"))

    status = cli("status", "--json")
    assert status.code == 0, status
    assert loaded_months(status.out) == {"2019-01": 11}
    report = cli("report", "--out", str(workdir / "trips.png"))
    assert report.code == 0, report
    assert "trips of green over 2019-01..2019-01" in report.out and messages(report.err) == []
    assert sorted(os.listdir(workdir / "shared")) == before


def test_status_and_report_read_a_read_only_duckdb_file(mirror, cli, workdir, monkeypatch, read_only_mount):
    database = workdir / "loaded" / "taxi.duckdb"
    load_green_january(cli, mirror, monkeypatch, database)
    read_only_mount(database, database)  # the file itself read-only, its folder writable

    status = cli("status", "--json")
    assert status.code == 0, status
    assert loaded_months(status.out) == {"2019-01": 11}
    report = cli("report", "--out", str(workdir / "trips.png"))
    assert report.code == 0, report
    assert messages(report.err) == []


@pytest.mark.parametrize("command", READS, ids=["status", "report"])
def test_a_file_duckdb_cannot_open_is_one_line_and_exit_2(cli, workdir, monkeypatch, command):
    (workdir / "taxi.duckdb").write_bytes(b"not a database, " * 512)
    monkeypatch.setenv(DUCKDB_SETTING, str(workdir / "taxi.duckdb"))
    r = cli(*command)
    assert r.code == 2, r
    (line,) = messages(r.err)
    assert line.startswith("error: cannot open the duckdb destination (check DESTINATION__DUCKDB__CREDENTIALS): "), r
    assert not (workdir / "trips.png").exists()


# --- item 8: a read waits for a run writing the DuckDB file, says so, and gives up after the lock timeout ----------


def _spawn(workdir: Path, *args: str, **env: str) -> subprocess.Popen:
    full = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt_other"), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=workdir, env=full, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _writing(mirror, workdir: Path) -> subprocess.Popen:
    """A load in a process of its own, held inside its run (its download of green 2019-01 kept waiting)."""
    mirror.trips("green", "2019-01", 11)
    mirror.delay[GREEN_JAN] = 600.0  # until `mirror.released` is set
    writer = _spawn(workdir, "--base-url", mirror.url, "--taxi", "green", "--month", "2019-01")
    arrived = threading.Event()
    while not arrived.wait(0.05):  # the GET comes once the run holds the DuckDB file
        if mirror.gets(GREEN_JAN):
            arrived.set()
        assert writer.poll() is None, writer.communicate()
    return writer


@pytest.mark.parametrize("command", READS, ids=["status", "report"])
def test_a_read_says_it_waits_for_a_run_writing_the_duckdb_file_and_honours_the_lock_timeout(
    mirror, cli, workdir, monkeypatch, command
):
    import duckdb

    duckdb.connect(str(workdir / "taxi_pipeline.duckdb")).close()  # a database that exists
    writer = _writing(mirror, workdir)
    try:
        monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "1")
        r = cli(*command)
    finally:
        mirror.released.set()
        out, err = writer.communicate(timeout=240)
    assert writer.returncode == 0, (out, err)
    assert r.code == 1, r  # as a load that times out on the lock (README)
    database = workdir / "taxi_pipeline.duckdb"
    assert messages(r.err) == [
        f"note: another taxi_pipeline run is writing the DuckDB file {database}; waiting for it (up to 1 s)",
        f"error: another taxi_pipeline run kept the DuckDB file {database} busy for 1 s; try again later",
    ], r
    assert not (workdir / "trips.png").exists()


def test_status_waits_for_the_run_writing_the_duckdb_file_then_shows_its_month(mirror, workdir):
    import duckdb

    duckdb.connect(str(workdir / "taxi_pipeline.duckdb")).close()
    writer = _writing(mirror, workdir)
    reader = _spawn(workdir, "status", "--json")
    try:
        note = reader.stderr.readline()  # printed once the reader has found the file taken
    finally:
        mirror.released.set()
    assert note.startswith("note: another taxi_pipeline run is writing the DuckDB file"), note
    assert writer.wait(timeout=240) == 0, writer.communicate()
    out, err = reader.communicate(timeout=240)
    assert reader.returncode == 0, (out, err)
    assert loaded_months(out) == {"2019-01": 11}


# --- item 9: a Postgres database that does not exist --------------------------------------------------------------


@pytest.mark.parametrize("command", READS, ids=["status", "report"])
def test_a_postgres_database_that_does_not_exist_is_one_line_and_exit_2(cli, pg, monkeypatch, workdir, command):
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", pg.dsn.rsplit("/", 1)[0] + "/no_such_db")
    r = cli(command[0], "--dest", "postgres", *command[1:])
    assert r.code == 2, r
    (line,) = messages(r.err)
    assert line.startswith("error: cannot open the postgres destination (check DESTINATION__POSTGRES__CREDENTIALS)")
    assert "no_such_db" in line and not (workdir / "trips.png").exists()
