"""The Postgres destination on a real server: COPY loads, transactional month replace, state, errors, concurrency."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import tlc_files
from tests.conftest import messages

GREEN_JAN = "/green/green_tripdata_2019-01.csv.gz"


def pg_load(cli, mirror, *args):
    return cli("--dest", "postgres", "--base-url", mirror.url, *args)


def test_loads_exact_rows_through_copy(mirror, cli, pg):
    mirror.trips("green", "2019-01", 40)
    mirror.trips("yellow", "2019-01", 30)
    r = pg_load(cli, mirror, "--taxi", "green,yellow", "--month", "2019-01")
    assert r.code == 0, r
    assert pg.month_counts("green_tripdata") == {"2019-01": 40}
    assert pg.month_counts("yellow_tripdata") == {"2019-01": 30}
    assert pg.query("select count(*) from taxi_raw.taxi_zone_lookup")[0][0] in (265, 3)
    types = dict(
        pg.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'taxi_raw' and table_name = 'green_tripdata'"
        )
    )
    assert types["lpep_pickup_datetime"] == "timestamp without time zone"
    assert types["vendor_id"] == "bigint" and types["fare_amount"] == "double precision"
    first = tlc_files.trip_rows("green", "2019-01", 40)[0]["pickup"]
    assert pg.query(
        "select count(*) from taxi_raw.green_tripdata where lpep_pickup_datetime = %s::timestamp", first
    ) == [(1,)]
    # trip rows went through our manifest and its binary COPY job, never dlt's row-wise INSERTs or a parquet file
    from taxi_pipeline.pipeline import make_pipeline

    pipeline = make_pipeline("postgres")
    files = [
        os.path.basename(job.file_path)
        for load_id in pipeline.list_completed_load_packages()
        for job in pipeline.get_load_package_info(load_id).jobs["completed_jobs"]
    ]
    trip_files = [f for f in files if f.startswith(("green_tripdata.", "yellow_tripdata."))]
    assert len(trip_files) == 2 and all(f.endswith(".jsonl") for f in trip_files), files


def test_failed_replace_leaves_the_previous_rows(mirror, cli, pg):
    """The merge deletes then inserts in one transaction: an INSERT failing after the DELETE keeps the old rows."""
    mirror.trips("green", "2019-01", 20)
    assert pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    before = pg.query("select sum(fare_amount), count(*) from taxi_raw.green_tripdata")
    # a rule the raw table enforces but the staging table does not: the failure happens inside the merge
    pg.query("alter table taxi_raw.green_tripdata add constraint sane_fare check (fare_amount < 1000)")
    bad = tlc_files.trip_csv("green", "2019-01", 30, seed=7).replace(b"", b"")
    text = gzip.decompress(bad).decode().splitlines()
    cols = text[1].split(",")
    cols[9] = "5000.00"  # fare_amount of the first row
    text[1] = ",".join(cols)
    mirror.put(GREEN_JAN, gzip.compress(("\n".join(text) + "\n").encode()))
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert "green_tripdata 2019-01" in r.err and len(messages(r.err)) == 1
    assert pg.query("select sum(fare_amount), count(*) from taxi_raw.green_tripdata") == before
    pg.query("alter table taxi_raw.green_tripdata drop constraint sane_fare")
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0 and "replaced" in r.out, r
    assert pg.month_counts("green_tripdata") == {"2019-01": 30}


def test_value_postgres_cannot_store_fails_the_month_cleanly(mirror, cli, pg):
    mirror.trips("green", "2019-01", 12)
    assert pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    text = gzip.decompress(tlc_files.trip_csv("green", "2019-01", 15, seed=8)).decode().splitlines()
    cols = text[2].split(",")
    cols[3] = "N\x00"  # a NUL byte in store_and_fwd_flag: text PostgreSQL refuses
    text[2] = ",".join(cols)
    mirror.put(GREEN_JAN, gzip.compress(("\n".join(text) + "\n").encode()))
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1, r
    assert pg.month_counts("green_tripdata") == {"2019-01": 12}


def test_missing_credentials_name_the_setting(mirror, cli, monkeypatch):
    monkeypatch.delenv("DESTINATION__POSTGRES__CREDENTIALS", raising=False)
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert "DESTINATION__POSTGRES__CREDENTIALS" in r.err and r.err.count("\n") == 1


def test_unreachable_server_names_the_setting_and_hides_the_password(mirror, cli, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", f"postgresql://loader:Sup3rS3cret@127.0.0.1:{port}/x")
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2, r
    assert "DESTINATION__POSTGRES__CREDENTIALS" in r.err and r.err.count("\n") == 1
    assert "Sup3rS3cret" not in r.err + r.out


def test_unknown_database_is_a_config_error(mirror, cli, pg, monkeypatch):
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", pg.dsn.rsplit("/", 1)[0] + "/no_such_db")
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 2 and "no_such_db" in r.err, r


def cli_command(mirror) -> list:
    """The CLI's command line on Postgres and the mirror, without the months."""
    return [sys.executable, "-m", "taxi_pipeline", "--dest", "postgres", "--base-url", mirror.url]


