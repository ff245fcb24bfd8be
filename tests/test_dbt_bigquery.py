"""The dbt project on BigQuery, end to end against bqemulator: `--dbt` after a load, monthly rebuilds, partitions.

dbt-bigquery reaches the emulator as dlt does: google-cloud-bigquery's client reads `BIGQUERY_EMULATOR_HOST`, and
the `bigquery` fixture's Application Default Credentials (a key file whose token endpoint is local) serve both.
"""

from __future__ import annotations

import json
import os
import stat
from decimal import Decimal

import pytest

from taxi_pipeline.pipeline import make_pipeline
from taxi_pipeline.transform import BIGQUERY_KEYFILE_ENV, dbt_work_dir, profile_env
from tests import bqemulator, tlc_files
from tests.test_dbt import as_mart, expected_mart

pytest.importorskip("dbt.adapters.bigquery", reason="dbt-bigquery is in the dbt extra")

MARTS = ["dm_monthly_zone_revenue", "dm_monthly_zone_taxi_vs_app"]
MART_OVER_MONTHS = (
    "select revenue_zone, service_type, sum(total_monthly_trips), sum(revenue_monthly_fare),"
    " sum(revenue_monthly_total_amount) from taxi.dm_monthly_zone_revenue group by 1, 2"
)
"""The revenue mart summed over its months: what `tests.test_dbt.expected_mart` computes from the files."""


def load(cli, mirror, *args: str):
    """A load into the emulator (csv months), the CLI's result asserted successful."""
    r = cli("--dest", "bigquery", "--base-url", mirror.url, *args)
    assert r.code == 0, r
    return r


def fact_months(bigquery, table: str = "fct_trips") -> dict:
    """source_month → rows of a fact (or model with source_month) built into `taxi`."""
    return dict(bigquery.query(f"select source_month, count(*) from taxi.{table} group by 1"))


def kept_months(bigquery, *tables: str) -> dict:
    """source_month → raw rows the facts keep: the test files' rows minus one per file picked up the month before
    (every location of the test files is a zone), counted from the raw tables themselves."""
    kept: dict = {}
    for table in tables:
        for month, n in bigquery.month_counts(table).items():
            kept[month] = kept.get(month, 0) + n - 1
    return kept


def test_dbt_on_bigquery_builds_facts_and_marts(mirror, cli, bigquery):
    """Two green months and a yellow one, `--dbt`: the facts hold exactly the kept rows, the marts add up, and
    every dbt test passed (the CLI's exit code)."""
    mirror.trips("green", "2019-01", 25)
    mirror.trips("green", "2019-02", 20)
    mirror.trips("yellow", "2019-01", 15)
    load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    r = load(cli, mirror, "--taxi", "yellow", "--month", "2019-01", "--dbt")
    assert "dbt build passed" in r.out, r

    assert fact_months(bigquery) == kept_months(bigquery, "green_tripdata", "yellow_tripdata")
    assert fact_months(bigquery) == {"2019-01": 24 + 14, "2019-02": 19}
    assert bigquery.query("select count(distinct trip_id), count(*) from taxi.fct_trips") == [(57, 57)]
    assert as_mart(bigquery.query(MART_OVER_MONTHS)) == expected_mart(mirror)
    for mart in MARTS:
        assert bigquery.query(f"select count(*) from taxi.{mart}")[0][0] > 0, mart
    assert bigquery.query("select count(*) from taxi.fct_fhv_trips") == [(0,)]  # no for-hire month loaded


def kept_fares(taxi: str, month: str, n: int, seed: int = 0) -> list:
    """The fares of a published test month's rows the facts keep (picked up in the month), sorted."""
    return sorted(Decimal(r["fare"]) for r in tlc_files.trip_rows(taxi, month, n, seed) if r["pickup"][:7] == month)


def fact_fares(bigquery, month: str) -> list:
    """The fares of a month's rows in fct_trips, sorted."""
    rows = bigquery.query(f"select fare_amount from taxi.fct_trips where source_month = '{month}'")
    return sorted(round(Decimal(str(fare)), 2) for (fare,) in rows)


