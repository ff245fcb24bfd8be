"""Snowflake's month locks: leases in `_taxi_locks` (taxi_pipeline/destinations/snowflake.py), on the fakesnow emulator.

fakesnow runs in this process, so a second run is played by a `SnowflakeLeases` of the test's own, on its own
connection, holding what another run would hold; the run under test is the real CLI.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import messages, other_run_leases

pytest.importorskip("fakesnow", reason="fakesnow is in the dev extra")
pytest.importorskip("snowflake.connector", reason="taxi-pipeline[snowflake]")

LOCKS = 'TAXI_RAW."_TAXI_LOCKS"'


def sf_load(cli, mirror, *args):
    return cli("--dest", "snowflake", "--base-url", mirror.url, "--taxi", "green", *args)


def said(r) -> list:
    """The run's notes and errors (fakesnow's own warnings left out)."""
    return [m for m in messages(r.err) if m.startswith(("note:", "error:"))]


def leases(lease_seconds: float = 60.0, timeout: float = 1.0):
    """Another run's leases on the dataset, on a connection of their own."""
    return other_run_leases("snowflake", lease_seconds, timeout)


def test_a_lease_is_held_until_given_back(snowflake):
    from taxi_pipeline.errors import LoadError

    first, second = leases(), leases()
    try:
        with first.month("green_tripdata", "2019-01"):
            assert second.busy("green_tripdata", "2019-01") and not first.busy("green_tripdata", "2019-01")
            assert not second.busy("green_tripdata", "2019-02")
            with pytest.raises(LoadError, match="kept green_tripdata 2019-01 busy for 1 s"):
                with second.month("green_tripdata", "2019-01"):
                    pass
            with second.month("green_tripdata", "2019-02"):  # another month: not in the way
                first.check()
                second.check()
            assert second.try_take("taxi_zone_lookup") and not first.try_take("taxi_zone_lookup")
            second.release("taxi_zone_lookup")
            assert first.try_take("taxi_zone_lookup")
        assert not second.busy("green_tripdata", "2019-01")
        with second.month("green_tripdata", "2019-01"):
            assert first.busy("green_tripdata", "2019-01")
    finally:
        first.close()
        second.close()
    # every lease given back: only the guard row is left
    assert [r[0] for r in snowflake.query(f'select "LOCK_KEY" from {LOCKS}')] == ["*"]


def test_runs_racing_for_one_month_get_one_lease(snowflake):
    """Eight runs take the same month's lease at the same moment: one gets it. (fakesnow's DuckDB fails the
    losers' guard UPDATE or commit as a write conflict; Snowflake would make them wait, then they see the lease.)"""
    import threading

    runs = [leases() for _ in range(8)]
    start = threading.Barrier(len(runs))
    won = []

    def race(run):
        start.wait()
        won.append(run.try_take("green_tripdata:2019-01"))

    threads = [threading.Thread(target=race, args=(run,)) for run in runs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(won) == [False] * 7 + [True]
        rows = snowflake.query(f'select "OWNER" from {LOCKS} where "LOCK_KEY" = \'green_tripdata:2019-01\'')
        assert len(rows) == 1
    finally:
        for run in runs:
            run.close()


def test_the_lease_of_a_run_that_died_expires_and_is_taken_over(snowflake):
    from taxi_pipeline.errors import LoadError

    dead, alive = leases(lease_seconds=1.0), leases()
    try:
        assert dead.try_take("taxi_zone_lookup")
        dead._stopping.set()  # the run is gone: no one renews its lease any more
        dead._renewer.join()
        assert not alive.try_take("taxi_zone_lookup")
        time.sleep(1.2)
        assert alive.try_take("taxi_zone_lookup")  # expired: taken over
        with pytest.raises(LoadError, match="lost the run lock: the lease of taxi_zone_lookup"):
            dead.check()
    finally:
        alive.close()
        dead.close()


def test_a_lease_held_longer_than_its_time_is_renewed(snowflake):
    holder, other = leases(lease_seconds=1.5), leases()
    try:
        with holder.month("green_tripdata", "2019-01"):
            time.sleep(3.0)  # twice the lease's time: kept alive by the renewing thread
            assert other.busy("green_tripdata", "2019-01")
            holder.check()
    finally:
        holder.close()
        other.close()


def test_a_run_waits_for_a_month_another_run_holds(mirror, cli, snowflake, monkeypatch):
    mirror.trips("green", "2019-01", 12)
    mirror.trips("green", "2019-02", 8)
    monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "1")
    other = leases()
    try:
        with other.month("green_tripdata", "2019-02"):
            r = sf_load(cli, mirror, "--start", "2019-01", "--end", "2019-02")
    finally:
        other.close()
    assert r.code == 1, r
    assert said(r) == [
        "note: another taxi_pipeline run is loading green_tripdata 2019-02; waiting for it (up to 1 s)",
        "error: another taxi_pipeline run kept green_tripdata 2019-02 busy for 1 s; try again later",
    ]
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 12}
    # given back: the next run loads the month it could not
    r = sf_load(cli, mirror, "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    assert mirror.gets("2019-01") == 1  # not fetched again
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 12, "2019-02": 8}


