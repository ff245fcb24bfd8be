"""Fixtures: a TLC mirror on 127.0.0.1 in both layouts, an isolated working directory, CLI and SQL helpers."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import Counter
from email.utils import formatdate
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import duckdb
import pytest
from werkzeug import Request, Response

from taxi_pipeline.cli import main
from tests import tlc_files


class Mirror:
    """Files served like the DataTalksClub releases (csv.gz) and the TLC bucket (parquet), with fault injection."""

    def __init__(self, server) -> None:
        self.server = server
        self.files: Dict[str, Tuple[bytes, str, str]] = {}
        self.faults: Dict[str, List[int]] = {}
        self.requests: Counter = Counter()
        self.head_mode: Optional[object] = None  # a status for every HEAD, or "no-length"
        self.delay: Dict[str, float] = {}  # seconds to wait before answering a GET of a path
        self.head_delay: Dict[str, float] = {}  # seconds to wait before answering a HEAD of a path
        self.released = threading.Event()  # set: delayed answers go out now (the fixture sets it at teardown)
        self.answered_late: Counter = Counter()  # delayed HEADs answered so far, by path
        self.cut: Dict[str, int] = {}  # a GET of a path sends this many bytes of the body, then the connection ends
        self.encodings: List[Optional[str]] = []  # Accept-Encoding of every request
        self.arrivals: List[Tuple[float, str, str]] = []  # (time.monotonic(), method, path) of every request
        self._version = 0
        self.fmt = "csv"  # the layout `trips` publishes in unless told
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def put(self, path: str, content: bytes) -> None:
        """Publish (or republish) a file: a new ETag and Last-Modified every time."""
        self._version += 1
        etag = '"' + hashlib.md5(content + str(self._version).encode()).hexdigest() + '"'
        self.files[path] = (content, etag, formatdate(1_700_000_000 + self._version * 60, usegmt=True))

    def trips(self, taxi: str, month: str, n: int, fmt: Optional[str] = None, **kw) -> bytes:
        """Publish a self-made trip month in the layout of `fmt` (default: the mirror's `fmt`); returns its bytes."""
        fmt = fmt or self.fmt
        if fmt == "csv":
            content = tlc_files.trip_csv(taxi, month, n, **kw)
        else:
            content = tlc_files.trip_parquet(taxi, month, n, **kw)
        self.put(self.path(taxi, month, fmt), content)
        return content

    def path(self, taxi: str, month: str, fmt: Optional[str] = None) -> str:
        """Where a trip month is served in the layout of `fmt` (default: the mirror's `fmt`)."""
        if (fmt or self.fmt) == "csv":
            return f"/{taxi}/{taxi}_tripdata_{month}.csv.gz"
        return f"/trip-data/{taxi}_tripdata_{month}.parquet"

    def zones(self, content: Optional[bytes] = None) -> bytes:
        content = content or tlc_files.zones_csv()
        self.put("/misc/taxi_zone_lookup.csv", content)
        return content

    def fail(self, path: str, *statuses: int) -> None:
        """Answer the next requests of `path` with these statuses, in order."""
        self.faults.setdefault(path, []).extend(statuses)

    def gets(self, path_part: str = "") -> int:
        """GET requests so far whose path contains `path_part`."""
        return sum(n for (method, p), n in self.requests.items() if method == "GET" and path_part in p)

    def _handle(self, request: Request) -> Response:
        self.requests[(request.method, request.path)] += 1
        self.encodings.append(request.headers.get("Accept-Encoding"))
        self.arrivals.append((time.monotonic(), request.method, request.path))
        if request.method == "GET" and request.path in self.delay:
            self.released.wait(self.delay[request.path])
        if request.method == "HEAD" and request.path in self.head_delay:
            self.released.wait(self.head_delay[request.path])
            self.answered_late[request.path] += 1
        pending = self.faults.get(request.path)
        if pending:
            return Response("unavailable", status=pending.pop(0))
        if request.path not in self.files:
            return Response("Not Found", status=404)
        content, etag, modified = self.files[request.path]
        headers = {"ETag": etag, "Last-Modified": modified, "Content-Type": "application/octet-stream"}
        if request.method == "HEAD" and isinstance(self.head_mode, int):
            return Response("HEAD not allowed", status=self.head_mode)
        if request.method == "HEAD" and self.head_mode == "no-length":
            return Response(iter([content]), status=200, headers=headers)  # an iterable: no Content-Length
        if request.method == "GET" and request.path in self.cut:
            # the whole length announced, part of the body sent, the connection closed (HTTP/1.0): IncompleteRead
            headers["Content-Length"] = str(len(content))
            return Response(iter([content[: self.cut.pop(request.path)]]), status=200, headers=headers)
        return Response(content, status=200, headers=headers)


@pytest.fixture
def mirror(httpserver) -> Iterator[Mirror]:
    """A TLC mirror with the zone lookup published."""
    m = Mirror(httpserver)
    m.zones()
    yield m
    m.released.set()  # no delayed answer keeps the server's shutdown waiting


@pytest.fixture
def parallel_mirror() -> Iterator[Mirror]:
    """A mirror answering requests in parallel: a held download holds only itself (runs side by side)."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(threaded=True)
    server.start()
    m = Mirror(server)
    m.zones()
    try:
        yield m
    finally:
        m.released.set()
        server.clear()
        server.stop()


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory and dlt data dir per test, no inherited pipeline config, fast retries."""
    for key in list(os.environ):
        if key.startswith(("SOURCES__", "DESTINATION__", "TAXI_PIPELINE__")) or key == "DLT_DATA_DIR":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "0")
    # the mirror holds only the months a test publishes: there an old month's 404 means "not published", as on a
    # partial mirror of a user's own (tests of the wrong-layout check, test_layout_check.py, turn it back on)
    monkeypatch.setenv("SOURCES__TAXI__OVERDUE_AFTER_MONTHS", "0")
    # most tests publish the mirror's csv months (their quirks are the harder ones); parquet, the default, is asked
    # for where a test means it (test_the_default_format_is_the_live_parquet_feed checks the default itself)
    monkeypatch.setenv("SOURCES__TAXI__FILE_FORMAT", "csv")
    return tmp_path


