"""OHLCV bars from ticks: pure, on Arrow, computed by DuckDB.

Bar rules (the data contract; how they are computed: docs/decisions/0003-bars-with-duckdb.md
and 0501-bars-stream-from-data-files.md): left-closed, left-labelled intervals on the venue's
local clock; 1d bars cover one trade date and start at its local midnight; open/close are the
first/last trade by (ts, trade_id); vwap = turnover / volume rounded half-even to 6 places; no
empty bars; a trade carried by several files counts once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from tickhouse_dagster.core.arrow_sql import ArrowSource, arrow_connection
from tickhouse_dagster.core.contract import BAR_INTERVALS, BARS_ARROW
from tickhouse_dagster.market.venues import Venue

if TYPE_CHECKING:
    import duckdb

INTERVAL_WIDTH: dict[str, str] = {
    "1m": "1 minute",
    "5m": "5 minutes",
    "15m": "15 minutes",
    "1h": "1 hour",
}

# Which copy of a trade carried by several files counts: the first ingested, then by file name,
# so a bar never changes because a later file repeats a trade it already has. Most days have no
# duplicates, so only rows whose hash of (symbol, trade_id) occurs more than once — a superset of
# the duplicated trade keys (a collision only adds a candidate) — go through the exact
# resolution; the rest pass straight through. Grouping by a hash is much cheaper than by strings,
# and `trades` stays a view so the day's ticks stream through DuckDB and are never held whole.
_DUPLICATE_CANDIDATES_SQL = """
CREATE TEMP TABLE candidates AS
SELECT hash(symbol, trade_id) AS key_hash FROM ticks GROUP BY ALL HAVING count(*) > 1
"""

# The same candidates from the trade index's duplicate windows (quality.trade_ranges): only rows
# inside a window can repeat a key, so on a day without copies nothing is grouped at all.
_WINDOWED_CANDIDATES_SQL = """
CREATE TEMP TABLE candidates AS
SELECT DISTINCT hash(t.symbol, t.trade_id) AS key_hash
FROM ticks t JOIN windows w
  ON t.venue = w.venue AND t.symbol = w.symbol AND t.trade_date = w.trade_date
 AND t.trade_id BETWEEN w.low_id AND w.high_id
"""

_ALL_TRADES_SQL = """
CREATE TEMP VIEW trades AS
SELECT venue, symbol, trade_date, trade_id, ts, price, quantity FROM ticks
"""

_DISTINCT_TRADES_SQL = """
CREATE TEMP VIEW trades AS
SELECT venue, symbol, trade_date, trade_id, ts, price, quantity
FROM ticks WHERE hash(symbol, trade_id) NOT IN (SELECT key_hash FROM candidates)
UNION ALL
SELECT venue, symbol, trade_date, trade_id, first_copy.ts, first_copy.price, first_copy.quantity
FROM (
    SELECT venue, symbol, trade_date, trade_id,
           arg_min({{'ts': ts, 'price': price, 'quantity': quantity}}, ({first_copy})) AS first_copy
    FROM ticks WHERE hash(symbol, trade_id) IN (SELECT key_hash FROM candidates)
    GROUP BY venue, symbol, trade_date, trade_id
)
"""

# The finest bars come from the trades in one pass over all venues; coarser ones roll up from
# them exactly (the intervals nest on the venue's clock, and a bar never spans two trade dates):
# open is the first finer bar's open, close the last one's close, the sums add up, and vwap is
# computed afresh. Every zone offset in use since 1972 is a whole number of minutes, so a UTC
# minute is a local minute and the minute is found by integer arithmetic, not a zone lookup per
# trade; `build_all_bars` checks every minute bar starts on its venue's local minute and, in a
# zone where that does not hold, rebuilds them with the exact per-venue bucket.
_MINUTE_BARS_SQL = """
CREATE OR REPLACE TEMP TABLE minute_bars AS
SELECT venue, symbol, trade_date, {bar_start} AS bar_start, open, high, low, close, volume,
       turnover, trade_count
