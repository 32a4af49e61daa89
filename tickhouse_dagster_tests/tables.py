"""Test support: reading tables whole and building one interval's bars, for before/after
comparisons. Not product code: no pipeline step needs a whole table in memory."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import pyarrow as pa
from pyiceberg.table import Table

from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.row_filters import equal_to


def data_file_count(table: Table, day: date | None = None) -> int:
    """Live data files of the current snapshot (of one trade date, if given)."""
    if table.current_snapshot() is None:
        return 0
    scan = table.scan(row_filter=equal_to("trade_date", day.isoformat())) if day else table.scan()
    return sum(1 for _ in scan.plan_files())


def rows_of(table: Table, snapshot_id: int | None = None) -> pa.Table:
    """Every row of a table (at a snapshot), in a canonical order, for before/after comparison."""
    if table.current_snapshot() is None:
        return table.schema().as_arrow().empty_table()
    data = table.scan(snapshot_id=snapshot_id).to_arrow()
    return data.sort_by([(c, "ascending") for c in data.column_names])


def build_bars(ticks: pa.Table, interval: str, venues: Mapping[str, Venue]) -> pa.Table:
    """Bars of one interval ("1m", "5m", "1h" or "1d") for all ticks given, any venues."""
    return build_all_bars(ticks, venues, (interval,))[interval]
