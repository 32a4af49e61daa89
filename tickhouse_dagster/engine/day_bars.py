"""A trade date's bars, rebuilt for what changed since they were last built: the minutes whose
ticks changed when the table's metadata tells which (storage.ticks_changes), else the whole day.
Either way the result equals a rebuild of the day from its ticks (market.bars.rebuild_span), so
a burst of files into a full day costs its own minutes, not the day's. What they were built from
is kept in the bar tables' snapshots (storage.bar_builds), which is also what stops a build from
older ticks replacing one from newer ticks when two run side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa

from tickhouse_dagster.core.contract import BAR_INTERVALS, TICKS_TABLE, bar_table_name
from tickhouse_dagster.market.bars import build_all_bars, rebuild_span
from tickhouse_dagster.market.reference_data import venues_fingerprint
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.bar_builds import BarBuild, build_of_ticks, built_from
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.reference_lineage import record_bars_reference
from tickhouse_dagster.storage.ticks_changes import changed_span
from tickhouse_dagster.storage.trade_index import TradeIndex


@dataclass(frozen=True)
class DayBars:
    bars: dict[str, pa.Table]
    build: BarBuild  # the ticks they were built from, and the reference data
    rebuilt: str  # what was rebuilt, for a person: "the whole day" or the span of minutes
    duplicate_windows: pa.Table  # where the day's copies can be (for the reconciliation)


@dataclass(frozen=True)
class StoredBars:
    """One interval's bars of the day after the commit (`commit.superseded_by` set: not
    committed, the stored bars were built from newer ticks) and as read back."""

    commit: Commit
    stored: pa.Table


def build_day_bars(
    house: Lakehouse,
    venues: Mapping[str, Venue],
    day: date,
    intervals: Sequence[str] = BAR_INTERVALS,
    index: TradeIndex | None = None,
) -> DayBars:
    """The day's bars of `intervals`: the changed minutes when the bar tables record what all
    four were last built from (storage.bar_builds), else the whole day. `index`: the trade
    index the caller already holds (an ingest run's, which read the day for its copy check);
    without it the day's ranges are read afresh."""
    ticks_table = house.table(TICKS_TABLE)
    build = build_of_ticks(ticks_table, day, venues_fingerprint(venues))
    windows = (index or TradeIndex(house)).duplicate_windows(day)
    everything = tuple(intervals) == BAR_INTERVALS  # a span rebuild needs the stored minutes
    since = (
        built_from({i: house.table(bar_table_name(i)) for i in BAR_INTERVALS}, day, build.reference)
        if everything and build.ticks_snapshot_id is not None
        else None
    )
    span = changed_span(ticks_table, day, since) if since is not None else None
    if span is None:
        ticks = house.ticks_dataset([day], snapshot_id=build.ticks_snapshot_id)
        bars = build_all_bars(ticks, venues, intervals, windows)
        return DayBars(bars, build, "the whole day", windows)
    if span.empty:
        bars = {interval: house.bars_for_day(interval, day) for interval in intervals}
        return DayBars(bars, build, "nothing (no tick changed)", windows)
    assert span.low is not None and span.high is not None
    minute = timedelta(minutes=1)
    ticks = house.ticks_dataset(
        [day],
        between=(span.low - minute, span.high + minute),
        snapshot_id=build.ticks_snapshot_id,
    )
    stored = house.bars_for_day("1m", day)
    bars = rebuild_span(stored, ticks, venues, span.low, span.high, windows)
    rebuilt = f"the minutes of {span.low:%H:%M:%S}–{span.high:%H:%M:%S} UTC"
    return DayBars(bars, build, rebuilt, windows)


def store_day_bars(house: Lakehouse, day: date, day_bars: DayBars) -> dict[str, StoredBars]:
    """Commit each interval's bars (unless built from older ticks than the stored ones) and
    read them back. Then `record_day_reference`: after the bars, so a crash between leaves them
    reported stale, never wrongly current."""

    def store(interval: str) -> StoredBars:
        commit = house.replace_day_bars(interval, day, day_bars.bars[interval], day_bars.build)
        # As of that commit (or of the newer build that made it pointless), not of whatever a
        # concurrent build commits next, so the checks judge one consistent state.
        return StoredBars(commit, house.bars_for_day(interval, day, commit.snapshot_id))

    # The finest bars first and alone: the candle of the minute that just closed is what an
    # intraday user waits for, and four commits side by side share the GIL, so each of them ends
    # as late as the last (measured in decision 1609). The coarser ones then commit side by side
    # (one table each, so they cannot conflict) while the finest are read back.
    finest, *coarser = sorted(day_bars.bars, key=BAR_INTERVALS.index)
    committed = house.replace_day_bars(finest, day, day_bars.bars[finest], day_bars.build)
    with ThreadPoolExecutor(max_workers=1 + len(coarser)) as pool:
        first = pool.submit(house.bars_for_day, finest, day, committed.snapshot_id)
        rest = dict(zip(coarser, pool.map(store, coarser), strict=True))
        return {finest: StoredBars(committed, first.result()), **rest}


def record_day_reference(
    house: Lakehouse, venues: Mapping[str, Venue], day: date, stored: Mapping[str, StoredBars]
) -> None:
    """Record the reference data the committed bars of `stored` were built under (not those
    skipped as built from older ticks)."""
    written = {i: s.stored for i, s in stored.items() if s.commit.superseded_by is None}
    if written:
        record_bars_reference(
            house, day, {bar_table_name(i): bars for i, bars in written.items()}, venues
        )
