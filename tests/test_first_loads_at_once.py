"""Runs started at once on a fresh Postgres database (a Kestra backfill fanning out, two flows on the same minute).

Every run creates or meets the dataset's tables (dlt's own, the trip and zone tables, the month records, the
staging dataset): each must wait for another run's schema change under the dataset's schema lock, never trip
over it. Before the fix a schema lock was dropped by the first failed statement on its connection (psycopg2's
`reset()` sends `DISCARD ALL`), and about one run in eight failed with `relation … already exists`.
"""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from tests.test_postgres import done, spawn_run, wait_until

RUNS = 4
ROUNDS = 5
MONTHS = {f"2019-{i:02d}": 10 + i for i in range(1, RUNS + 1)}


def fresh_database(server: str) -> str:
    name = f"taxi_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    admin.close()
    return f"{server}/{name}"


def month_counts(dsn: str, table: str):
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute(f"select source_month, count(*) from taxi_raw.{table} group by 1 order by 1")
        return dict(cur.fetchall())


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_runs_started_together_on_a_fresh_database_all_load(parallel_mirror, pg_server, workdir, monkeypatch, round_):
    """`RUNS` runs, one month each, held at their downloads until all have started, then let go together."""
    mirror = parallel_mirror
    for month, rows in MONTHS.items():
        mirror.trips("green", month, rows)
        mirror.delay[f"/green/green_tripdata_{month}.csv.gz"] = 120  # until `released`
    dsn = fresh_database(pg_server)
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", dsn)
    runs = [spawn_run(workdir, mirror, f"w{i}", "--taxi", "green", "--month", m) for i, m in enumerate(MONTHS)]
    wait_until(lambda: mirror.gets("tripdata") >= RUNS or any(r.poll() is not None for r in runs), "every download")
    mirror.released.set()
    finished = [done(r) for r in runs]
    assert [f.returncode for f in finished] == [0] * RUNS, "\n".join(f.stderr for f in finished if f.returncode)
    assert month_counts(dsn, "green_tripdata") == MONTHS


def test_a_failed_statement_keeps_the_sessions_advisory_locks(pg):
    """dlt resets a connection after a failed statement; the schema and month locks on it must outlive that."""
    from taxi_pipeline.pipeline import make_pipeline

    advisory = "select count(*) from pg_locks where locktype = 'advisory' and database = " \
        "(select oid from pg_database where datname = current_database())"  # fmt: skip
    with make_pipeline("postgres").sql_client() as client:
        client.execute_sql("SELECT pg_advisory_lock(hashtext('taxi_raw'), hashtext('schema'))")
        with pytest.raises(Exception, match="does not exist"):
            client.execute_sql("SELECT * FROM taxi_raw._dlt_version")  # as dlt asks a fresh dataset
        assert pg.query(advisory)[0][0] == 1, "the lock went with the failed statement"
        assert client.execute_sql("SELECT 1") == [(1,)]  # and the connection is usable
