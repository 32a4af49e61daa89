"""OHLCV bars from ticks: pure, on Arrow, computed by DuckDB.

Bar rules (DESIGN.md): left-closed, left-labelled intervals on the venue's local clock; 1d bars
cover one trade date and start at its local midnight; open/close are the first/last trade by
(ts, trade_id); vwap = turnover / volume rounded half-even to 6 places; no empty bars; a trade
carried by several files counts once.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from tickhouse_dagster.arrow_sql import query_arrow
from tickhouse_dagster.contract import BARS_ARROW, TRADE_KEY
from tickhouse_dagster.market.venues import Venue

INTERVAL_WIDTH: dict[str, str] = {"1m": "1 minute", "5m": "5 minutes", "1h": "1 hour"}

# Which copy of a trade carried by several files counts: the first ingested, then by file name,
# so a bar never changes because a later file repeats a trade it already has.
_FIRST_COPY_ORDER = "ingested_at, source_file"

_BARS_SQL = """
WITH trades AS (
    SELECT venue, symbol, trade_date, ts, trade_id, price, quantity
    FROM ticks
    WHERE venue = $venue
    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {first_copy}) = 1
), bars AS (
    SELECT venue, symbol, trade_date, {bucket} AS bar_start,
           arg_min(price, (ts, trade_id)) AS open,
           max(price) AS high,
           min(price) AS low,
           arg_max(price, (ts, trade_id)) AS close,
           sum(quantity)::BIGINT AS volume,
           sum(price * quantity) AS turnover,
           count(*)::BIGINT AS trade_count
    FROM trades
    GROUP BY ALL
), vwap_division AS (
    -- turnover in micro-units divided by volume; the remainder decides half-even rounding
    SELECT *, CAST(turnover * 1000000 AS HUGEINT) AS t,
           CAST(turnover * 1000000 AS HUGEINT) // volume AS q
    FROM bars
)
SELECT venue, symbol, trade_date, bar_start, open, high, low, close, volume,
       CAST(turnover AS DECIMAL(38, 6)) AS turnover,
       CAST(CAST(q + CASE WHEN 2 * (t - q * volume) > volume
                          OR (2 * (t - q * volume) = volume AND q % 2 = 1) THEN 1 ELSE 0 END
                 AS DECIMAL(18, 0)) * 0.000001::DECIMAL(7, 6) AS DECIMAL(18, 6)) AS vwap,
       trade_count
FROM vwap_division
ORDER BY venue, symbol, bar_start
"""


def _bucket_expression(interval: str, venue: Venue) -> str:
    zone = venue.timezone.key
    if interval == "1d":
        return f"timezone('{zone}', CAST(trade_date AS TIMESTAMP))"
    return f"time_bucket(INTERVAL '{INTERVAL_WIDTH[interval]}', ts, '{zone}')"


def build_bars(ticks: pa.Table, interval: str, venues: Mapping[str, Venue]) -> pa.Table:
    """Bars of one interval ("1m", "5m", "1h" or "1d") for all ticks given, any venues."""
    if interval not in (*INTERVAL_WIDTH, "1d"):
        raise ValueError(f"unknown bar interval {interval!r}")
    parts = []
    for name in pa.compute.unique(ticks["venue"]).to_pylist():
        sql = _BARS_SQL.format(
            key=", ".join(TRADE_KEY),
            first_copy=_FIRST_COPY_ORDER if "ingested_at" in ticks.column_names else "source_file",
            bucket=_bucket_expression(interval, venues[name]),
        )
        parts.append(query_arrow(sql, {"venue": name}, ticks=ticks))
    if not parts:
        return BARS_ARROW.empty_table()
    return pa.concat_tables(parts).cast(BARS_ARROW)
