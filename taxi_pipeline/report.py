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
from typing import Any, Dict, List

from dlt.destinations.exceptions import DatabaseUndefinedRelation

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.months import Month, month_range
from taxi_pipeline.pipeline import make_pipeline, require_database
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


def report_data(destination: str = "duckdb") -> ReportData:
    """Trips per `source_month` of every raw trip table, and monthly revenue from the dbt mart if it exists.

    Raises ConfigError for a DuckDB database that does not exist (nothing is created).
    """
    require_database(destination)
    pipeline = make_pipeline(destination)
    data = ReportData()
    for taxi, schema in TRIP_SCHEMAS.items():
        counts = month_counts(pipeline, schema.table)
        if counts:
            data.trips[taxi] = dict(sorted(counts.items()))
    revenue = _mart_rows(
        pipeline, MART, "SELECT service_type, revenue_month, SUM(revenue_monthly_total_amount) FROM {} GROUP BY 1, 2"
    )
    data.revenue = _by_name_and_month(revenue)
    rides = _by_name_and_month(
        _mart_rows(pipeline, COMPARISON_MART, "SELECT ride_type, trip_month, SUM(trips) FROM {} GROUP BY 1, 2")
    )
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


def render(data: ReportData, out: str, title: str) -> Any:
    """Draw `data` into the PNG `out`: trips per month (and revenue per month below it, if any); the Figure.

    Every month of the span is on the x axis; a taxi type without a month has NaN there, so its line breaks
    instead of crossing the gap. Each taxi type has its colour from COLOURS in every panel.
    Raises ConfigError when there is nothing to draw or matplotlib is missing.
    """
    if not data.trips:
        raise ConfigError("nothing is loaded there yet: load some months first (or check --dest)")
    figure_class = _figure_class()
    from matplotlib.dates import ConciseDateFormatter, MonthLocator
    from matplotlib.ticker import FuncFormatter

    panels: List[tuple] = [(data.trips, "trips per month (rows loaded, by file month)", "trips", "taxi type")]
    if data.revenue:
        subtitle = "revenue per month (dbt mart, total_amount by pickup month)"
        panels.append((data.revenue, subtitle, "USD", "taxi type"))
    if data.rides:
        subtitle = "taxis (yellow + green) beside app-based rides (Uber, Lyft, Via, Juno) per month (dbt mart)"
        panels.append((data.rides, subtitle, "trips", "rides"))
    fig = figure_class(figsize=(11, 4.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    months = _span(data)
    days = [dt.date(m.year, m.month, 1) for m in months]
    colours = _colours([*data.trips, *data.revenue, *data.rides])
    for ax, (values, subtitle, unit, legend) in zip(axes, panels, strict=True):
        for name in sorted(values, key=list(colours).index):
            by_month = values[name]
            ys = [by_month.get(str(m), math.nan) for m in months]
            ax.plot(days, ys, marker="o", markersize=3, label=name, color=colours[name])
        locator = MonthLocator(interval=max(1, len(months) // 12))  # ticks on months only, about a dozen
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.yaxis.set_major_formatter(FuncFormatter(_human))
        ax.set_title(subtitle, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(title=legend)
    axes[-1].set_xlabel("month")
    fig.suptitle(title, fontsize=13)
    fig.savefig(out, dpi=100)
    return fig


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
