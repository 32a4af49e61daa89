"""Table maintenance: compact one trade date's small files, expire old snapshots.

Every landing file is one Iceberg commit, so a trading day of the ticks table ends up as many
small Parquet files (one per file, more after re-ingests) and many snapshots, manifests and
metadata versions. Readers pay for each file and manifest. Two operations undo that:

- `compact_trade_date`: rewrite one `trade_date` partition as few files as the table's target
  file size allows, in ONE transaction (delete `trade_date = D` + append the same rows read from
  the very snapshot the delete is planned against). pyiceberg 0.12 has no rewrite-data-files API;
  this is the honest equivalent. Rows are identical before and after (checked before the method
  returns). A concurrent writer that touches the same day makes one of the two commits fail
  validation (pyiceberg's serializable isolation on `trade_date = D`), so rows are never lost or
  doubled; the loser starts again from the new table state.
- `expire_snapshots`: drop snapshots older than the time-travel window (always keeping the
  current one and the last `retain_last`), with pyiceberg's `table.maintenance.expire_snapshots()`,
  then delete the data files, manifests and manifest lists only the expired snapshots referenced
  (pyiceberg removes the snapshots from the metadata but deletes no file itself).

Neither deletes orphan files a failed write left behind (files no snapshot ever referenced):
finding those means listing the warehouse, which pyiceberg does not do; see docs/maintenance.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from pyiceberg.expressions import BooleanExpression
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from tickhouse_dagster.compat.pyiceberg_private import CachedTransaction
from tickhouse_dagster.storage.commit_retry import Backoff, retry_commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_filters import equal_to

log = logging.getLogger(__name__)
T = TypeVar("T")

MAINTENANCE_ATTEMPTS = 5
MAINTENANCE_BACKOFF = Backoff(MAINTENANCE_ATTEMPTS, first_delay=0.2, max_delay=10.0)
# Marks compaction commits, so a reader of the snapshot history can tell them from data changes.
MAINTENANCE_PROPERTY = "tickhouse.maintenance"


class CompactionMismatch(RuntimeError):
    """The compacted partition does not hold exactly the rows it held before (never expected)."""


@dataclass(frozen=True)
class Compaction:
    table: str
    trade_date: date
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int
    bytes_before: int
    bytes_after: int
    manifests_before: int
    manifests_after: int
    snapshot_id: int | None
    attempts: int
    skipped: str | None = None  # why nothing was rewritten


@dataclass(frozen=True)
class Expiry:
    table: str
    snapshots_before: int
    snapshots_after: int
    expired: int
    files_deleted: int
    cutoff: datetime


def _day_filter(day: date) -> BooleanExpression:
    return equal_to("trade_date", day.isoformat())


def _manifest_count(table: Table, snapshot: Snapshot | None) -> int:
    return len(snapshot.manifests(table.io)) if snapshot is not None else 0


def _sort_columns(table: Table) -> list[str]:
    schema = table.schema()
    return [schema.find_column_name(f.source_id) or "" for f in table.sort_order().fields]


def compact_once(table: Table, day: date, attempt: int = 1, min_files: int = 2) -> Compaction:
    """One compaction attempt on `table` as loaded (no retry): raises CommitFailedException or
    ValidationException when a concurrent commit conflicts, leaving the table as it was."""
    name = ".".join(table.name())
    snapshot = table.current_snapshot()
    if snapshot is None:
        return Compaction(name, day, 0, 0, 0, 0, 0, 0, 0, 0, None, attempt, "table is empty")
    tasks = list(
        table.scan(snapshot_id=snapshot.snapshot_id, row_filter=_day_filter(day)).plan_files()
    )
    files = [t.file for t in tasks]
    rows_before = sum(f.record_count for f in files)
    bytes_before = sum(f.file_size_in_bytes for f in files)
    manifests_before = _manifest_count(table, snapshot)
    has_deletes = any(t.delete_files for t in tasks)
    if len(files) < min_files and not has_deletes:
        reason = f"{len(files)} data file(s), nothing to compact"
        return Compaction(
            name, day, len(files), len(files), rows_before, rows_before, bytes_before,
            bytes_before, manifests_before, manifests_before, snapshot.snapshot_id, attempt, reason,
        )  # fmt: skip
    # Read from exactly the snapshot the delete below is planned against: the transaction starts
    # from this same loaded metadata, so "deleted" and "re-appended" are the same rows.
    rows = table.scan(snapshot_id=snapshot.snapshot_id, row_filter=_day_filter(day)).to_arrow()
    if not has_deletes and rows.num_rows != rows_before:
        raise CompactionMismatch(f"{name} {day}: manifests say {rows_before}, read {rows.num_rows}")
    rows_before = rows.num_rows
    sort = [c for c in _sort_columns(table) if c in rows.column_names]
    if sort:  # the table's sort order: smaller files, tighter min/max for readers' pruning
        rows = rows.sort_by([(c, "ascending") for c in sort])
    # The project's transaction: pyiceberg's own deep-copies the table's history on every read
    # of its staged metadata (decision 1603).
    with CachedTransaction(table) as tx:
        tx.overwrite(
            rows,
            overwrite_filter=_day_filter(day),
            snapshot_properties={MAINTENANCE_PROPERTY: f"compact {day.isoformat()}"},
        )
    after = table.current_snapshot()
    assert after is not None
    new_files = [
        t.file
        for t in table.scan(snapshot_id=after.snapshot_id, row_filter=_day_filter(day)).plan_files()
    ]
    rows_after = sum(f.record_count for f in new_files)
    if rows_after != rows_before:
        # Not reachable unless pyiceberg misplans; fail loudly so the snapshot can be rolled back.
        raise CompactionMismatch(
            f"{name} {day}: {rows_before} rows before compaction, {rows_after} after "
            f"(snapshot {after.snapshot_id})"
        )
    return Compaction(
        name,
        day,
        len(files),
        len(new_files),
        rows_before,
        rows_after,
        bytes_before,
        sum(f.file_size_in_bytes for f in new_files),
        manifests_before,
        _manifest_count(table, after),
        after.snapshot_id,
        attempt,
    )


def compact_trade_date(
    house: Lakehouse, table_name: str, day: date, min_files: int = 2
) -> Compaction:
    """Rewrite one trade date of a table into as few files as its target file size allows."""
    return retry_commit(
        table_name,
        lambda attempt: compact_once(house.table(table_name), day, attempt, min_files),
        MAINTENANCE_BACKOFF,
    )


def retention_window(hours: float) -> timedelta:
    """The time-travel window of `hours` (TICKHOUSE_SNAPSHOT_RETENTION_HOURS by default)."""
    if hours < 0:
        raise ValueError(f"snapshot retention must be >= 0 hours, got {hours}")
    return timedelta(hours=hours)


def _referenced_files(table: Table, snapshots: Iterable[Snapshot]) -> set[str]:
    """Manifest lists, manifests and data/delete files the snapshots reference. Manifest entries
    of every status count (also DELETED ones), so a file is only ever considered unreferenced
    once no remaining snapshot mentions it at all."""
    paths: set[str] = set()
    seen_manifests: set[str] = set()
    for snapshot in snapshots:
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            paths.add(manifest.manifest_path)
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                paths.add(entry.data_file.file_path)
    return paths


def _expire_once(
    house: Lakehouse,
    table_name: str,
    cutoff: datetime,
    retain_last: int,
    delete_files: bool,
) -> Expiry:
    table = house.table(table_name)
    name = ".".join(table.name())
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    keep = {s.snapshot_id for s in snapshots[-retain_last:]} if retain_last > 0 else set()
    # Branch and tag heads (the current snapshot is main's head) are never expired.
    keep |= {ref.snapshot_id for ref in table.metadata.refs.values()}
    cutoff_ms = int(cutoff.timestamp() * 1000)
    expired = [s for s in snapshots if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep]
    if not expired:
        return Expiry(name, len(snapshots), len(snapshots), 0, 0, cutoff)
    candidates = _referenced_files(table, expired) if delete_files else set()
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in expired]).commit()
    # What the remaining snapshots reference is read from the catalog after the commit, so a
    # snapshot a concurrent writer added meanwhile protects its files too.
    remaining = house.table(table_name)
    deleted = 0
    if candidates:
        for path in sorted(candidates - _referenced_files(remaining, remaining.snapshots())):
            remaining.io.delete(path)
            deleted += 1
    return Expiry(name, len(snapshots), len(remaining.snapshots()), len(expired), deleted, cutoff)


def expire_snapshots(
    house: Lakehouse,
    table_name: str,
    retention: timedelta,
    retain_last: int,
    now: datetime | None = None,
    delete_files: bool = True,
) -> Expiry:
    """Expire the snapshots of a table older than `retention` (time travel keeps working inside
    the window), keeping the current snapshot and the last `retain_last` whatever their age; with
    `delete_files`, delete the files only expired snapshots referenced."""
    cutoff = (now or datetime.now(UTC)) - retention
    return retry_commit(
        table_name,
        lambda attempt: _expire_once(house, table_name, cutoff, retain_last, delete_files),
        MAINTENANCE_BACKOFF,
    )
