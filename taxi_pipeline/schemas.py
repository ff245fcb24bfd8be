"""One column map per taxi type: the single place where raw column names and types live.

Every reader, the dlt column hints and the reconciliation use these maps. A `Column` names the raw-table
column (already snake_case, so dlt keeps it as is), its Arrow type, and the spellings seen in the TLC files over
the years (matched case-insensitively, so `airport_fee` and `Airport_fee` are one column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import pyarrow as pa

TIMESTAMP = pa.timestamp("us")
INT = pa.int64()
FLOAT = pa.float64()
TEXT = pa.string()

SOURCE_MONTH = "source_month"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
"""Lineage columns added to every trip row: the file's month (`YYYY-MM`), the file's name and the row's index in
the file (0 for its first row). The index costs the loader nothing and is the same on every load of the same
file, so (`source_file`, `source_row`) identifies a trip row: the dbt models' trip key is made of it."""
LINEAGE = (
    pa.field(SOURCE_MONTH, TEXT, nullable=False),
    pa.field(SOURCE_FILE, TEXT, nullable=False),
    pa.field(SOURCE_ROW, INT, nullable=False),
)
"""The lineage columns' fields, in the raw tables' order (last)."""


@dataclass(frozen=True)
class Column:
    """A raw-table column: destination name, Arrow type, source spellings, whether every file must have it."""

    name: str
    type: pa.DataType
    aliases: Tuple[str, ...] = ()
    required: bool = True

    @property
    def spellings(self) -> Tuple[str, ...]:
        """All lower-cased names under which this column appears in source files."""
        return tuple({self.name.lower(), *(a.lower() for a in self.aliases)})


def _opt(name: str, type_: pa.DataType, *aliases: str) -> Column:
    """An optional column: introduced or dropped by the TLC in some years; null where a file lacks it."""
    return Column(name, type_, aliases, required=False)


@dataclass(frozen=True)
class TableSchema:
    """The column map of one raw table."""

    table: str
    columns: Tuple[Column, ...]
    lineage: bool = True
    first_month: str = "2009-01"
    """The first month the TLC publishes in this layout; open-ended walks start no earlier."""
    _by_spelling: Dict[str, Column] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for col in self.columns:
            for spelling in col.spellings:
                self._by_spelling[spelling] = col

    def lookup(self, source_name: str) -> Optional[Column]:
        """The column a source file's header name maps to, or None for a column we do not know."""
        return self._by_spelling.get(source_name.strip().lower())

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the raw table's known columns (lineage columns last)."""
        fields = [pa.field(c.name, c.type) for c in self.columns]
        if self.lineage:
            fields += LINEAGE
        return pa.schema(fields)

    def dlt_columns(self) -> Dict[str, Dict[str, object]]:
        """Dlt column hints derived from the map (timestamps stay naive: TLC times are local wall-clock)."""
        hints: Dict[str, Dict[str, object]] = {}
        for f in self.arrow_schema():
            hint: Dict[str, object] = {"name": f.name, "data_type": _DLT_TYPES[str(f.type)], "nullable": f.nullable}
            if pa.types.is_timestamp(f.type):
                hint["timezone"] = False
            hints[f.name] = hint
        return hints


_DLT_TYPES = {str(TIMESTAMP): "timestamp", str(INT): "bigint", str(FLOAT): "double", str(TEXT): "text"}

# Shared pieces of the yellow and green maps.
_COMMON_MONEY = (
    Column("fare_amount", FLOAT),
    Column("extra", FLOAT),
    Column("mta_tax", FLOAT),
    Column("tip_amount", FLOAT),
    Column("tolls_amount", FLOAT),
    _opt("improvement_surcharge", FLOAT),
    Column("total_amount", FLOAT),
    _opt("congestion_surcharge", FLOAT),
)

YELLOW = TableSchema(
    "yellow_tripdata",
    (
        Column("vendor_id", INT, ("VendorID",)),
        Column("tpep_pickup_datetime", TIMESTAMP),
        Column("tpep_dropoff_datetime", TIMESTAMP),
        Column("passenger_count", INT),
        Column("trip_distance", FLOAT),
        Column("ratecode_id", INT, ("RatecodeID",)),
        Column("store_and_fwd_flag", TEXT),
        Column("pu_location_id", INT, ("PULocationID",)),
        Column("do_location_id", INT, ("DOLocationID",)),
        Column("payment_type", INT),
        *_COMMON_MONEY,
        _opt("airport_fee", FLOAT),
        _opt("cbd_congestion_fee", FLOAT),
    ),
    # 2009-2010 yellow files use an older layout (coordinates instead of zone ids): not this table
    first_month="2011-01",
)

