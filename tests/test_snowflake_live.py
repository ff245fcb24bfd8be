"""Against a live Snowflake account: runs only when `DESTINATION__SNOWFLAKE__CREDENTIALS__*` env vars are set.

    DESTINATION__SNOWFLAKE__CREDENTIALS__DATABASE=… __USERNAME=… __PASSWORD=… __HOST=… __WAREHOUSE=… __ROLE=…

Loads two small self-made months into a throwaway dataset (`taxi_test_<random>`) and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest

LIVE = {k: v for k, v in os.environ.items() if k.startswith("DESTINATION__SNOWFLAKE__CREDENTIALS__")}

pytestmark = pytest.mark.skipif(
    not LIVE, reason="no live Snowflake account: set DESTINATION__SNOWFLAKE__CREDENTIALS__* env vars to run"
)


@pytest.fixture
def live_dataset(monkeypatch):
    for key, value in LIVE.items():
        monkeypatch.setenv(key, value)
    name = f"taxi_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TAXI_PIPELINE__DATASET_NAME", name)
    yield name
    from taxi_pipeline.pipeline import make_pipeline

    with make_pipeline("snowflake").sql_client() as client:
        client.execute_sql(f"DROP SCHEMA IF EXISTS {name.upper()} CASCADE")
        client.execute_sql(f"DROP SCHEMA IF EXISTS {name.upper()}_STAGING CASCADE")


def test_snowflake_live_load_rerun_and_replace(mirror, cli, live_dataset):
    from taxi_pipeline.pipeline import make_pipeline
    from taxi_pipeline.table_months import month_counts

    mirror.trips("green", "2019-01", 20)
    mirror.trips("green", "2019-02", 10)
    args = [
        "--dest",
        "snowflake",
        "--base-url",
        mirror.url,
        "--taxi",
        "green",
        "--start",
        "2019-01",
        "--end",
        "2019-02",
    ]
    assert cli(*args).code == 0
    assert cli(*args).out.count("skipped") >= 2
    mirror.trips("green", "2019-01", 21, seed=1)
    r = cli(*args)
    assert r.code == 0 and "replaced" in r.out, r
    assert month_counts(make_pipeline("snowflake"), "green_tripdata") == {"2019-01": 21, "2019-02": 10}


def test_snowflake_live_workers_load_months_side_by_side(mirror, cli, live_dataset):
    """`--workers 2` on a live account: each worker process takes its months' leases; all exact, all given back."""
    from taxi_pipeline.destinations.snowflake import LOCKS_TABLE
    from taxi_pipeline.pipeline import make_pipeline
    from taxi_pipeline.table_months import month_counts

    months = {"2019-01": 12, "2019-02": 9, "2019-03": 7}
    for month, rows in months.items():
        mirror.trips("green", month, rows)
    args = ["--dest", "snowflake", "--base-url", mirror.url, "--taxi", "green", "--start", "2019-01"]
    r = cli(*args, "--end", "2019-03", "--workers", "2")
    assert r.code == 0, r
    assert "loads one month at a time" not in r.err
    pipeline = make_pipeline("snowflake")
    assert month_counts(pipeline, "green_tripdata") == months
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(LOCKS_TABLE)
        keys = client.execute_sql(f"SELECT lock_key FROM {table} WHERE lock_key <> '*'")
    assert keys == []  # only the guard row (or two, made at once): every lease given back
