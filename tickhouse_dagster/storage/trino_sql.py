"""SQL the project runs on Trino: BI views over the bar tables, and the read-back of a commit."""

from __future__ import annotations

from collections.abc import Mapping

from tickhouse_dagster.core.contract import BAR_INTERVALS, bar_table_name
from tickhouse_dagster.market.venues import Venue


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def venue_zone_expression(venues: Mapping[str, Venue]) -> str:
    cases = " ".join(
        f"WHEN {_quoted(name)} THEN {_quoted(v.timezone.key)}" for name, v in sorted(venues.items())
    )
    return f"CASE venue {cases} ELSE 'UTC' END"


def bar_view_statements(
    catalog: str, namespace: str, venues: Mapping[str, Venue]
) -> dict[str, str]:
    """`<table>_local` views: each bar with its start on the venue's wall clock, for BI tools
    that do not handle time zones per row (Superset, Grafana)."""
    zone = venue_zone_expression(venues)
    views = {}
    for interval in BAR_INTERVALS:
        table = bar_table_name(interval)
        view = f"{table}_local"
        views[view] = f"""CREATE OR REPLACE VIEW {catalog}.{namespace}.{view} AS
SELECT venue, symbol, trade_date,
       bar_start,
       CAST(at_timezone(bar_start, {zone}) AS timestamp(6)) AS bar_start_local,
       {zone} AS venue_timezone,
       {_quoted(interval)} AS bar_interval,
       open, high, low, close, volume, turnover, vwap, trade_count
FROM {catalog}.{namespace}.{table}"""
    return views


def file_rows_at_snapshot(catalog: str, namespace: str, snapshot_id: int) -> str:
    """Row count and quantity sum of one source file as of one ticks snapshot (bind: file)."""
    return (
        f"SELECT count(*), coalesce(sum(quantity), 0) FROM {catalog}.{namespace}.ticks "
        f"FOR VERSION AS OF {int(snapshot_id)} WHERE source_file = ?"
    )


def files_rows_at_snapshot(catalog: str, namespace: str, snapshot_id: int, files: int) -> str:
    """Row count and quantity sum per source file as of one ticks snapshot (bind: the files)."""
    marks = ", ".join("?" for _ in range(files))
    return (
        f"SELECT source_file, count(*), coalesce(sum(quantity), 0) "
        f"FROM {catalog}.{namespace}.ticks FOR VERSION AS OF {int(snapshot_id)} "
        f"WHERE source_file IN ({marks}) GROUP BY source_file"
    )