def spawn_run(workdir, mirror, worker: str, *args: str) -> subprocess.Popen:
    """The CLI as its own process on worker `worker`'s dlt folder, stderr to a file `watch` can read while it runs."""
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / f"dlt_{worker}")}
    cmd = [*cli_command(mirror), *args]
    err = open(workdir / f"{worker}-{uuid.uuid4().hex[:6]}.err", "w+")  # noqa: SIM115 - closed by `done`
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    return Path(proc.err_file.name).read_text()  # type: ignore[attr-defined]


def done(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    out, _ = proc.communicate(timeout=timeout)
    proc.err_file.close()  # type: ignore[attr-defined]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, stderr_of(proc))


def wait_until(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_runs_on_disjoint_months_load_side_by_side(parallel_mirror, pg, workdir):
    """Two runs on one machine (one dlt folder) and one dataset, different months: the second loads while the
    first is still inside its month; a worker with a fresh folder then downloads nothing."""
    mirror = parallel_mirror
    for month, n in (("2019-01", 30), ("2019-02", 20), ("2019-03", 10), ("2019-04", 15)):
        mirror.trips("green", month, n)
    mirror.delay[GREEN_JAN] = 120  # the first run holds January until the test lets its download finish
    first = spawn_run(workdir, mirror, "a", "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    wait_until(lambda: mirror.gets("2019-01") or first.poll() is not None, "the first run to fetch January")
    second = done(spawn_run(workdir, mirror, "a", "--taxi", "green", "--start", "2019-03", "--end", "2019-04"))
    assert first.poll() is None, "the first run was to be still inside January"
    assert second.returncode == 0 and "waiting" not in second.stderr, second
    assert pg.month_counts("green_tripdata") == {"2019-03": 10, "2019-04": 15}
    mirror.released.set()
    assert done(first).returncode == 0
    assert pg.month_counts("green_tripdata") == {"2019-01": 30, "2019-02": 20, "2019-03": 10, "2019-04": 15}
    assert pg.query("select count(*) from taxi_raw.taxi_zone_lookup") == [(265,)]  # loaded by one of them, once
    assert sorted(p.name for p in (workdir / "dlt_a" / "pipelines").iterdir())[-1].endswith("~1")
    gets = mirror.gets()
    rerun = done(spawn_run(workdir, mirror, "fresh", "--taxi", "green", "--start", "2019-01", "--end", "2019-04"))
    assert rerun.returncode == 0 and mirror.gets() == gets, rerun  # known from the month records alone


BACKFILL_JAN_FEB = ("--taxi", "green", "--start", "2019-01", "--end", "2019-02")


def first_run_inside_january(mirror, workdir) -> subprocess.Popen:
    """January and February published; a first run started on both, its January download held by the mirror."""
    for month, n in (("2019-01", 30), ("2019-02", 20)):
        mirror.trips("green", month, n)
    mirror.delay[GREEN_JAN] = 120
    first = spawn_run(workdir, mirror, "a", *BACKFILL_JAN_FEB)
    wait_until(lambda: mirror.gets("2019-01") or first.poll() is not None, "the first run to fetch January")
    return first


def second_run_waiting(mirror, workdir) -> subprocess.Popen:
    """A second run on the same months, on a worker of its own, once it waits for January."""
    second = spawn_run(workdir, mirror, "b", *BACKFILL_JAN_FEB)
    wait_until(lambda: "waiting" in stderr_of(second) or second.poll() is not None, "the second run to wait")
    assert "green_tripdata 2019-01" in stderr_of(second)
    return second


def test_the_same_month_from_two_runs_is_loaded_once(parallel_mirror, pg, workdir):
    """Two workers start the same backfill: the second waits for the month the first is loading, then finds
    it loaded and skips it."""
    mirror = parallel_mirror
    first = first_run_inside_january(mirror, workdir)
    second = second_run_waiting(mirror, workdir)
    mirror.released.set()
    results = [done(first), done(second)]
    assert [r.returncode for r in results] == [0, 0], results
    assert pg.month_counts("green_tripdata") == {"2019-01": 30, "2019-02": 20}
    assert mirror.gets("2019-01") == 1, "the second run must find January loaded, not fetch it"


def test_a_run_killed_beside_another_leaves_its_month_to_it(parallel_mirror, pg, workdir):
    """`kill -9` of one of two runs on the same months while it holds January: the other one, waiting for
    January, takes it over; every month is exact and a further run loads nothing."""
    mirror = parallel_mirror
    first = first_run_inside_january(mirror, workdir)
    del mirror.delay[GREEN_JAN]  # the first run's download stays held; the second's is not
    second = second_run_waiting(mirror, workdir)
    first.send_signal(signal.SIGKILL)
    done(first)
    result = done(second)
    assert result.returncode == 0, result
    assert pg.month_counts("green_tripdata") == {"2019-01": 30, "2019-02": 20}
    gets = mirror.gets()
    rerun = done(spawn_run(workdir, mirror, "b", *BACKFILL_JAN_FEB))
    assert rerun.returncode == 0 and mirror.gets() == gets, rerun


def test_schema_changes_are_made_under_the_dataset_lock(mirror, pg, workdir):
    """Two first loads at once would both create the tables: dlt's schema update waits for the dataset's schema
    lock (held here by the test, as another run making a change would), so the second finds them made."""
    import psycopg2

    mirror.trips("green", "2019-01", 12)
    holder = psycopg2.connect(pg.dsn)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("select pg_advisory_lock(hashtext('taxi_raw'), hashtext('schema'))")
            run = spawn_run(workdir, mirror, "a", "--taxi", "green", "--month", "2019-01")
            waiting = "select count(*) from pg_locks where locktype = 'advisory' and not granted"
            wait_until(lambda: pg.query(waiting)[0][0] or run.poll() is not None, "the load to wait for the lock")
            assert run.poll() is None and pg.query("select to_regclass('taxi_raw.green_tripdata')") == [(None,)]
            cur.execute("select pg_advisory_unlock(hashtext('taxi_raw'), hashtext('schema'))")
    finally:
        holder.close()
    assert done(run).returncode == 0
    assert pg.month_counts("green_tripdata") == {"2019-01": 12}


def test_lost_lock_connection_stops_the_run(mirror, pg, workdir):
    """If the session holding the advisory lock dies, the run must stop rather than go on unprotected."""
    import time

    for month in ("2019-01", "2019-02"):
        mirror.trips("green", month, 10)
    mirror.delay[GREEN_JAN] = 2.0
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt")}
    args = ["--dest", "postgres", "--base-url", mirror.url, "--taxi", "green", "--start", "2019-01", "--end", "2019-02"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=workdir, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    holder = []
    while not holder and time.monotonic() < deadline:
        holder = pg.query("select pid from pg_locks where locktype = 'advisory' and granted")
        time.sleep(0.05)
    assert holder, "the run never took its lock"
    pg.query("select pg_terminate_backend(%s)", holder[0][0])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "lost the run lock" in err and "Traceback" not in err
    assert mirror.gets("2019-02") == 0


def test_debug_traceback_masks_the_password(mirror, workdir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "DESTINATION__POSTGRES__CREDENTIALS": f"postgresql://loader:Sup3rS3cret@127.0.0.1:{port}/x",
    }
    args = ["--dest", "postgres", "--base-url", mirror.url, "--taxi", "green", "--month", "2019-01", "--debug"]
    done = subprocess.run(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" in done.stderr
    assert "Sup3rS3cret" not in done.stderr + done.stdout


def test_new_csv_column_evolves_the_table_with_exact_text(mirror, cli, pg):
    """A column the map does not know arrives as text, commas and quotes intact, through our COPY file."""
    lines = gzip.decompress(tlc_files.trip_csv("green", "2019-01", 5, trailing_comma=False)).decode().splitlines()
    lines = [lines[0] + ",Surge Note", lines[1] + ',"busy, very ""busy"""'] + [ln + "," for ln in lines[2:]]
    mirror.put(GREEN_JAN, gzip.compress(("\n".join(lines) + "\n").encode()))
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 0, r
    notes = pg.query("select surge_note, count(*) from taxi_raw.green_tripdata group by 1 order by 1")
    assert notes == [('busy, very "busy"', 1), (None, 4)]
    first = tlc_files.trip_rows("green", "2019-01", 5)[0]["pickup"]
    assert pg.query("select lpep_pickup_datetime::text from taxi_raw.green_tripdata where surge_note is not null") == [
        (first,)
    ]


def test_trip_tables_get_a_month_brin_index(mirror, cli, pg):
    """Rerun counts and replacement deletes read one month's blocks, not the whole table."""
    mirror.trips("green", "2019-01", 20)
    mirror.trips("green", "2019-02", 20)
    assert pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02").code == 0
    assert pg.query(
        "select indexdef from pg_indexes where schemaname = 'taxi_raw' and tablename = 'green_tripdata'"
    ) == [("CREATE INDEX green_tripdata_source_month_brin ON taxi_raw.green_tripdata USING brin (source_month)",)]


def test_an_append_that_would_double_a_month_commits_nothing(mirror, cli, pg, monkeypatch):
    """The job probes the month inside its own transaction before the COPY: a month with rows is not appended to."""
    from taxi_pipeline import loading

    mirror.trips("green", "2019-01", 20)
    assert pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    mirror.trips("green", "2019-01", 20, seed=5)  # republished
    # as if the month had looked empty when planned (another writer got in between): the month is appended
    monkeypatch.setattr(loading.TableMonths, "has_rows", lambda self, month: False)
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01")
    assert r.code == 1 and "the table already holds rows of 2019-01; nothing was copied" in r.out, r
    assert pg.month_counts("green_tripdata") == {"2019-01": 20}


def test_a_load_summarizes_the_month_index_over_what_earlier_loads_left(mirror, cli, pg):
    """A load leaves its page ranges to autovacuum; the next load summarizes them first if it has not.

    Unsummarized ranges match every month, so the next month's probe and a replacement's DELETE would read them.
    """
    mirror.trips("green", "2019-01", 12000)
    mirror.trips("green", "2019-02", 12000)
    assert pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02").code == 0
    index = "'taxi_raw.green_tripdata_source_month_brin'::regclass"
    pages = pg.query("SELECT pg_relation_size('taxi_raw.green_tripdata') / current_setting('block_size')::int")[0][0]
    per_range = 128  # BRIN's default pages_per_range
    assert pages > 4 * per_range, pages
    # left unsummarized now (the last, partial range never is): February's ranges only, January's whole ranges
    # were summarized before February loaded (or autovacuum got there first: fewer still)
    left = pg.query(f"SELECT brin_summarize_new_values({index})")[0][0]
    assert left <= pages // per_range - (pages // 2) // per_range, (left, pages)


def _heap_blocks(pg) -> int:
    """Heap blocks of the green trip table read or found in cache so far (statistics of ended sessions)."""
    sql = (
        "SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) FROM pg_statio_user_tables"
        " WHERE schemaname = 'taxi_raw' AND relname = 'green_tripdata'"
    )
    return pg.query(sql)[0][0]


def _no_statistics(pg, table: str) -> None:
    """`table` as a backfill's next month finds it: autovacuum has not analyzed it yet (no column statistics).

    Without statistics the planner guesses that a month's rows are everywhere, so a probe for a month that has no
    rows, or a DELETE of one month, would read the whole table rather than the month index's ranges.
    """
    pg.query(f"ALTER TABLE taxi_raw.{table} SET (autovacuum_enabled = false)")
    try:
        pg.query(f"DELETE FROM pg_statistic WHERE starelid = 'taxi_raw.{table}'::regclass")
    except Exception as exc:  # not a superuser (TAXI_TEST_PG_DSN): only a table autovacuum left alone will do
        if pg.query(f"SELECT count(*) FROM pg_stats WHERE schemaname = 'taxi_raw' AND tablename = '{table}'")[0][0]:
            pytest.skip(f"autovacuum analyzed the table, and its statistics cannot be removed here: {exc}")


def _seq_tuples(pg) -> int:
    """Rows of the green trip table read by sequential scans so far (statistics of ended sessions)."""
    sql = "SELECT seq_tup_read FROM pg_stat_user_tables WHERE schemaname = 'taxi_raw' AND relname = 'green_tripdata'"
    return pg.query(sql)[0][0]


@pytest.mark.parametrize("statistics", ["analyzed", "none yet"])
def test_a_new_month_reads_the_last_loads_pages_once_not_twice(mirror, cli, pg, statistics):
    """The rows a load leaves unsummarized match every month: the next month's probe would read them all.

    The next load summarizes them first (one read), then probes the month (the index only). Probing first would
    read them once more; so would a probe planned as a sequential scan, as the planner does for a table that has
    no statistics yet (a backfill's next month, before autovacuum has analyzed the last one).
    """
    mirror.trips("green", "2019-01", 20000)
    mirror.trips("green", "2019-02", 500)
    assert pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    pg.query("ALTER TABLE taxi_raw.green_tripdata SET (autovacuum_enabled = false)")  # no reads but the run's
    if statistics == "analyzed":
        pg.query("ANALYZE taxi_raw.green_tripdata")  # statistics settled before the reads are counted
    else:
        _no_statistics(pg, "green_tripdata")
    pages = pg.query("SELECT pg_relation_size('taxi_raw.green_tripdata') / current_setting('block_size')::int")[0][0]
    assert pages > 300, pages

    before = _heap_blocks(pg)
    assert pg_load(cli, mirror, "--taxi", "green", "--month", "2019-02").code == 0
    assert _heap_blocks(pg) - before < 1.2 * pages, pages  # January's pages once (summarized), not twice


def test_a_replaced_month_is_deleted_through_the_month_index(mirror, cli, pg):
    """A republished month's old rows are found through the BRIN month index, not by reading every month.

    dlt's merge deletes the rows whose month is in the staging table, and the run then counts the month; with no
    statistics yet the planner would read the whole table for each (every loaded month, for each replaced one).
    """
    for month in ("2019-01", "2019-02", "2019-03"):
        mirror.trips("green", month, 8000)
    assert pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-03").code == 0
    import psycopg2

    con = psycopg2.connect(pg.dsn)
    con.autocommit = True
    con.cursor().execute("VACUUM taxi_raw.green_tripdata")  # every whole range summarized: nothing left to read
    con.close()
    _no_statistics(pg, "green_tripdata")
    mirror.trips("green", "2019-01", 8000, seed=3)  # republished

    before = _seq_tuples(pg)
    r = pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-03")
    assert r.code == 0 and "replaced" in r.out, r
    # what summarizing the last, partial range reads (under 128 pages); a sequential scan would read all 24,000
    assert _seq_tuples(pg) - before < 8000, "the merge's DELETE or the month's count read the whole table"
    assert pg.month_counts("green_tripdata") == {"2019-01": 8000, "2019-02": 8000, "2019-03": 8000}


def test_rerun_probes_months_instead_of_counting_every_row(mirror, cli, pg):
    """A count reads every row of a month (minutes of I/O per run on a big table); a rerun probes the index."""
    mirror.trips("green", "2019-01", 6000)
    mirror.trips("green", "2019-02", 6000)
    assert pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02").code == 0
    import psycopg2

    con = psycopg2.connect(pg.dsn)
    con.autocommit = True
    # no autovacuum/autoanalyze reading the table while the rerun is measured (they count in pg_statio too)
    con.cursor().execute("ALTER TABLE taxi_raw.green_tripdata SET (autovacuum_enabled = false)")
    con.cursor().execute("VACUUM ANALYZE taxi_raw.green_tripdata")  # relpages up to date, nothing left to do
    con.close()
    pages = pg.query("SELECT relpages FROM pg_class WHERE relname = 'green_tripdata'")[0][0]
    assert pages > 100

    before = _heap_blocks(pg)
    r = pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0 and r.out.count(" skipped ") >= 2, r
    assert _heap_blocks(pg) - before < pages / 5, pages  # a count would read each page of both months

    pg.query("DELETE FROM taxi_raw.green_tripdata WHERE source_month = '2019-01'")  # a month gone
    r = pg_load(cli, mirror, "--taxi", "green", "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert pg.month_counts("green_tripdata") == {"2019-01": 6000, "2019-02": 6000}
    assert "green_tripdata 2019-02" in r.out and mirror.gets("2019-01") == 2 and mirror.gets("2019-02") == 1


def test_a_bad_row_after_batches_were_copied_fails_with_the_parse_error_and_commits_nothing(mirror, cli, pg):
    """The COPY is already streaming when the parser meets a bad row: the run names the bad row, not the cancelled
    COPY, and neither the month's rows nor its record are committed."""
    from taxi_pipeline.settings import CSV_BLOCK_SIZE

    mirror.trips("green", "2019-01", 10)
    assert pg_load(cli, mirror, "--taxi", "green", "--month", "2019-01").code == 0
    lines = gzip.decompress(tlc_files.trip_csv("green", "2019-02", 40_000, trailing_comma=False)).decode().splitlines()
    lines[-1] += ",x,y"  # a field too many, in the last row
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > 4 * CSV_BLOCK_SIZE  # batches of the month go into the COPY before the bad row is parsed
    mirror.put("/green/green_tripdata_2019-02.csv.gz", gzip.compress(body, mtime=0))
    r = pg_load(cli, mirror, "--taxi", "green", "--month", "2019-02")
    assert r.code == 1, r
    errors = " ".join(messages(r.err))
    assert "2019-02" in errors and "COPY" not in errors and "cancel" not in errors.lower(), errors
    assert pg.month_counts("green_tripdata") == {"2019-01": 10}
    assert pg.query("select month from taxi_raw._taxi_months where table_name = 'green_tripdata'") == [("2019-01",)]


def test_a_parquet_batch_bigger_than_a_copy_chunk_loads_every_row_once(mirror, cli, pg):
    """A parquet batch (256k rows) is encoded in slices of `COPY_CHUNK_ROWS`: none lost, none sent twice."""
    from taxi_pipeline.settings import COPY_CHUNK_ROWS

    n = 2 * COPY_CHUNK_ROWS + 123
    mirror.trips("yellow", "2023-01", n, fmt="parquet", year_style=2023)
    r = pg_load(cli, mirror, "--taxi", "yellow", "--month", "2023-01", "--format", "parquet")
    assert r.code == 0, r
    # a slice sent twice and another lost would keep the count, not the sum of the (random) distances
    distance = round(sum(float(row["distance"]) for row in tlc_files.trip_rows("yellow", "2023-01", n)), 2)
    sql = "select count(*), round(sum(trip_distance)::numeric, 2)::float8 from taxi_raw.yellow_tripdata"
    assert pg.query(sql) == [(n, distance)]
