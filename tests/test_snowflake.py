"""The real dlt Snowflake destination, end to end on fakesnow (a DuckDB-backed Snowflake emulator).

The compatibility shims live in tests/fakesnow_compat.py. Tests against a live account run only when
`DESTINATION__SNOWFLAKE__CREDENTIALS__*` env vars are set (see test_snowflake_live.py).
"""

from __future__ import annotations

import shutil

import pytest

fakesnow = pytest.importorskip("fakesnow", reason="fakesnow is in the dev extra")
snowflake_connector = pytest.importorskip("snowflake.connector", reason="taxi-pipeline[snowflake]")

from tests import fakesnow_compat  # noqa: E402

CREDENTIALS = "snowflake://loader:secret@fake-account/NYC_TAXI?warehouse=LOAD_WH&role=LOADER"


class FakeSnowflake:
    def query(self, sql: str):
        con = snowflake_connector.connect(account="fake-account", user="loader", password="x", database="NYC_TAXI")
        try:
            cur = con.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            con.close()

    def month_counts(self, table: str) -> dict:
        rows = self.query(f"select source_month, count(*) from taxi_raw.{table} group by 1 order by 1")
        return {m: n for m, n in rows}


@pytest.fixture
def snowflake(tmp_path, monkeypatch):
    """fakesnow patched in, persisting to a folder for the test; dlt Snowflake credentials pointing at it."""
    fakesnow_compat.apply()
    db_path = tmp_path / "fakesnow"
    db_path.mkdir()
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS", CREDENTIALS)
    with fakesnow.patch(db_path=str(db_path)):
        yield FakeSnowflake()


def sf_load(cli, mirror, *args):
    return cli("--dest", "snowflake", "--base-url", mirror.url, *args)


def test_snowflake_loads_two_months_exactly(mirror, cli, snowflake):
    mirror.trips("green", "2019-01", 25)
    mirror.trips("green", "2019-02", 15)
    r = sf_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 25, "2019-02": 15}
    assert snowflake.query("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] in (265, 3)


def test_snowflake_rerun_is_a_no_op(mirror, cli, snowflake):
    mirror.trips("green", "2019-01", 12)
    assert sf_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    gets, loads = mirror.gets(), snowflake.query("select count(*) from taxi_raw._dlt_loads")[0][0]
    r = sf_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0 and "skipped" in r.out, r
    assert mirror.gets() == gets
    assert snowflake.query("select count(*) from taxi_raw._dlt_loads")[0][0] == loads
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 12}


def test_snowflake_republished_month_replaces_its_rows(mirror, cli, snowflake):
    mirror.trips("yellow", "2019-01", 20)
    mirror.trips("yellow", "2019-02", 8)
    assert sf_load(cli, mirror, "--taxi", "yellow", "--start", "2019-01", "--end", "2019-02").code == 0
    mirror.trips("yellow", "2019-01", 17, seed=9)
    r = sf_load(cli, mirror, "--taxi", "yellow", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0 and "replaced" in r.out, r
    assert snowflake.month_counts("yellow_tripdata") == {"2019-01": 17, "2019-02": 8}


def test_snowflake_state_restored_with_fresh_working_directory(mirror, cli, snowflake, workdir):
    mirror.trips("green", "2019-01", 9)
    assert sf_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    shutil.rmtree(workdir / "dlt")  # a scheduled worker starts with an empty folder
    gets = mirror.gets()
    r = sf_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0 and "skipped" in r.out, r
    assert mirror.gets() == gets
    r = cli("status", "--dest", "snowflake")
    assert r.code == 0 and "green_tripdata" in r.out and "2019-01" in r.out, r


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
