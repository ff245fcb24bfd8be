"""`report`: the chart of what is loaded (trips; revenue, taxis beside app rides once dbt ran), colours, gaps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List

import pytest

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.report import COLOURS, ReportData, output_path, render, report_data


def load(cli, mirror, *args: str):
    return cli("--base-url", mirror.url, *args)


def lines_by_label(ax) -> Dict[str, List[float]]:
    """An axes' series: label → y values, as floats (NaN where a month is missing)."""
    return {line.get_label(): [float(y) for y in line.get_ydata()] for line in ax.get_lines()}


def gaps(ys: List[float]) -> List[int]:
    """Indexes of the NaN values in a series."""
    return [i for i, y in enumerate(ys) if math.isnan(y)]


def test_report_draws_trips_per_taxi_type_from_the_destination(mirror, cli, workdir):
    from matplotlib.image import imread

    for month, rows in (("2019-01", 30), ("2019-02", 20), ("2019-03", 25)):
        mirror.trips("green", month, rows)
    mirror.trips("yellow", "2019-02", 40)
    assert load(cli, mirror, "--taxi", "green,yellow", "--start", "2019-01", "--end", "2019-03").code == 0

    r = cli("report", "--out", str(workdir / "trips.png"))
    assert r.code == 0, r
    assert "trips of yellow, green over 2019-01..2019-03" in r.out and "no revenue" in r.out
    image = imread(workdir / "trips.png")
    assert image.shape[0] > 300 and image.shape[1] > 800  # opens as a PNG of a readable size

    data = report_data("duckdb")
    assert data.trips == {"green": {"2019-01": 30, "2019-02": 20, "2019-03": 25}, "yellow": {"2019-02": 40}}
    assert data.revenue == {}
    fig = render(data, str(workdir / "again.png"), title="t")
    (ax,) = fig.axes
    series = lines_by_label(ax)
    assert series["green"] == [30, 20, 25] and series["yellow"][1] == 40 and gaps(series["yellow"]) == [0, 2]
    assert ax.get_ylabel() == "trips" and ax.get_xlabel() == "month" and ax.get_legend() is not None
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert any("2019" in t for t in labels) and "Feb" in labels


def test_report_adds_revenue_once_dbt_has_built_the_marts(mirror, cli, workdir):
    pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    mirror.trips("green", "2019-01", 60)
    mirror.trips("yellow", "2019-01", 45)
    assert load(cli, mirror, "--taxi", "green,yellow", "--month", "2019-01", "--dbt").code == 0
    from tests.test_dbt import expected_mart

    data = report_data("duckdb")
    by_service: Dict[str, float] = {}
    for (_zone, service), (_trips, _fare, total) in expected_mart(mirror).items():
        by_service[service.lower()] = by_service.get(service.lower(), 0) + float(total)
    assert {s: {m: round(v, 2) for m, v in months.items()} for s, months in data.revenue.items()} == {
        s: {"2019-01": round(v, 2)} for s, v in by_service.items()
    }
    fig = render(data, str(workdir / "trips.png"), title="t")
    trips_ax, revenue_ax = fig.axes
    assert revenue_ax.get_ylabel() == "USD" and {ln.get_label() for ln in revenue_ax.get_lines()} == {"green", "yellow"}


def test_report_sets_taxis_beside_app_based_rides_once_dbt_has_built_the_comparison(mirror, cli, workdir):
    pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    from tests import tlc_files
    from tests.test_dbt import expected_taxi_vs_app

    mirror.trips("green", "2019-02", 30)
    mirror.trips("yellow", "2019-02", 20)
    mirror.put("/trip-data/fhvhv_tripdata_2019-02.parquet", tlc_files.fhvhv_parquet("2019-02", 50))
    assert load(cli, mirror, "--taxi", "green,yellow", "--month", "2019-02", "--dbt").code == 0
    assert report_data("duckdb").rides == {}  # no app-based rides yet: nothing to set beside the taxis
    r = load(cli, mirror, "--format", "parquet", "--taxi", "fhvhv", "--month", "2019-02", "--dbt")
    assert r.code == 0, r

    data = report_data("duckdb")
    expected: Dict[str, float] = {}
    for (_zone, ride), (trips, _fare, _paid) in expected_taxi_vs_app(mirror).items():
        expected[ride.lower()] = expected.get(ride.lower(), 0) + trips
    assert data.rides == {ride: {"2019-02": trips} for ride, trips in expected.items()}
    assert expected == {"taxi": 48, "app": 49}
    fig = render(data, str(workdir / "trips.png"), title="t")
    _trips_ax, _revenue_ax, rides_ax = fig.axes
    assert lines_by_label(rides_ax) == {"app": [49.0], "taxi": [48.0]}
    r = cli("report", "--out", str(workdir / "all.png"))
    assert r.code == 0 and "taxis beside app-based rides" in r.out, r


