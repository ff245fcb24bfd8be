"""Defaults: public roots of the two file layouts, names of the dataset and pipeline, tunables."""

from typing import Dict, Tuple

CSV = "csv"
PARQUET = "parquet"
FILE_FORMATS = (CSV, PARQUET)
DEFAULT_FILE_FORMAT = PARQUET
"""The TLC's own layout: its complete, live feed (`csv` is the course's fixed copy of 2019-01..2021-07)."""
MANIFEST = "jsonl"
"""The load file format of our manifests (one JSON line naming a downloaded file, see `destinations`).

dlt imports a file only in a format it can write; our DuckDB and Postgres job clients load every jsonl file as a
manifest. A jsonl file without our marker fails its job, naming the file."""

DEFAULT_BASE_URLS: Dict[str, str] = {
    # DataTalksClub nyc-tlc-data releases: {root}/{taxi}/{taxi}_tripdata_{YYYY-MM}.csv.gz
    CSV: "https://github.com/DataTalksClub/nyc-tlc-data/releases/download",
    # Official TLC trip record data: {root}/trip-data/{taxi}_tripdata_{YYYY-MM}.parquet
    PARQUET: "https://d37ci6vzurychx.cloudfront.net",
}
"""Root URL per file format; `sources.taxi.base_url` / `--base-url` replaces it (zones at `{root}/misc/…`)."""

CSV_MIRROR_MONTHS: Dict[str, Tuple[str, str]] = {
    "yellow": ("2019-01", "2021-07"),
    "green": ("2019-01", "2021-07"),
    "fhv": ("2019-01", "2021-07"),
}
"""The fixed months of the DataTalksClub CSV.gz mirror per taxi type (no new month ever appears there)."""

OVERDUE_AFTER_MONTHS = 6
"""A parquet month this many months old is long published (the TLC's lag is about two): its 404 is configuration."""

DEFAULT_START_MONTH = "2019-01"
"""First month an open-ended run loads (`sources.taxi.start_month`)."""

DEFAULT_TAXI_TYPES = ("yellow", "green")
"""Taxi types loaded when none are named (`sources.taxi.taxi_types`)."""

DEFAULT_DATASET = "taxi_raw"
"""Dataset (schema) holding the raw tables (`taxi_pipeline.dataset_name`)."""

PIPELINE_NAME_PREFIX = "taxi_pipeline"
"""Pipelines are named `taxi_pipeline_<destination>` so each destination keeps its own state."""

DEFAULT_DUCKDB_FILE = "taxi_pipeline.duckdb"
"""DuckDB database file used when `destination.duckdb.credentials` is not configured."""

CSV_BLOCK_SIZE = 1 << 20
"""Bytes of decompressed CSV parsed per Arrow batch.

pyarrow's streaming reader holds many blocks in flight, so its memory is a multiple of this: parsing a 4M-row
month peaks at 176 MiB of Arrow memory with 4 MiB blocks and 46 MiB with 1 MiB blocks, at the same speed.
"""

PARQUET_BATCH_ROWS = 128_000
"""Rows per Arrow batch read from parquet (where the file is parsed in Python: Postgres, Snowflake).

A few batches are in flight between the reader and the load job (`READ_AHEAD_BATCHES`): 128k-row batches keep a
4M-row month's load (DuckDB, Arrow path) at 628 MB where 256k ones took 857-875 MB, at the same speed."""

PARQUET_BUFFER_BYTES = 1 << 20
"""Parquet column chunks are read through a buffer of this size, page by page, not whole (lower peak memory)."""

COPY_CHUNK_ROWS = 32_768
"""Rows encoded into one chunk of a binary COPY (at about 280 bytes a trip row: 9 MiB); a parquet batch is sliced."""

PROBE_THREADS = 8
"""HEAD requests in flight at once while a run checks its months (a catch-up checks every month since its start)."""

DOWNLOAD_CHUNK = 1 << 20
"""Bytes written per chunk while streaming a download to disk."""

READ_AHEAD_BATCHES = 4
"""Batches parsed ahead of dlt on the reader thread."""

ROWS_PER_ITEM = 250_000
"""Rows per Arrow table handed to dlt (it validates hints per item: fewer, bigger items are cheaper)."""

DUCKDB_LOAD_SETTINGS: Dict[str, object] = {
    # rows of a raw table have no order to keep: DuckDB then inserts in parallel and writes row groups as it
    # goes, instead of sorting them back into file order and compressing them all at commit (9.3 s → 5.5 s
    # for a 7.7M-row month, FACTS in the README's Speed section)
    "preserve_insertion_order": False,
}
"""DuckDB settings for loads, with `duckdb_memory_limit`; any set in `destination.duckdb.credentials.global_config`
wins."""

DUCKDB_PARQUET_MEMORY_LIMIT = "512MB"
"""The `memory_limit` a parquet month's insert runs under (DuckDB reads the file itself; `duckdb_memory_limit` is
the run's otherwise). On a 20M-row, 24-column fhvhv month DuckDB inserts in 21.4 s under 128 MB, 15.0 s under
256 MB, 14.2 s under 512 MB and 13.5 s without a limit, where its peak RSS is 338, 432, 651 and 1,434 MiB; its own
`CREATE TABLE AS … read_parquet` takes 11.2 s and 1,473 MiB. End to end (3 pairs each, 2026-12-07): 1.32× native
under 512 MB (peak 711 MiB), 1.43× under 256 MB (492 MiB). A 4M-row month does not fill 512 MB (452 MiB) and a
12M-row one does (666 MiB): memory is bounded, not flat below ~10M rows. Set `memory_limit` in the credentials'
`global_config` and every insert runs under that instead."""

DUCKDB_MEMORY_PER_THREAD_MB = 16
DUCKDB_MIN_MEMORY_MB = 128


def duckdb_memory_limit(threads: int) -> str:
    """The `memory_limit` a load runs under with `threads` DuckDB threads: 16 MB each, at least 128 MB.

    DuckDB keeps the blocks a month's insert writes cached up to its limit (80 % of RAM by default), so a run's
    memory would grow with the month: a 16M-row month's insert peaks at 784 MiB under 384 MB and 381 MiB under
    128 MB (4M rows: 575 and 364 MiB), at the same speed. Each inserting thread needs some memory of its own:
    16 threads fail with "out of memory" under 64 MB and load under 128 MB, so the limit grows with the threads.
    """
    return f"{max(DUCKDB_MIN_MEMORY_MB, DUCKDB_MEMORY_PER_THREAD_MB * threads)}MB"
