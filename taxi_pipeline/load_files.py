"""Load files the source writes itself, one per month, imported into dlt's load package as they are.

- **parquet** for DuckDB, written from the parsed batches. dlt would write the same parquet from the Arrow
  items, but in its own extract step on the main thread, one item at a time, dictionary-encoding every column;
  written here, uncompressed and dictionary-encoding only text, it is 20 % cheaper and the month's extract is
  just an import.
- **parquet** for the zone lookup on DuckDB and Postgres (dlt's own jobs load it with the state).
- **jsonl** for trip months on DuckDB and Postgres: a manifest of the downloaded file, which the load job parses
  while the destination ingests it (`write_manifest`; read by the load jobs of `destinations.postgres` and
  `destinations.duckdb`); nothing is parsed in extract. The job leaves what it did (`Copied`) for the run, which
  records the month in state once it has reconciled (`take_copied`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.normalizers.naming.snake_case import NamingConvention

from taxi_pipeline.errors import one_line
from taxi_pipeline.progress import current_collector
from taxi_pipeline.settings import ROWS_PER_ITEM
from taxi_pipeline.streams import coalesce

_NAMING = NamingConvention()


def dlt_name(name: str) -> str:
    """A file's column name as dlt names it in the destination table (snake_case)."""
    return _NAMING.normalize_identifier(name)


def dlt_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with dlt's snake_case column names, as the destination table has them."""
    return pa.schema([f.with_name(dlt_name(f.name)) for f in schema])


def write_parquet(batches: Iterable[pa.Table | pa.RecordBatch], path: str) -> Tuple[int, pa.Schema]:
    """Write batches to `path` as one parquet file with dlt-normalized column names.

    Row groups hold about `ROWS_PER_ITEM` rows (DuckDB reads row groups in parallel).
    Returns the row count and the file's Arrow schema (for dlt's table hints). An empty input writes nothing
    and returns (0, empty schema).
    """
    rows = 0
    schema: pa.Schema = pa.schema([])
    writer: Optional[pq.ParquetWriter] = None
    try:
        for table in coalesce((b for b in batches if b.num_rows), ROWS_PER_ITEM):
            if writer is None:
                schema = dlt_schema(table.schema)
                text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
                # dictionaries pay off for repeated text only; for numbers and times they cost more than they save
                writer = pq.ParquetWriter(path, schema, compression="none", use_dictionary=text or False)
            writer.write_table(table.rename_columns(schema.names).cast(schema), row_group_size=table.num_rows)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows, schema


MANIFEST_KEY = "taxi_pipeline_manifest"
"""The key that marks a manifest (its value: the manifest version, 1), so no other jsonl file is taken for one."""


def write_manifest(
    path: str,
    downloaded: str,
    file_name: str,
    table: str,
    source_month: Optional[str],
    fingerprint: Optional[Dict[str, Any]] = None,
) -> None:
    """Write the manifest load file (`jsonl`) of a downloaded file: where it is, its name, table and month.

    `fingerprint`: the file's, which the load job records with the month (see `records`).
    """
    manifest = {
        MANIFEST_KEY: 1,
        "path": downloaded,
        "file": file_name,
        "table": table,
        "month": source_month,
        "fingerprint": fingerprint,
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(manifest, out)


def read_manifest(path: str) -> Dict[str, Any]:
    """A manifest written by `write_manifest`; ValueError for any other file."""
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if not isinstance(manifest, dict) or manifest.get(MANIFEST_KEY) != 1:
        raise ValueError("not a taxi_pipeline manifest: trip tables load no other jsonl files")
    return manifest


@dataclass
class Copied:
    """What a load job did with one file: the rows it stored (as the destination counted them), or its error."""

    rows: int = 0
    error: Optional[BaseException] = None
    recorded: bool = False
    """Whether the job recorded the month in the records table, inside its own transaction (see `records`)."""


_copied: Dict[str, Copied] = {}
_copied_lock = threading.Lock()


def take_copied(downloaded: str) -> Optional[Copied]:
    """What the load job of the downloaded file at `downloaded` left (once), or None when no job ran for it.

    Keyed by the file's path, unique to the folder it was fetched into, so no two loads can take each other's.
    """
    with _copied_lock:
        return _copied.pop(downloaded, None)


def leave_copied(downloaded: str, copied: Copied) -> None:
    """Leave what a load job did with the downloaded file at `downloaded`, for the run to take."""
    with _copied_lock:
        _copied[downloaded] = copied


class ManifestJob:
    """Mixed into a dlt load job: loads a manifest's file by `load_manifest` and leaves what it did (`Copied`).

    Any failure is a DestinationTerminalException (no retry: a bad file stays bad). The job is made on the run's
    thread and run on dlt's loader thread, so it keeps the run's progress collector for the reader.
    """

    _file_path: str
    _file_name: str

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)  # type: ignore[call-arg]
        self._collector = current_collector()

    def run(self) -> None:
        """Load the manifest's file; leave the rows stored, or the error, for the run (`take_copied`)."""
        try:
            manifest = read_manifest(self._file_path)
        except (OSError, ValueError) as exc:
            raise DestinationTerminalException(f"{self._file_name}: {one_line(exc)}") from exc
        try:
            copied = self.load_manifest(manifest)
        except Exception as exc:
            leave_copied(manifest["path"], Copied(error=exc))
            raise DestinationTerminalException(one_line(exc)) from exc
        leave_copied(manifest["path"], copied)

    def load_manifest(self, manifest: Dict[str, Any]) -> Copied:
        """Load the file a manifest names; the rows the destination stored."""
        raise NotImplementedError
