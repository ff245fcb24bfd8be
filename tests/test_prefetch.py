"""The next month is downloaded (and its load file written) while the current month loads."""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pyarrow.parquet as pq
import pytest
from dlt.pipeline.pipeline import Pipeline

from taxi_pipeline.errors import FileFormatError
from taxi_pipeline.helpers import LOAD, NOT_PUBLISHED, SKIP, Cancelled, MonthPlan
from taxi_pipeline.loading import _with_next_load
from taxi_pipeline.pipeline import FAILED, LOADED, run
from taxi_pipeline.prefetch import Prefetch
from taxi_pipeline.schemas import trip_schema
from tests import tlc_files
from tests.conftest import month_counts

MONTHS = ("2019-01", "2019-02", "2019-03")


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """A private TMPDIR, so the test sees every temporary folder a run leaves behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return folder


def _gets_seen_while_loading(monkeypatch, mirror) -> List[Dict[str, int]]:
    """Make each file's load wait (≤ 10 s) for the GET of the month after the one loading; record the GETs it saw.

    Only the load right after an extract counts (a package of state alone is not a month's).
    """
    seen: List[Dict[str, int]] = []
    original, original_extract = Pipeline.load, Pipeline.extract
    extracted = []

    def extract(self, *args, **kwargs):
        extracted.append(True)
        return original_extract(self, *args, **kwargs)

    def load(self, *args, **kwargs):
        if not extracted:
            return original(self, *args, **kwargs)
        extracted.clear()
        # load k is MONTHS[k] (the zone lookup goes with January's): wait for MONTHS[k + 1]
        following = MONTHS[len(seen) + 1] if len(seen) + 1 < len(MONTHS) else None
        deadline = time.monotonic() + 10
        while following and not mirror.gets(f"green_tripdata_{following}") and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append({m: mirror.gets(f"green_tripdata_{m}") for m in MONTHS})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "load", load)
    monkeypatch.setattr(Pipeline, "extract", extract)
    return seen


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_next_month_is_downloaded_while_the_current_one_loads(request, destination, mirror, monkeypatch):
    if destination == "postgres":
        request.getfixturevalue("pg")
    own_tmp = request.getfixturevalue("own_tmp")  # after the server has its own folder
    for month in MONTHS:
        mirror.trips("green", month, 20 + int(month[-1]))
    seen = _gets_seen_while_loading(monkeypatch, mirror)

    result = run(destination, "green", start=MONTHS[0], end=MONTHS[-1], base_url=mirror.url)

    assert [(r.month, r.outcome, r.rows) for r in result.results[1:]] == [(m, LOADED, 20 + int(m[-1])) for m in MONTHS]
    # while January loaded, February had been fetched; while February loaded, March; March loaded alone
    assert seen[0] == {"2019-01": 1, "2019-02": 1, "2019-03": 0}
    assert seen[1] == {"2019-01": 1, "2019-02": 1, "2019-03": 1}
    assert {m: mirror.gets(f"green_tripdata_{m}") for m in MONTHS} == dict.fromkeys(MONTHS, 1)  # fetched once
    assert list(own_tmp.iterdir()) == []  # every downloaded file and load file removed


def test_a_bad_month_fetched_ahead_fails_alone_with_its_error(mirror, monkeypatch, own_tmp):
    for month in MONTHS:
        mirror.trips("green", month, 10)
    mirror.put("/green/green_tripdata_2019-02.csv.gz", b"<!doctype html><html>rate limited</html>")
    seen = _gets_seen_while_loading(monkeypatch, mirror)

    result = run("duckdb", "green", start=MONTHS[0], end=MONTHS[-1], base_url=mirror.url)

    outcomes = [(r.month, r.outcome) for r in result.results[1:]]
    assert outcomes == [("2019-01", LOADED), ("2019-02", FAILED), ("2019-03", LOADED)]
    assert seen[1]["2019-02"] == 1  # it was the prefetched one
    assert "green_tripdata_2019-02.csv.gz" in result.failures[0].detail and "HTML" in result.failures[0].detail
    assert list(own_tmp.iterdir()) == []


def test_closing_a_prefetch_stops_it_and_removes_its_folder(mirror, own_tmp):
    mirror.trips("green", "2019-01", 10)
    path = "/green/green_tripdata_2019-01.csv.gz"
    mirror.delay[path] = 0.5
    plan = MonthPlan("2019-01", mirror.url + path, "green_tripdata_2019-01.csv.gz", LOAD)

    prefetch = Prefetch(plan, trip_schema("green"), "parquet")
    assert len(list(own_tmp.iterdir())) == 1
    prefetch.close()  # before the server has answered

    assert list(own_tmp.iterdir()) == []
    with pytest.raises(Cancelled):
        prefetch.result()


def _january(mirror) -> tuple:
    """A 12-row green January on the mirror: its path there and the plan that loads it."""
    mirror.trips("green", "2019-01", 12)
    path = "/green/green_tripdata_2019-01.csv.gz"
    return path, MonthPlan("2019-01", mirror.url + path, "green_tripdata_2019-01.csv.gz", LOAD)


def test_a_finished_prefetch_holds_the_load_file_until_closed(mirror, own_tmp):
    path, plan = _january(mirror)

    with Prefetch(plan, trip_schema("green"), "parquet") as prefetch:
        fetched = prefetch.result()
        assert fetched.rows == 12 and pq.ParquetFile(fetched.load_path).metadata.num_rows == 12
        assert fetched.fingerprint.size == len(mirror.files[path][0])
    assert not Path(fetched.load_path).exists()


def test_a_manifest_prefetch_parses_nothing_and_names_the_downloaded_file(mirror, own_tmp):
    """DuckDB's and Postgres' load file: the downloaded file, named for the load job to parse later, with the
    fingerprint the job records the month with; columns from the header."""
    path, plan = _january(mirror)

    with Prefetch(plan, trip_schema("green"), "jsonl") as prefetch:
        fetched = prefetch.result()
        manifest = json.loads(Path(fetched.load_path).read_text())
        assert manifest == {
            "taxi_pipeline_manifest": 1,
            "path": fetched.path,
            "file": "green_tripdata_2019-01.csv.gz",
            "table": "green_tripdata",
            "month": "2019-01",
            "fingerprint": fetched.fingerprint.as_dict(),
        }
        assert Path(fetched.path).read_bytes() == mirror.files[path][0] and fetched.rows == 0
        assert fetched.columns.names[:2] == ["vendor_id", "lpep_pickup_datetime"]
        assert fetched.columns.names[-3:] == ["source_month", "source_file", "source_row"]
    assert not Path(fetched.path).exists()


def test_an_unknown_load_file_format_is_refused_before_downloading(mirror, own_tmp):
    path, plan = _january(mirror)
    with Prefetch(plan, trip_schema("green"), "csv") as prefetch, pytest.raises(ValueError, match="'csv'"):
        prefetch.result()
    assert mirror.gets("green_tripdata_2019-01") == 0


def test_a_prefetch_raises_the_fetch_error_when_taken(mirror, own_tmp):
    mirror.put("/green/green_tripdata_2019-01.csv.gz", b"VendorID,lpep_pickup_datetime\n1,not a time\n")
    plan = MonthPlan(
        "2019-01", mirror.url + "/green/green_tripdata_2019-01.csv.gz", "green_tripdata_2019-01.csv.gz", LOAD
    )
    with Prefetch(plan, trip_schema("green"), "parquet") as prefetch, pytest.raises(FileFormatError):
        prefetch.result()


def test_each_plan_is_paired_with_the_next_month_to_load():
    def plan(month: str, action: str) -> MonthPlan:
        return MonthPlan(month, f"u/{month}", month, action)

    plans = [
        plan("01", SKIP),
        plan("02", LOAD),
        plan("03", SKIP),
        plan("04", LOAD),
        plan("05", LOAD),
        plan("06", NOT_PUBLISHED),
    ]
    pairs = [(p.month, f.month if f else None) for p, f in _with_next_load(plans)]
    assert pairs == [("01", None), ("02", "04"), ("03", None), ("04", "05"), ("05", None), ("06", None)]
    assert list(_with_next_load([])) == []


def test_closing_does_not_wait_for_a_stalled_download(mirror, own_tmp, monkeypatch):
    import taxi_pipeline.prefetch as prefetch_mod

    monkeypatch.setattr(prefetch_mod, "CLOSE_WAIT", 0.2)
    mirror.trips("green", "2019-01", 10)
    path = "/green/green_tripdata_2019-01.csv.gz"
    mirror.delay[path] = 3  # the server answers only after 3 s
    plan = MonthPlan("2019-01", mirror.url + path, "green_tripdata_2019-01.csv.gz", LOAD)

    prefetch = Prefetch(plan, trip_schema("green"), "parquet")
    started = time.monotonic()
    prefetch.close()
    assert time.monotonic() - started < 2  # returns before the server answers
    assert list(own_tmp.iterdir()) == []


def test_the_first_month_is_fetched_while_the_zone_lookup_is(mirror, cli, duck):
    """A first run's fixed cost: the zone lookup's download overlaps the first month's."""
    mirror.trips("green", "2019-01", 30)
    zones = "/misc/taxi_zone_lookup.csv"
    mirror.delay[zones] = 1.5  # the zone lookup's GET answers late
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0, r
    gets = {path: t for t, method, path in mirror.arrivals if method == "GET"}
    month = "/green/green_tripdata_2019-01.csv.gz"
    assert gets[month] < gets[zones] + 1.5, "the month was fetched only after the zone lookup"
    assert duck("select count(*) from taxi_raw.green_tripdata") == [(30,)]
    assert duck("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] > 200


def test_a_month_is_one_dlt_run_and_the_first_takes_the_zone_lookup(mirror, cli, duck, monkeypatch):
    """dlt's fixed cost of a run is paid once per month: the zone lookup goes in the first month's load package,
    and a month's record goes in its own load (no package of state after it)."""
    mirror.trips("green", "2019-01", 30)
    mirror.trips("green", "2019-02", 20)
    extracted: List[List[str]] = []
    loads: List[bool] = []
    original, original_load = Pipeline.extract, Pipeline.load

    def extract(self, data, *args, **kwargs):
        extracted.append(sorted(data.selected_resources))
        return original(self, data, *args, **kwargs)

    def load(self, *args, **kwargs):
        loads.append(True)
        return original_load(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "extract", extract)
    monkeypatch.setattr(Pipeline, "load", load)
    r = cli("--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert extracted == [["green_tripdata", "taxi_zone_lookup"], ["green_tripdata"]]
    assert len(loads) == 2
    assert duck("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] > 200
    assert month_counts(duck, "green_tripdata") == {"2019-01": 30, "2019-02": 20}
    assert r.out.index("taxi_zone_lookup") < r.out.index("green_tripdata"), r.out


def test_a_first_month_that_fails_passes_the_zone_lookup_on(mirror, cli, duck):
    """The zone lookup rode with a month whose load failed: the next month's run takes it, fetched again."""
    lines = gzip.decompress(tlc_files.trip_csv("green", "2019-01", 30)).decode().splitlines()
    cells = lines[3].split(",")
    cells[9] = "abc"  # fare_amount: the file fails in its load job, after the zone lookup's job has run
    lines[3] = ",".join(cells)
    mirror.put("/green/green_tripdata_2019-01.csv.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    mirror.trips("green", "2019-02", 20)
    r = cli("--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 1, r
    assert "green_tripdata 2019-01" in r.err, r
    assert duck("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] > 200
    assert month_counts(duck, "green_tripdata") == {"2019-02": 20}
    assert mirror.gets("taxi_zone_lookup") == 2  # fetched for January's run, again for February's
    results = [line.split()[:2] for line in r.out.splitlines() if not line.startswith(" ") and "  " in line]
    assert results == [
        ["green_tripdata", "2019-01"],
        ["taxi_zone_lookup", "loaded"],
        ["green_tripdata", "2019-02"],
    ], r.out


def test_a_zone_lookup_that_fails_to_fetch_leaves_the_months_to_load(mirror, cli, duck):
    """A bad zone file fails as the zone lookup's own result, before any month's run takes it in."""
    mirror.trips("green", "2019-01", 30)
    mirror.put("/misc/taxi_zone_lookup.csv", b"<html><body>Service unavailable</body></html>")
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert "taxi_zone_lookup" in r.err and "HTML" in r.err, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 30}
