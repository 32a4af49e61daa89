"""OHLCV bars from ticks: pure, on Arrow, computed by DuckDB.

Bar rules (DESIGN.md): left-closed, left-labelled intervals on the venue's local clock; 1d bars
cover one trade date and start at its local midnight; open/close are the first/last trade by
(ts, trade_id); vwap = turnover / volume rounded half-even to 6 places; no empty bars; a trade
carried by several files counts once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from tickhouse_dagster.arrow_sql import arrow_connection
from tickhouse_dagster.contract import BAR_INTERVALS, BARS_ARROW
from tickhouse_dagster.market.venues import Venue

INTERVAL_WIDTH: dict[str, str] = {"1m": "1 minute", "5m": "5 minutes", "1h": "1 hour"}

# Which copy of a trade carried by several files counts: the first ingested, then by file name,
# so a bar never changes because a later file repeats a trade it already has. Most days have no
# duplicates, so only rows whose hash of (symbol, trade_id) occurs more than once — a superset of
# the duplicated trade keys (a collision only adds a candidate) — go through the exact
# resolution; the rest pass straight through. Grouping by a hash is much cheaper than by strings.
_DISTINCT_TRADES_SQL = """
CREATE TEMP TABLE candidates AS
SELECT hash(symbol, trade_id) AS key_hash FROM ticks GROUP BY ALL HAVING count(*) > 1;

CREATE TEMP TABLE trades AS
SELECT venue, symbol, trade_date, trade_id, ts, price, quantity
FROM ticks WHERE hash(symbol, trade_id) NOT IN (SELECT key_hash FROM candidates)
UNION ALL
SELECT venue, symbol, trade_date, trade_id, first_copy.ts, first_copy.price, first_copy.quantity
FROM (
    SELECT venue, symbol, trade_date, trade_id,
           arg_min({{'ts': ts, 'price': price, 'quantity': quantity}}, ({first_copy})) AS first_copy
    FROM ticks WHERE hash(symbol, trade_id) IN (SELECT key_hash FROM candidates)
    GROUP BY venue, symbol, trade_date, trade_id
);
"""

# The finest bars come from the trades; coarser ones roll up from them exactly (the intervals
# nest on the venue's clock, and a bar never spans two trade dates): open is the first finer
# bar's open, close the last one's close, the sums add up, and vwap is computed afresh.
_MINUTE_BARS_SQL = """
INSERT INTO minute_bars
SELECT venue, symbol, trade_date, {bucket} AS bar_start,
       arg_min(price, (ts, trade_id)) AS open,
       max(price) AS high,
       min(price) AS low,
       arg_max(price, (ts, trade_id)) AS close,
       sum(quantity)::BIGINT AS volume,
       CAST(sum(price * quantity) AS DECIMAL(38, 6)) AS turnover,
       count(*)::BIGINT AS trade_count
FROM trades
WHERE venue = $venue
GROUP BY ALL
"""

_ROLLUP_SQL = """
SELECT venue, symbol, trade_date, {bucket} AS bar_start,
       arg_min(open, bar_start) AS open,
       max(high) AS high,
       min(low) AS low,
       arg_max(close, bar_start) AS close,
       sum(volume)::BIGINT AS volume,
       CAST(sum(turnover) AS DECIMAL(38, 6)) AS turnover,
       sum(trade_count)::BIGINT AS trade_count
FROM minute_bars
WHERE venue = $venue
GROUP BY ALL
"""

_WITH_VWAP_SQL = """
WITH bars AS ({bars}), vwap_division AS (
    -- turnover in micro-units divided by volume; the remainder decides half-even rounding
    SELECT *, CAST(turnover * 1000000 AS HUGEINT) AS t,
           CAST(turnover * 1000000 AS HUGEINT) // volume AS q
    FROM bars
)
SELECT venue, symbol, trade_date, bar_start, open, high, low, close, volume, turnover,
       CAST(CAST(q + CASE WHEN 2 * (t - q * volume) > volume
                          OR (2 * (t - q * volume) = volume AND q % 2 = 1) THEN 1 ELSE 0 END
                 AS DECIMAL(18, 0)) * 0.000001::DECIMAL(7, 6) AS DECIMAL(18, 6)) AS vwap,
       trade_count
FROM vwap_division
ORDER BY venue, symbol, bar_start
"""


def _bucket_expression(interval: str, venue: Venue, time_column: str = "ts") -> str:
    zone = venue.timezone.key
    if interval == "1d":
        return f"timezone('{zone}', CAST(trade_date AS TIMESTAMP))"
    return f"time_bucket(INTERVAL '{INTERVAL_WIDTH[interval]}', {time_column}, '{zone}')"


def build_all_bars(
    ticks: pa.Table, venues: Mapping[str, Venue], intervals: Sequence[str] = BAR_INTERVALS
) -> dict[str, pa.Table]:
    """Bars of each interval for all ticks given (any venues): one pass picks each trade's
    counting copy and builds 1-minute bars, which every coarser interval rolls up."""
    unknown = [i for i in intervals if i not in (*INTERVAL_WIDTH, "1d")]
    if unknown:
        raise ValueError(f"unknown bar interval {unknown[0]!r}")
    first_copy = (
        "ingested_at, source_file" if "ingested_at" in ticks.column_names else "source_file"
    )
    names = pa.compute.unique(ticks["venue"]).to_pylist()
    with arrow_connection(ticks=ticks) as connection:
        connection.execute(_DISTINCT_TRADES_SQL.format(first_copy=first_copy))
        connection.execute(
            "CREATE TEMP TABLE minute_bars (venue VARCHAR, symbol VARCHAR, trade_date DATE, "
            "bar_start TIMESTAMPTZ, open DECIMAL(18, 6), high DECIMAL(18, 6), "
            "low DECIMAL(18, 6), close DECIMAL(18, 6), volume BIGINT, "
            "turnover DECIMAL(38, 6), trade_count BIGINT)"
        )
        for name in names:
            bucket = _bucket_expression("1m", venues[name])
            connection.execute(_MINUTE_BARS_SQL.format(bucket=bucket), {"venue": name})
        bars = {}
        for interval in intervals:
            parts = []
            for name in names:
                bucket = _bucket_expression(interval, venues[name], time_column="bar_start")
                rollup = _ROLLUP_SQL.format(bucket=bucket)
                sql = _WITH_VWAP_SQL.format(bars=rollup)
                parts.append(connection.sql(sql, params={"venue": name}).to_arrow_table())
            bars[interval] = (
                pa.concat_tables(parts).cast(BARS_ARROW) if parts else BARS_ARROW.empty_table()
            )
    return bars


def build_bars(ticks: pa.Table, interval: str, venues: Mapping[str, Venue]) -> pa.Table:
    """Bars of one interval ("1m", "5m", "1h" or "1d") for all ticks given, any venues."""
    return build_all_bars(ticks, venues, (interval,))[interval]
