"""taxi_pipeline: NYC TLC taxi trip months into DuckDB, Postgres or Snowflake with dlt, safe to re-run.

Public API:
    taxi_source(...)  the dlt source (one resource per taxi type + `taxi_zone_lookup`), for your own pipelines;
    run(...)          plan, load each month atomically and reconcile it (what the CLI runs);
    status(...)       what is loaded where, read from the destination's state;
    report_data(...)  trips (and dbt revenue) per month from the destination; `report.render` draws them;
    MonthProgress     a dlt progress collector showing each file's bytes and rows (`run(progress=…)`).
"""

from taxi_pipeline.errors import ConfigError, LoadError, TaxiPipelineError
from taxi_pipeline.pipeline import MonthResult, RunResult, make_pipeline, run, status
from taxi_pipeline.progress import MonthProgress
from taxi_pipeline.report import report_data
from taxi_pipeline.source import taxi_source

__all__ = [
    "ConfigError",
    "LoadError",
    "MonthProgress",
    "MonthResult",
    "RunResult",
    "TaxiPipelineError",
    "make_pipeline",
    "report_data",
    "run",
    "status",
    "taxi_source",
]
__version__ = "0.1.0"
