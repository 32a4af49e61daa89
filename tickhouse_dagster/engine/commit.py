"""A parsed landing file into the ticks table: the conflict check that must pass first, the one
Iceberg commit, and the read-back that proves the table holds exactly the file's rows.

Every lookup is bounded by the file, not by the day it belongs to: copies of its trades are
searched for in the data files whose trade_id bounds overlap the file's (`Lakehouse.trades_near`),
and its rows are counted in its own data files (`Lakehouse.file_totals`). A group of files that
commits together is checked and counted with one lookup each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from tickhouse_dagster.engine.landing_file import ParsedFile
from tickhouse_dagster.quality.findings import Findings
from tickhouse_dagster.quality.tick_rules import group_trade_copies
from tickhouse_dagster.storage.lakehouse import Commit, Lakehouse
from tickhouse_dagster.storage.staging import StagedTicks


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


def id_ranges(staged_files: Sequence[StagedTicks]) -> list[tuple[date, str, str]]:
    """(trade date, lowest trade_id, highest trade_id) the files span, per trade date."""
    bounds: dict[date, tuple[str, str]] = {}
    for staged in staged_files:
        for batch in staged.batches():
            table = pa.Table.from_batches([batch]).select(["trade_date", "trade_id"])
            grouped = table.group_by("trade_date").aggregate(
                [("trade_id", "min"), ("trade_id", "max")]
            )
            for row in grouped.to_pylist():
                day, low, high = row["trade_date"], row["trade_id_min"], row["trade_id_max"]
                if day in bounds:
                    low, high = min(low, bounds[day][0]), max(high, bounds[day][1])
                bounds[day] = (low, high)
    return [(day, low, high) for day, (low, high) in sorted(bounds.items())]


def copies_of(house: Lakehouse, files: Sequence[tuple[str, StagedTicks]]) -> dict[str, TradeCopies]:
    """Copies of the trades of (landing key, staged rows) files about to commit, in this order:
    each file against the table's other files, the files before it and itself — one lookup of
    the table's rows near the files' trade ids and one query, for one file or a group."""
    staged = [s for _, s in files]
    others = house.trades_near(id_ranges(staged), excluding=[key for key, _ in files])
    corrected = house.corrections_for_days(trade_dates_of(staged))
    filesystem, _ = fs.FileSystem.from_uri(staged[0].uri)
    paths = [fs.FileSystem.from_uri(s.uri)[1] for s in staged]
    own = ds.dataset(paths, format="ipc", filesystem=filesystem)
    found = group_trade_copies(own, {key: s.rows for key, s in files}, others, corrected)
    return {key: TradeCopies(*pair) for key, pair in found.items()}


def group_copies_of(house: Lakehouse, files: Sequence[ParsedFile]) -> dict[str, TradeCopies]:
    """`copies_of` for parsed files."""
    keyed = [(p.key, p.staged) for p in files if p.staged is not None]
    assert len(keyed) == len(files)
    return copies_of(house, keyed)


def trade_copies_of(house: Lakehouse, key: str, staged: StagedTicks) -> TradeCopies:
    """`copies_of` for one file."""
    return copies_of(house, [(key, staged)])[key]


def commit_parsed(house: Lakehouse, parsed: ParsedFile) -> Commit:
    """Replace the file's rows in the ticks table in one commit: its encoded data files when it
    has them and no correction touches its trade dates, else from staging with the corrections
    applied (`Lakehouse.replace_file_ticks`)."""
    staged = parsed.staged
    assert staged is not None and parsed.ok, "only a parsed file that passed its checks commits"
    if parsed.data_files is not None:
        if not house.corrections_for_days(staged.trade_date_values()).num_rows:
            return house.commit_file_ticks(parsed.key, parsed.data_files)
        discard_data_files(house, parsed)
    return house.replace_file_ticks(parsed.key, staged.batches)


def discard_data_files(house: Lakehouse, parsed: ParsedFile) -> None:
    """Delete data files encoded for a file that will not commit them."""
    if parsed.data_files:
        io = house.table("ticks").io
        for data_file in parsed.data_files:
            io.delete(data_file.file_path)
    parsed.data_files = None


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
