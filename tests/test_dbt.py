"""The dbt project: `--dbt` after a load on DuckDB and Postgres, mart numbers against hand-computed totals."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from taxi_pipeline.errors import LoadError
from taxi_pipeline.pipeline import make_pipeline
from taxi_pipeline.schemas import LINEAGE, TRIP_SCHEMAS
from taxi_pipeline.transform import run_dbt
from tests import tlc_files

pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt"
GREEN_JAN = "/green/green_tripdata_2019-01.csv.gz"


def expected_mart(mirror) -> dict:
    """(zone, service) → (trips, fare, total) computed from the files the mirror serves, by the documented rules."""
    lookup = csv.DictReader(io.StringIO(tlc_files.zones_csv().decode("utf-8-sig")))
    zones = {int(r["locationid"]): r["zone"] for r in ({k.lower(): v for k, v in row.items()} for row in lookup)}
    out: dict = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for path, (content, _, _) in mirror.files.items():
        match = re.match(r"/(green|yellow)/\w+_(\d{4}-\d{2})\.csv\.gz", path)
        if not match:
            continue
        service, month = match.group(1).capitalize(), match.group(2)
        rows = csv.DictReader(io.StringIO(gzip.decompress(content).decode()))
        pickup_col = "lpep_pickup_datetime" if service == "Green" else "tpep_pickup_datetime"
        for row in rows:
            pickup = dt.datetime.fromisoformat(row[pickup_col])
            pu, do = int(row["PULocationID"]), int(row["DOLocationID"])
            if pickup.strftime("%Y-%m") != month or pu not in zones or do not in zones:
                continue  # the two documented exclusions
            key = (zones[pu], service)
            out[key][0] += 1
            out[key][1] += Decimal(row["fare_amount"])
            out[key][2] += Decimal(row["total_amount"])
    return {k: (n, round(f, 2), round(t, 2)) for k, (n, f, t) in out.items()}


def mart_sql(schema: str = "taxi") -> str:
    return (
        f"select revenue_zone, service_type, total_monthly_trips, revenue_monthly_fare, revenue_monthly_total_amount "
        f"from {schema}.dm_monthly_zone_revenue"
    )


def as_mart(rows) -> dict:
    return {(z, s): (int(n), round(Decimal(str(f)), 2), round(Decimal(str(t)), 2)) for z, s, n, f, t in rows}


def publish_two_services(mirror):
    mirror.trips("green", "2019-01", 60)
    mirror.trips("yellow", "2019-01", 45)


def test_dbt_on_duckdb_builds_models_with_correct_numbers(mirror, cli, duck):
    publish_two_services(mirror)
    r = cli("--base-url", mirror.url, "--taxi", "green,yellow", "--month", "2019-01", "--dbt")
    assert r.code == 0, r
    assert "dbt build passed" in r.out
    expected = expected_mart(mirror)
    assert as_mart(duck(mart_sql())) == expected
    staged = 60 + 45
    excluded = 2  # one row of each file is picked up in December 2018
    assert duck("select count(*) from taxi.fct_trips") == [(staged - excluded,)]
    assert duck("select count(*) from taxi.dim_zones")[0][0] == len(tlc_files.zones_csv().decode().splitlines()) - 1
    assert duck("select count(distinct trip_id), count(*) from taxi.fct_trips") == [(staged - excluded,) * 2]
    descriptions = dict(duck("select payment_type, max(payment_type_description) from taxi.fct_trips group by 1"))
    assert descriptions[1] == "Credit card" and descriptions[2] == "Cash"


def test_dbt_on_postgres_builds_models_with_correct_numbers(mirror, cli, pg):
    publish_two_services(mirror)
    r = cli("--dest", "postgres", "--base-url", mirror.url, "--taxi", "green,yellow", "--month", "2019-01", "--dbt")
    assert r.code == 0, r
    assert as_mart(pg.query(mart_sql())) == expected_mart(mirror)
    assert pg.query("select count(*) from taxi.fct_trips") == [(103,)]
    # statistics for what plans next: the build analyzed the raw tables it read and the tables it wrote
    analyzed = "select schemaname || '.' || relname from pg_stat_user_tables where last_analyze is not null"
    assert {
        "taxi_raw.green_tripdata",
        "taxi_raw.yellow_tripdata",
        "taxi.fct_trips",
        "taxi.fct_fhv_trips",
        "taxi.dim_zones",
        "taxi.dm_monthly_zone_revenue",
        "taxi.dm_monthly_zone_taxi_vs_app",
    } <= {row[0] for row in pg.query(analyzed)}


def test_dbt_builds_into_one_schema_take_turns(mirror, cli, pg, monkeypatch):
    """Two builds into one schema at once could both delete and insert a month's fact rows: a run's build waits
    for the build lock of its schema (held here by the test, as another run's build would)."""
    import psycopg2

    publish_two_services(mirror)
    monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "1")
    args = ["--dest", "postgres", "--base-url", mirror.url, "--taxi", "green,yellow", "--month", "2019-01"]
    holder = psycopg2.connect(pg.dsn)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("select pg_advisory_lock(hashtext('taxi_raw'), hashtext('dbt:taxi'))")
            r = cli(*args, "--dbt")
            built = pg.query("select to_regclass('taxi.fct_trips')")
    finally:
        holder.close()
    assert r.code == 1, r
    assert "note: another taxi_pipeline run is running the dbt build into schema taxi; waiting for it" in r.err
    assert "error: another taxi_pipeline run kept the dbt build into schema taxi busy for 1 s" in r.err
    assert built == [(None,)]  # no build while another one held the schema
    assert pg.month_counts("green_tripdata") == {"2019-01": 60}  # the months loaded all the same
    assert cli("dbt", "--dest", "postgres").code == 0  # the lock given back: the build runs
    assert as_mart(pg.query(mart_sql())) == expected_mart(mirror)


