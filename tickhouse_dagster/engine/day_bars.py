"""A trade date's bars, rebuilt for what changed since they were last built: the minutes whose
ticks changed when the table's metadata tells which (storage.ticks_changes), else the whole day.
Either way the result equals a rebuild of the day from its ticks (market.bars.rebuild_span), so
a burst of files into a full day costs its own minutes, not the day's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa

from tickhouse_dagster.contract import BAR_INTERVALS, TICKS_TABLE
from tickhouse_dagster.market.bars import build_all_bars, rebuild_span
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.ticks_changes import changed_span
from tickhouse_dagster.storage.trade_index import TradeIndex


@dataclass(frozen=True)
class DayBars:
    bars: dict[str, pa.Table]
    ticks_snapshot_id: int | None  # the ticks they were built from
    rebuilt: str  # what was rebuilt, for a person: "the whole day" or the span of minutes
    duplicate_windows: pa.Table  # where the day's copies can be (for the reconciliation)


def build_day_bars(
    house: Lakehouse,
    venues: Mapping[str, Venue],
    day: date,
    intervals: Sequence[str] = BAR_INTERVALS,
    built_from: int | None = None,
) -> DayBars:
    """The day's bars of `intervals`; `built_from`: the ticks snapshot the stored bars of all
    four intervals were built from (None: unknown, rebuild the day)."""
    ticks_table = house.table(TICKS_TABLE)
    snapshot = ticks_table.current_snapshot()
    snapshot_id = snapshot.snapshot_id if snapshot is not None else None
    windows = TradeIndex(house).duplicate_windows(day)
    everything = tuple(intervals) == BAR_INTERVALS  # a span rebuild needs the stored minutes
    span = (
        changed_span(ticks_table, day, built_from)
        if built_from is not None and everything and snapshot_id is not None
        else None
    )
    if span is None:
        bars = build_all_bars(house.ticks_dataset([day]), venues, intervals, windows)
        return DayBars(bars, snapshot_id, "the whole day", windows)
    if span.empty:
        bars = {interval: house.bars_for_day(interval, day) for interval in intervals}
        return DayBars(bars, snapshot_id, "nothing (no tick changed)", windows)
    assert span.low is not None and span.high is not None
    minute = timedelta(minutes=1)
    ticks = house.ticks_dataset([day], between=(span.low - minute, span.high + minute))
    stored = house.bars_for_day("1m", day)
    bars = rebuild_span(stored, ticks, venues, span.low, span.high, windows)
    rebuilt = f"the minutes of {span.low:%H:%M:%S}–{span.high:%H:%M:%S} UTC"
    return DayBars(bars, snapshot_id, rebuilt, windows)
