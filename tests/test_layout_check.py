"""A base URL or format of the wrong layout fails loudly: a long-published month answering 404 is configuration.

Other tests run with the check off (`SOURCES__TAXI__OVERDUE_AFTER_MONTHS=0`, see conftest: the mirror holds only
the months a test publishes); these turn it back on, at its default.
"""

from __future__ import annotations

import datetime as dt

import pytest

from taxi_pipeline.helpers import long_published
from taxi_pipeline.months import Month
from taxi_pipeline.settings import PROBE_THREADS
from tests.conftest import messages, month_counts

TODAY = dt.date(2026, 12, 2)


@pytest.fixture(autouse=True)
def check_on(workdir, monkeypatch):
    monkeypatch.delenv("SOURCES__TAXI__OVERDUE_AFTER_MONTHS")


def load(cli, mirror, *args: str):
    return cli("--base-url", mirror.url, *args)


def test_parquet_run_against_the_csv_layout_exits_2_and_names_the_fix(mirror, cli, duck):
    mirror.trips("green", "2019-01", 10)  # csv layout only
    r = load(cli, mirror, "--format", "parquet", "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    (line,) = messages(r.err)
    assert line.startswith("error: green_tripdata 2019-01: ") and "not found" in line, line
    assert "published long ago in the parquet layout" in line and "use --format csv" in line, line
    assert "not published" not in r.out


def test_csv_run_against_the_parquet_layout_exits_2_and_names_the_fix(mirror, cli, duck):
    mirror.trips("yellow", "2020-03", 10, fmt="parquet")
    r = load(cli, mirror, "--taxi", "yellow", "--month", "2020-03")
    assert r.code == 2, r
    (line,) = messages(r.err)
    assert "published long ago in the csv layout" in line and "use --format parquet" in line, line


def test_a_wrong_root_in_an_open_ended_run_exits_2_at_its_first_month(mirror, cli, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", "2023-01")
    r = load(cli, mirror, "--format", "parquet", "--taxi", "green")
    assert r.code == 2, r
    (line,) = messages(r.err)
    assert "green_tripdata 2023-01" in line and "check --base-url" in line and "--format" in line, line
    assert f"csv files are at {mirror.url}/green/, parquet files at {mirror.url}/trip-data/" in line, line
    asked = [(method, p) for (method, p) in mirror.requests if "tripdata" in p]
    assert ("HEAD", "/green/green_tripdata_2023-01.csv.gz") in asked  # the other layout, asked once for the hint
    # a walk that stops starts no more HEADs than were in flight (plus the other layout's, for the hint)
    assert all(method == "HEAD" for method, _ in asked) and len(asked) <= PROBE_THREADS + 1, asked


def test_recent_months_and_months_past_the_csv_mirror_stay_not_published(mirror, cli, duck):
    recent = str(Month.of(dt.date.today()).minus(2))  # within the TLC's lag
    r = load(cli, mirror, "--format", "parquet", "--taxi", "green", "--month", recent)
    assert r.code == 0 and "not published" in r.out, r
    r = load(cli, mirror, "--taxi", "green", "--month", "2022-03")  # the csv mirror is a fixed copy to 2021-07
    assert r.code == 0 and "not published" in r.out, r


def test_a_partial_mirror_of_your_own_turns_the_check_off(mirror, cli, duck, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__OVERDUE_AFTER_MONTHS", "0")
    mirror.trips("green", "2019-01", 10)
    r = load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0 and "not published" in r.out, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 10}


def test_a_bad_overdue_setting_is_exit_2(mirror, cli, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__OVERDUE_AFTER_MONTHS", "soon")
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2 and "bad sources.taxi.overdue_after_months 'soon'" in r.err, r


@pytest.mark.parametrize(
    "taxi, month, fmt, expected",
    [
        ("yellow", "2026-06", "parquet", True),  # six months old
        ("yellow", "2026-07", "parquet", False),  # could still be late
        ("green", "2013-07", "parquet", False),  # before green's first month
        ("green", "2013-08", "parquet", True),
        ("yellow", "2019-01", "csv", True),
        ("yellow", "2021-07", "csv", True),
        ("yellow", "2021-08", "csv", False),  # past the fixed csv mirror
        ("fhvhv", "2020-01", "csv", False),  # the csv mirror's fhvhv range is not known: never a config error
        ("fhvhv", "2020-01", "parquet", True),
    ],
)
def test_long_published_months_per_layout(taxi, month, fmt, expected):
    assert long_published(taxi, Month.parse(month), fmt, today=TODAY) is expected
    assert long_published(taxi, Month.parse(month), fmt, today=TODAY, overdue_after=0) is False
