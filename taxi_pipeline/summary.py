"""What a run did, shaped for people (a table of month ranges), for schedulers (JSON) and for Kestra.

Kestra reads `::{json}::` lines on a script task's standard output as task outputs and metrics (the convention
the `kestra` PyPI helper prints); `kestra_line` writes one, so the Kestra UI shows rows and seconds per month
without a dependency on that helper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from taxi_pipeline.errors import redact
from taxi_pipeline.helpers import NOT_AVAILABLE, NOT_PUBLISHED
from taxi_pipeline.months import Month
from taxi_pipeline.results import FAILED, LOADED, REPLACED, SKIPPED, MonthResult, RunResult
from taxi_pipeline.schemas import file_label

OUTCOME_ORDER = (LOADED, REPLACED, SKIPPED, NOT_PUBLISHED, NOT_AVAILABLE, FAILED)
"""Outcomes in the order totals are shown."""


@dataclass
class SummaryRow:
    """Consecutive months of one table with the same outcome: `first`..`last`, their rows and seconds."""

    table: str
    first: Optional[str]
    last: Optional[str]
    outcome: str
    months: int
    rows: Optional[int]
    seconds: float

    @property
    def span(self) -> str:
        """`2019-01`, `2019-01..2019-12`, or `-` for the zone lookup."""
        if self.first is None:
            return "-"
        return self.first if self.first == self.last else f"{self.first}..{self.last}"


def summary_rows(results: List[MonthResult]) -> List[SummaryRow]:
    """Results folded into ranges: runs of consecutive months of a table with one outcome become one row.

    Failed months are never folded (each has its own reason), so a five-year backfill fits on one screen.
    """
    rows: List[SummaryRow] = []
    # the zone lookup first (it loads just before the first month, so it may come after skipped months)
    for res in sorted(results, key=lambda r: r.month is not None):
        last = rows[-1] if rows else None
        if (
            last is not None
            and res.month is not None
            and last.last is not None
            and res.outcome != FAILED
            and (last.table, last.outcome) == (res.table, res.outcome)
            and Month.parse(res.month) == Month.parse(last.last).next()
        ):
            last.last = res.month
            last.months += 1
            last.rows = None if last.rows is None or res.rows is None else last.rows + res.rows
            last.seconds += res.seconds
            continue
        rows.append(SummaryRow(res.table, res.month, res.month, res.outcome, 1, res.rows, res.seconds))
    return rows


def totals(result: RunResult) -> Dict[str, int]:
    """Files per outcome, in `OUTCOME_ORDER` (outcomes that did not occur left out)."""
    counts: Dict[str, int] = {}
    for res in result.results:
        counts[res.outcome] = counts.get(res.outcome, 0) + 1
    order = {o: i for i, o in enumerate(OUTCOME_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], len(order))))


def rows_loaded(result: RunResult) -> int:
    """Rows written by this run (loaded and replaced files)."""
    return sum(r.rows or 0 for r in result.results if r.outcome in (LOADED, REPLACED))


def newest_months(result: RunResult) -> Dict[str, str]:
    """Per taxi type, the newest month this run found in the destination (loaded, replaced or skipped)."""
    newest: Dict[str, str] = {}
    for r in result.results:
        if r.month and r.outcome in (LOADED, REPLACED, SKIPPED):
            taxi = r.table.removesuffix("_tripdata")
            if taxi not in newest or Month.parse(r.month) > Month.parse(newest[taxi]):
                newest[taxi] = r.month
    return newest


def as_dict(result: RunResult, destination: str) -> Dict[str, Any]:
    """The machine-readable summary `--json` prints: every file's outcome, totals, dbt."""
    return {
        "ok": result.ok,
        "destination": destination,
        "files": [
            {
                "table": r.table,
                "month": r.month,
                "outcome": r.outcome,
                "rows": r.rows,
                "seconds": round(r.seconds, 3),
                "detail": redact(r.detail) if r.detail else None,
            }
            for r in result.results
        ],
        "totals": totals(result),
        "rows_loaded": rows_loaded(result),
        "newest_months": newest_months(result),
        "dbt": None if result.dbt is None else {"success": result.dbt.success, "failures": result.dbt.failures},
    }


def failure_dict(error: str, destination: str) -> Dict[str, Any]:
    """The `--json` document of a run that stopped before any summary (bad input, destination down, a signal)."""
    return {
        "ok": False,
        "destination": destination,
        "error": error,
        "files": [],
        "totals": {},
        "rows_loaded": 0,
        "newest_months": {},
        "dbt": None,
    }


def kestra_line(result: RunResult, destination: str) -> str:
    """One `::{…}::` line: outputs (ok, totals, rows loaded, outcome per file, newest months) and metrics.

    `newest_months`: per taxi type, the newest of the run's months in the destination (for a catch-up, the
    newest month there). Metrics: counter `rows` and timer `seconds` per loaded or replaced file, tagged with
    table and month, plus counters of files per outcome; outputs are usable downstream as
    `{{ outputs.<task>.vars.rows_loaded }}`.
    """
    outputs = {
        "ok": result.ok,
        "destination": destination,
        "rows_loaded": rows_loaded(result),
        "totals": totals(result),
        "files": {file_label(r.table, r.month): r.outcome for r in result.results},
        "newest_months": newest_months(result),
    }
    metrics: List[Dict[str, Any]] = []
    for r in result.results:
        if r.outcome in (LOADED, REPLACED):
            tags = {"table": r.table, "month": r.month or "-", "outcome": r.outcome}
            metrics.append({"name": "rows", "type": "counter", "value": r.rows or 0, "tags": tags})
            metrics.append({"name": "seconds", "type": "timer", "value": round(r.seconds, 3), "tags": tags})
    for outcome, n in totals(result).items():
        metrics.append({"name": "files", "type": "counter", "value": n, "tags": {"outcome": outcome}})
    return _kestra({"outputs": outputs, "metrics": metrics})


def kestra_failure_line(error: str, destination: str) -> str:
    """The `::{…}::` line of a run that stopped before any summary (bad config, destination down)."""
    return _kestra({"outputs": {"ok": False, "destination": destination, "error": error, "rows_loaded": 0}})


def _kestra(message: Dict[str, Any]) -> str:
    return "::" + json.dumps(message, separators=(",", ":")) + "::"
