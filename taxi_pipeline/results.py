"""What a run reports: one result per file (its outcome, rows, seconds, why) and the run's whole result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from taxi_pipeline.errors import ConfigError
from taxi_pipeline.helpers import LOAD, NOT_AVAILABLE, NOT_PUBLISHED, REPLACE, SKIP
from taxi_pipeline.transform import DbtResult

LOADED = "loaded"


REPLACED = "replaced"


SKIPPED = "skipped"


FAILED = "failed"


OUTCOMES = {LOAD: LOADED, REPLACE: REPLACED, SKIP: SKIPPED, NOT_PUBLISHED: NOT_PUBLISHED, NOT_AVAILABLE: NOT_AVAILABLE}


@dataclass
class MonthResult:
    """The outcome of one file in a run: `loaded`, `replaced`, `skipped`, `not published` or `failed`."""

    table: str
    month: Optional[str]
    outcome: str
    rows: Optional[int] = None
    seconds: float = 0.0
    detail: str = ""
    error: Optional[BaseException] = field(default=None, repr=False, compare=False)


@dataclass
class RunResult:
    """Every file's outcome in a run; `ok` is False when any month failed."""

    results: List[MonthResult] = field(default_factory=list)
    dbt: Optional[DbtResult] = None
    """The dbt build after the load, when one was asked for and the load succeeded."""

    @property
    def ok(self) -> bool:
        """True when no month failed and dbt, if it ran, succeeded."""
        return all(r.outcome != FAILED for r in self.results) and (self.dbt is None or self.dbt.success)

    @property
    def failures(self) -> List[MonthResult]:
        """The failed months."""
        return [r for r in self.results if r.outcome == FAILED]

    @property
    def exit_code(self) -> int:
        """0 ok; 2 when a failure is configuration to fix (a month long published answered 404); 1 otherwise."""
        if self.ok:
            return 0
        return 2 if any(isinstance(r.error, ConfigError) for r in self.failures) else 1
