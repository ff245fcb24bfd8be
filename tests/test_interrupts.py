"""Ctrl-C and SIGTERM stop the block at once wherever the main thread is (`interrupts.stop_on_signals`)."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from taxi_pipeline.interrupts import Interrupted, stop_on_signals


class _SignalledInItsFinalizer:
    """An object whose finalizer is running when SIGTERM arrives, as dlt's DuckDB connection pool's was once in CI
    (the garbage collector finalized it on the main thread while the signal came)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the handler runs here, inside the finalizer
            pass


def test_a_signal_during_a_finalizer_stops_the_block_at_once_without_a_traceback(monkeypatch):
    """Python swallows what a finalizer raises (it prints "Exception ignored in …" and goes on): the signal is
    delivered again once the finalizer has returned, so the block still stops at once, not after the grace."""
    unraisable: list = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)  # what prints "Exception ignored in …"
    started = time.monotonic()
    with pytest.raises(Interrupted) as stopped:
        with stop_on_signals(grace=60):
            _SignalledInItsFinalizer()  # made and finalized at once
            time.sleep(20)  # a blocking call: only a signal, not a flag, ends it early
    assert stopped.value.signal_name == "SIGTERM"
    assert time.monotonic() - started < 10, "the block went on after the finalizer swallowed the signal"
    assert unraisable == [], "the interruption was reported as an error raised in a finalizer"
    assert sys.unraisablehook == unraisable.append, "the hook of before the block is not back"


def test_a_signal_a_library_turned_into_its_own_error_still_stops_the_block_as_interrupted():
    """DuckDB catches the `Interrupted` raised inside its call, stops its query and raises "Query interrupted"
    (a RuntimeError): the run still stops as interrupted, not as a failed load (it printed "error: Query
    interrupted" once in CI), and code that sees the library's error meanwhile knows it was the signal."""
    duckdb = pytest.importorskip("duckdb")
    from taxi_pipeline.interrupts import stopping

    connection = duckdb.connect()
    seen: list = []
    with pytest.raises(Interrupted) as stopped:
        with stop_on_signals(grace=60):
            os.kill(os.getpid(), signal.SIGINT)
            try:  # the handler runs inside DuckDB's call
                connection.execute("select 1").fetchall()
                time.sleep(20)  # had the handler run before the call: raises here
            except KeyboardInterrupt:  # the signal came before the query
                raise RuntimeError("Query interrupted") from None  # what DuckDB raises when it came during it
            except Exception:
                seen.append(stopping())
                raise
    assert stopped.value.signal_name == "SIGINT"
    assert all(isinstance(s, Interrupted) for s in seen)
    assert stopping() is None, "the signal outlived its block"
