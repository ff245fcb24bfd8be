"""taxi_pipeline: NYC TLC taxi trip months into DuckDB, Postgres or Snowflake with dlt, safe to re-run.

Public API:
    taxi_source(...)  the dlt source (one resource per taxi type + `taxi_zone_lookup`), for your own pipelines;
    run(...)          plan, load each month atomically and reconcile it (what the CLI runs);
    status(...)       what is loaded where, read from the destination's state.
"""

from taxi_pipeline.errors import ConfigError, LoadError, TaxiPipelineError
from taxi_pipeline.pipeline import MonthResult, RunResult, make_pipeline, run, status
from taxi_pipeline.source import taxi_source

__all__ = [
    "ConfigError",
    "LoadError",
    "MonthResult",
    "RunResult",
    "TaxiPipelineError",
    "make_pipeline",
    "run",
    "status",
    "taxi_source",
]
__version__ = "0.1.0"