class CliRun:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: `cli("--month", "2019-01", ...)` → CliRun(code, out, err)."""

    def _run(*args: str) -> CliRun:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliRun(code, out, err)

    return _run


@pytest.fixture
def duck(workdir: Path):
    """Query the default DuckDB file: `duck("select …")` → list of tuples."""

    def _query(sql: str, *params):
        with duckdb.connect(str(workdir / "taxi_pipeline.duckdb"), read_only=True) as con:
            return con.execute(sql, params).fetchall()

    return _query


PROGRESS_LINE = re.compile(
    r"^(taxi_zone_lookup|\w+_tripdata \d{4}-\d{2}): "
    r"(downloaded \S+ \S+ in \d+\.\ds|[\d,]+ rows read in \d+\.\ds|.* so far( \(.*\))?)$"
)


def messages(err: str) -> List[str]:
    """A run's stderr without its progress lines: the errors and notes it printed."""
    return [line for line in err.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


def month_counts(duck, table: str) -> Dict[str, int]:
    return dict(duck(f"select source_month, count(*) from taxi_raw.{table} group by 1 order by 1"))


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session: `TAXI_TEST_PG_DSN`, else a throwaway cluster (a failure in CI)."""
    from tests import pgserver

    dsn = os.environ.get("TAXI_TEST_PG_DSN")
    if dsn:
        yield dsn.rsplit("/", 1)[0]
        return
    try:
        cluster = pgserver.start_cluster()
    except (RuntimeError, OSError, LookupError) as exc:  # no binaries, no postgres user, no runuser
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}; set TAXI_TEST_PG_DSN or install postgresql")
    yield cluster.dsn("").rstrip("/")
    cluster.stop()


class Postgres:
    """One fresh database; `query(sql)` → rows."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def query(self, sql: str, *params):
        import psycopg2

        with psycopg2.connect(self.dsn) as con, con.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchall() if cur.description else None

    def month_counts(self, table: str) -> Dict[str, int]:
        return dict(self.query(f"select source_month, count(*) from taxi_raw.{table} group by 1 order by 1"))

    def month_counts_if_any(self, table: str) -> Dict[str, int]:
        """`month_counts`, {} while the table does not exist yet."""
        if not self.query("select to_regclass(%s) is not null", f"taxi_raw.{table}")[0][0]:
            return {}
        return self.month_counts(table)


@pytest.fixture
def pg(pg_server, monkeypatch) -> Postgres:
    """A fresh database on the session's server, set as the dlt postgres destination for this test."""
    import uuid

    import psycopg2

    name = f"taxi_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{pg_server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    dsn = f"{pg_server}/{name}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", dsn)
    yield Postgres(dsn)
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
    admin.close()


SNOWFLAKE_CREDENTIALS = "snowflake://loader:secret@fake-account/NYC_TAXI?warehouse=LOAD_WH&role=LOADER"


class FakeSnowflake:
    """Queries against the fakesnow emulator the `snowflake` fixture patched in."""

    def query(self, sql: str):
        import snowflake.connector

        con = snowflake.connector.connect(account="fake-account", user="loader", password="x", database="NYC_TAXI")
        try:
            cur = con.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            con.close()

    def month_counts(self, table: str) -> Dict[str, int]:
        rows = self.query(f"select source_month, count(*) from taxi_raw.{table} group by 1 order by 1")
        return {m: n for m, n in rows}


@pytest.fixture
def snowflake(tmp_path, monkeypatch) -> FakeSnowflake:
    """fakesnow patched in, persisting to a folder for the test; dlt Snowflake credentials pointing at it."""
    fakesnow = pytest.importorskip("fakesnow", reason="fakesnow is in the dev extra")
    pytest.importorskip("snowflake.connector", reason="taxi-pipeline[snowflake]")
    from tests import fakesnow_compat

    fakesnow_compat.apply()
    db_path = tmp_path / "fakesnow"
    db_path.mkdir()
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS", SNOWFLAKE_CREDENTIALS)
    with fakesnow.patch(db_path=str(db_path)):
        yield FakeSnowflake()


def other_run_leases(destination: str, lease_seconds: float = 60.0, timeout: float = 1.0):
    """Another run's leases on a Snowflake or BigQuery dataset, on a connection of their own."""
    import importlib

    from taxi_pipeline.pipeline import make_pipeline

    module = importlib.import_module(f"taxi_pipeline.destinations.{destination}")
    kind = getattr(module, {"snowflake": "SnowflakeLeases", "bigquery": "BigQueryLeases"}[destination])
    pipeline = make_pipeline(destination)
    client = pipeline.sql_client()
    client.open_connection()
    return kind(client, pipeline.sql_client, timeout, lease_seconds=lease_seconds)


def pytest_collection_modifyitems(config, items) -> None:
    """Deselect the BigQuery fault cases a module does not take by default (its `BIGQUERY_FAULTS`; all of them
    with `TAXI_TEST_BIGQUERY_FAULTS=all`)."""
    if os.environ.get("TAXI_TEST_BIGQUERY_FAULTS") == "all":
        return
    kept, dropped = [], []
    for item in items:
        chosen = getattr(item.module, "BIGQUERY_FAULTS", None)
        dropped_here = chosen is not None and "[bigquery" in item.name and item.name not in chosen
        (dropped if dropped_here else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class FakeBigQuery:
    """Queries against the emulators the `bigquery` fixture started (`emulators`: `tests.bqemulator.Emulators`)."""

    def __init__(self, emulators) -> None:
        self.emulators = emulators
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self.emulators.client()
        return self._client

    def query(self, sql: str):
        return [tuple(row.values()) for row in self.client.query_and_wait(sql)]

    def month_counts(self, table: str) -> Dict[str, int]:
        rows = self.query(f"select source_month, count(*) from taxi_raw.{table} group by 1 order by 1")
        return {m: n for m, n in rows}

    def staged_uris(self) -> List[str]:
        """The `gs://` files of every load job so far (jobs that loaded from the bucket)."""
        return [uri for job in self.client.list_jobs() if job.job_type == "load" for uri in job.source_uris or []]


_BIGQUERY_UNAVAILABLE: List[str] = []


@pytest.fixture
def bigquery(workdir, monkeypatch) -> Iterator[FakeBigQuery]:
    """bqemulator and fake-gcs-server for this test (`tests/bqemulator.py`); dlt's BigQuery destination reaching them
    through Application Default Credentials, staging through the emulated bucket (a failure in CI, else a skip)."""
    from tests import bqemulator

    if _BIGQUERY_UNAVAILABLE:
        pytest.skip(_BIGQUERY_UNAVAILABLE[0])
    pytest.importorskip("google.cloud.bigquery", reason="taxi-pipeline[bigquery]")
    try:
        emulators = bqemulator.start()
    except (RuntimeError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the BigQuery emulators are required in CI: {exc}")
        _BIGQUERY_UNAVAILABLE.append(f"no BigQuery emulator: {exc}")
        pytest.skip(_BIGQUERY_UNAVAILABLE[0])
    for key, value in emulators.environ().items():
        monkeypatch.setenv(key, value)
    import gcsfs
    from dlt.common.configuration.specs.gcp_credentials import GcpDefaultCredentials

    # fsspec keeps one file system per set of arguments for the process: a test's emulator and token endpoint are
    # its own, so an earlier test's cached one (gone with its emulators) must not be handed out
    gcsfs.GCSFileSystem.clear_instance_cache()
    # and dlt skips looking for default credentials for 10 minutes after a look failed (an earlier test's run
    # without them)
    monkeypatch.setattr(GcpDefaultCredentials, "_LAST_FAILED_DEFAULT", 0.0)
    monkeypatch.setenv("TAXI_PIPELINE__STAGING", "filesystem")
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", f"gs://{bqemulator.BUCKET}/stage")
    # a killed run's leases expire in 15 s, not 120: the fault cases' reruns wait that long for them
    monkeypatch.setenv("TAXI_PIPELINE__LEASE_SECONDS", "15")
    yield FakeBigQuery(emulators)
    emulators.stop()