def expected_taxi_vs_app(mirror) -> dict:
    """(pickup zone id, ride type) → (trips, fare, paid) from the files served, by the documented rules.

    Taxi: green and yellow fare_amount and total_amount; App: fhvhv base_passenger_fare, and that plus tolls,
    bcf, sales tax, congestion surcharge, airport fee and tips. Trips picked up outside their file's month are
    left out (every pickup and dropoff id of the test files is a zone).
    """
    import pyarrow.parquet as pq

    out: dict = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for path, (content, _, _) in mirror.files.items():
        taxi = re.match(r"/(green|yellow)/\w+_(\d{4}-\d{2})\.csv\.gz", path)
        app = re.match(r"/trip-data/fhvhv_tripdata_(\d{4}-\d{2})\.parquet", path)
        if taxi:
            pickup_col = "lpep_pickup_datetime" if taxi.group(1) == "green" else "tpep_pickup_datetime"
            for row in csv.DictReader(io.StringIO(gzip.decompress(content).decode())):
                if row[pickup_col][:7] == taxi.group(2):
                    key = (int(row["PULocationID"]), "Taxi")
                    out[key][0] += 1
                    out[key][1] += Decimal(row["fare_amount"])
                    out[key][2] += Decimal(row["total_amount"])
        elif app:
            for row in pq.read_table(io.BytesIO(content)).to_pylist():
                if row["pickup_datetime"].strftime("%Y-%m") != app.group(1):
                    continue
                charges = ("tolls", "bcf", "sales_tax", "congestion_surcharge", "airport_fee", "tips")
                fare = Decimal(str(row["base_passenger_fare"]))
                key = (row["PULocationID"], "App")
                out[key][0] += 1
                out[key][1] += fare
                out[key][2] += fare + sum(Decimal(str(row[c] or 0)) for c in charges)
    return {k: (n, round(f, 2), round(p, 2)) for k, (n, f, p) in out.items()}


def test_for_hire_trips_and_the_taxi_vs_app_mart_add_up(mirror, cli, duck):
    """fhvhv (parquet, the TLC layout) and fhv beside green and yellow: the for-hire fact and the comparison mart."""
    for taxi, rows in (("green", 60), ("yellow", 45), ("fhv", 14)):
        mirror.trips(taxi, "2019-02", rows)
    mirror.put("/trip-data/fhvhv_tripdata_2019-02.parquet", tlc_files.fhvhv_parquet("2019-02", 40))
    assert cli("--base-url", mirror.url, "--taxi", "green,yellow,fhv", "--month", "2019-02").code == 0
    # fhvhv is published from 2019-02 on, as parquet only
    r = cli("--base-url", mirror.url, "--format", "parquet", "--taxi", "fhvhv", "--month", "2019-02", "--dbt")
    assert r.code == 0 and "dbt build passed" in r.out, r  # keys, relationships, reconciliation: dbt's tests

    sql = "select pickup_location_id, ride_type, trips, total_fare, total_paid from taxi.dm_monthly_zone_taxi_vs_app"
    mart = {(z, t): (int(n), round(Decimal(str(f)), 2), round(Decimal(str(p)), 2)) for z, t, n, f, p in duck(sql)}
    assert mart == expected_taxi_vs_app(mirror)
    assert duck("select distinct trip_month from taxi.dm_monthly_zone_taxi_vs_app") == [(dt.date(2019, 2, 1),)]
    fhv = csv.DictReader(io.StringIO(gzip.decompress(mirror.files["/fhv/fhv_tripdata_2019-02.csv.gz"][0]).decode()))
    kept = [r for r in fhv if r["pickup_datetime"][:7] == "2019-02" and r["PUlocationID"] and r["DOlocationID"]]
    assert 0 < len(kept) < 13
    kinds = dict(duck("select service_type, count(*) from taxi.fct_fhv_trips group by 1"))
    assert kinds == {"HVFHV": 39, "FHV": len(kept)}  # one row of each file is picked up the month before
    companies = dict(duck("select company, count(*) from taxi.fct_fhv_trips where service_type = 'HVFHV' group by 1"))
    assert companies == {"Uber": 20, "Lyft": 10, "Via": 9}  # the 40th (Via) is picked up the month before
    sql = "select ride_type, min(avg_trip_minutes), max(avg_trip_minutes) from taxi.dm_monthly_zone_taxi_vs_app"
    minutes = {t: (lo, hi) for t, lo, hi in duck(sql + " group by 1")}
    assert 5 <= minutes["App"][0] <= minutes["App"][1] <= 24  # trip_time 5–24 min
    assert 0 <= minutes["Taxi"][0] <= minutes["Taxi"][1] <= 1  # the test files drop off within the minute


