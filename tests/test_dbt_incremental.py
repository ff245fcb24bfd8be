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


def monthly_then_republished(cli, mirror, dest: str, query, build_full, execute) -> None:
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

    # a monthly build touches its months only: rows of another month removed by hand stay removed
    execute("delete from taxi.fct_fhv_trips where source_month = '2019-02'")
    publish(mirror, "2019-05")
    load(cli, mirror, dest, "2019-05", "--dbt")
    assert set(months_of(query)["fct_fhv_trips"]) == {"2019-03", "2019-04", "2019-05"}


def test_monthly_dbt_builds_equal_a_full_refresh_on_duckdb(mirror, cli, duck, monkeypatch):
    import duckdb

    def execute(sql: str) -> None:
        with duckdb.connect("taxi_pipeline.duckdb") as con:
            con.execute(sql)

    monthly_then_republished(cli, mirror, "duckdb", duck, full_refresh_cli("duckdb", monkeypatch), execute)


def test_monthly_dbt_builds_equal_a_full_refresh_on_postgres(mirror, cli, pg, monkeypatch):
    build_full = full_refresh_cli("postgres", monkeypatch)
    monthly_then_republished(cli, mirror, "postgres", pg.query, build_full, pg.query)
    # the facts' BRIN month index survives the full refreshes (dbt makes it on each new table)
    indexes = pg.query("select indexdef from pg_indexes where schemaname = 'taxi' and tablename = 'fct_trips'")
    assert [d for (d,) in indexes if "USING brin (source_month)" in d], indexes


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
    snowflake.query("delete from taxi.fct_fhv_trips where source_month = '2019-02'")  # see monthly_then_republished
    publish(mirror, "2019-04")
    load(cli, mirror, "snowflake", "2019-04")
    monthly()
    assert set(months_of(snowflake.query)["fct_fhv_trips"]) == {"2019-03", "2019-04"}


def spy_on_dbt(monkeypatch) -> List[object]:
    """The `changed` months of every dbt run from now on (None: every month), dbt still running."""
    seen: List[object] = []
    original = run_dbt

    def spy(pipeline, *args, **kwargs):
        seen.append(kwargs.get("changed"))
        return original(pipeline, *args, **kwargs)

    monkeypatch.setattr("taxi_pipeline.transform.run_dbt", spy)
    return seen


def test_a_monthly_build_passes_only_the_changed_months(mirror, cli, duck, monkeypatch):
    """The first build is a full one; months loaded without --dbt are built by the next build, and only they."""
    for month in MONTHS[:2]:
        publish(mirror, month)
        load(cli, mirror, "duckdb", month)
    pipeline = make_pipeline("duckdb")
    pipeline.sync_destination()
    assert changed_months(pipeline)["fhvhv_tripdata"] == MONTHS[:2]

    seen = spy_on_dbt(monkeypatch)
    r = cli("dbt", "--dest", "duckdb")
    assert r.code == 0 and seen[-1] is None, r  # every month, no var
    assert "dbt build of every month (no build into schema taxi recorded yet)" in r.err, r

    # a month the next build must not touch: its fact rows removed by hand stay removed, and its tests (which
    # would now fail the reconciliation with staging) are not run
    import duckdb

    with duckdb.connect("taxi_pipeline.duckdb") as con:
        con.execute("delete from taxi.fct_trips where source_month = '2019-02'")
    publish(mirror, MONTHS[2])
    load(cli, mirror, "duckdb", MONTHS[2])  # without --dbt
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[2], "--dbt")  # loads nothing new
    assert r.code == 0 and "dbt build passed" in r.out, r
    assert seen[-1] == {t: [MONTHS[2]] for t in seen[-1]}, seen[-1]
    assert "dbt build of the months changed since the last build: " in r.err, r
    assert f"green_tripdata {MONTHS[2]};" in r.err and f"fhvhv_tripdata {MONTHS[2]}" in r.err, r
    assert dict(duck("select source_month, count(*) > 0 from taxi.fct_trips group by 1")) == {
        "2019-03": True,
        "2019-04": True,
    }
    # the generic tests ran on the month built: their compiled SQL filters it
    from taxi_pipeline.transform import dbt_work_dir

    compiled = list((dbt_work_dir(make_pipeline("duckdb")) / "target").rglob("not_null_fct_trips_trip_id.sql"))
    assert compiled and all("source_month in ('2019-04')" in path.read_text() for path in compiled), compiled

    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[2], "--dbt")
    assert r.code == 0 and "dbt build skipped: no month changed since the last dbt build" in r.err, r

    r = cli("dbt", "--dest", "duckdb", "--full-refresh")
    assert r.code == 0 and seen[-1] is None, r  # every month: no var
    assert duck("select count(distinct source_month) from taxi.fct_trips") == [(3,)]


