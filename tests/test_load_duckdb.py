"""End-to-end loads into DuckDB from a local TLC mirror, through the CLI as a user runs it."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os

import pytest

from taxi_pipeline import loading
from tests import tlc_files
from tests.conftest import messages, month_counts

GREEN_JAN = "/green/green_tripdata_2019-01.csv.gz"


def load(cli, mirror, *args):
    return cli("--base-url", mirror.url, *args)


def test_loads_exact_rows_per_month_with_lineage(mirror, cli, duck):
    mirror.trips("green", "2019-01", 50)
    mirror.trips("green", "2019-02", 40)
    mirror.trips("yellow", "2019-01", 30)
    r = load(cli, mirror, "--taxi", "green,yellow", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 50, "2019-02": 40}
    assert month_counts(duck, "yellow_tripdata") == {"2019-01": 30}
    assert duck("select distinct source_file from taxi_raw.green_tripdata order by 1") == [
        ("green_tripdata_2019-01.csv.gz",),
        ("green_tripdata_2019-02.csv.gz",),
    ]
    assert "green_tripdata 2019-01" in r.out and "loaded" in r.out
    assert "yellow_tripdata 2019-02" in r.out and "not published" in r.out


def test_real_file_quirks_load_typed(mirror, cli, duck):
    """Trailing empty column, `.00` ids, blank ids, empty ehail_fee, a row outside the month, naive times."""
    mirror.trips("green", "2019-01", 21)
    mirror.trips("yellow", "2019-01", 21)
    assert load(cli, mirror, "--taxi", "green,yellow", "--month", "2019-01").code == 0
    types = dict(
        duck("select column_name, data_type from information_schema.columns where table_name = 'green_tripdata'")
    )
    assert types["lpep_pickup_datetime"] == "TIMESTAMP"  # naive: no time zone shift
    assert types["vendor_id"] == types["ratecode_id"] == types["pu_location_id"] == "BIGINT"
    assert types["fare_amount"] == "DOUBLE" and types["ehail_fee"] == "DOUBLE"
    assert not [c for c in types if c.startswith("__empty") or c == ""]
    expected = tlc_files.trip_rows("green", "2019-01", 21)
    first = duck(
        "select vendor_id, lpep_pickup_datetime, ratecode_id, fare_amount, ehail_fee from taxi_raw.green_tripdata "
        "where lpep_pickup_datetime = ?",
        dt.datetime.fromisoformat(expected[0]["pickup"]),
    )
    assert first == [(1, dt.datetime.fromisoformat(expected[0]["pickup"]), 1, float(expected[0]["fare"]), None)]
    blank_ids = duck("select count(*) from taxi_raw.green_tripdata where vendor_id is null")[0][0]
    assert blank_ids == sum(1 for r in expected if r["vendor"] == "")
    outside = duck(
        "select count(*) from taxi_raw.green_tripdata where strftime(lpep_pickup_datetime, '%Y-%m') <> source_month"
    )
    assert outside == [(1,)]
    # yellow writes passenger_count as "1.0": stored as the integer 1
    assert duck("select min(passenger_count), max(passenger_count) from taxi_raw.yellow_tripdata") == [(1, 4)]


def test_month_not_published_yet_is_exit_0(mirror, cli):
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-05")
    assert r.code == 0, r
    assert "green_tripdata 2019-05" in r.out and "not published" in r.out


def test_open_ended_run_loads_from_start_month_and_stops_at_first_unpublished(mirror, cli, duck, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", "2019-11")
    for month in ("2019-11", "2019-12", "2020-01"):
        mirror.trips("green", month, 12)
    mirror.trips("green", "2020-03", 12)  # after a gap: not reached by an open-ended run
    r = load(cli, mirror, "--taxi", "green")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-11": 12, "2019-12": 12, "2020-01": 12}
    assert "2020-02" in r.out and "not published" in r.out
    assert not [p for (_, p) in mirror.requests if "2020-03" in p]
    # the next open-ended run checks loaded months (HEAD) but downloads only new ones, up to the next gap
    mirror.trips("green", "2020-02", 5)
    before = mirror.requests.copy()
    r = load(cli, mirror, "--taxi", "green")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {
        "2019-11": 12,
        "2019-12": 12,
        "2020-01": 12,
        "2020-02": 5,
        "2020-03": 12,
    }
    new_gets = {p for (method, p), n in mirror.requests.items() if method == "GET" and n != before[(method, p)]}
    assert new_gets == {"/green/green_tripdata_2020-02.csv.gz", "/green/green_tripdata_2020-03.csv.gz"}


def test_503_once_then_success(mirror, cli, duck):
    mirror.trips("green", "2019-01", 15)
    mirror.fail(GREEN_JAN, 503, 503)  # HEAD and first GET attempt fail, dlt's retrying client recovers
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 15}


def test_persistent_5xx_fails_with_one_line(mirror, cli, duck):
    mirror.trips("green", "2019-01", 15)
    mirror.fail(GREEN_JAN, *([500] * 10))
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert "Traceback" not in r.err
    assert "green_tripdata" in r.err and "500" in r.err


@pytest.mark.parametrize("cut", ["/misc/taxi_zone_lookup.csv", GREEN_JAN])
def test_a_download_cut_short_fails_its_file_naming_the_url_and_the_run_goes_on(mirror, cli, duck, cut):
    mirror.trips("green", "2019-01", 15)
    mirror.trips("green", "2019-02", 10)
    mirror.cut[cut] = 100  # the connection ends after 100 bytes of the announced length
    r = load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02", "--json")
    assert r.code == 1, r
    doc = json.loads(r.out)  # the summary document all the same
    failed = [f for f in doc["files"] if f["outcome"] == "failed"]
    assert len(failed) == 1 and f"download of {mirror.url}{cut} failed" in failed[0]["detail"], doc
    label = "taxi_zone_lookup" if "zone" in cut else "green_tripdata 2019-01"
    assert failed[0]["detail"].startswith(f"{label}: ") and "IncompleteRead" in failed[0]["detail"]
    assert messages(r.err) == [f"error: {failed[0]['detail']}"], r
    loaded = {"2019-02": 10} if cut == GREEN_JAN else {"2019-01": 15, "2019-02": 10}
    assert month_counts(duck, "green_tripdata") == loaded  # the other files of the run still load
    r = load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 15, "2019-02": 10}
    assert duck("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] > 0


def test_truncated_gzip_fails_keeps_nothing_and_is_retried(mirror, cli, duck):
    mirror.trips("green", "2019-01", 20)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    good_feb = tlc_files.trip_csv("green", "2019-02", 200_000 // 100)
    mirror.put("/green/green_tripdata_2019-02.csv.gz", good_feb[: len(good_feb) // 2])
    r = load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 1, r
    assert len(messages(r.err)) == 1  # one line
    assert "green_tripdata 2019-02" in r.err and "Traceback" not in r.err
    assert month_counts(duck, "green_tripdata") == {"2019-01": 20}
    mirror.put("/green/green_tripdata_2019-02.csv.gz", good_feb)
    r = load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 20, "2019-02": 2000}


def test_rows_lost_in_destination_are_reloaded(mirror, cli, workdir):
    """State is trusted only where the destination agrees: a month with missing rows is loaded again."""
    import duckdb

    mirror.trips("green", "2019-01", 20)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    with duckdb.connect(str(workdir / "taxi_pipeline.duckdb")) as con:
        con.execute("delete from taxi_raw.green_tripdata where vendor_id = 1")
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0, r
    with duckdb.connect(str(workdir / "taxi_pipeline.duckdb")) as con:
        assert con.execute("select count(*) from taxi_raw.green_tripdata").fetchone() == (20,)


def test_reconciliation_mismatch_fails_naming_month_and_counts(mirror, cli, monkeypatch):
    mirror.trips("green", "2019-01", 20)
    real_count = loading.count_rows
    monkeypatch.setattr(
        loading, "count_rows", lambda p, table, month=None: real_count(p, table, month) - (1 if month else 0)
    )
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert "green_tripdata 2019-01" in r.err and "19" in r.err and "20" in r.err


def test_parquet_layout_with_dtype_drift_across_years(mirror, cli, duck):
    mirror.trips("yellow", "2019-01", 30, fmt="parquet", year_style=2019)
    mirror.trips("yellow", "2023-01", 25, fmt="parquet", year_style=2023)
    mirror.trips("yellow", "2025-01", 20, fmt="parquet", year_style=2025)
    for month in ("2019-01", "2023-01", "2025-01"):
        r = load(cli, mirror, "--format", "parquet", "--taxi", "yellow", "--month", month)
        assert r.code == 0, r
    assert month_counts(duck, "yellow_tripdata") == {"2019-01": 30, "2023-01": 25, "2025-01": 20}
    by_month = dict(
        (m, (a, c, p))
        for m, a, c, p in duck(
            "select source_month, count(airport_fee), count(cbd_congestion_fee), max(passenger_count) "
            "from taxi_raw.yellow_tripdata group by 1"
        )
    )
    assert by_month["2019-01"] == (0, 0, 4)
    assert by_month["2023-01"] == (25, 0, 4)  # `Airport_fee` lands in airport_fee
    assert by_month["2025-01"] == (20, 20, 4)
    first = tlc_files.trip_rows("yellow", "2023-01", 25)[0]["pickup"]
    assert duck(
        "select count(*) from taxi_raw.yellow_tripdata where tpep_pickup_datetime = ?", dt.datetime.fromisoformat(first)
    ) == [(1,)]


def test_zone_lookup_is_loaded_once(mirror, cli, duck):
    expected = 265
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0, r
    assert duck("select count(*), count(distinct location_id) from taxi_raw.taxi_zone_lookup") == [(expected, expected)]
    ewr = duck("select borough, zone from taxi_raw.taxi_zone_lookup where location_id = 1")
    assert ewr == [("EWR", "Newark Airport")]
    gets = mirror.gets("taxi_zone_lookup")
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    assert mirror.gets("taxi_zone_lookup") == gets
    assert duck("select count(*) from taxi_raw.taxi_zone_lookup") == [(expected,)]


def test_missing_zone_lookup_is_a_config_error(mirror, cli):
    mirror.files.clear()
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert "base-url" in r.err


def test_duckdb_location_follows_dlt_config(mirror, cli, workdir, monkeypatch):
    target = workdir / "elsewhere" / "trips.duckdb"
    target.parent.mkdir()
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(target))
    mirror.trips("green", "2019-01", 9)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    assert target.exists() and not (workdir / "taxi_pipeline.duckdb").exists()


def test_base_url_from_dlt_config(mirror, cli, duck, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__BASE_URL", mirror.url)
    mirror.trips("green", "2019-01", 7)
    r = cli("--taxi", "green", "--month", "2019-01")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 7}


def test_status_lists_loaded_months_with_rows_and_fingerprints(mirror, cli):
    mirror.trips("green", "2019-01", 11)
    mirror.trips("green", "2019-02", 12)
    assert load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02").code == 0
    r = cli("status")
    assert r.code == 0, r
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in r.out.splitlines()[1:]}
    assert lines["green_tripdata 2019-01"].split()[2:4] == ["11", "11"]
    assert lines["green_tripdata 2019-02"].split()[2:4] == ["12", "12"]
    etag = mirror.files["/green/green_tripdata_2019-02.csv.gz"][1]
    assert etag in lines["green_tripdata 2019-02"]


def test_status_on_empty_destination(cli, workdir):
    import duckdb

    duckdb.connect(str(workdir / "taxi_pipeline.duckdb")).close()
    r = cli("status")
    assert r.code == 0 and "nothing loaded" in r.out


@pytest.mark.parametrize("command", [["status"], ["report", "--out", "trips.png"], ["dbt"]])
def test_reading_a_duckdb_file_that_does_not_exist_names_it_and_creates_nothing(cli, workdir, monkeypatch, command):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(workdir / "typo.duckdb"))
    r = cli(*command)
    assert r.code == 2, r
    assert messages(r.err) == [f"error: no DuckDB database at {workdir / 'typo.duckdb'}: nothing is loaded there "
                               "(check DESTINATION__DUCKDB__CREDENTIALS, or the working directory for the default "
                               "taxi_pipeline.duckdb)"], r.err  # fmt: skip
    assert sorted(p.name for p in workdir.iterdir()) == [], "status/report/dbt created files"


# DuckDB names a file's catalog after the file: `taxi_raw.duckdb` is catalog `taxi_raw` beside the schema `taxi_raw`
# (and `taxi_raw_staging.duckdb` beside the staging schema of a replacement), where an unqualified name is ambiguous.
@pytest.mark.parametrize("file", ["taxi_raw.duckdb", "taxi_raw_staging.duckdb"])
def test_a_duckdb_file_named_like_a_schema_loads_replaces_and_reports(mirror, cli, workdir, monkeypatch, file):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(workdir / file))
    mirror.trips("green", "2019-01", 11)
    mirror.trips("green", "2019-02", 12)
    args = ["--taxi", "green", "--start", "2019-01", "--end", "2019-02"]
    assert load(cli, mirror, *args).code == 0
    mirror.trips("green", "2019-02", 7, seed=1)  # republished: replaced through the staging schema
    r = load(cli, mirror, *args)
    assert r.code == 0 and "replaced" in r.out, r
    status = cli("status", "--json")
    assert status.code == 0, status
    import json

    got = {f["month"]: f["rows_in_destination"] for f in json.loads(status.out)["files"] if f["month"]}
    assert got == {"2019-01": 11, "2019-02": 7}


def test_a_duckdb_file_named_like_the_dbt_schema_builds_and_reports(mirror, cli, workdir, monkeypatch):
    pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(workdir / "taxi.duckdb"))  # dbt builds schema `taxi`
    mirror.trips("green", "2019-01", 40)
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01", "--dbt", "--quiet")
    assert r.code == 0, r
    from taxi_pipeline.report import report_data

    data = report_data("duckdb")
    assert data.trips == {"green": {"2019-01": 40}} and set(data.revenue) == {"green"}, data
    assert cli("report", "--out", str(workdir / "trips.png")).code == 0


@pytest.mark.parametrize("corrupt", [b"not gzip at all", gzip.compress(b"")])
def test_unreadable_file_fails_month_cleanly(mirror, cli, duck, corrupt):
    mirror.put(GREEN_JAN, corrupt)
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert "green_tripdata 2019-01" in r.err
    assert duck("select count(*) from information_schema.tables where table_name = 'green_tripdata'") == [(0,)]


@pytest.mark.parametrize("head_mode", [403, 405, "no-length"])
def test_hosts_that_refuse_head_or_omit_its_length_still_skip_unchanged(mirror, cli, duck, head_mode):
    mirror.head_mode = head_mode
    mirror.trips("green", "2019-01", 12)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    gets = mirror.gets("green_tripdata")
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0 and "skipped" in r.out, r
    # a refused HEAD costs a GET whose body is not read; a HEAD without length costs nothing
    assert mirror.gets("green_tripdata") - gets == (0 if head_mode == "no-length" else 1)
    mirror.trips("green", "2019-01", 13, seed=3)
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0 and "replaced" in r.out, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 13}


def test_zone_values_like_na_are_kept(mirror, cli, duck):
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    assert duck("select location_id, zone, service_zone from taxi_raw.taxi_zone_lookup where location_id >= 264") == [
        (264, "NV", "N/A"),
        (265, "NA", "N/A"),
    ]


def test_open_ended_run_replaces_republished_months(mirror, cli, duck, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__START_MONTH", "2019-01")
    mirror.trips("green", "2019-01", 10)
    assert load(cli, mirror, "--taxi", "green").code == 0
    mirror.trips("green", "2019-01", 14, seed=5)
    r = load(cli, mirror, "--taxi", "green")
    assert r.code == 0 and "replaced" in r.out, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 14}


def test_open_ended_walk_starts_at_the_taxi_types_first_month(mirror, cli, duck, monkeypatch):
    """fhvhv starts 2019-02: a walk from the default 2019-01 must not stop at its 404."""
    mirror.put("/trip-data/fhvhv_tripdata_2019-02.parquet", tlc_files.fhvhv_parquet("2019-02", 6))
    r = load(cli, mirror, "--format", "parquet", "--taxi", "fhvhv")
    assert r.code == 0, r
    assert month_counts(duck, "fhvhv_tripdata") == {"2019-02": 6}
    assert not [p for (_, p) in mirror.requests if "2019-01" in p]


def test_yellow_months_before_2011_are_not_available_without_a_request(mirror, cli):
    r = load(cli, mirror, "--taxi", "yellow", "--month", "2010-06")
    assert r.code == 0, r
    assert "not available" in r.out
    assert not [p for (_, p) in mirror.requests if "yellow" in p]


def test_unreachable_month_does_not_drop_the_following_ones(mirror, cli, duck):
    mirror.trips("green", "2019-01", 5)
    mirror.trips("green", "2019-02", 6)
    mirror.fail(GREEN_JAN, *([502] * 10))
    r = load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 1, r
    assert "green_tripdata 2019-01" in r.err and "502" in r.err
    assert month_counts(duck, "green_tripdata") == {"2019-02": 6}


@pytest.mark.parametrize("header_only", [True, False])
def test_file_without_rows_fails_and_keeps_the_month(mirror, cli, duck, header_only):
    mirror.trips("green", "2019-01", 5)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    body = (tlc_files.GREEN_HEADER + "\n").encode() if header_only else b"\n"
    mirror.put(GREEN_JAN, gzip.compress(body))
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1 and "green_tripdata 2019-01" in r.err, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 5}


def test_taxi_types_from_json_env_var(mirror, cli, duck, monkeypatch):
    monkeypatch.setenv("SOURCES__TAXI__TAXI_TYPES", '["green"]')
    mirror.trips("green", "2019-01", 4)
    r = load(cli, mirror, "--month", "2019-01")
    assert r.code == 0, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 4}


def test_leftover_package_of_a_killed_run_is_discarded(mirror, cli, duck, workdir):
    """A package extracted and normalized but never loaded (the process died) must not land later."""
    from taxi_pipeline import taxi_source
    from taxi_pipeline.pipeline import make_pipeline

    mirror.trips("green", "2019-01", 8)
    pipe = make_pipeline("duckdb")
    pipe.extract(taxi_source(taxi_types=["green"], months=["2019-01"], base_url=mirror.url, zones=False))
    pipe.normalize()
    assert pipe.has_pending_data
    mirror.trips("green", "2019-02", 3)
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-02")
    assert r.code == 0, r
    assert messages(r.err) == []
    assert month_counts(duck, "green_tripdata") == {"2019-02": 3}
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0 and "loaded" in r.out, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 8, "2019-02": 3}


def test_unopenable_duckdb_file_is_a_config_error(mirror, cli, workdir, monkeypatch):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(workdir / "missing-dir" / "x.duckdb"))
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert "DESTINATION__DUCKDB__CREDENTIALS" in r.err


def test_files_are_requested_without_transfer_encoding(mirror, cli):
    mirror.trips("green", "2019-01", 4)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    assert mirror.encodings and set(mirror.encodings) == {"identity"}


def _spawn(workdir, args, data_dir, **env):
    import subprocess
    import sys

    full = {**os.environ, "DLT_DATA_DIR": str(data_dir), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=workdir, env=full, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_concurrent_duckdb_runs_wait_for_each_other(mirror, duck, workdir):
    for month, n in (("2019-01", 30), ("2019-02", 20)):
        mirror.trips("green", month, n)
    mirror.delay[GREEN_JAN] = 1.0
    args = ["--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02"]
    procs = [_spawn(workdir, args, workdir / f"dlt_{w}") for w in ("a", "b")]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert month_counts(duck, "green_tripdata") == {"2019-01": 30, "2019-02": 20}
    assert any("waiting" in err for _, err in outs), outs
    assert mirror.gets("2019-02") == 1


def test_runs_sharing_a_dlt_folder_against_two_databases_both_succeed(mirror, workdir):
    import duckdb

    mirror.trips("green", "2019-01", 12)
    mirror.delay[GREEN_JAN] = 0.5
    args = ["--base-url", mirror.url, "--taxi", "green", "--month", "2019-01"]
    procs = [
        _spawn(workdir, args, workdir / "shared_dlt", DESTINATION__DUCKDB__CREDENTIALS=str(workdir / f"{db}.duckdb"))
        for db in ("dev", "prod")
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for db in ("dev", "prod"):
        with duckdb.connect(str(workdir / f"{db}.duckdb"), read_only=True) as con:
            assert con.execute("select count(*) from taxi_raw.green_tripdata").fetchone() == (12,)


def test_pipeline_settings_do_not_leak_into_other_dlt_pipelines():
    import dlt

    from taxi_pipeline.pipeline import make_pipeline

    make_pipeline("duckdb")
    assert dlt.config.get("data_writer.disable_compression") is None


def test_new_months_are_appended_and_only_replacements_use_staging(mirror, cli, duck):
    mirror.trips("green", "2019-01", 10)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    staging = "select count(*) from information_schema.tables where table_schema = 'taxi_raw_staging'"
    assert duck(staging) == [(0,)]  # a first load is one atomic INSERT, no staging table or delete
    mirror.trips("green", "2019-01", 11, seed=1)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    assert duck(staging)[0][0] >= 1  # a replacement goes through staging + delete-insert in one transaction
    assert month_counts(duck, "green_tripdata") == {"2019-01": 11}


def test_duckdb_loads_bounded_and_unordered_unless_configured(workdir, monkeypatch):
    """DuckDB would cache a whole month's blocks (up to 80 % of RAM) and insert it in file order on one thread;
    loads run under a memory_limit (16 MB per thread, at least 128 MB) without insertion order, each setting
    overridable in global_config."""
    from taxi_pipeline.pipeline import make_pipeline

    def settings() -> tuple:
        with make_pipeline("duckdb").sql_client() as client:
            sql = "SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order')"
            return tuple(client.execute_sql(sql)[0])

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert settings() == ("122.0 MiB", False)  # 128MB: the least, whatever the threads
    monkeypatch.setattr(os, "cpu_count", lambda: 24)
    assert settings() == ("366.2 MiB", False)  # 24 threads (one per core, DuckDB's default) × 16MB = 384MB
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"threads": 12}')
    assert settings() == ("183.1 MiB", False)  # 12 × 16MB
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"memory_limit": "1GB"}')
    assert settings() == ("953.6 MiB", False)
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"preserve_insertion_order": true}')
    assert settings() == ("366.2 MiB", True)


def test_an_append_that_would_double_a_month_loads_nothing(mirror, cli, duck, monkeypatch):
    """The DuckDB job probes the month inside its own transaction before the insert: no append to a month with rows."""
    mirror.trips("green", "2019-01", 20)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    mirror.trips("green", "2019-01", 20, seed=5)  # republished
    # as if the month had looked empty when planned (another writer got in between): the month is appended
    monkeypatch.setattr(loading.TableMonths, "has_rows", lambda self, month: False)
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1 and "the table already holds rows of 2019-01; nothing was loaded" in r.out, r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 20}


def test_rows_found_in_the_destination_without_their_record_are_reported_replaced(mirror, cli, duck, workdir):
    """As when another run loaded the month since this one planned it, or a run died before recording it."""
    import duckdb

    mirror.trips("green", "2019-01", 20)
    assert load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    mirror.trips("green", "2019-01", 12, seed=5)  # republished
    with duckdb.connect(str(workdir / "taxi_pipeline.duckdb")) as con:
        con.execute("delete from taxi_raw._taxi_months where table_name = 'green_tripdata'")
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01", "--json")
    assert r.code == 0, r
    outcomes = {f["table"]: f["outcome"] for f in json.loads(r.out)["files"]}
    assert outcomes["green_tripdata"] == "replaced", r
    assert month_counts(duck, "green_tripdata") == {"2019-01": 12}


def test_a_bad_value_late_in_a_month_inserts_none_of_its_rows(mirror, cli, duck):
    """The file is parsed while DuckDB inserts it: a bad value in a late batch fails the month's one transaction."""
    rows = 30_000  # several parse blocks: the first batches are inserted before the bad one is read
    body = gzip.decompress(tlc_files.trip_csv("green", "2019-01", rows)).decode().splitlines()
    cells = body[-2].split(",")
    cells[9] = "abc"  # fare_amount
    body[-2] = ",".join(cells)
    mirror.put(GREEN_JAN, gzip.compress(("\n".join(body) + "\n").encode()))
    r = load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert f"line {rows}, column 'fare_amount' (10th): cannot read 'abc' as a number" in r.err, r
    assert duck("select count(*) from taxi_raw.green_tripdata") == [(0,)]


def test_a_bad_lock_timeout_is_a_config_error(mirror, cli, monkeypatch):
    mirror.trips("green", "2019-01", 5)
    monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "soon")
    r = cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert messages(r.err) == ["error: bad taxi_pipeline.lock_timeout 'soon': expected a number of seconds ≥ 0"]
    monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "0")  # do not wait: fine where nothing else runs
    assert cli("--base-url", mirror.url, "--taxi", "green", "--month", "2019-01").code == 0