def test_a_run_takes_over_the_expired_lease_of_a_run_that_died(mirror, cli, snowflake):
    mirror.trips("green", "2019-01", 12)
    dead = leases(lease_seconds=1.0)
    try:
        assert dead.try_take("green_tripdata:2019-01")
        dead._stopping.set()
        dead._renewer.join()
        time.sleep(1.2)
        r = sf_load(cli, mirror, "--month", "2019-01")
    finally:
        dead.close()
    assert r.code == 0, r
    assert "waiting" not in r.err
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 12}


def test_schema_changes_are_made_under_the_dataset_lease(mirror, cli, snowflake, monkeypatch):
    """A first load creates the tables: dlt's schema update waits for the dataset's schema lease (held here, as
    another run making a change would); it is not made while another run holds it."""
    mirror.trips("green", "2019-01", 12)
    monkeypatch.setenv("TAXI_PIPELINE__LOCK_TIMEOUT", "1")
    other = leases()
    try:
        with other.held("schema", "the schema"):
            r = sf_load(cli, mirror, "--month", "2019-01")
            tables = snowflake.query("select table_name from information_schema.tables where table_schema = 'TAXI_RAW'")
    finally:
        other.close()
    assert r.code == 1, r
    assert "another taxi_pipeline run kept the schema of taxi_raw busy for 1 s" in r.out + r.err
    assert "GREEN_TRIPDATA" not in {t[0] for t in tables}
    assert sf_load(cli, mirror, "--month", "2019-01").code == 0
    assert snowflake.month_counts("green_tripdata") == {"2019-01": 12}


def test_a_bad_lease_time_is_a_config_error(mirror, cli, snowflake, monkeypatch):
    monkeypatch.setenv("TAXI_PIPELINE__LEASE_SECONDS", "soon")
    r = sf_load(cli, mirror, "--month", "2019-01")
    assert r.code == 2, r
    assert said(r) == ["error: bad taxi_pipeline.lease_seconds 'soon': expected a number of seconds > 0"]


def test_a_take_interrupted_inside_its_transaction_leaves_no_lease(snowflake):
    """Ctrl-C right after the lease's INSERT, before its commit: the transaction is rolled back (dlt rolls back
    on errors only), so the key is free for the next run at once, not after the lease expires."""
    run, other = leases(), leases()
    execute = run._client.execute_sql

    def interrupted(sql, *args):
        result = execute(sql, *args)
        if sql.startswith("INSERT") and "DATEADD" in sql:
            raise KeyboardInterrupt
        return result

    run._client.execute_sql = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            run.try_take("green_tripdata:2019-01")
        run._client.execute_sql = execute
        assert not other.busy("green_tripdata", "2019-01")
        assert other.try_take("green_tripdata:2019-01")
    finally:
        run.close()
        other.close()


def test_leases_not_renewed_in_time_are_lost(snowflake):
    """The renewing connection cannot be opened (the network is gone): after two thirds of a lease the run
    counts its leases lost and stops before its next month."""
    from taxi_pipeline.destinations.snowflake import SnowflakeLeases
    from taxi_pipeline.errors import LoadError
    from taxi_pipeline.pipeline import make_pipeline

    def unreachable():
        raise ConnectionError("network is unreachable")

    client = make_pipeline("snowflake").sql_client()
    client.open_connection()
    run = SnowflakeLeases(client, unreachable, 1.0, lease_seconds=1.5)
    try:
        assert run.try_take("green_tripdata:2019-01")
        time.sleep(1.8)
        with pytest.raises(LoadError, match="not renewed in time .*network is unreachable"):
            run.check()
    finally:
        run.close()
        client.close_connection()
