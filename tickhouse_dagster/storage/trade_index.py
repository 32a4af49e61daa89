"""The trade index: where each committed landing file's trades lie (market.trade_id_ranges), so
the copy check reads the rows that can be copies and nothing else — its cost follows the file,
not the day (the 400th file of a day no longer reads the 399 before it).

The index may say more than the ticks table holds, never less: a file's ranges are recorded
before its ticks commit (a commit that then fails leaves ranges of rows that do not exist, which
only widen a lookup). Whether it is complete is checked when a trade date is first looked at in
a process: its rows must add up to the rows the ticks table's data files hold for that date. A
date that disagrees — ticks written before the index existed, by the Spark job, or with
corrections that removed rows — is rebuilt from the ticks table once. Each trade date's ranges
are rewritten as one data file, so a lookup reads one small file per date.

Within a process the ranges read are kept, for as long as every commit to the ticks table since
is one this process made itself (a concurrent writer's commit drops them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import BooleanExpression

from tickhouse_dagster.core.contract import (
    TICKS_TABLE,
    TRADE_ID_RANGES_ARROW,
    TRADE_ID_RANGES_TABLE,
)
from tickhouse_dagster.quality.trade_ranges import (
    committed_id_ranges,
    duplicate_windows,
    ranges_by_file,
)
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_filters import is_in


class TradeIndex:
    def __init__(self, house: Lakehouse) -> None:
        self.house = house
        self._days: dict[date, pa.Table] = {}
        self._seen: int | None = None  # the ticks snapshot the kept ranges agree with
        self._ours: set[int] = set()  # ticks snapshots this process committed

    def committed_ranges(self, days: Iterable[date], excluding: Sequence[str]) -> pa.Table:
        """Ranges of the files in the ticks table on these trade dates, but `excluding`."""
        days = sorted(set(days))
        self._follow_ticks()
        missing = [d for d in days if d not in self._days]
        if missing:
            self._load(missing)
        found = [self._days[d] for d in days]
        rows = pa.concat_tables(found) if found else TRADE_ID_RANGES_ARROW.empty_table()
        if excluding and rows.num_rows:
            rows = rows.filter(pc.invert(pc.is_in(rows["source_file"], pa.array(excluding))))
        return rows

    def duplicate_windows(self, day: date) -> pa.Table:
        """Where the trade date's rows can repeat a key (trade_ranges.duplicate_windows)."""
        return duplicate_windows(self.committed_ranges([day], excluding=[]))

    def record(self, ranges: Mapping[str, pa.Table]) -> None:
        """Before the files' ticks commit: their ranges replace any they had, in one commit that
        rewrites each trade date it touches as one data file."""
        new = ranges_by_file(ranges)
        if not new.num_rows:
            return
        days = sorted(set(new["trade_date"].to_pylist()))
        merged: dict[date, pa.Table] = {}

        def plan() -> tuple[BooleanExpression, list[pa.Table]]:
            # Planned on each attempt from the index as it is then: a concurrent writer's
            # ranges (its commit is why the attempt failed) are kept.
            current = self._stored(days)
            kept = current.filter(pc.invert(pc.is_in(current["source_file"], pa.array(ranges))))
            rows = pa.concat_tables([kept, new])
            merged.clear()
            merged.update(_by_day(rows, days))
            return _on_days(days), [rows]

        self.house.replace_planned(TRADE_ID_RANGES_TABLE, plan)
        for day in days:
            if day in self._days:
                self._days[day] = merged[day]

    def after_commit(self, commit: Commit) -> None:
        """Note a ticks commit this process made (the kept ranges stay valid across it)."""
        if commit.snapshot_id is not None:
            self._ours.add(commit.snapshot_id)

    def _follow_ticks(self) -> None:
        """Drop the kept ranges if anyone else committed to the ticks table since they were
        read: walk back from the current snapshot to the one seen, through ours only."""
        table = self.house.table(TICKS_TABLE)
        current = table.current_snapshot()
        snapshot_id = current.snapshot_id if current is not None else None
        walked = snapshot_id
        while walked != self._seen:
            if walked is None or walked not in self._ours:
                self._days.clear()
                break
            snapshot = table.snapshot_by_id(walked)
            walked = snapshot.parent_snapshot_id if snapshot is not None else None
        self._seen = snapshot_id
        self._ours.clear()

    def _load(self, days: list[date]) -> None:
        stored = _by_day(self._stored(days), days)
        held = self.house.day_row_counts(days)
        stale = [d for d in days if held is None or _rows(stored[d]) != held.get(d, 0)]
        if stale:
            rebuilt = self._rebuild(stale)
            stored.update(rebuilt)
        self._days.update(stored)

    def _rebuild(self, days: list[date]) -> dict[date, pa.Table]:
        """The dates' ranges from the ticks table itself, written back as the index."""
        rows = committed_id_ranges(self.house.ticks_dataset(days))
        self.house.replace_planned(TRADE_ID_RANGES_TABLE, lambda: (_on_days(days), [rows]))
        return _by_day(rows, days)

    def _stored(self, days: list[date]) -> pa.Table:
        table = self.house.table(TRADE_ID_RANGES_TABLE)
        if table.current_snapshot() is None:
            return TRADE_ID_RANGES_ARROW.empty_table()
        scan = table.scan(row_filter=_on_days(days))
        return scan.to_arrow().select(TRADE_ID_RANGES_ARROW.names).cast(TRADE_ID_RANGES_ARROW)


def _on_days(days: Sequence[date]) -> BooleanExpression:
    return is_in("trade_date", [d.isoformat() for d in days])


def _by_day(rows: pa.Table, days: Iterable[date]) -> dict[date, pa.Table]:
    found: dict[date, list[int]] = defaultdict(list)
    for index, day in enumerate(rows["trade_date"].to_pylist()):
        found[day].append(index)
    return {d: rows.take(pa.array(found.get(d, []), pa.int64())) for d in days}


def _rows(ranges: pa.Table) -> int:
    return int(pc.sum(ranges["rows"]).as_py() or 0) if ranges.num_rows else 0
