"""Load files the source writes itself, one per month, imported into dlt's load package as they are.

- **parquet** for DuckDB, written from the parsed batches. dlt would write the same parquet from the Arrow
  items, but in its own extract step on the main thread, one item at a time, dictionary-encoding every column;
  written here, uncompressed and dictionary-encoding only text, it is 20 % cheaper and the month's extract is
  just an import.
- **jsonl** for Postgres: a manifest of the downloaded file, which the load job parses while it COPYs
  (`write_manifest`, read by `binary_copy`); nothing is parsed in extract.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
from dlt.common.normalizers.naming.snake_case import NamingConvention

from taxi_pipeline.settings import ROWS_PER_ITEM
from taxi_pipeline.streams import coalesce

_NAMING = NamingConvention()


def dlt_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with dlt's snake_case column names, as the destination table has them."""
    return pa.schema([f.with_name(_NAMING.normalize_identifier(f.name)) for f in schema])


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


def write_manifest(path: str, downloaded: str, file_name: str, table: str, source_month: Optional[str]) -> None:
    """Write the manifest load file (`jsonl`) of a downloaded file: where it is, its name, table and month."""
    manifest = {MANIFEST_KEY: 1, "path": downloaded, "file": file_name, "table": table, "month": source_month}
    with open(path, "w", encoding="utf-8") as out:
        json.dump(manifest, out)
