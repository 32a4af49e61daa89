"""A parsed landing file into the ticks table: the conflict check that must pass first, the one
Iceberg commit, and the read-back that proves the table holds exactly the file's rows.

Every lookup is bounded by the file, not by the day it belongs to: copies of its trades are
searched for only where the trade index (storage.trade_index) says its trade_id ranges meet
another file's (`Lakehouse.trades_in`), and its rows are counted in its own data files
(`Lakehouse.file_totals`). A group of files that commits together is checked and counted with
one lookup each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from tickhouse_dagster.engine.landing_file import ParsedFile, discard_data_files
from tickhouse_dagster.quality.findings import Findings
from tickhouse_dagster.quality.tick_rules import group_trade_copies, no_copies
from tickhouse_dagster.quality.trade_ranges import copy_windows, file_id_ranges
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.staging import StagedTicks
from tickhouse_dagster.storage.trade_index import TradeIndex


@dataclass(frozen=True)
class TradeCopies:
    duplicates: Findings  # identical copies elsewhere: counted once in the bars (a warning)
    conflicts: Findings  # differing copies no correction explains: blocking


@dataclass(frozen=True)
class CommittedFile:
    commit: Commit
    parsed_rows: int
    expected_rows: int  # the parsed rows, or with corrections the rows the commit planned
    stored_rows: int  # the file's rows in the table at the commit's snapshot

    @property
    def rows_match(self) -> bool:
        return self.stored_rows == self.expected_rows and self.stored_rows <= self.parsed_rows


def trade_dates_of(staged_files: Sequence[StagedTicks]) -> set[date]:
    return {day for staged in staged_files for day in staged.trade_date_values()}


def id_ranges_of(staged: StagedTicks) -> tuple[pa.Table, pa.Table]:
    """(ranges, repeats) of a staged file: from its parsing worker, or worked out now."""
    if staged.id_ranges is None:
        staged.id_ranges = file_id_ranges(staged.dataset())
    return staged.id_ranges


def copies_of(
    house: Lakehouse, index: TradeIndex, files: Sequence[tuple[str, StagedTicks]]
) -> dict[str, TradeCopies]:
    """Copies of the trades of (landing key, staged rows) files about to commit, in this order:
    each file against the table's other files, the files before it and itself. The trade index
    tells where copies can be; only those rows are read and compared (usually none)."""
    staged = [s for _, s in files]
    keys = [key for key, _ in files]
    days = trade_dates_of(staged)
    committed = index.committed_ranges(days, excluding=keys)
    group = [(key, *id_ranges_of(s)) for key, s in files]
    own_windows, their_windows = copy_windows(group, committed)
    if not own_windows.num_rows:  # no two ranges meet: nothing to read
        return {key: TradeCopies(*no_copies(s.rows)) for key, s in files}
    filesystem, _ = fs.FileSystem.from_uri(staged[0].uri)
    paths = [fs.FileSystem.from_uri(s.uri)[1] for s in staged]
    found = group_trade_copies(
        ds.dataset(paths, format="ipc", filesystem=filesystem),
        {key: s.rows for key, s in files},
        house.trades_in(their_windows),
        house.corrections_for_days(days),
        own_windows,
    )
    return {key: TradeCopies(*pair) for key, pair in found.items()}


def group_copies_of(
    house: Lakehouse, index: TradeIndex, files: Sequence[ParsedFile]
) -> dict[str, TradeCopies]:
    """`copies_of` for parsed files."""
    keyed = [(p.key, p.staged) for p in files if p.staged is not None]
    assert len(keyed) == len(files)
    return copies_of(house, index, keyed)


def trade_copies_of(
    house: Lakehouse, index: TradeIndex, key: str, staged: StagedTicks
) -> TradeCopies:
    """`copies_of` for one file."""
    return copies_of(house, index, [(key, staged)])[key]


def commit_parsed(house: Lakehouse, index: TradeIndex, parsed: ParsedFile) -> Commit:
    """Replace the file's rows in the ticks table in one commit: its encoded data files when it
    has them and no correction touches its trade dates, else from staging with the corrections
    applied (`Lakehouse.replace_file_ticks`). Its trade ranges go in the index first."""
    staged = parsed.staged
    assert staged is not None and parsed.ok, "only a parsed file that passed its checks commits"
    index.record({parsed.key: id_ranges_of(staged)[0]})
    if parsed.data_files is not None:
        if not house.corrections_for_days(staged.trade_date_values()).num_rows:
            commit = house.commit_file_ticks(parsed.key, parsed.data_files)
            index.after_commit(commit)
            return commit
        discard_data_files(house, parsed)
    commit = house.replace_file_ticks(parsed.key, staged.batches)
    index.after_commit(commit)
    return commit


def commit_group(house: Lakehouse, index: TradeIndex, files: Sequence[ParsedFile]) -> Commit:
    """Several parsed files' encoded data files in one ticks commit (their ranges indexed
    first)."""
    index.record({p.key: id_ranges_of(p.staged)[0] for p in files if p.staged is not None})
    commit = house.commit_files_ticks({p.key: p.data_files or [] for p in files})
    index.after_commit(commit)
    return commit


def verify_commit(house: Lakehouse, parsed: ParsedFile, commit: Commit) -> CommittedFile:
    [committed] = verify_group(house, [parsed], commit)
    return committed


def verify_group(
    house: Lakehouse, parsed_files: Sequence[ParsedFile], commit: Commit
) -> list[CommittedFile]:
    """Each file's rows in the table at the commit's snapshot (one scan for a group)."""
    days = trade_dates_of([p.staged for p in parsed_files if p.staged is not None])
    stored = house.file_totals([p.key for p in parsed_files], days, commit.snapshot_id)
    committed = []
    for parsed in parsed_files:
        staged = parsed.staged
        assert staged is not None
        # Cancels leave no row and replaces stand in for other files' rows: with corrections
        # the file's rows are what the commit planned, and it planned at most the parsed rows.
        expected = staged.rows if commit.file_rows is None else commit.file_rows
        committed.append(CommittedFile(commit, staged.rows, expected, stored[parsed.key][0]))
    return committed