def _zone_names_renamed(location: int, name: str) -> bytes:
    """The zone lookup the mirror serves, with one zone renamed (a republished lookup)."""
    lines = tlc_files.zones_csv().decode("utf-8-sig").splitlines()
    out = []
    for line in lines:
        cells = line.split(",")
        if cells[0].strip('"') == str(location):
            cells[2] = f'"{name}"'
        out.append(",".join(cells))
    return ("\n".join(out) + "\n").encode()


def test_a_new_zone_lookup_rebuilds_every_month(mirror, cli, duck):
    """Zone names and the 'not a zone' exclusion are in every month's fact rows: a new lookup is a full build."""
    for month in MONTHS[:2]:
        mirror.trips("green", month, 20)
    args = ("--base-url", mirror.url, "--taxi", "green", "--start", MONTHS[0], "--end", MONTHS[1], "--dbt")
    assert cli(*args).code == 0
    location, name = 32, "Renamed Zone"  # a pickup zone of both months' test rows
    assert duck(f"select count(distinct source_month) from taxi.fct_trips where pickup_location_id = {location}")
    mirror.zones(_zone_names_renamed(location, name))
    r = cli(*args)  # no month changed, the lookup did
    assert r.code == 0 and "dbt build of every month (the zone lookup is new since the last build)" in r.err, r
    rows = duck(f"select source_month, pickup_zone from taxi.fct_trips where pickup_location_id = {location}")
    assert {m for m, _ in rows} == set(MONTHS[:2]) and {z for _, z in rows} == {name}, rows
    assert "dbt build skipped" in cli(*args).err  # recorded: the next run has nothing to build


def test_a_republished_month_that_keeps_no_row_leaves_none_in_the_facts_and_marts(mirror, cli, duck):
    """The month is deleted by name, not by the months present in the new rows: none present, none left."""
    import gzip

    for month in MONTHS[:2]:
        mirror.trips("green", month, 20)
    args = ("--base-url", mirror.url, "--taxi", "green", "--start", MONTHS[0], "--end", MONTHS[1], "--dbt")
    assert cli(*args).code == 0
    lines = gzip.decompress(tlc_files.trip_csv("green", MONTHS[1], 20, seed=3)).decode().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    pu = header.split(",").index("PULocationID")
    for cells in rows:
        cells[pu] = "999"  # not a zone: every row excluded from the fact
    body = "\n".join([header, *(",".join(cells) for cells in rows)]) + "\n"
    mirror.put(f"/green/green_tripdata_{MONTHS[1]}.csv.gz", gzip.compress(body.encode()))
    r = cli(*args)
    assert r.code == 0 and "dbt build passed" in r.out, r
    assert duck("select distinct source_month from taxi.fct_trips") == [(MONTHS[0],)]
    months = duck("select distinct strftime(revenue_month, '%Y-%m') from taxi.dm_monthly_zone_revenue")
    assert months == [(MONTHS[0],)]


def test_a_failed_dbt_build_leaves_its_months_for_the_next_one(mirror, cli):
    from tests.test_dbt import publish_bad_payment_type

    publish_bad_payment_type(mirror)  # green 2019-01 fails a staging test
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--dbt")
    assert r.code == 1 and "dbt build failed" in r.err, r
    pipeline = make_pipeline("duckdb")
    pipeline.sync_destination()
    assert changed_months(pipeline)["green_tripdata"] == ["2019-01"]
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--dbt")
    assert r.code == 1 and "dbt build failed" in r.err, r  # not "skipped": the month is still to build