FROM (
    SELECT venue, symbol, trade_date, {bucket} AS bucket,
           arg_min(price, (ts, trade_id)) AS open,
           max(price) AS high,
           min(price) AS low,
           arg_max(price, (ts, trade_id)) AS close,
           sum(quantity)::BIGINT AS volume,
           CAST(sum(price * quantity) AS DECIMAL(38, 6)) AS turnover,
           count(*)::BIGINT AS trade_count
    FROM trades
    GROUP BY ALL
)
"""
_UTC_MINUTE = "epoch_us(ts) - (epoch_us(ts) % 60000000 + 60000000) % 60000000"
_UTC_MINUTE_START = "make_timestamp(bucket)::TIMESTAMPTZ"

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


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"an instant needs its zone: {moment}")
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _bucket_expression(interval: str, venues: Mapping[str, Venue], time_column: str) -> str:
    """The bar start of each row for `interval`, on the clock of the row's venue: the instant
    minus how far the venue's wall clock is past its bucket start. Not DuckDB's zoned
    `time_bucket`, which steps whole widths from an origin instant and so drifts off the local
    clock in a zone whose offset changed by part of a width (e.g. +09:00 to +08:30); and not a
    round trip through the wall clock, which would merge the two runs of a repeated DST hour."""
    cases = []
    for name, venue in venues.items():
        zone = _quoted(venue.timezone.key)
        if interval == "1d":
            start = f"timezone({zone}, CAST(trade_date AS TIMESTAMP))"
        else:
            local = f"timezone({zone}, {time_column})"
            width = f"INTERVAL '{INTERVAL_WIDTH[interval]}'"
            start = f"{time_column} - ({local} - time_bucket({width}, {local}))"
        cases.append(f"WHEN {_quoted(name)} THEN {start}")
    unknown = "error('no bar clock for venue ' || venue)"
    return f"CASE venue {' '.join(cases)} ELSE {unknown} END" if cases else unknown


def build_all_bars(
    ticks: ArrowSource,
    venues: Mapping[str, Venue],
    intervals: Sequence[str] = BAR_INTERVALS,
    duplicate_windows: pa.Table | None = None,
    between: tuple[datetime, datetime] | None = None,
) -> dict[str, pa.Table]:
    """Bars of each interval for all ticks given (any venues): one pass picks each trade's
    counting copy and builds 1-minute bars, which every coarser interval rolls up.
    `duplicate_windows` (trade_ranges.duplicate_windows of the ticks' files): where copies can
    be, when the trade index knows; without it every key is hashed to find them. `between`:
    only the ticks strictly inside these instants."""
    _check_intervals(intervals)
    first_copy = (
        "ingested_at, source_file" if "ingested_at" in ticks.schema.names else "source_file"
    )
    windows = {} if duplicate_windows is None else {"windows": duplicate_windows}
    with arrow_connection(source=ticks, **windows) as connection:
        # Streamed through a view (which takes literals, not parameters): DuckDB pushes the
        # time filter down into the data files.
        inside = (
            ""
            if between is None
            else f" WHERE ts > {_instant(between[0])} AND ts < {_instant(between[1])}"
        )
        connection.execute(f"CREATE TEMP VIEW ticks AS SELECT * FROM source{inside}")
        if duplicate_windows is None:
            connection.execute(_DUPLICATE_CANDIDATES_SQL)
        elif duplicate_windows.num_rows:
            connection.execute(_WINDOWED_CANDIDATES_SQL)
        if not _has_candidates(connection, duplicate_windows):
            connection.execute(_ALL_TRADES_SQL)
        else:
            connection.execute(_DISTINCT_TRADES_SQL.format(first_copy=first_copy))
        connection.execute(_MINUTE_BARS_SQL.format(bucket=_UTC_MINUTE, bar_start=_UTC_MINUTE_START))
        local_minute = _bucket_expression("1m", venues, "bar_start")
        off_clock = f"SELECT count(*) FROM minute_bars WHERE {local_minute} <> bar_start"
        if connection.execute(off_clock).fetchall() != [(0,)]:
            bucket = _bucket_expression("1m", venues, "ts")
            connection.execute(_MINUTE_BARS_SQL.format(bucket=bucket, bar_start="bucket"))
        return {interval: _rolled_up(connection, interval, venues) for interval in intervals}


def _has_candidates(
    connection: duckdb.DuckDBPyConnection, duplicate_windows: pa.Table | None
) -> bool:
    """Whether any trade key may have copies (`candidates` holds their hashes)."""
    if duplicate_windows is not None and not duplicate_windows.num_rows:
        return False
    return connection.execute("SELECT count(*) FROM candidates").fetchall() != [(0,)]


def rebuild_span(
    stored_minutes: pa.Table,
    ticks: ArrowSource,
    venues: Mapping[str, Venue],
    low: datetime,
    high: datetime,
    duplicate_windows: pa.Table | None = None,
) -> dict[str, pa.Table]:
    """A trade date's bars after its ticks with trade times in [low, high] changed (e.g.
    storage.ticks_changes): the 1-minute bars that can hold such a trade — starting after
    low - 1 minute, up to high — rebuilt from `ticks` (the trade date's ticks; only those less
    than a minute outside the span are read), the other stored minutes kept, and every coarser
    interval rolled up from the result. The same bars as a rebuild of the whole day: a minute
    bar depends on its own minute's trades only, and coarser bars roll up from minutes."""
    first, last = low - timedelta(minutes=1), high
    fresh = build_all_bars(
        ticks, venues, ["1m"], duplicate_windows, between=(first, high + timedelta(minutes=1))
    )["1m"]
    with arrow_connection(stored=stored_minutes.cast(BARS_ARROW), fresh=fresh) as connection:
        minutes = connection.sql(
            """SELECT * FROM stored WHERE NOT (bar_start > $first AND bar_start <= $last)
               UNION ALL
               SELECT * FROM fresh WHERE bar_start > $first AND bar_start <= $last
               ORDER BY venue, symbol, bar_start""",
            params={"first": first, "last": last},
        ).to_arrow_table()
    minutes = minutes.cast(BARS_ARROW)
    return {
        "1m": minutes,
        **{i: roll_up_bars(minutes, i, venues) for i in BAR_INTERVALS if i != "1m"},
    }


