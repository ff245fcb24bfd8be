"""A picture of what is loaded: trips per month per taxi type; revenue and taxis beside app rides from dbt's marts.

Everything is read from the destination (raw tables, the `dm_monthly_zone_revenue` and
`dm_monthly_zone_taxi_vs_app` marts), so a report works from any machine; drawing uses matplotlib's object API
(no display, no global pyplot state).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from dlt.destinations.exceptions import DatabaseUndefinedRelation

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.months import Month, month_range
from taxi_pipeline.opening import reading
from taxi_pipeline.schemas import TRIP_SCHEMAS
from taxi_pipeline.table_months import month_counts
from taxi_pipeline.transform import dbt_schema

MART = "dm_monthly_zone_revenue"
COMPARISON_MART = "dm_monthly_zone_taxi_vs_app"
COLOURS = {"yellow": "#f2b701", "green": "#2ca02c", "fhv": "#1f77b4", "fhvhv": "#9467bd"}
"""One fixed colour per taxi type, also for the revenue of a dbt service type (lower-cased), in every panel."""
SPARE_COLOURS = ("#d62728", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
"""Colours for series of other names, handed out in name order."""


@dataclass
class ReportData:
    """The numbers behind the chart: per taxi type (or dbt service type), month `YYYY-MM` → value."""

    trips: Dict[str, Dict[str, int]] = field(default_factory=dict)
    revenue: Dict[str, Dict[str, float]] = field(default_factory=dict)
    """Sum of `total_amount` by pickup month, from the dbt mart; empty when dbt has not run."""
    rides: Dict[str, Dict[str, float]] = field(default_factory=dict)
    """Trips by month of `taxi` (yellow and green) and `app` (Uber, Lyft, Via, Juno), from the comparison mart;
    empty unless dbt has built it with app-based rides loaded."""


def report_data(destination: str = "duckdb", on_notice: Optional[Callable[[str], None]] = None) -> ReportData:
    """Trips per `source_month` of every raw trip table, and monthly revenue from the dbt mart if it exists.

    Read as `status` reads (`opening.reading`): ConfigError for a DuckDB database that does not exist (nothing
    is created) or a destination that cannot be opened; `on_notice` hears when a run writing the DuckDB file is
    waited for.
    """
    with reading(destination, on_notice, restore_state=False) as pipeline:  # the raw tables and marts only
        data = ReportData()
        for taxi, schema in TRIP_SCHEMAS.items():
            counts = month_counts(pipeline, schema.table)
            if counts:
                data.trips[taxi] = dict(sorted(counts.items()))
        revenue_sql = "SELECT service_type, revenue_month, SUM(revenue_monthly_total_amount) FROM {} GROUP BY 1, 2"
        data.revenue = _by_name_and_month(_mart_rows(pipeline, MART, revenue_sql))
        rides_sql = "SELECT ride_type, trip_month, SUM(trips) FROM {} GROUP BY 1, 2"
        rides = _by_name_and_month(_mart_rows(pipeline, COMPARISON_MART, rides_sql))
        data.rides = rides if "app" in rides else {}  # a comparison needs both sides
        return data


def _mart_rows(pipeline: Any, mart: str, sql: str) -> List[tuple]:
    """The rows of `sql` with `{}` the mart's qualified name in the dbt schema; none when dbt has not built it."""
    try:
        with pipeline.sql_client() as client, client.with_alternative_dataset_name(dbt_schema()):
            # qualified by the client (with DuckDB's catalog): a file named like the schema cannot make it ambiguous
            return list(client.execute_sql(sql.format(client.make_qualified_table_name(mart))) or [])
    except DatabaseUndefinedRelation:
        return []