def test_a_dbt_build_is_known_from_its_records_when_dlt_state_is_lost(mirror, cli, duck, workdir):
    """What dbt built is a row per month in `_taxi_dbt_built`, not in dlt state, which a run storing its state after
    another run's build could overwrite: with the state gone, the next run still has nothing to build."""
    import shutil

    import duckdb

    mirror.trips("green", MONTHS[0], 20)
    args = ("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[0], "--dbt")
    assert cli(*args).code == 0
    built = duck("select dbt_schema, table_name, month from taxi_raw._taxi_dbt_built order by 2, 3")
    assert ("taxi", "green_tripdata", MONTHS[0]) in built and ("taxi", "taxi_zone_lookup", "-") in built, built
    with duckdb.connect("taxi_pipeline.duckdb") as con:
        con.execute("delete from taxi_raw._dlt_pipeline_state")
    shutil.rmtree(workdir / "dlt")
    r = cli(*args)
    assert r.code == 0 and "dbt build skipped: no month changed since the last dbt build" in r.err, r


def test_a_dbt_build_recorded_in_dlt_state_by_an_earlier_version_still_counts(mirror, cli, duck):
    """Builds recorded before `_taxi_dbt_built` (in dlt state, under `dbt_built`) are read: no needless rebuild."""
    import duckdb

    from taxi_pipeline.records import month_records, zones_record
    from taxi_pipeline.state import DBT_BUILT_KEY, SOURCE
    from taxi_pipeline.transform import entry_version

    mirror.trips("green", MONTHS[0], 20)
    args = ("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[0], "--dbt")
    assert cli(*args).code == 0
    with duckdb.connect("taxi_pipeline.duckdb") as con:
        con.execute("drop table taxi_raw._taxi_dbt_built")
    pipeline = make_pipeline("duckdb")
    pipeline.sync_destination()
    month = entry_version(month_records(pipeline, "green_tripdata")[MONTHS[0]])
    legacy = {"green_tripdata": {MONTHS[0]: month}, "taxi_zone_lookup": entry_version(zones_record(pipeline))}
    with pipeline.managed_state(extract_state=True) as state:  # as the earlier version stored it
        state.setdefault("sources", {}).setdefault(SOURCE, {})[DBT_BUILT_KEY] = {"taxi": legacy}
    pipeline.normalize()
    pipeline.load()
    r = cli(*args)
    # read: the schema has a build; it predates models versions, so its models are rebuilt (not "no build recorded")
    assert r.code == 0 and "the last build's: none recorded" in r.err and "recorded yet" not in r.err, r
    r = cli(*args)
    assert r.code == 0 and "dbt build skipped: no month changed since the last dbt build" in r.err, r


def test_models_of_a_new_version_are_built_in_full_once_with_a_note(mirror, cli, duck):
    """The models' keys changed (version 2: trip_id made of source_row): tables built by the models of version 1
    are built again in full, whatever months changed, with one note; the next build is monthly again."""
    import duckdb

    from taxi_pipeline.transform import MODELS_RECORD, models_version

    mirror.trips("green", MONTHS[0], 20)
    args = ("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[0], "--dbt")
    assert cli(*args).code == 0
    with duckdb.connect("taxi_pipeline.duckdb") as con:  # as version 1 left them: a text key, its version recorded
        con.execute("alter table taxi.fct_trips alter trip_id type varchar")
        con.execute("update taxi_raw._taxi_dbt_built set version = '1' where table_name = ?", [MODELS_RECORD[0]])
    r = cli(*args)
    assert r.code == 0, r
    notes = [line for line in r.err.splitlines() if line.startswith("note: dbt build")]
    assert notes == [f"note: dbt build of every month (the models are version {models_version()}, the last build's: 1)"]
    assert duck(
        "select data_type from information_schema.columns where table_name = 'fct_trips' and column_name = 'trip_id'"
    ) == [("BIGINT",)]
    assert duck("select count(*), count(distinct trip_id) from taxi.fct_trips")[0][0] > 0
    r = cli(*args)
    assert r.code == 0 and "dbt build skipped: no month changed since the last dbt build" in r.err, r


def test_the_dbt_command_skips_when_nothing_changed_as_dbt_after_a_load_does(mirror, cli, monkeypatch):
    """`taxi-pipeline dbt` with no month and not the zone lookup changed since the last build: no build, a note,
    exit 0 (as `--dbt` after a load decides); `--full-refresh` still builds every month."""
    mirror.trips("green", MONTHS[0], 20)
    args = ("--base-url", mirror.url, "--taxi", "green", "--month", MONTHS[0])
    assert cli(*args, "--dbt").code == 0
    skipped = "note: dbt build skipped: no month changed since the last dbt build"
    assert skipped in cli(*args, "--dbt").err

    seen = spy_on_dbt(monkeypatch)
    r = cli("dbt")
    assert r.code == 0 and skipped in r.err and "dbt build passed" not in r.out, r
    assert seen == [], "dbt was not run"
    r = cli("dbt", "--full-refresh")
    assert r.code == 0 and "dbt build passed" in r.out and seen == [None], r