def publish_bad_payment_type(mirror):
    """Green January with one payment_type outside the TLC data dictionary: `accepted_values_stg_green…` fails."""
    text = gzip.decompress(tlc_files.trip_csv("green", "2019-01", 20)).decode().splitlines()
    cols = text[1].split(",")
    cols[17] = "9"  # payment_type 9: not in the TLC data dictionary
    text[1] = ",".join(cols)
    mirror.put(GREEN_JAN, gzip.compress(("\n".join(text) + "\n").encode()))


def test_failing_dbt_test_fails_the_run_with_one_clear_line(mirror, cli):
    publish_bad_payment_type(mirror)
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--dbt")
    assert r.code == 1, r
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "dbt build failed" in errors[0] and "accepted_values_stg_green" in errors[0], r.err


def test_dbt_builds_with_only_some_taxi_types_loaded(mirror, cli, duck):
    mirror.trips("green", "2019-01", 10)
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--dbt")
    assert r.code == 0, r
    assert duck("select service_type, count(*) from taxi.fct_trips group by 1") == [("Green", 9)]


def test_dbt_build_standalone_from_the_project_folder(mirror, cli, workdir):
    publish_two_services(mirror)
    assert cli("--base-url", mirror.url, "--taxi", "green,yellow", "--month", "2019-01").code == 0
    env = {**os.environ, "DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "taxi_pipeline.duckdb")}
    target = workdir / "dbt_target"
    cmd = [sys.executable, "-m", "dbt.cli.main", "build", "--target", "duckdb", "--profiles-dir", "."]
    cmd += ["--target-path", str(target), "--log-path", str(target)]
    done = subprocess.run(cmd, cwd=DBT_DIR, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "ERROR=0" in done.stdout and "PASS=" in done.stdout


def test_staging_models_name_only_columns_of_the_column_map():
    """The raw columns the staging models read are the ones schemas.py defines (one column map, no drift)."""
    for taxi in ("green", "yellow", "fhv", "fhvhv"):
        sql = (DBT_DIR / "models" / "staging" / f"stg_{taxi}_tripdata.sql").read_text()
        listed = re.search(r"source_or_empty\('taxi_raw', '\w+', \[(.*?)\]\)", sql, re.S).group(1)
        names = set(re.findall(r"'(\w+)'", listed))
        known = {c.name for c in TRIP_SCHEMAS[taxi].columns} | {f.name for f in LINEAGE}
        assert names <= known, names - known


def test_dbt_subcommand_rebuilds_models_without_loading(mirror, cli, duck):
    publish_two_services(mirror)
    assert cli("--base-url", mirror.url, "--taxi", "green,yellow", "--month", "2019-01").code == 0
    gets = mirror.gets()
    r = cli("dbt", "--dest", "duckdb")
    assert r.code == 0 and "dbt build passed" in r.out, r
    assert mirror.gets() == gets
    assert as_mart(duck(mart_sql())) == expected_mart(mirror)


def test_dbt_output_in_a_pipe_is_plain_and_names_sql_that_still_exists(mirror, cli, workdir):
    """What a user sees of dbt when our stdout is a pipe or file: no Python warning, no colour codes, and the
    compiled SQL of a failing test, which dbt names, still there to open after the run."""
    publish_bad_payment_type(mirror)
    assert cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01").code == 0
    done = subprocess.run(
        [sys.executable, "-m", "taxi_pipeline", "dbt", "--dest", "duckdb"],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    shown = done.stdout + done.stderr
    assert done.returncode == 1, shown[-3000:]
    assert "accepted_values_stg_green" in done.stderr, shown[-3000:]
    assert "RuntimeWarning" not in shown and "found in sys.modules" not in shown, shown[-3000:]
    assert "\x1b[" not in shown, shown[-3000:]
    named = re.findall(r"compiled code at (\S+\.sql)", shown)
    assert named, shown[-3000:]
    assert all("accepted_values_stg_green" in path and Path(path).is_file() for path in named), named


def test_run_dbt_never_reads_a_stale_run_results_file(workdir):
    """dbt that stops before writing run_results.json is an error with dbt's exit code, not an earlier run's
    results, and its output in a buffer has no colour codes."""
    pipeline = make_pipeline("duckdb")
    stale = Path(pipeline.working_dir) / "dbt" / "target" / "run_results.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"results": [{"unique_id": "model.taxi.stale", "status": "success"}]}))
    buffer = io.StringIO()
    with pytest.raises(LoadError, match=r"exit 2\b"):
        run_dbt(pipeline, extra_args=["--no-such-option"], output=buffer)
    assert not stale.exists()
    assert "No such option" in buffer.getvalue(), buffer.getvalue()
    assert "RuntimeWarning" not in buffer.getvalue() and "\x1b[" not in buffer.getvalue(), buffer.getvalue()


@pytest.mark.parametrize("name", ["taxi_raw", "taxi"])
def test_dbt_on_a_duckdb_file_named_like_a_schema(mirror, cli, workdir, monkeypatch, name):
    """A DuckDB file named like the dataset (`taxi_raw.duckdb`) or the dbt schema (`taxi.duckdb`): DuckDB names the
    file's catalog after it, so a two-part name is ambiguous; `--dbt` and a later `dbt` still build."""
    path = workdir / f"{name}.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(path))
    publish_two_services(mirror)
    r = cli("--base-url", mirror.url, "--taxi", "green,yellow", "--month", "2019-01", "--dbt")
    assert r.code == 0 and "dbt build passed" in r.out, r
    r = cli("dbt", "--full-refresh")
    assert r.code == 0 and "dbt build passed" in r.out, r
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"select * from ({mart_sql(f'{name}.taxi')})").fetchall()
    assert as_mart(rows) == expected_mart(mirror)


def test_a_duckdb_build_runs_under_the_configured_memory_limit(mirror, cli, workdir):
    """`taxi_pipeline.dbt_memory_limit` in `.dlt/config.toml` reaches DuckDB in the dbt build (not only its env
    var): 1KB fails the build out of memory, 300MB builds; a value that is no memory size is exit 2 naming the
    setting. (In a process of its own: dlt reads a config file once per process.)"""
    mirror.trips("green", "2019-01", 20)
    assert cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01").code == 0
    (workdir / ".dlt").mkdir()

    def dbt_with(config: str) -> subprocess.CompletedProcess:
        (workdir / ".dlt" / "config.toml").write_text(f"[taxi_pipeline]\n{config}\n")
        command = [sys.executable, "-m", "taxi_pipeline", "dbt"]
        return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)

    r = dbt_with('dbt_memory_limit = "1KB"')
    assert r.returncode == 1 and "Out of Memory" in r.stdout, r
    r = dbt_with('dbt_memory_limit = "plenty"')
    assert r.returncode == 2, r
    assert (
        r.stderr.splitlines()[-1]
        == "error: taxi_pipeline.dbt_memory_limit is 'plenty': give a memory size such as 1GB or 512MB"
    )
    r = dbt_with('dbt_memory_limit = "300MB"\ndbt_threads = 1')
    assert r.returncode == 0, r


def test_the_reconciliation_counts_every_month_and_catches_a_lost_fact_row(mirror, cli, workdir):
    """A month whose rows are all excluded (every pickup outside it) has no fact rows and reconciles (0 = 0);
    fact rows lost from a month fail `fct_trips_reconciles_with_staging`."""
    mirror.trips("green", "2019-01", 20)
    mirror.trips("green", "2019-02", 10)
    assert cli("--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02").code == 0
    with duckdb.connect("taxi_pipeline.duckdb") as con:
        con.execute(
            "update taxi_raw.green_tripdata set lpep_pickup_datetime = timestamp '2018-12-15 10:00' "
            "where source_month = '2019-02'"
        )
    r = cli("dbt")
    assert r.code == 0 and "dbt build passed" in r.out, r
    with duckdb.connect("taxi_pipeline.duckdb") as con:
        assert con.execute("select count(*) from taxi.fct_trips where source_month = '2019-02'").fetchone() == (0,)
        con.execute("delete from taxi.fct_trips where trip_id in (select min(trip_id) from taxi.fct_trips)")
    result = run_dbt(make_pipeline("duckdb"), "test", ["--select", "fct_trips_reconciles_with_staging"], io.StringIO())
    assert not result.success and result.failures == ["fct_trips_reconciles_with_staging"]