def test_report_on_an_empty_destination_says_what_to_do(cli, workdir):
    r = cli("report", "--out", str(workdir / "trips.png"))
    assert r.code == 2 and "nothing is loaded" in r.err, r
    assert not (workdir / "trips.png").exists()


# --- gaps and colours ----------------------------------------------------------------------------------------------


def test_report_breaks_the_line_at_months_that_are_not_loaded(mirror, cli, workdir):
    for month in ("2019-01", "2019-02", "2019-06"):
        mirror.trips("yellow", month, 10)
    assert load(cli, mirror, "--taxi", "yellow", "--start", "2019-01", "--end", "2019-02").code == 0
    assert load(cli, mirror, "--taxi", "yellow", "--month", "2019-06").code == 0

    data = report_data("duckdb")
    data.revenue = {"yellow": {"2019-01": 100.0, "2019-02": 90.0, "2019-06": 80.0}}  # as the dbt mart would say
    trips_ax, revenue_ax = render(data, str(workdir / "trips.png"), title="t").axes
    (trips,) = trips_ax.get_lines()
    assert [d.month for d in trips.get_xdata()] == [1, 2, 3, 4, 5, 6]  # every month of the span is on the axis
    assert gaps(lines_by_label(trips_ax)["yellow"]) == [2, 3, 4]  # no line drawn through Mar–May
    assert gaps(lines_by_label(revenue_ax)["yellow"]) == [2, 3, 4]


def test_report_keeps_one_colour_per_taxi_type_in_every_panel(workdir):
    data = ReportData(
        trips={"yellow": {"2019-01": 40}, "green": {"2019-01": 30}, "fhv": {"2019-01": 5}},
        revenue={"green": {"2019-01": 300.0}, "yellow": {"2019-01": 400.0}},  # sorted by name, as report_data does
    )
    trips_ax, revenue_ax = render(data, str(workdir / "trips.png"), title="t").axes
    trips = {ln.get_label(): ln.get_color() for ln in trips_ax.get_lines()}
    revenue = {ln.get_label(): ln.get_color() for ln in revenue_ax.get_lines()}
    assert trips["yellow"] == revenue["yellow"] == COLOURS["yellow"] == "#f2b701"
    assert trips["green"] == revenue["green"] == COLOURS["green"] == "#2ca02c"
    assert len({*COLOURS.values()}) == len(COLOURS) and trips["fhv"] == COLOURS["fhv"]


# --- --out ---------------------------------------------------------------------------------------------------------


def test_report_out_without_extension_writes_and_names_the_png(mirror, cli, workdir):
    mirror.trips("green", "2019-01", 10)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    r = cli("report", "--out", "chart")
    assert r.code == 0, r
    assert r.out.startswith("wrote chart.png: ") and (workdir / "chart.png").is_file()
    assert not (workdir / "chart").exists()


@pytest.mark.parametrize(
    "out, problem",
    [
        ("reports", "is a folder"),
        ("reports/", "is a folder"),
        ("missing/trips.png", "folder missing does not exist"),
        ("notes.txt/trips.png", "notes.txt is a file, not a folder"),
        ("trips.xyz", "cannot write .xyz files"),
    ],
)
def test_report_refuses_a_bad_out_before_reading_the_destination(cli, workdir, monkeypatch, out, problem):
    (workdir / "reports").mkdir()
    (workdir / "notes.txt").write_text("not a folder")

    def no_read(*_args, **_kw):
        raise AssertionError("the destination was read before --out was checked")

    monkeypatch.setattr("taxi_pipeline.report.report_data", no_read)
    before = sorted(Path(workdir).rglob("*"))
    r = cli("report", "--out", out)
    assert r.code == 2, r
    assert r.err.splitlines() == [r.err.strip()] and r.err.startswith(f"error: --out {out}: {problem}"), r
    assert sorted(Path(workdir).rglob("*")) == before  # nothing written


def test_output_path_keeps_a_supported_extension_and_adds_png_otherwise(workdir):
    assert output_path("trips.svg") == "trips.svg" and output_path("Trips.PDF") == "Trips.PDF"
    assert output_path("chart") == "chart.png"
    with pytest.raises(ConfigError, match=r"one of .*\.png"):
        output_path("chart.2019")