def _by_name_and_month(rows: List[tuple]) -> Dict[str, Dict[str, float]]:
    """(name, month date, value) rows → lower-case name → `YYYY-MM` → value, sorted; rows with nulls left out."""
    out: Dict[str, Dict[str, float]] = {}
    for name, month, value in rows:
        if month is None or value is None:
            continue
        key = month.strftime("%Y-%m") if isinstance(month, (dt.date, dt.datetime)) else str(month)[:7]
        out.setdefault(str(name).lower(), {})[key] = float(value)
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def output_path(out: str) -> str:
    """The file `report --out out` writes: `out`, with `.png` added when it has no extension.

    Raises ConfigError, naming `--out`, when `out` is a folder, its folder does not exist, or matplotlib cannot
    write its extension; nothing is read or written before that.
    """
    if out.endswith(("/", os.sep)) or os.path.isdir(out):
        raise ConfigError(f"--out {out}: is a folder: give a file name, e.g. {os.path.join(out, 'trips.png')}")
    path = out if os.path.splitext(out)[1] else f"{out}.png"
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise ConfigError(f"--out {out}: {folder} is a file, not a folder: choose another path")
        raise ConfigError(f"--out {out}: folder {folder} does not exist: create it first or choose another folder")
    extension = os.path.splitext(path)[1][1:].lower()
    supported = sorted(_figure_class()().canvas.get_supported_filetypes())
    if extension not in supported:
        raise ConfigError(
            f"--out {out}: cannot write .{extension} files: end the name in one of .{', .'.join(supported)}"
        )
    return path


TAXI_TYPES_IN_RIDES = ("yellow", "green")
"""The taxi types whose trips make up `taxi` in the comparison mart."""
HALF_MONTH = dt.timedelta(days=15)


@dataclass
class _Panel:
    """One panel of the chart: its series (name → month `YYYY-MM` → value), title, y unit and legend title."""

    values: Dict[str, Dict[str, float]]
    title: str
    unit: str
    legend: str
    left_out: Dict[str, List[str]] = field(default_factory=dict)
    """Months left out of the `taxi` series → the taxi types not loaded in them."""


def render(data: ReportData, out: str, title: str) -> Any:
    """Draw `data` into the file `out`: trips per month, revenue and taxis beside app rides below it if any; the Figure.

    All panels share one month axis over the whole span: a month sits at the same place in every panel, ticks read
    like `Jan 2019` (about a dozen at most, on whole months or years). A series without a month has NaN there, so
    its line breaks instead of crossing the gap, and every point has a marker, so a month alone stays visible.
    Each taxi type has its colour from COLOURS in every panel; legends sit beside the panels, off the lines. In the
    comparison, `taxi` leaves out (and shades) the months where yellow or green, whichever is loaded at all, is
    not: the mart's taxi trips there count the other type only and would read as a collapse.
    Raises ConfigError when there is nothing to draw or matplotlib is missing.
    """
    if not data.trips:
        raise ConfigError("nothing is loaded there yet: load some months first (or check --dest)")
    figure_class = _figure_class()
    panels = _panels(data)
    months = _span(data)
    colours = _colours([*data.trips, *data.revenue, *data.rides])
    fig = figure_class(figsize=(12, 4.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, months, colours)
    _month_axis(axes, months)
    axes[-1].set_xlabel("month")
    fig.suptitle(title, fontsize=13)
    fig.savefig(out, dpi=100)
    return fig


def _panels(data: ReportData) -> List[_Panel]:
    """The panels to draw: trips; revenue once dbt built it; taxis beside app rides, partial taxi months left out."""
    panels = [_Panel(data.trips, "trips per month (rows loaded, by file month)", "trips", "taxi type")]
    if data.revenue:
        subtitle = "revenue per month (dbt mart, total_amount by pickup month)"
        panels.append(_Panel(data.revenue, subtitle, "USD", "taxi type"))
    if data.rides:
        kinds = [t for t in TAXI_TYPES_IN_RIDES if t in data.trips] or list(TAXI_TYPES_IN_RIDES)
        loaded = {t: data.trips.get(t, {}) for t in kinds}
        taxi = data.rides.get("taxi", {})
        left_out = {m: gone for m in taxi if (gone := [t for t in kinds if m not in loaded[t]])}
        values = {**data.rides, "taxi": {m: v for m, v in taxi.items() if m not in left_out}} if taxi else data.rides
        subtitle = f"taxis ({' + '.join(kinds)}) beside app-based rides (Uber, Lyft, Via, Juno) per month (dbt mart)"
        panels.append(_Panel(values, subtitle, "trips", "rides", left_out))
    return panels


def _draw_panel(ax: Any, panel: _Panel, months: List[Month], colours: Dict[str, str]) -> None:
    """One panel: a line with markers per series over every month (NaN where it has none), legend beside it."""
    from matplotlib.ticker import FuncFormatter

    days = [_first_day(m) for m in months]
    for name in sorted(panel.values, key=list(colours).index):
        by_month = panel.values[name]
        ys = [by_month.get(str(m), math.nan) for m in months]
        ax.plot(days, ys, marker="o", markersize=5, linewidth=1.5, label=name, color=colours[name])
    _shade_left_out(ax, panel.left_out)
    ax.yaxis.set_major_formatter(FuncFormatter(_human))
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.unit)
    top = max((v for by_month in panel.values.values() for v in by_month.values()), default=0)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1)  # room above the highest point: not drawn on the frame
    ax.grid(True, alpha=0.3)
    ax.legend(title=panel.legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=9)


