"""What changed in a trade date's ticks since a snapshot: the span of trade times that every
added or removed row lies in, read from the table's own metadata — no data file is opened.

Every write to the ticks table adds or removes whole data files (pyiceberg and the Spark job
rewrite a data file whose rows change, copy-on-write), and each data file's manifest entry has
exact bounds of its `ts` column. So the rows that differ between a snapshot and the current one
all lie between the lowest lower bound and the highest upper bound of the data files that the
snapshots since added or removed. The bars of that span are the only ones that can change
(market.bars rebuilds them); the answer is None — rebuild the day — whenever it cannot be told:
the snapshot is no longer in the table's history (expired), a delete file was written, or a
bound is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import DataFileContent, ManifestEntryStatus
from pyiceberg.table import Table
from pyiceberg.types import TimestamptzType

_EPOCH = date(1970, 1, 1)
MAX_SNAPSHOTS_WALKED = 200  # further back than this, a rebuild of the day is cheaper


@dataclass(frozen=True)
class ChangedSpan:
    """Trade times [low, high] (inclusive) holding every changed row; empty when nothing
    changed for the trade date."""

    low: datetime | None = None
    high: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.low is None

    def widened(self, low: datetime, high: datetime) -> ChangedSpan:
        if self.low is None or self.high is None:
            return ChangedSpan(low, high)
        return ChangedSpan(min(self.low, low), max(self.high, high))


def changed_span(ticks: Table, trade_date: date, since_snapshot_id: int) -> ChangedSpan | None:
    """The span of `trade_date`'s rows that changed between `since_snapshot_id` and the current
    snapshot of the ticks table, or None when that cannot be told from the metadata."""
    ts_field = ticks.schema().find_field("ts").field_id
    position = [f.name for f in ticks.spec().fields].index("trade_date")
    day_value = (trade_date - _EPOCH).days
    span = ChangedSpan()
    snapshot = ticks.current_snapshot()
    walked = 0
    while snapshot is not None and snapshot.snapshot_id != since_snapshot_id:
        walked += 1
        if walked > MAX_SNAPSHOTS_WALKED:
            return None
        for manifest in snapshot.manifests(ticks.io):
            if manifest.added_snapshot_id != snapshot.snapshot_id:
                continue  # written by an earlier snapshot: its changes are counted there
            for entry in manifest.fetch_manifest_entry(ticks.io, discard_deleted=False):
                if entry.status == ManifestEntryStatus.EXISTING:
                    continue
                if entry.snapshot_id != snapshot.snapshot_id:
                    continue  # carried over into a merged manifest
                data_file = entry.data_file
                if data_file.partition[position] != day_value:
                    continue
                if data_file.content != DataFileContent.DATA:
                    return None
                low = (data_file.lower_bounds or {}).get(ts_field)
                high = (data_file.upper_bounds or {}).get(ts_field)
                if low is None or high is None:
                    return None
                span = span.widened(_instant(low), _instant(high))
        parent = snapshot.parent_snapshot_id
        snapshot = ticks.snapshot_by_id(parent) if parent is not None else None
    if snapshot is None:
        return None  # the snapshot is not an ancestor of the current one (or was expired)
    return span


def _instant(bound: bytes) -> datetime:
    micros = from_bytes(TimestamptzType(), bound)
    assert isinstance(micros, int), f"a timestamptz bound decodes to {micros!r}"
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
