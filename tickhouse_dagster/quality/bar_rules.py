"""Rules for bars: OHLC invariants, and exact reconciliation with the distinct ticks."""

from __future__ import annotations

import pyarrow as pa

from tickhouse_dagster.arrow_sql import ArrowSource, arrow_connection, query_rows
from tickhouse_dagster.contract import TRADE_KEY
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


def distinct_trade_totals(ticks: ArrowSource) -> pa.Table:
    """Per (venue, symbol, trade_date): the volume and number of the distinct trades, a trade
    carried by several files taken from its first-ingested copy. Grouped by the whole trade key
    (not the bar builder's hashes), so the reconciliation is an independent count."""
    key = ", ".join(TRADE_KEY)
    with arrow_connection(ticks=ticks) as connection:
        return connection.sql(
            f"""WITH trades AS (
                    SELECT venue, symbol, trade_date,
                           arg_min(quantity, (ingested_at, source_file)) AS quantity
                    FROM ticks GROUP BY {key}
                )
                SELECT venue, symbol, trade_date, sum(quantity)::BIGINT AS volume,
                       count(*)::BIGINT AS trade_count
                FROM trades GROUP BY ALL"""
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