GREEN = TableSchema(
    "green_tripdata",
    (
        Column("vendor_id", INT, ("VendorID",)),
        Column("lpep_pickup_datetime", TIMESTAMP),
        Column("lpep_dropoff_datetime", TIMESTAMP),
        Column("store_and_fwd_flag", TEXT),
        Column("ratecode_id", INT, ("RatecodeID",)),
        Column("pu_location_id", INT, ("PULocationID",)),
        Column("do_location_id", INT, ("DOLocationID",)),
        Column("passenger_count", INT),
        Column("trip_distance", FLOAT),
        *_COMMON_MONEY[:5],
        _opt("ehail_fee", FLOAT),
        *_COMMON_MONEY[5:7],
        Column("payment_type", INT),
        _opt("trip_type", INT),
        _COMMON_MONEY[7],
        _opt("cbd_congestion_fee", FLOAT),
    ),
    first_month="2013-08",
)

FHV = TableSchema(
    "fhv_tripdata",
    (
        Column("dispatching_base_num", TEXT),
        Column("pickup_datetime", TIMESTAMP),
        _opt("dropoff_datetime", TIMESTAMP, "dropOff_datetime"),
        _opt("pu_location_id", INT, "PUlocationID"),
        _opt("do_location_id", INT, "DOlocationID"),
        _opt("sr_flag", INT, "SR_Flag"),
        _opt("affiliated_base_number", TEXT, "Affiliated_base_number"),
    ),
    first_month="2015-01",
)

FHVHV = TableSchema(
    "fhvhv_tripdata",
    (
        Column("hvfhs_license_num", TEXT),
        Column("dispatching_base_num", TEXT),
        _opt("originating_base_num", TEXT),
        _opt("request_datetime", TIMESTAMP),
        _opt("on_scene_datetime", TIMESTAMP),
        Column("pickup_datetime", TIMESTAMP),
        Column("dropoff_datetime", TIMESTAMP),
        Column("pu_location_id", INT, ("PULocationID",)),
        Column("do_location_id", INT, ("DOLocationID",)),
        _opt("trip_miles", FLOAT),
        _opt("trip_time", INT),
        _opt("base_passenger_fare", FLOAT),
        _opt("tolls", FLOAT),
        _opt("bcf", FLOAT),
        _opt("sales_tax", FLOAT),
        _opt("congestion_surcharge", FLOAT),
        _opt("airport_fee", FLOAT),
        _opt("tips", FLOAT),
        _opt("driver_pay", FLOAT),
        _opt("shared_request_flag", TEXT),
        _opt("shared_match_flag", TEXT),
        _opt("access_a_ride_flag", TEXT),
        _opt("wav_request_flag", TEXT),
        _opt("wav_match_flag", TEXT),
        _opt("cbd_congestion_fee", FLOAT),
    ),
    first_month="2019-02",
)

ZONES = TableSchema(
    "taxi_zone_lookup",
    (
        Column("location_id", INT, ("LocationID",)),
        Column("borough", TEXT),
        Column("zone", TEXT),
        Column("service_zone", TEXT),
    ),
    lineage=False,
)

TRIP_SCHEMAS: Mapping[str, TableSchema] = {"yellow": YELLOW, "green": GREEN, "fhv": FHV, "fhvhv": FHVHV}
"""Taxi type → its raw trip table's column map."""

TAXI_TYPES: Tuple[str, ...] = tuple(TRIP_SCHEMAS)


def trip_schema(taxi: str) -> TableSchema:
    """The column map of a taxi type; ValueError naming the valid types otherwise."""
    try:
        return TRIP_SCHEMAS[taxi]
    except KeyError:
        raise ValueError(f"unknown taxi type {taxi!r}: choose from {', '.join(TAXI_TYPES)}") from None


def table_schema(table: str) -> TableSchema:
    """The column map of a raw table (`green_tripdata`, …, `taxi_zone_lookup`); ValueError for another name."""
    for schema in (*TRIP_SCHEMAS.values(), ZONES):
        if schema.table == table:
            return schema
    raise ValueError(f"no raw table {table!r}")


def parse_taxi_types(value: Iterable[str] | str) -> List[str]:
    """Split and validate taxi types (`green,yellow`, `["green"]` or a list), keeping order, dropping repeats."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f'bad taxi type list {value!r}: use green,yellow or ["green", "yellow"]') from None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    taxis: List[str] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        trip_schema(item)
        if item not in taxis:
            taxis.append(item)
    if not taxis:
        raise ValueError(f"no taxi type given: choose from {', '.join(TAXI_TYPES)}")
    return taxis


def file_label(table: str, month: Optional[str]) -> str:
    """How a file is named in output: `green_tripdata 2019-01`, or the table alone for the zone lookup."""
    return f"{table} {month}" if month else table
