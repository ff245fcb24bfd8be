"""Against a live BigQuery project: runs only when `TAXI_TEST_BIGQUERY_PROJECT` is set.

    TAXI_TEST_BIGQUERY_PROJECT=my-project
    GOOGLE_APPLICATION_CREDENTIALS=/path/key.json       (or DESTINATION__BIGQUERY__CREDENTIALS='{…json…}')
    TAXI_PIPELINE__STAGING=filesystem DESTINATION__FILESYSTEM__BUCKET_URL=gs://bucket/path   (optional: staging)

Loads two small self-made months into a throwaway dataset (`taxi_test_<random>`), reruns, replaces one, and drops
the dataset and its staging copy afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest

PROJECT = os.environ.get("TAXI_TEST_BIGQUERY_PROJECT")
LIVE = {
    key: value
    for key, value in os.environ.items()
    if key.startswith(("DESTINATION__BIGQUERY__", "DESTINATION__FILESYSTEM__")) or key == "TAXI_PIPELINE__STAGING"
}

pytestmark = pytest.mark.skipif(
    not PROJECT or os.environ.get("BIGQUERY_EMULATOR_HOST") is not None,
    reason="no live BigQuery project: set TAXI_TEST_BIGQUERY_PROJECT and credentials (ADC or "
    "DESTINATION__BIGQUERY__CREDENTIALS) to run",
)


@pytest.fixture
def live_dataset(workdir, monkeypatch):
    for key, value in LIVE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DESTINATION__BIGQUERY__PROJECT_ID", str(PROJECT))
    name = f"taxi_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TAXI_PIPELINE__DATASET_NAME", name)
    yield name
    from taxi_pipeline.pipeline import make_pipeline

    with make_pipeline("bigquery").sql_client() as client:
        for dataset in (name, f"{name}_staging"):
            client.execute_sql(f"DROP SCHEMA IF EXISTS `{PROJECT}`.`{dataset}` CASCADE")


def test_bigquery_live_load_rerun_and_replace(mirror, cli, live_dataset):
    from taxi_pipeline.pipeline import make_pipeline
    from taxi_pipeline.table_months import month_counts

    mirror.trips("green", "2019-01", 20)
    mirror.trips("green", "2019-02", 10)
    args = ["--dest", "bigquery", "--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02"]
    assert cli(*args).code == 0
    assert cli(*args).out.count("skipped") >= 2
    mirror.trips("green", "2019-01", 21, seed=1)
    r = cli(*args)
    assert r.code == 0 and "replaced" in r.out, r
    assert month_counts(make_pipeline("bigquery"), "green_tripdata") == {"2019-01": 21, "2019-02": 10}
