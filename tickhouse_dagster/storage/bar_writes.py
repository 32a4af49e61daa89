"""Replacing a trade date's bars of one interval in its `ohlcv_*` table, in one commit, and
refusing the commit when the stored bars were built from newer ticks (storage.bar_builds): the
check runs inside the transaction, so a concurrent bar commit makes it retry and check again.
Apart from bar_builds, which only reads and writes what a build recorded in the snapshots."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
from pyiceberg.table import Transaction

from tickhouse_dagster.core.contract import BARS_ARROW, bar_table_name
from tickhouse_dagster.storage import commits
from tickhouse_dagster.storage.bar_builds import BarBuild, superseded
from tickhouse_dagster.storage.commits import Commit, Tables
from tickhouse_dagster.storage.row_filters import equal_to


class _Superseded(Exception):
    """Stops a bar commit whose rows were built from older ticks than the stored ones."""

    def __init__(self, build: BarBuild, bars_snapshot_id: int | None) -> None:
        super().__init__(f"bars of {build.trade_date} already built from newer ticks")
        self.build, self.bars_snapshot_id = build, bars_snapshot_id


def replace_day_bars(
    tables: Tables, interval: str, trade_date: date, bars: pa.Table, build: BarBuild | None
) -> Commit:
    """`Lakehouse.replace_day_bars`: with `build`, a commit that records it, or a `superseded`
    Commit that writes nothing."""
    if build is None:
        return commits.replace(
            tables,
            bar_table_name(interval),
            equal_to("trade_date", trade_date.isoformat()),
            lambda: [bars.cast(BARS_ARROW)],
        )
    properties = build.properties()
    rows = bars.cast(BARS_ARROW)

    def apply(tx: Transaction) -> int:
        newer = superseded(tx.table_metadata, build)
        if newer is not None:
            raise _Superseded(newer, tx.table_metadata.current_snapshot_id)
        tx.delete(equal_to("trade_date", trade_date.isoformat()), snapshot_properties=properties)
        tx.append(rows, snapshot_properties=properties)
        return int(rows.num_rows)

    name = bar_table_name(interval)
    try:
        return commits.commit(tables, name, apply)
    except _Superseded as stop:
        return Commit(
            tables.identifier(name),
            stop.bars_snapshot_id,
            0,
            0,
            1,
            superseded_by=stop.build.ticks_snapshot_id,
        )
