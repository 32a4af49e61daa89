"""Which ticks a trade date's stored bars were built from, kept in the bar tables' own snapshots.

Every bar commit of a trade date records, in its Iceberg snapshot summary, the ticks snapshot it
was built from (id and sequence number) and the venues' reference data it was built under. Two
things follow from the table alone, with no other store to keep in step:

- where the next build can start (`built_from`): the span of ticks changed since that snapshot
  (storage.ticks_changes), when all four intervals were last built together under the same
  reference data;
- whether a build is still worth committing (`superseded`): builds of one day may run side by
  side (the ingest run that committed a file builds its days' bars; so may a rebuild run), and
  one that read older ticks must not replace bars built from newer ones. The check runs inside
  the commit's transaction, so a concurrent bar commit makes the commit retry and check again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata

MAX_SNAPSHOTS_WALKED = 400  # four tables, one or two snapshots per build: months of trickles
_DAY = "tickhouse.trade-date"
_SNAPSHOT = "tickhouse.ticks-snapshot-id"
_SEQUENCE = "tickhouse.ticks-sequence"
_REFERENCE = "tickhouse.reference-data"


@dataclass(frozen=True)
class BarBuild:
    """What one day's bars were built from: a ticks snapshot (its id and sequence number, which
    orders snapshots) under a state of the venues' reference data (its fingerprint)."""

    trade_date: date
    ticks_snapshot_id: int | None
    ticks_sequence: int
    reference: str

    def properties(self) -> dict[str, str]:
        return {
            _DAY: self.trade_date.isoformat(),
            _SNAPSHOT: "" if self.ticks_snapshot_id is None else str(self.ticks_snapshot_id),
            _SEQUENCE: str(self.ticks_sequence),
            _REFERENCE: self.reference,
        }

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> BarBuild | None:
        day, sequence = properties.get(_DAY), properties.get(_SEQUENCE, "")
        if day is None or not sequence.isdigit():
            return None
        snapshot = properties.get(_SNAPSHOT, "")
        return cls(
            date.fromisoformat(day),
            int(snapshot) if snapshot.lstrip("-").isdigit() else None,
            int(sequence),
            properties.get(_REFERENCE, ""),
        )


def build_of_ticks(ticks: Table, trade_date: date, reference: str) -> BarBuild:
    """The record of a build of `trade_date` from the ticks table as it is now."""
    snapshot = ticks.current_snapshot()
    if snapshot is None:
        return BarBuild(trade_date, None, 0, reference)
    return BarBuild(trade_date, snapshot.snapshot_id, snapshot.sequence_number or 0, reference)


def last_build(metadata: TableMetadata, trade_date: date) -> BarBuild | None:
    """The latest build of `trade_date` recorded in a bar table's history (None: none within
    the snapshots kept, e.g. bars written before builds were recorded, or expired)."""
    by_id = {s.snapshot_id: s for s in metadata.snapshots}
    snapshot = by_id.get(metadata.current_snapshot_id or -1)
    walked = 0
    day = trade_date.isoformat()
    while snapshot is not None and walked < MAX_SNAPSHOTS_WALKED:
        walked += 1
        properties = snapshot.summary.additional_properties if snapshot.summary else {}
        if properties.get(_DAY) == day:
            return BarBuild.from_properties(properties)
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    return None


def superseded(metadata: TableMetadata, build: BarBuild) -> BarBuild | None:
    """The stored build that makes committing `build` pointless (built from newer ticks), or
    None when `build` may replace what is stored."""
    stored = last_build(metadata, build.trade_date)
    if stored is not None and stored.ticks_sequence > build.ticks_sequence:
        return stored
    return None


def built_from(tables: Mapping[str, Table], trade_date: date, reference: str) -> int | None:
    """The ticks snapshot the day's bars of every table in `tables` (all intervals) were last
    built from, when they all agree and were built under `reference`; else None (rebuild the
    whole day)."""
    builds = {last_build(t.metadata, trade_date) for t in tables.values()}
    if len(builds) != 1:
        return None
    [build] = builds
    if build is None or build.reference != reference:
        return None
    return build.ticks_snapshot_id


def behind(
    ticks: Table, bars: Mapping[str, Table], touched: Mapping[date, int | None]
) -> set[date]:
    """The trade dates of `touched` (day → the ticks snapshot a commit that touched it made)
    whose stored bars, in some table of `bars`, were not built from that snapshot or a later
    one: those need a build. A snapshot no longer in the ticks table's history counts as not
    built (a build too many is harmless, a missing one is not)."""
    by_id = {s.snapshot_id: s for s in ticks.metadata.snapshots}
    stale = set()
    for day, snapshot_id in touched.items():
        made = by_id.get(snapshot_id) if snapshot_id is not None else None
        if made is None:
            stale.add(day)
            continue
        for table in bars.values():
            build = last_build(table.metadata, day)
            if build is None or build.ticks_sequence < (made.sequence_number or 0):
                stale.add(day)
                break
    return stale
