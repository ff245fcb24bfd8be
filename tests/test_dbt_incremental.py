"""dbt by month: monthly builds equal a full refresh row for row, on all three targets; for-hire trips modelled.

Each target loads months one at a time (green, yellow and fhv as csv; fhvhv as parquet) and runs dbt after each;
the models are then compared with a full refresh built from the same raw tables into another schema. A month
republished and replaced in the raw tables must be replaced in the facts and marts too.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Callable, Dict, List

import pytest

from taxi_pipeline.pipeline import make_pipeline
from taxi_pipeline.transform import (
    DBT_SCHEMA_ENV,
    changed_months,
    dbt_project_dir,
    dbt_vars,
    profile_env,
    record_built,
    run_dbt,
)
from tests import tlc_files

pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")

MODELS = ["fct_trips", "fct_fhv_trips", "dm_monthly_zone_revenue", "dm_monthly_zone_taxi_vs_app"]
MONTHS = ["2019-02", "2019-03", "2019-04"]
FULL = "taxi_full"


def publish(mirror, month: str, seed: int = 0) -> None:
    mirror.trips("green", month, 30, seed=seed)
    mirror.trips("yellow", month, 25, seed=seed)
    mirror.trips("fhv", month, 20, seed=seed)
    mirror.put(f"/trip-data/fhvhv_tripdata_{month}.parquet", tlc_files.fhvhv_parquet(month, 24 + seed, seed))


def load(cli, mirror, dest: str, month: str, *extra: str):
    """One month of every taxi type: the csv layout for three, the parquet layout for fhvhv (the TLC's only)."""
    base = ["--dest", dest, "--base-url", mirror.url, "--month", month]
    r = cli(*base, "--taxi", "green,yellow,fhv")
    assert r.code == 0, r
    r = cli(*base, "--taxi", "fhvhv", "--format", "parquet", *extra)
    assert r.code == 0, r
    return r


def _norm(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, Decimal):
        return round(float(value), 6)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value


def snapshot(query: Callable[[str], list], schema: str) -> Dict[str, List[tuple]]:
    """Every model's rows, normalized (floats to 6 places: sums may be added up in another order), sorted."""
    out = {}
    for model in MODELS:
        rows = [tuple(_norm(v) for v in row) for row in query(f"select * from {schema}.{model}")]
        out[model] = sorted(rows, key=repr)
    return out


def assert_same_as_full_refresh(query, build_full) -> None:
    build_full()
    incremental, full = snapshot(query, "taxi"), snapshot(query, FULL)
    for model in MODELS:
        assert incremental[model] == full[model], model
        assert incremental[model], f"{model} is empty"


def months_of(query, schema: str = "taxi") -> Dict[str, Dict[str, int]]:
    """Model → source month → rows (marts: by their month column)."""
    out: Dict[str, Dict[str, int]] = {}
    for model, column in (("fct_trips", "source_month"), ("fct_fhv_trips", "source_month")):
        out[model] = {m: n for m, n in query(f"select {column}, count(*) from {schema}.{model} group by 1")}
    return out


def full_refresh_cli(pipeline_dest: str, monkeypatch) -> Callable[[], None]:
    def build() -> None:
        monkeypatch.setenv(DBT_SCHEMA_ENV, FULL)
        try:
            result = run_dbt(make_pipeline(pipeline_dest), extra_args=["--full-refresh"], output=_Sink())
        finally:
            monkeypatch.delenv(DBT_SCHEMA_ENV)
        assert result.success, result.failures

    return build


class _Sink:
    def write(self, text: str) -> int:
        self.text = text
        return len(text)

    def isatty(self) -> bool:
        return False


def monthly_then_republished(cli, mirror, dest: str, query, build_full) -> None:
    for month in MONTHS:
        publish(mirror, month)
        r = load(cli, mirror, dest, month, "--dbt")
        assert "dbt build passed" in r.out, r
    assert months_of(query)["fct_trips"].keys() == set(MONTHS)
    assert_same_as_full_refresh(query, build_full)

    before = months_of(query)
    publish(mirror, "2019-03", seed=7)  # republished: other rows, and more fhvhv trips
    r = load(cli, mirror, dest, "2019-03", "--dbt")
    assert "dbt build passed" in r.out, r
    after = months_of(query)
    assert after["fct_fhv_trips"]["2019-03"] != before["fct_fhv_trips"]["2019-03"]
    assert {m: n for m, n in after["fct_fhv_trips"].items() if m != "2019-03"} == {
        m: n for m, n in before["fct_fhv_trips"].items() if m != "2019-03"
    }
    assert_same_as_full_refresh(query, build_full)


def test_monthly_dbt_builds_equal_a_full_refresh_on_duckdb(mirror, cli, duck, monkeypatch):
    monthly_then_republished(cli, mirror, "duckdb", duck, full_refresh_cli("duckdb", monkeypatch))


def test_monthly_dbt_builds_equal_a_full_refresh_on_postgres(mirror, cli, pg, monkeypatch):
    monthly_then_republished(cli, mirror, "postgres", pg.query, full_refresh_cli("postgres", monkeypatch))


def test_monthly_dbt_builds_equal_a_full_refresh_on_snowflake(mirror, cli, snowflake, tmp_path, monkeypatch):
    """On fakesnow, dbt runs in-process (the emulator's patch must reach it), with the var the pipeline passes."""
    pytest.importorskip("fakesnow", reason="fakesnow is in the dev extra")
    from dbt.cli.main import dbtRunner

    project = str(dbt_project_dir())

    def dbt(*args: str) -> None:
        pipeline = make_pipeline("snowflake")
        for key, value in profile_env(pipeline).items():
            monkeypatch.setenv(key, value)
        common = ["--project-dir", project, "--profiles-dir", project, "--target", "snowflake"]
        common += ["--target-path", str(tmp_path / "t"), "--log-path", str(tmp_path / "t")]
        result = dbtRunner().invoke(["build", *common, *args])
        assert result.success, result.exception

    def monthly() -> None:
        pipeline = make_pipeline("snowflake")
        pipeline.sync_destination()
        changed = changed_months(pipeline)
        dbt(*dbt_vars(changed))
        record_built(pipeline, changed)

    def build_full() -> None:
        monkeypatch.setenv(DBT_SCHEMA_ENV, FULL)
        try:
            dbt("--full-refresh")
        finally:
            monkeypatch.delenv(DBT_SCHEMA_ENV)

    for month in MONTHS[:2]:
        publish(mirror, month)
        load(cli, mirror, "snowflake", month)
        monthly()
    assert_same_as_full_refresh(snowflake.query, build_full)
    publish(mirror, "2019-03", seed=7)
    load(cli, mirror, "snowflake", "2019-03")
    monthly()
    assert_same_as_full_refresh(snowflake.query, build_full)


def test_a_monthly_build_passes_only_the_changed_months(mirror, cli, duck, monkeypatch):
    """Months loaded without --dbt are built by the next build; a build records them; a failed one does not."""
    for month in MONTHS[:2]:
        publish(mirror, month)
        load(cli, mirror, "duckdb", month)
    pipeline = make_pipeline("duckdb")
    pipeline.sync_destination()
    assert changed_months(pipeline)["fhvhv_tripdata"] == MONTHS[:2]

    seen: List[List[str]] = []
    original = run_dbt

    def spy(pipeline, *args, **kwargs):
        seen.append(kwargs.get("changed"))
        return original(pipeline, *args, **kwargs)

    monkeypatch.setattr("taxi_pipeline.transform.run_dbt", spy)
    r = cli("dbt", "--dest", "duckdb")
    assert r.code == 0, r
    assert seen[-1]["green_tripdata"] == MONTHS[:2] and seen[-1]["fhvhv_tripdata"] == MONTHS[:2]
    assert "dbt build of the months changed since the last build: " in r.err
    assert "green_tripdata 2019-02, 2019-03;" in r.err and "fhvhv_tripdata 2019-02, 2019-03" in r.err, r

    # a month the next build must not touch: its fact rows removed by hand stay removed, and its tests (which
    # would now fail the reconciliation with staging) are not run
    import duckdb

    with duckdb.connect("taxi_pipeline.duckdb") as con:
        con.execute("delete from taxi.fct_trips where source_month = '2019-02'")
    publish(mirror, MONTHS[2])
    r = load(cli, mirror, "duckdb", MONTHS[2], "--dbt")
    assert seen[-1] == {t: [MONTHS[2]] for t in seen[-1]}, seen[-1]
    assert dict(duck("select source_month, count(*) > 0 from taxi.fct_trips group by 1")) == {
        "2019-03": True,
        "2019-04": True,
    }

    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[2], "--dbt")
    assert r.code == 0 and "dbt build skipped: no month changed since the last dbt build" in r.err, r

    r = cli("dbt", "--dest", "duckdb", "--full-refresh")
    assert r.code == 0 and seen[-1] is None, r  # every month: no var
    assert duck("select count(distinct source_month) from taxi.fct_trips") == [(3,)]
