"""The real dlt Snowflake destination, end to end on fakesnow (a DuckDB-backed Snowflake emulator).

The compatibility shims live in tests/fakesnow_compat.py, the `snowflake` fixture in conftest.py; rerun,
replace and state restore are in test_destinations.py, shared with DuckDB and Postgres. Tests against a live
account run only when `DESTINATION__SNOWFLAKE__CREDENTIALS__*` env vars are set (see test_snowflake_live.py).
"""

from __future__ import annotations

import pytest

pytest.importorskip("fakesnow", reason="fakesnow is in the dev extra")
pytest.importorskip("snowflake.connector", reason="taxi-pipeline[snowflake]")


def sf_load(cli, mirror, *args):
    return cli("--dest", "snowflake", "--base-url", mirror.url, *args)


def test_snowflake_loads_two_months_exactly(mirror, cli, snowflake):
    mirror.trips("green", "2019-01", 25)
    mirror.trips("green", "2019-02", 15)
    r = sf_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 25, "2019-02": 15}
    assert snowflake.query("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] in (265, 3)
    # each month recorded in a row of its own, after it reconciled (Snowflake has no load job of ours);
    # the zone lookup's row has month '-'
    records = snowflake.query('select "MONTH", "ROW_COUNT" from TAXI_RAW."_TAXI_MONTHS" order by 1')
    zones = snowflake.query("select count(*) from taxi_raw.taxi_zone_lookup")[0][0]
    assert [tuple(r) for r in records] == [("-", zones), ("2019-01", 25), ("2019-02", 15)]


def test_snowflake_identifiers_are_upper_case_and_times_naive(mirror, cli, snowflake):
    mirror.trips("green", "2019-01", 5)
    assert sf_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    columns = dict(
        snowflake.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'TAXI_RAW' and table_name = 'GREEN_TRIPDATA'"
        )
    )
    assert {"SOURCE_MONTH", "PU_LOCATION_ID", "LPEP_PICKUP_DATETIME"} <= set(columns)
    assert columns["LPEP_PICKUP_DATETIME"] == "TIMESTAMP_NTZ"
    # unquoted identifiers resolve to the upper-case names, as in dbt and ad-hoc SQL
    assert snowflake.query('select count(*) from TAXI_RAW."GREEN_TRIPDATA" where "SOURCE_MONTH" = \'2019-01\'') == [
        (5,)
    ]


def test_snowflake_missing_credentials_name_the_setting(mirror, cli, monkeypatch):
    monkeypatch.delenv("DESTINATION__SNOWFLAKE__CREDENTIALS", raising=False)
    r = sf_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert "DESTINATION__SNOWFLAKE__CREDENTIALS" in r.err and r.err.count("\n") == 1


def test_snowflake_external_stage_is_taken_from_config(monkeypatch):
    from taxi_pipeline.pipeline import make_pipeline

    monkeypatch.setenv("TAXI_PIPELINE__STAGING", "filesystem")
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", "s3://taxi-bucket/staging")
    pipeline = make_pipeline("snowflake")
    assert pipeline.staging is not None and pipeline.staging.destination_name == "filesystem"
    assert make_pipeline("duckdb").staging is None  # an external stage is a Snowflake setting only
    monkeypatch.delenv("TAXI_PIPELINE__STAGING")
    assert make_pipeline("snowflake").staging is None


def test_snowflake_dbt_build_on_the_emulator(mirror, cli, snowflake, tmp_path, monkeypatch):
    """The dbt project's snowflake target, run in-process so fakesnow's patch reaches dbt-snowflake."""
    dbt_main = pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    from taxi_pipeline.pipeline import make_pipeline
    from taxi_pipeline.transform import dbt_project_dir, profile_env
    from tests.test_dbt import as_mart, expected_mart, mart_sql, publish_two_services

    publish_two_services(mirror)
    assert sf_load(cli, mirror, "--taxi", "green,yellow", "--month", "2019-01").code == 0
    for key, value in profile_env(make_pipeline("snowflake")).items():
        monkeypatch.setenv(key, value)
    project = str(dbt_project_dir())
    args = ["build", "--project-dir", project, "--profiles-dir", project, "--target", "snowflake"]
    result = dbt_main.dbtRunner().invoke(
        args + ["--target-path", str(tmp_path / "t"), "--log-path", str(tmp_path / "t")]
    )
    assert result.success, result.exception
    assert as_mart(snowflake.query(mart_sql())) == expected_mart(mirror)
