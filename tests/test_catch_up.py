"""Scheduled catch-up runs against a feed that publishes months late, one of them out of order, and republishes.

A year of weekly slots, each an open-ended run on its own date (`run(today=…)`) against a mirror that holds what
the TLC would have published by then: about two months after a month ends, one month four months after, and an
old month republished once. After every slot the destination holds exactly the published months, and over the
year each file is downloaded once, plus once for its republication.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Dict, List, Set

import pytest

from taxi_pipeline import run
from taxi_pipeline.months import Month, month_range
from tests.conftest import month_counts

START = Month(2024, 1)
MONTHS = [str(m) for m in month_range(START, Month(2025, 2))]
LATE = "2024-05"
"""Published two months after the ones around it."""
REPUBLISHED, REPUBLISHED_ON = "2024-02", dt.date(2024, 10, 5)
SLOTS = [dt.date(2024, 3, 4) + dt.timedelta(days=7 * week) for week in range(53)]  # weekly, Mondays


def published_on(month: str) -> dt.date:
    """Mid-month, two months after the month ends (four for LATE)."""
    later = Month.parse(month).minus(-(4 if month == LATE else 2))
    return dt.date(later.year, later.month, 18)


def rows_of(month: str, republished: bool = False) -> int:
    return 5 + MONTHS.index(month) + (7 if republished else 0)


def path_of(month: str) -> str:
    return f"/trip-data/yellow_tripdata_{month}.parquet"


def loaded(duck) -> Dict[str, int]:
    if not duck("select count(*) from information_schema.tables where table_name = 'yellow_tripdata'")[0][0]:
        return {}
    return month_counts(duck, "yellow_tripdata")


@pytest.fixture
def feed(mirror, monkeypatch):
    """The mirror, filled slot by slot: `feed(day)` publishes what the TLC had published by `day`."""
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", str(START))
    monkeypatch.delenv("SOURCES__TAXI__OVERDUE_AFTER_MONTHS")  # the wrong-layout check stays on: no slot trips it

    def publish_until(day: dt.date) -> Dict[str, int]:
        expected = {}
        for month in MONTHS:
            if published_on(month) > day:
                continue
            again = month == REPUBLISHED and REPUBLISHED_ON <= day
            if path_of(month) not in mirror.files or (again and month not in republished):
                mirror.trips("yellow", month, rows_of(month, again), fmt="parquet", seed=int(again))
                if again:
                    republished.add(month)
            expected[month] = rows_of(month, again)
        return expected

    republished: Set[str] = set()
    return publish_until


def test_a_year_of_scheduled_slots_loads_each_month_once_it_is_published(mirror, feed, duck):
    notes: List[str] = []
    for slot in SLOTS:
        expected = feed(slot)
        notes.clear()
        result = run(
            taxi_types="yellow", file_format="parquet", base_url=mirror.url, today=slot, on_notice=notes.append
        )
        assert result.ok, (slot, [r.detail for r in result.failures])
        assert loaded(duck) == expected, slot
        asked = {p for (_, p) in mirror.requests if "tripdata" in p}
        assert all(Month.parse(p[-15:-8]) <= Month.of(slot) for p in asked), "a month after the slot was asked for"
        if slot == dt.date(2024, 8, 19):  # June is out, May is late
            assert sorted(expected) == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-06"]
            assert notes == [
                "yellow_tripdata: newest published month 2024-06; not published yet: 2024-05, 2024-07..2024-08 "
                "(the TLC publishes a month about two months after it ends; the next run loads it once it is there)"
            ]
    gets = {month: mirror.gets(path_of(month)) for month in MONTHS if month in expected}
    assert gets == {month: 2 if month == REPUBLISHED else 1 for month in gets}
    assert len(gets) == 12  # 2024-01 … 2024-12 are out by the last slot (2025-02-24)


def test_a_run_where_nothing_is_new_only_asks(mirror, feed, duck):
    slot = dt.date(2024, 9, 30)
    feed(slot)
    assert run(taxi_types="yellow", file_format="parquet", base_url=mirror.url, today=slot).ok
    before = mirror.requests.copy()
    again = run(taxi_types="yellow", file_format="parquet", base_url=mirror.url, today=slot)
    assert again.ok and {r.outcome for r in again.results} == {"skipped", "not published"}
    new = mirror.requests - before
    assert {method for method, _ in new} == {"HEAD"}, new  # nothing downloaded
    assert sum(new.values()) == 1 + len(month_range(START, Month.of(slot)))  # the zones and each month, once


def test_a_csv_catch_up_past_the_fixed_mirror_says_where_newer_months_are(mirror, cli, duck, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", "2021-06")
    mirror.trips("green", "2021-06", 6)
    mirror.trips("green", "2021-07", 7)
    r = cli("--base-url", mirror.url, "--taxi", "green")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2021-06": 6, "2021-07": 7}
    assert (
        "note: green_tripdata: 2021-08 is not in the csv mirror, a fixed copy of 2019-01..2021-07 where no new month "
        "will appear; the TLC publishes every month as parquet: use --format parquet (sources.taxi.file_format)"
    ) in r.err, r.err
    assert not [p for (_, p) in mirror.requests if "2021-09" in p], "a csv walk stops at the first month not there"


def test_a_parquet_catch_up_says_what_it_waits_for(mirror, cli, duck, monkeypatch):
    last = Month.of(dt.date.today()).minus(2)
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", str(last.minus(1)))
    mirror.trips("green", str(last.minus(1)), 4, fmt="parquet")  # the newest published; `last` is not yet
    r = cli("--base-url", mirror.url, "--format", "parquet", "--taxi", "green")
    assert r.code == 0, r
    waiting = f"{last}..{Month.of(dt.date.today())}"
    assert f"note: green_tripdata: newest published month {last.minus(1)}; not published yet: {waiting}" in r.err


def test_a_csv_catch_up_of_a_type_or_month_the_mirror_lacks_says_so_too(mirror, cli, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", "2019-02")
    r = cli("--base-url", mirror.url, "--taxi", "fhvhv")
    assert r.code == 0, r
    assert "2019-02 is not in the csv mirror, a fixed copy of some months of 2019-2021" in r.err, r.err
    assert "use --format parquet" in r.err and "the next run loads it" not in r.err


@pytest.mark.parametrize(
    "args, outside",
    [(["--taxi", "fhvhv", "--month", "2019-03"], "2019-03 is"), (["--taxi", "green", "--start", "2021-07", "--end",
     "2021-09"], "2021-08..2021-09 are")],
)  # fmt: skip
def test_explicit_months_the_csv_mirror_lacks_say_so(mirror, cli, args, outside):
    mirror.trips("green", "2021-07", 7)
    r = cli("--base-url", mirror.url, *args, "--json")
    assert r.code == 0, r
    table = f"{args[1]}_tripdata"
    assert f"note: {table}: {outside} not in the csv mirror" in r.err and "use --format parquet" in r.err, r.err
    unpublished = [f for f in json.loads(r.out)["files"] if f["outcome"] == "not published"]
    assert unpublished and all("use --format parquet" in f["detail"] for f in unpublished), r.out


def test_dbt_is_skipped_when_no_month_changed_since_the_last_build(mirror, cli):
    """A month loaded without --dbt is built by the next --dbt run, even one that loads nothing; then dbt is skipped."""
    import json

    pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    mirror.trips("green", "2019-01", 10)
    assert cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01").code == 0
    args = ("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--dbt", "--json")
    r = cli(*args)
    assert r.code == 0, r
    assert "note: dbt build of every month (no build into schema taxi recorded yet)" in r.err, r
    assert json.loads(r.out)["dbt"]["success"] is True
    r = cli(*args)
    assert r.code == 0, r
    assert "note: dbt build skipped: no month changed since the last dbt build" in r.err, r
    assert json.loads(r.out)["dbt"] is None


def test_ctrl_c_while_months_are_checked_does_not_wait_for_the_checks_in_flight(mirror, monkeypatch):
    """A catch-up checks months 8 at a time; Ctrl-C stops it without waiting for a HEAD that hangs."""
    import os
    import signal
    import threading
    import time

    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", "2024-01")
    hanging = path_of("2024-03")
    mirror.head_delay[hanging] = 60

    def ctrl_c_once_the_hanging_head_is_sent() -> None:
        deadline = time.monotonic() + 60
        while not mirror.requests[("HEAD", hanging)] and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_the_hanging_head_is_sent, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run(taxi_types="yellow", file_format="parquet", base_url=mirror.url, today=dt.date(2024, 12, 2))
    assert mirror.requests[("HEAD", hanging)] == 1
    assert mirror.answered_late[hanging] == 0, "the run waited for the hanging HEAD before it stopped"