def test_a_republished_month_is_rebuilt_alone_on_bigquery(mirror, cli, bigquery):
    """A month republished and loaded again with `--dbt`: dbt deletes and inserts that month (the `by_month`
    strategy, in one transaction), and leaves the other month's rows as they were."""
    mirror.trips("green", "2019-01", 25)
    mirror.trips("green", "2019-02", 20)
    load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02", "--dbt")
    assert fact_months(bigquery) == {"2019-01": 24, "2019-02": 19}
    # a row of January removed by hand stays removed: a monthly build of February does not touch January
    bigquery.query("delete from taxi.fct_trips where source_month = '2019-01' and vendor_id = 1 and fare_amount > 20")
    january = bigquery.query("select trip_id, fare_amount from taxi.fct_trips where source_month = '2019-01'")
    assert 0 < len(january) < 24

    mirror.trips("green", "2019-02", 30, seed=7)  # republished: other rows, more of them
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-02", "--dbt")
    assert "dbt build of the months changed since the last build: green_tripdata 2019-02" in r.err, r
    assert "dbt build passed" in r.out, r

    assert sorted(bigquery.query("select trip_id, fare_amount from taxi.fct_trips where source_month = '2019-01'")) == (
        sorted(january)
    )
    assert fact_months(bigquery) == {"2019-01": len(january), "2019-02": 29}
    scripts = [" ".join((job.query or "").split()) for job in bigquery.client.list_jobs() if job.job_type == "query"]
    # after dbt's query comment
    replaced = [q for q in scripts if "*/ begin transaction; delete from `test-project`.`taxi`.`fct_trips`" in q]
    assert replaced and "where source_month in ('2019-02');" in replaced[-1], scripts
    assert replaced[-1].endswith("commit transaction;"), replaced[-1]
    assert fact_fares(bigquery, "2019-02") == kept_fares("green", "2019-02", 30, seed=7)
    assert fact_fares(bigquery, "2019-02") != kept_fares("green", "2019-02", 20)
    sql = "select sum(total_monthly_trips) from taxi.dm_monthly_zone_revenue where revenue_month = '2019-02-01'"
    assert bigquery.query(sql) == [(29,)]


def test_the_facts_are_partitioned_by_month_and_clustered_on_bigquery(mirror, cli, bigquery):
    """The facts are partitioned by pickup month (and clustered on source_month, pickup zone): in the table's
    metadata where the emulator reports it, and in the DDL dbt ran."""
    mirror.trips("green", "2019-01", 10)
    load(cli, mirror, "--taxi", "green", "--month", "2019-01", "--dbt")
    ddl = [
        " ".join((job.query or "").lower().split())
        for job in bigquery.client.list_jobs(all_users=True)
        if job.job_type == "query" and "create or replace table" in (job.query or "").lower()
    ]
    for fact in ("fct_trips", "fct_fhv_trips"):
        created = [q for q in ddl if f"`taxi`.`{fact}`" in q and "__dbt_tmp" not in q]
        assert created, f"no DDL of {fact} among {len(ddl)} statements"
        assert "partition by timestamp_trunc(pickup_datetime, month)" in created[-1], created[-1]
        assert "cluster by source_month, pickup_location_id" in created[-1], created[-1]
        partitioning = bigquery.client.get_table(f"{bqemulator.PROJECT}.taxi.{fact}").time_partitioning
        if partitioning is not None:  # bqemulator 1.4.0 reports neither partitioning nor clustering: the DDL above
            assert (partitioning.type_, partitioning.field) == ("MONTH", "pickup_datetime")


def test_dbt_on_bigquery_with_a_service_account_key(mirror, cli, bigquery, monkeypatch):
    """dlt credentials given as a service-account key (no Application Default Credentials left): dbt gets the key
    as a file of its own (mode 0600) and builds with `method: service-account`."""
    mirror.trips("green", "2019-01", 10)
    load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    with open(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]) as f:
        key = f.read()
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS", key)
    monkeypatch.setenv("DESTINATION__FILESYSTEM__CREDENTIALS", key)  # the staging bucket's, as ADC gave it
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    pipeline = make_pipeline("bigquery")
    env = profile_env(pipeline)
    keyfile = env[BIGQUERY_KEYFILE_ENV]
    assert keyfile.startswith(str(dbt_work_dir(pipeline)))
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    with open(keyfile) as f:
        assert json.load(f)["client_email"] == json.loads(key)["client_email"]
    assert env["DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID"] == bqemulator.PROJECT

    r = cli("dbt", "--dest", "bigquery")
    assert r.code == 0 and "dbt build passed" in r.out, r
    assert fact_months(bigquery) == {"2019-01": 9}
