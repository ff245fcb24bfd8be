"""What a killed run downloaded is removed by the next run; nothing of a live run, and nothing not ours.

A run downloads each month into a scratch folder of the temporary folder (`interrupts.make_scratch_folder`). Ctrl-C
and SIGTERM remove it; `kill -9` cannot, so the next run removes the folders whose process is dead
(`interrupts.remove_dead_scratch_folders`), known by the lock their process held on a marker inside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Set

import pytest

from taxi_pipeline.interrupts import (
    SCRATCH_MARKER,
    SCRATCH_PREFIX,
    make_scratch_folder,
    remove_dead_scratch_folders,
    remove_scratch_folder,
)
from tests.conftest import month_counts
from tests.test_faults import (
    BACKFILL,
    FEBRUARY_CALL,
    MONTHS,
    Target,
    finish,
    publish_backfill,
    run_cli,
    spawn,
    wait_for,
)


@pytest.fixture
def tmp(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TMPDIR for this process and the runs it starts: every scratch folder they make is seen."""
    folder = workdir / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return folder


def scratch_folders(tmp: Path) -> Set[Path]:
    return {p for p in tmp.iterdir() if p.name.startswith(SCRATCH_PREFIX)}


def contents(folder: Path) -> Dict[str, int]:
    """File name → size, of everything in `folder`."""
    return {p.name: p.stat().st_size for p in folder.iterdir()}


def test_the_next_run_removes_what_a_killed_run_downloaded_and_keeps_a_live_runs(mirror, workdir, duck, tmp):
    """`kill -9` while February downloads leaves its scratch folder; the next run removes it. A run of another
    project on the same machine (its own database, the same temporary folder), frozen while it loads its month,
    keeps its folder and download."""
    publish_backfill(mirror)
    target = Target("duckdb", lambda: month_counts(duck, "green_tripdata"), duck)
    other = workdir / "other"
    other.mkdir()
    live_marker = workdir / "live_frozen"
    live = spawn(other, mirror, target, "--taxi", "green", "--month", "2019-01", via=["load", "1", str(live_marker)])
    try:
        wait_for(lambda: live_marker.exists() or live.poll() is not None, "the live run to load January")
        assert live.poll() is None, finish(live)
        live_folders = scratch_folders(tmp)
        live_files = {folder: contents(folder) for folder in live_folders}
        assert any("green_tripdata_2019-01.csv.gz" in files for files in live_files.values()), live_files

        # February is fetched while January loads, and held by the mirror: the run is killed frozen at February's
        # extract, waiting for that download (as in tests/test_faults.py)
        mirror.delay[mirror.path("green", "2019-02")] = 60
        marker = workdir / "frozen"
        proc = spawn(workdir, mirror, target, *BACKFILL, via=["extract", str(FEBRUARY_CALL), str(marker)])
        wait_for(lambda: (marker.exists() and mirror.gets("2019-02")) or proc.poll() is not None, "February's GET")
        assert proc.poll() is None, finish(proc)
        killed_folders = scratch_folders(tmp) - live_folders
        assert killed_folders, "the run has no scratch folder while February downloads"
        proc.send_signal(signal.SIGKILL)
        assert finish(proc).returncode == -signal.SIGKILL
        del mirror.delay[mirror.path("green", "2019-02")]
        mirror.released.set()  # the held GET goes out, to nobody
        assert scratch_folders(tmp) == live_folders | killed_folders

        rerun = run_cli(workdir, mirror, target, *BACKFILL)
        assert rerun.returncode == 0, rerun
        assert target.counts() == MONTHS
        assert scratch_folders(tmp) == live_folders, "the killed run's download was left behind, or a live one taken"
        assert {folder: contents(folder) for folder in live_folders} == live_files
        assert live.poll() is None
    finally:
        live.kill()
        finish(live)


MAKE_ONE = """
import os, signal, sys
from taxi_pipeline.interrupts import make_scratch_folder
folder = make_scratch_folder()
with open(os.path.join(folder, "green_tripdata_2019-01.csv.gz"), "wb") as f:
    f.write(b"x" * 1000)
print(folder, flush=True)
if sys.argv[1] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()  # lives until the test closes its stdin
"""


def scratch_of_a_process(how: str) -> subprocess.Popen:
    """A process that makes a scratch folder with a download in it, then lives on (`live`) or is killed (`die`)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", MAKE_ONE, how], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def test_only_folders_of_dead_processes_of_ours_are_removed(workdir, tmp):
    dead = scratch_of_a_process("die")
    dead_folder = Path(dead.stdout.readline().strip())
    assert dead.wait() == -signal.SIGKILL
    live = scratch_of_a_process("live")
    try:
        live_folder = Path(live.stdout.readline().strip())
        own_folder = Path(make_scratch_folder())  # this process's: a run's own, or its worker's
        not_ours = tmp / f"{SCRATCH_PREFIX}of_someone_else"  # our prefix, no marker
        not_ours.mkdir()
        (not_ours / "data").write_text("keep")
        a_file = tmp / f"{SCRATCH_PREFIX}file"
        a_file.write_text("keep")
        elsewhere = workdir / "elsewhere"  # an unlocked marker, reached through a link only
        elsewhere.mkdir()
        (elsewhere / SCRATCH_MARKER).write_text("")
        (tmp / f"{SCRATCH_PREFIX}link").symlink_to(elsewhere)
        before = {p.name for p in tmp.iterdir()}
        assert {dead_folder, live_folder, own_folder} <= set(tmp.iterdir())

        assert remove_dead_scratch_folders() == [str(dead_folder)]

        assert {p.name for p in tmp.iterdir()} == before - {dead_folder.name}
        assert (not_ours / "data").exists() and a_file.exists() and (elsewhere / SCRATCH_MARKER).exists()
        assert (live_folder / "green_tripdata_2019-01.csv.gz").exists() and own_folder.exists()
        assert remove_dead_scratch_folders() == []
    finally:
        live.stdin.close()
        live.wait()
    assert remove_dead_scratch_folders() == [str(live_folder)]  # its process has ended without removing it
    remove_scratch_folder(str(own_folder))
    assert not own_folder.exists()