def _shade_left_out(ax: Any, left_out: Dict[str, List[str]]) -> None:
    """Shade each run of months left out of `taxi`, one legend entry naming the taxi types not loaded there."""
    if not left_out:
        return
    gone = [t for t in TAXI_TYPES_IN_RIDES if any(t in types for types in left_out.values())]
    label = f"taxi left out: {' or '.join(gone)} not loaded"
    runs: List[List[Month]] = []
    for month in sorted(Month.parse(m) for m in left_out):
        if runs and runs[-1][-1].next() == month:
            runs[-1].append(month)
        else:
            runs.append([month])
    for i, run in enumerate(runs):
        start, end = _first_day(run[0]) - HALF_MONTH, _first_day(run[-1]) + HALF_MONTH
        ax.axvspan(start, end, color="0.5", alpha=0.15, linewidth=0, label=label if i == 0 else "_nolegend_")


def _month_axis(axes: List[Any], months: List[Month]) -> None:
    """The month axis the panels share: the whole span, ticks `Mon YYYY` on every panel, no times, no offset."""
    from matplotlib.dates import DateFormatter, MonthLocator, YearLocator

    first = axes[0]  # the axes share x: limits, locators and formatter set on one hold for all
    first.set_xlim(_first_day(months[0]) - HALF_MONTH, _first_day(months[-1]) + HALF_MONTH)
    first.xaxis.set_major_locator(_month_ticks(len(months)))
    first.xaxis.set_major_formatter(DateFormatter("%b %Y"))
    first.xaxis.set_minor_locator(MonthLocator() if len(months) <= 144 else YearLocator())
    for ax in axes:
        ax.tick_params(axis="x", labelbottom=True)  # each panel names its months, not only the lowest


def _month_ticks(count: int) -> Any:
    """A locator of at most about a dozen ticks over `count` months: every 1, 2, 3, 6 or 12 months, or years."""
    from matplotlib.dates import MonthLocator, YearLocator

    for step in (1, 2, 3, 6, 12):
        if count <= 12 * step:
            return MonthLocator(bymonth=range(1, 13, step))
    return YearLocator(base=math.ceil(count / 144))


def _first_day(month: Month) -> dt.date:
    """The first day of a month: where it sits on the x axis."""
    return dt.date(month.year, month.month, 1)


def _figure_class() -> Any:
    """The matplotlib Figure class; ConfigError when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("report needs matplotlib: pip install matplotlib") from None
    return Figure


def _span(data: ReportData) -> List[Month]:
    """Every month from the first to the last one with trips or revenue, the missing ones included."""
    series = (data.trips, data.revenue, data.rides)
    known = {Month.parse(m) for values in series for by_month in values.values() for m in by_month}
    return month_range(min(known), max(known))


def _colours(names: List[str]) -> Dict[str, str]:
    """Each name's colour: COLOURS for the taxi types (in their order), spare colours for others by name."""
    others = sorted(set(names) - set(COLOURS))
    spare = {name: SPARE_COLOURS[i % len(SPARE_COLOURS)] for i, name in enumerate(others)}
    return {**{n: c for n, c in COLOURS.items() if n in names}, **spare}


def _human(value: float, _pos: Any = None) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"