def roll_up_bars(minute_bars: ArrowSource, interval: str, venues: Mapping[str, Venue]) -> pa.Table:
    """Bars of `interval` rolled up from 1-minute bars (e.g. a day of `ohlcv_1m` as stored),
    exactly as `build_all_bars` rolls up its own: open / close of the first / last minute by
    bar_start, high / low the extremes, volume, turnover and trade count summed, vwap afresh
    from turnover / volume (half-even, 6 places), bars starting on the venue's local clock."""
    _check_intervals([interval])
    with arrow_connection(minute_bars=minute_bars) as connection:
        return _rolled_up(connection, interval, venues)


def _check_intervals(intervals: Sequence[str]) -> None:
    unknown = [i for i in intervals if i not in (*INTERVAL_WIDTH, "1d")]
    if unknown:
        raise ValueError(f"unknown bar interval {unknown[0]!r}")


def _rolled_up(
    connection: duckdb.DuckDBPyConnection, interval: str, venues: Mapping[str, Venue]
) -> pa.Table:
    """`interval` bars from the `minute_bars` the connection holds."""
    bucket = _bucket_expression(interval, venues, "bar_start")
    rollup = _WITH_VWAP_SQL.format(bars=_ROLLUP_SQL.format(bucket=bucket))
    return connection.sql(rollup).to_arrow_table().cast(BARS_ARROW)
