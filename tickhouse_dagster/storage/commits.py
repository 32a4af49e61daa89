"""How a lakehouse table changes: one Iceberg transaction on one table (`commit`), retried from a
freshly loaded table when a concurrent writer wins the race (storage.commit_retry), and summed up
as a `Commit` record. `replace` and `replace_planned` are the delete + append shape every ticks,
corrections, bars and reference write takes. Apart from what the writes contain (corrections_plan,
ticks_writes, bar_writes), which only says what to stage in the transaction.

The lakehouse reaches these functions as `Tables` (the tables by name, reloaded on every attempt,
and their catalog identifiers), so this module never imports `storage.lakehouse`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
from pyiceberg.expressions import BooleanExpression
from pyiceberg.table import Table, Transaction

from tickhouse_dagster.compat.pyiceberg_private import CachedTransaction
from tickhouse_dagster.storage.commit_retry import Backoff, retry_commit

COMMIT_ATTEMPTS = 10
COMMIT_BACKOFF = Backoff(COMMIT_ATTEMPTS, first_delay=0.1, max_delay=5.0)


@dataclass(frozen=True)
class Commit:
    table: str
    snapshot_id: int | None
    rows_written: int
    rows_removed: int
    attempts: int
    file_rows: int | None = None  # rows the landing file holds in the table after this commit
    corrections: int = 0  # cancels / replaces the file carried
    table_rows: int | None = None  # rows the whole table holds after this commit
    # Not committed: the stored rows were built from this newer ticks snapshot (bar_builds).
    superseded_by: int | None = None


class Tables(Protocol):
    """What a commit needs of the lakehouse (`Lakehouse` is one)."""

    def table(self, name: str) -> Table:
        """Table `name` as it is now (loaded afresh from the catalog)."""
        ...

    def identifier(self, table: str) -> str: ...


def replace(
    tables: Tables,
    name: str,
    predicate: BooleanExpression,
    chunks: Callable[[], Iterable[pa.Table]],
) -> Commit:
    """Delete the rows matching `predicate` and append `chunks` in one atomic commit."""
    return replace_planned(tables, name, lambda: (predicate, chunks()))


def replace_planned(
    tables: Tables, name: str, plan: Callable[[], tuple[BooleanExpression, Iterable[pa.Table]]]
) -> Commit:
    """`replace` where what to delete and append is planned again on every attempt, from the
    tables as they are then (corrections depend on what other files committed)."""

    def apply(tx: Transaction) -> int:
        rows = 0
        predicate, chunks = plan()
        tx.delete(predicate)
        for chunk in chunks:
            if chunk.num_rows:
                tx.append(chunk)
                rows += chunk.num_rows
        return rows

    return commit(tables, name, apply)


def commit(tables: Tables, name: str, apply: Callable[[Transaction], int]) -> Commit:
    """One transaction on table `name` (`apply` stages its changes and returns the rows it
    appends), retried from a fresh table on a concurrent writer's conflict."""

    def attempt_once(attempt: int) -> Commit:
        table = tables.table(name)
        before = table.current_snapshot()
        # A first ingest deletes nothing; that is expected, not worth a warning (also not
        # when pyiceberg replays the delete on its own retry, as the commit ends).
        with warnings.catch_warnings(), CachedTransaction(table) as tx:
            warnings.filterwarnings("ignore", message="Delete operation did not match")
            rows = apply(tx)
        return _commit_summary(tables, name, table, before, rows, attempt)

    return retry_commit(name, attempt_once, COMMIT_BACKOFF)


def _commit_summary(
    tables: Tables, name: str, table: Table, before: object, rows: int, attempts: int
) -> Commit:
    before_id = getattr(before, "snapshot_id", None)
    removed = 0
    snapshot = table.current_snapshot()
    current = snapshot
    while current is not None and current.snapshot_id != before_id:
        summary = current.summary
        if summary is not None:
            removed += int(summary.additional_properties.get("deleted-records", 0))
        parent = current.parent_snapshot_id
        current = table.snapshot_by_id(parent) if parent is not None else None
    summary = snapshot.summary if snapshot else None
    total = summary.additional_properties.get("total-records") if summary else None
    return Commit(
        tables.identifier(name),
        snapshot.snapshot_id if snapshot else None,
        rows,
        removed,
        attempts,
        table_rows=int(total) if total is not None else None,
    )
