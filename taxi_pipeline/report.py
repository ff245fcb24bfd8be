"""A picture of what is loaded: trips per month per taxi type, and revenue where the dbt marts exist.

Everything is read from the destination (raw tables and the `dm_monthly_zone_revenue` mart), so a report
works from any machine; drawing uses matplotlib's object API (no display, no global pyplot state).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List

from dlt.destinations.exceptions import DatabaseUndefinedRelation

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.months import Month, month_range
from taxi_pipeline.pipeline import make_pipeline, month_counts
from taxi_pipeline.schemas import TRIP_SCHEMAS

MART = "dm_monthly_zone_revenue"
DBT_SCHEMA_ENV = "TAXI_DBT_SCHEMA"
"""The schema dbt builds into (see dbt/profiles.yml); `taxi` unless set."""


@dataclass
class ReportData:
    """The numbers behind the chart: per taxi type (or dbt service type), month `YYYY-MM` → value."""

    trips: Dict[str, Dict[str, int]] = field(default_factory=dict)
    revenue: Dict[str, Dict[str, float]] = field(default_factory=dict)
    """Sum of `total_amount` by pickup month, from the dbt mart; empty when dbt has not run."""


def report_data(destination: str = "duckdb") -> ReportData:
    """Trips per `source_month` of every raw trip table, and monthly revenue from the dbt mart if it exists."""
    pipeline = make_pipeline(destination)
    data = ReportData()
    for taxi, schema in TRIP_SCHEMAS.items():
        counts = month_counts(pipeline, schema.table)
        if counts:
            data.trips[taxi] = dict(sorted(counts.items()))
    schema_name = os.environ.get(DBT_SCHEMA_ENV, "taxi")
    sql = (
        f"SELECT service_type, revenue_month, SUM(revenue_monthly_total_amount) FROM {schema_name}.{MART}"
        " GROUP BY service_type, revenue_month"
    )
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(sql) or []
    except DatabaseUndefinedRelation:
        rows = []
    for service, month, amount in rows:
        if month is None or amount is None:
            continue
        key = month.strftime("%Y-%m") if isinstance(month, (dt.date, dt.datetime)) else str(month)[:7]
        data.revenue.setdefault(str(service).lower(), {})[key] = float(amount)
    data.revenue = {k: dict(sorted(v.items())) for k, v in sorted(data.revenue.items())}
    return data


def render(data: ReportData, out: str, title: str) -> Any:
    """Draw `data` into the PNG `out`: trips per month (and revenue per month below it, if any); the Figure.

    Raises ConfigError when there is nothing to draw or matplotlib is missing.
    """
    if not data.trips:
        raise ConfigError("nothing is loaded there yet: load some months first (or check --dest)")
    try:
        from matplotlib.dates import ConciseDateFormatter, MonthLocator
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise ConfigError("report needs matplotlib: pip install matplotlib") from None

    panels = 2 if data.revenue else 1
    fig = Figure(figsize=(11, 4.5 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    series: List[tuple] = [(axes[0], data.trips, "trips per month (rows loaded, by file month)", "trips")]
    if data.revenue:
        series.append((axes[1], data.revenue, "revenue per month (dbt mart, total_amount by pickup month)", "USD"))
    loaded = sorted({Month.parse(m) for by_month in data.trips.values() for m in by_month})
    span = len(month_range(loaded[0], loaded[-1]))
    for ax, values, subtitle, unit in series:
        for name, by_month in values.items():
            days = [dt.date(m.year, m.month, 1) for m in map(Month.parse, by_month)]
            ax.plot(days, list(by_month.values()), marker="o", markersize=3, label=name)
        locator = MonthLocator(interval=max(1, span // 12))  # ticks on months only, about a dozen over the range
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.yaxis.set_major_formatter(FuncFormatter(_human))
        ax.set_title(subtitle, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(title="taxi type")
    axes[-1].set_xlabel("month")
    fig.suptitle(title, fontsize=13)
    fig.savefig(out, dpi=100)
    return fig


def _human(value: float, _pos: Any = None) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"
