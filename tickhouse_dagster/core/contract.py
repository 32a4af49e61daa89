"""The data contract: Iceberg schemas of `ticks` and the OHLCV bar tables, and their Arrow forms.

Everything else (parsing, bar building, storage) derives its types from here, so a column is
defined exactly once.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.types import (
    DateType,
    DecimalType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

PRICE = DecimalType(18, 6)
TURNOVER = DecimalType(38, 6)

TICKS_TABLE: Final = "ticks"
CORRECTIONS_TABLE: Final = "tick_corrections"
# Which venue reference data each landing file's ticks and each trade date's bars were built
# under (docs/decisions/1402-stale-reference-data.md); not part of the query contract.
REFERENCE_TABLE: Final = "reference_data_used"
TICKS_BUILT: Final = "ticks"  # `built` of a landing file's record; bars use their table name
TRADE_ID_RANGES_TABLE: Final = "trade_id_ranges"
BAR_INTERVALS: Final = ("1m", "5m", "1h", "1d")
TRADE_KEY: Final = ("venue", "symbol", "trade_date", "trade_id")

TICKS_SCHEMA = Schema(
    NestedField(1, "venue", StringType(), required=True),
    NestedField(2, "symbol", StringType(), required=True),
    NestedField(3, "trade_date", DateType(), required=True),
    NestedField(4, "ts", TimestamptzType(), required=True),
    NestedField(5, "trade_id", StringType(), required=True),
    NestedField(6, "price", PRICE, required=True),
    NestedField(7, "quantity", LongType(), required=True),
    NestedField(8, "side", StringType(), required=False),
    NestedField(9, "source_file", StringType(), required=True),
    NestedField(10, "ingested_at", TimestamptzType(), required=True),
)

# Trade corrections (FIXML TransTyp cancel / replace), kept so that a correction still applies
# when the file it corrects is (re-)ingested after it. For a replace the row holds the new values.
CORRECTIONS_SCHEMA = Schema(
    *TICKS_SCHEMA.fields,
    NestedField(11, "trans_type", StringType(), required=True),  # C = cancel, R = replace
    NestedField(12, "record", LongType(), required=True),  # where in its file it was reported
)

# Where each landing file's trades lie in market.ticks: per (venue, symbol, trade_date) its lowest
# and highest trade_id, its rows and its repeated keys. The copy check and the bar builder consult
# it (quality.trade_ranges) instead of searching the day's ticks for copies; storage.trade_index
# keeps it and rebuilds a trade date that disagrees with the ticks.
TRADE_ID_RANGES_SCHEMA = Schema(
    NestedField(1, "venue", StringType(), required=True),
    NestedField(2, "symbol", StringType(), required=True),
    NestedField(3, "trade_date", DateType(), required=True),
    NestedField(4, "low_id", StringType(), required=True),
    NestedField(5, "high_id", StringType(), required=True),
    NestedField(6, "rows", LongType(), required=True),
    # Rows that repeat a trade key already in the same file (for that instrument and date).
    NestedField(7, "repeats", LongType(), required=True),
    NestedField(8, "source_file", StringType(), required=True),
)

BARS_SCHEMA = Schema(
    NestedField(1, "venue", StringType(), required=True),
    NestedField(2, "symbol", StringType(), required=True),
    NestedField(3, "trade_date", DateType(), required=True),
    NestedField(4, "bar_start", TimestamptzType(), required=True),
    NestedField(5, "open", PRICE, required=True),
    NestedField(6, "high", PRICE, required=True),
    NestedField(7, "low", PRICE, required=True),
    NestedField(8, "close", PRICE, required=True),
    NestedField(9, "volume", LongType(), required=True),
    NestedField(10, "turnover", TURNOVER, required=True),
    NestedField(11, "vwap", PRICE, required=True),
    NestedField(12, "trade_count", LongType(), required=True),
)

REFERENCE_SCHEMA = Schema(
    NestedField(1, "built", StringType(), required=True),  # "ticks" or a bar table name
    NestedField(2, "venue", StringType(), required=True),
    NestedField(3, "trade_date", DateType(), required=False),  # bars: the trade date
    NestedField(4, "source_file", StringType(), required=False),  # ticks: the landing file
    NestedField(5, "fingerprint", StringType(), required=True),
    NestedField(6, "reference", StringType(), required=True),  # the venue's data, canonical JSON
    NestedField(7, "recorded_at", TimestamptzType(), required=True),
)


def arrow_schema(schema: Schema) -> pa.Schema:
    """Arrow form of an Iceberg schema: plain `string` (not `large_string`) and no field-id
    metadata, which is what the parser, DuckDB and pyiceberg's writer all accept directly."""
    fields = []
    for field in schema.as_arrow():
        arrow_type = pa.string() if pa.types.is_large_string(field.type) else field.type
        fields.append(pa.field(field.name, arrow_type, nullable=field.nullable))
    return pa.schema(fields)


TICKS_ARROW: Final[pa.Schema] = arrow_schema(TICKS_SCHEMA)
BARS_ARROW: Final[pa.Schema] = arrow_schema(BARS_SCHEMA)
CORRECTIONS_ARROW: Final[pa.Schema] = arrow_schema(CORRECTIONS_SCHEMA)
REFERENCE_ARROW: Final[pa.Schema] = arrow_schema(REFERENCE_SCHEMA)
TRADE_ID_RANGES_ARROW: Final[pa.Schema] = arrow_schema(TRADE_ID_RANGES_SCHEMA)

# Parsed ticks are the ticks before ingestion, plus where in the file each row came from, so that
# a rejected value can be traced to its record (and line, where the parser knows it).
PARSED_TICKS_ARROW: Final[pa.Schema] = (
    TICKS_ARROW.remove(TICKS_ARROW.get_field_index("ingested_at"))
    .append(pa.field("record", pa.int64(), nullable=False))
    .append(pa.field("line", pa.int64(), nullable=True))
    # N (or null) = a new trade; C / R = a cancel / replace of the trade with this key.
    .append(pa.field("trans_type", pa.string(), nullable=True))
)


def bar_table_name(interval: str) -> str:
    return f"ohlcv_{interval}"
