"""`report`: the chart of what is loaded (trips; revenue, taxis beside app rides once dbt ran), colours, gaps."""

from __future__ import annotations

import math
import re
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


def tick_labels(ax) -> List[str]:
    """The x tick labels an axes shows (after the figure was drawn)."""
    return [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


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
    assert tick_labels(ax) == ["Jan 2019", "Feb 2019", "Mar 2019"]


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


# --- one month axis, ticks, points, partial months, legend (render only) --------------------------------------------


def months_of(first: str, last: str) -> List[str]:
    """`YYYY-MM` of every month from `first` to `last`."""
    from taxi_pipeline.months import Month, month_range

    return [str(m) for m in month_range(Month.parse(first), Month.parse(last))]


def series(first: str, last: str, value: float = 100.0, without: tuple = ()) -> Dict[str, float]:
    """A month → value series over `first`..`last`, the months in `without` left out."""
    return {m: value for m in months_of(first, last) if m not in without}


def month_x(ax, month: str) -> float:
    """The pixel column where `month` (its first day) sits in an axes."""
    import datetime as dt

    from matplotlib.dates import date2num

    year, number = map(int, month.split("-"))
    return float(ax.transData.transform((date2num(dt.date(year, number, 1)), 0))[0])


def test_report_puts_each_month_at_the_same_place_in_every_panel(workdir):
    data = ReportData(
        trips={"yellow": series("2019-01", "2019-04", 40), "green": series("2019-01", "2019-04", 30)},
        revenue={"green": series("2019-01", "2019-02", 300.0), "yellow": series("2019-01", "2019-02", 400.0)},
        rides={"app": series("2019-02", "2019-04", 50.0), "taxi": series("2019-02", "2019-04", 70.0)},
    )
    axes = render(data, str(workdir / "trips.png"), title="t").axes
    assert len(axes) == 3
    assert len({ax.get_xlim() for ax in axes}) == 1  # the whole span in every panel, revenue's two months too
    for month in months_of("2019-01", "2019-04"):
        xs = [month_x(ax, month) for ax in axes]
        assert max(xs) - min(xs) < 0.5, (month, xs)  # Feb under Feb, not under Apr
        left, right = axes[0].get_window_extent().x0, axes[0].get_window_extent().x1
        assert left < xs[0] < right
    for ax in axes:
        assert tick_labels(ax) == ["Jan 2019", "Feb 2019", "Mar 2019", "Apr 2019"]
    assert axes[1].get_ylim()[1] >= 400.0 * 1.05  # the highest point is not drawn on the frame


def test_report_ticks_name_month_and_year_and_thin_out_on_a_long_range(workdir):
    data = ReportData(
        trips={"yellow": series("2019-01", "2021-06", 40)},
        revenue={"yellow": series("2019-01", "2019-02", 400.0)},  # dbt ran on the first two months only
    )
    axes = render(data, str(workdir / "trips.png"), title="t").axes
    for ax in axes:
        labels = tick_labels(ax)
        assert 4 <= len(labels) <= 12, labels
        assert all(re.fullmatch(r"[A-Z][a-z]{2} 20\d\d", t) for t in labels), labels  # no 00:00, no bare "Feb"
        assert labels[0].endswith("2019") and labels[-1].endswith("2021")
        assert ax.xaxis.get_offset_text().get_text() == ""  # no offset label ("2019-Jan-01") beside the axis
    assert tick_labels(axes[0]) == tick_labels(axes[1])


def test_report_shows_a_month_without_neighbours_as_a_visible_point(workdir):
    data = ReportData(
        trips={"yellow": series("2019-01", "2021-06", 40)},
        revenue={"yellow": {"2020-03": 400.0}},  # one month of revenue in a long span
    )
    _trips_ax, revenue_ax = render(data, str(workdir / "trips.png"), title="t").axes
    (line,) = revenue_ax.get_lines()
    assert [float(y) for y in line.get_ydata() if not math.isnan(y)] == [400.0]
    assert line.get_marker() not in (None, "", " ", "None") and line.get_markersize() >= 5
    low, high = revenue_ax.get_xlim()
    assert low < month_x_data("2020-03") < high

    (only,) = render(ReportData(trips={"green": {"2019-05": 10}}), str(workdir / "one.png"), title="t").axes
    (line,) = only.get_lines()
    low, high = only.get_xlim()
    assert line.get_markersize() >= 5 and low < month_x_data("2019-05") < high and high - low >= 20  # days
    assert tick_labels(only) == ["May 2019"]


def month_x_data(month: str) -> float:
    """A month's first day in matplotlib's date numbers."""
    import datetime as dt

    from matplotlib.dates import date2num

    year, number = map(int, month.split("-"))
    return float(date2num(dt.date(year, number, 1)))


def test_report_leaves_taxi_months_out_where_yellow_or_green_is_not_loaded(workdir):
    # yellow 2019-03 and 2019-04 are not loaded: the mart's taxi trips there are green's only, no collapse
    data = ReportData(
        trips={
            "yellow": series("2019-01", "2019-06", 1000, without=("2019-03", "2019-04")),
            "green": series("2019-01", "2019-06", 100),
            "fhvhv": series("2019-01", "2019-06", 2000),
        },
        rides={"app": series("2019-01", "2019-06", 2000.0), "taxi": series("2019-01", "2019-06", 1100.0)},
    )
    data.rides["taxi"].update({"2019-03": 100.0, "2019-04": 100.0})
    *_, rides_ax = render(data, str(workdir / "trips.png"), title="t").axes
    lines = lines_by_label(rides_ax)
    assert gaps(lines["taxi"]) == [2, 3] and lines["taxi"][0] == 1100.0
    assert gaps(lines["app"]) == []
    assert min(y for y in lines["taxi"] if not math.isnan(y)) == 1100.0  # no green-only value drawn anywhere
    legend = [t.get_text() for t in rides_ax.get_legend().get_texts()]
    note = [t for t in legend if "yellow not loaded" in t]
    assert note, legend  # the gap says why
    (band,) = [p for p in rides_ax.patches if p.get_label() == note[0]]
    x0, x1 = sorted(band.get_bbox().intervalx)
    assert x0 < month_x_data("2019-03") < month_x_data("2019-04") < x1 < month_x_data("2019-05")

    # green alone (no yellow ever loaded): its months are whole, the panel says it counts green only
    data.trips.pop("yellow")
    *_, rides_ax = render(data, str(workdir / "green.png"), title="t").axes
    assert gaps(lines_by_label(rides_ax)["taxi"]) == [] and "taxis (green)" in rides_ax.get_title()
    assert not rides_ax.patches


def test_report_legend_does_not_cover_the_lines(workdir):
    data = ReportData(
        trips={t: series("2019-01", "2021-06", 40) for t in ("yellow", "green", "fhv", "fhvhv")},
        revenue={"green": series("2019-01", "2021-06", 300.0), "yellow": series("2019-01", "2021-06", 400.0)},
        rides={"app": series("2019-02", "2021-06", 50.0), "taxi": series("2019-01", "2021-06", 70.0)},
    )
    fig = render(data, str(workdir / "trips.png"), title="t")
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent()
        assert not legend.overlaps(ax.get_window_extent()), (ax.get_title(), legend)
        assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)  # not cut off
