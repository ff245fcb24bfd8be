"""The real dlt BigQuery destination, end to end on bqemulator with a GCS emulator as the staging bucket.

The emulators and their credentials are in tests/bqemulator.py, the `bigquery` fixture in conftest.py; rerun,
replace and state restore are in test_destinations.py, shared with the other destinations. Tests against a live
project run only when `TAXI_TEST_BIGQUERY_PROJECT` is set (test_bigquery_live.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import other_run_leases

pytest.importorskip("google.cloud.bigquery", reason="taxi-pipeline[bigquery]")


def bq_load(cli, mirror, *args):
    return cli("--dest", "bigquery", "--base-url", mirror.url, *args)


def test_bigquery_loads_months_exactly_through_the_staging_bucket(mirror, cli, bigquery):
    mirror.trips("green", "2019-01", 25)
    mirror.trips("green", "2019-02", 15)
    r = bq_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 25, "2019-02": 15}
    records = bigquery.query("select month, row_count from taxi_raw._taxi_months order by 1")
    zones = bigquery.query("select count(*) from taxi_raw.taxi_zone_lookup")[0][0]
    assert records == [("-", zones), ("2019-01", 25), ("2019-02", 15)]
    # every load job read its file from the bucket, none was uploaded from the worker
    uris = bigquery.staged_uris()
    assert {uri.split("/")[-2] for uri in uris} >= {"green_tripdata", "taxi_zone_lookup"}
    assert all(uri.startswith("gs://taxi-stage/stage/taxi_raw/") for uri in uris), uris
    # the trip table is clustered on its month (the emulator does not report clustering: the DDL says it)
    ddl = [j.query for j in bigquery.client.list_jobs() if j.job_type == "query" and "CREATE TABLE" in j.query]
    assert any("`green_tripdata`" in q and "CLUSTER BY `source_month`" in q for q in ddl), ddl


def test_bigquery_month_from_the_command_line(mirror, bigquery, workdir):
    """The issue's own check: `python -m taxi_pipeline --dest bigquery --taxi green --month 2019-01` in a process
    of its own (credentials, emulator hosts and bucket from the environment), a rerun, a republished month."""
    mirror.trips("green", "2019-01", 40, fmt="parquet")

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "taxi_pipeline", *args]
        return subprocess.run(cmd, cwd=workdir, env=dict(os.environ), capture_output=True, text=True, timeout=300)

    month = ("--dest", "bigquery", "--taxi", "green", "--month", "2019-01", "--format", "parquet")
    done = run(*month, "--base-url", mirror.url)
    assert done.returncode == 0, done.stderr
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 40}
    loads = len(bigquery.staged_uris())
    done = run(*month, "--base-url", mirror.url)
    assert done.returncode == 0 and "skipped" in done.stdout, done.stderr
    assert len(bigquery.staged_uris()) == loads, "a rerun of an unchanged month loads nothing"
    mirror.trips("green", "2019-01", 33, fmt="parquet", seed=2)
    done = run(*month, "--base-url", mirror.url)
    assert done.returncode == 0 and "replaced" in done.stdout, done.stderr
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 33}
    done = run("status", "--dest", "bigquery")
    assert done.returncode == 0, done.stderr
    assert [line.split()[:4] for line in done.stdout.splitlines() if line.startswith("green_tripdata")] == [
        ["green_tripdata", "2019-01", "33", "33"]
    ]


def test_a_failed_replacement_leaves_the_months_rows_as_they_were(mirror, cli, bigquery, monkeypatch):
    """A replacement is one script in one transaction: a statement failing after the month's DELETE leaves the old
    rows. (BigQuery fails the job; the emulator rolls the script back without an error, and the reconciliation
    then finds the old rows: the month fails either way, and the next run replaces it.)"""
    from taxi_pipeline.destinations import bigquery as bq

    mirror.trips("green", "2019-01", 25)
    mirror.trips("green", "2019-02", 10)
    assert bq_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02").code == 0
    merge_sql = bq.AtomicMergeJob.gen_merge_sql.__func__

    def failing(cls, table_chain, sql_client):
        statements = merge_sql(cls, table_chain, sql_client)
        assert statements[0] == "BEGIN TRANSACTION" and statements[-1] == "COMMIT TRANSACTION"
        return [*statements[:-1], "SELECT ERROR('the insert failed')", statements[-1]]

    monkeypatch.setattr(bq.AtomicMergeJob, "gen_merge_sql", classmethod(failing))
    mirror.trips("green", "2019-01", 31, seed=1)
    r = bq_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 1, r
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 25, "2019-02": 10}
    monkeypatch.setattr(bq.AtomicMergeJob, "gen_merge_sql", classmethod(merge_sql))
    r = bq_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0 and "replaced" in r.out, r
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 31, "2019-02": 10}


def test_bigquery_without_credentials_names_the_settings(mirror, cli, monkeypatch, workdir):
    from dlt.common.configuration.specs.gcp_credentials import GcpDefaultCredentials

    # dlt skips the look for default credentials for 10 minutes after one failed, in the process: this test looks
    monkeypatch.setattr(GcpDefaultCredentials, "_LAST_FAILED_DEFAULT", 0.0)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server to wait for
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(workdir / "no-gcloud"))  # nor a gcloud login of this machine
    r = bq_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert "DESTINATION__BIGQUERY__CREDENTIALS" in r.err and "GOOGLE_APPLICATION_CREDENTIALS" in r.err, r.err
    assert r.err.count("\n") == 1


def bq_leases(lease_seconds: float = 60.0, timeout: float = 1.0):
    """Another run's leases on the dataset, on a connection of their own."""
    return other_run_leases("bigquery", lease_seconds, timeout)


