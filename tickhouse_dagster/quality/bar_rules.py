"""Rules for bars: OHLC invariants, and exact reconciliation with the distinct ticks."""

from __future__ import annotations

import pyarrow as pa

from tickhouse_dagster.core.arrow_sql import ArrowSource, arrow_connection, query_rows
from tickhouse_dagster.core.contract import TRADE_KEY
from tickhouse_dagster.quality.findings import Findings


def check_bar_invariants(bars: pa.Table) -> Findings:
    """low <= open, close <= high; low <= vwap <= high; volume and trade_count positive."""
    findings = Findings("bar invariants", rows_checked=bars.num_rows)
    if not bars.num_rows:
        return findings
    rows = query_rows(
        """SELECT venue, symbol, bar_start, open, high, low, close, vwap, volume, trade_count
           FROM bars
           WHERE NOT (low <= open AND open <= high AND low <= close AND close <= high
                      AND low <= vwap AND vwap <= high AND volume > 0 AND trade_count > 0)
           ORDER BY venue, symbol, bar_start""",
        bars=bars,
    )
    for venue, symbol, start, o, h, low, c, vwap, volume, count in rows:
        findings.add(
            f"{venue} {symbol} bar {start.isoformat()}: open {o} high {h} low {low} close {c} "
            f"vwap {vwap} volume {volume} trades {count}"
        )
    return findings


ROW_TOTALS_COLUMNS = ("venue", "symbol", "trade_date", "quantity")  # what `row_totals` reads
ROW_TOTALS_ARROW = pa.schema(
    [
        pa.field("venue", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("trade_date", pa.date32(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("trade_count", pa.int64(), nullable=False),
    ]
)


def row_totals(ticks: ArrowSource) -> pa.Table:
    """Per (venue, symbol, trade_date) of `ticks`: the sum of quantity and the number of rows,
    copies included. Additive: the totals of several sets of rows (e.g. data files) summed by
    key are the totals of their union, which is what lets `distinct_trade_totals` take them
    per data file (storage.row_totals)."""
    with arrow_connection(ticks=ticks) as connection:
        return (
            connection.sql(
                """SELECT venue, symbol, trade_date, sum(quantity)::BIGINT AS volume,
                          count(*)::BIGINT AS trade_count
                   FROM ticks GROUP BY ALL ORDER BY ALL"""
            )
            .to_arrow_table()
            .cast(ROW_TOTALS_ARROW)
        )


def distinct_trade_totals(
    ticks: ArrowSource,
    duplicate_windows: pa.Table | None = None,
    every_row: pa.Table | None = None,
) -> pa.Table:
    """Per (venue, symbol, trade_date): the volume and number of the distinct trades, a trade
    carried by several files taken from its first-ingested copy. Counted independently of the
    bar builder: every row is summed, then the extra copies — keys grouped whole, not by the
    builder's hashes — are taken off. `duplicate_windows` (trade_ranges.duplicate_windows):
    only keys inside them are grouped; without it, all are. `every_row`: the `row_totals` of
    `ticks` in parts (one per data file), summed here, instead of summing `ticks` again."""
    key = ", ".join(TRADE_KEY)
    if every_row is None:
        every_row = row_totals(ticks)
    if duplicate_windows is not None and not duplicate_windows.num_rows:
        duplicate_windows = None
        inside = "SELECT * FROM ticks WHERE false"  # no window: no key can have a copy
    else:
        inside = (
            """SELECT * FROM ticks t WHERE EXISTS (
                   SELECT 1 FROM windows w
                   WHERE t.venue = w.venue AND t.symbol = w.symbol
                     AND t.trade_date = w.trade_date
                     AND t.trade_id BETWEEN w.low_id AND w.high_id)"""
            if duplicate_windows is not None
            else "SELECT * FROM ticks"
        )
    windows = {} if duplicate_windows is None else {"windows": duplicate_windows}
    with arrow_connection(ticks=ticks, parts=every_row, **windows) as connection:
        return connection.sql(
            f"""WITH every_row AS (
                    SELECT venue, symbol, trade_date, sum(volume)::BIGINT AS volume,
                           sum(trade_count)::BIGINT AS trade_count
                    FROM parts GROUP BY ALL
                ), copies AS (
                    SELECT venue, symbol, trade_date,
                           sum(quantity) - arg_min(quantity, (ingested_at, source_file))
                               AS volume,
                           count(*) - 1 AS trade_count
                    FROM ({inside}) GROUP BY {key}
                    HAVING count(*) > 1
                ), extra AS (
                    SELECT venue, symbol, trade_date, sum(volume)::BIGINT AS volume,
                           sum(trade_count)::BIGINT AS trade_count
                    FROM copies GROUP BY ALL
                )
                SELECT e.venue, e.symbol, e.trade_date,
                       (e.volume - coalesce(x.volume, 0))::BIGINT AS volume,
                       (e.trade_count - coalesce(x.trade_count, 0))::BIGINT AS trade_count
                FROM every_row e LEFT JOIN extra x USING (venue, symbol, trade_date)
                ORDER BY ALL"""
        ).to_arrow_table()


def reconcile_bars_with_ticks(bars: pa.Table, trade_totals: pa.Table, interval: str) -> Findings:
    """Per (venue, symbol, trade_date): bar volume and trade_count equal the distinct trades'
    (`distinct_trade_totals` of the ticks the bars were built from)."""
    findings = Findings(f"ohlcv_{interval} reconciles with ticks", rows_checked=bars.num_rows)
    rows = query_rows(
        """WITH actual AS (
                SELECT venue, symbol, trade_date, sum(volume)::BIGINT AS volume,
                       sum(trade_count)::BIGINT AS trade_count
                FROM bars GROUP BY ALL
            )
            SELECT venue, symbol, trade_date, e.volume, a.volume, e.trade_count, a.trade_count
            FROM expected e FULL OUTER JOIN actual a USING (venue, symbol, trade_date)
            WHERE e.volume IS DISTINCT FROM a.volume
               OR e.trade_count IS DISTINCT FROM a.trade_count
            ORDER BY venue, symbol, trade_date""",
        bars=bars,
        expected=trade_totals,
    )
    for venue, symbol, trade_date, ev, av, et, at in rows:
        findings.add(
            f"{venue} {symbol} {trade_date}: ticks volume {ev} / trades {et}, "
            f"bars volume {av} / trades {at}"
        )
    return findings