def test_runs_racing_for_one_month_get_one_lease(bigquery):
    import threading

    runs = [bq_leases() for _ in range(6)]
    start = threading.Barrier(len(runs))
    won = []

    def race(run):
        start.wait()
        won.append(run.try_take("green_tripdata:2019-01"))

    threads = [threading.Thread(target=race, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(won) == [False] * 5 + [True]
        holders = bigquery.query("select owner from taxi_raw._taxi_locks where lock_key = 'green_tripdata:2019-01'")
        assert len(holders) == 1
    finally:
        for run in runs:
            run.close()
    assert [r[0] for r in bigquery.query("select lock_key from taxi_raw._taxi_locks")] == ["*"]


def test_a_run_waits_for_a_month_another_run_holds(mirror, cli, bigquery, monkeypatch):
    mirror.trips("green", "2019-01", 12)
    mirror.trips("green", "2019-02", 8)
    monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "1")
    other = bq_leases()
    try:
        with other.month("green_tripdata", "2019-02"):
            r = bq_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    finally:
        other.close()
    assert r.code == 1, r
    assert "another taxi_pipeline run kept green_tripdata 2019-02 busy for 1 s" in r.err
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 12}
    r = bq_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 12, "2019-02": 8}


def test_two_runs_at_once_load_each_month_once(mirror, bigquery, workdir):
    """Two CLI processes started together on a new dataset, the same three months: each month lands once, exact
    (the schema, month and zone lookup leases; whichever run comes second finds the month loaded and skips it)."""
    for month, rows in (("2019-01", 30), ("2019-02", 20), ("2019-03", 10)):
        mirror.trips("green", month, rows)
    cmd = [sys.executable, "-m", "taxi_pipeline", "--debug", "--dest", "bigquery", "--base-url", mirror.url,
           "--taxi", "green", "--start", "2019-01", "--end", "2019-03"]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    runs = [subprocess.Popen(cmd, cwd=workdir, env=dict(os.environ), **pipes) for _ in range(2)]
    outs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(err for _, err in outs)
    assert bigquery.month_counts("green_tripdata") == {"2019-01": 30, "2019-02": 20, "2019-03": 10}
    zones = bigquery.query("select count(*) from taxi_raw.taxi_zone_lookup")[0][0]
    assert zones == 265
    records = bigquery.query("select month, count(*) from taxi_raw._taxi_months group by 1 order by 1")
    assert records == [("-", 1), ("2019-01", 1), ("2019-02", 1), ("2019-03", 1)]
