"""Table maintenance on the embedded lakehouse: compaction keeps every row and bar; expiry keeps
the time-travel window and deletes only files no remaining snapshot references; a concurrent
ticks commit never loses or doubles rows whichever side wins."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import EqualTo

from tickhouse_dagster.core.contract import BAR_INTERVALS, bar_table_name
from tickhouse_dagster.engine import catch_up
from tickhouse_dagster.engine.batch import ingest_paths, rebuild_day_bars
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster.settings import TickhouseSettings
from tickhouse_dagster.storage.commits import replace
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.maintenance import (
    compact_once,
    compact_trade_date,
    expire_snapshots,
    retention_window,
)
from tickhouse_dagster.storage.ticks_writes import ticks_from_parsed
from tickhouse_dagster_tests.market.test_bars import tick
from tickhouse_dagster_tests.storage.test_lakehouse import lakehouse, parsed
from tickhouse_dagster_tests.tables import data_file_count, rows_of

DAY1, DAY2 = date(2024, 1, 2), date(2024, 1, 3)
FILES_PER_DAY = 12
TABLES = ["ticks", *(bar_table_name(i) for i in BAR_INTERVALS)]


@pytest.fixture
def house(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lakehouse:
    """Two trading days, twelve landing files each: 24 per-file ticks commits (as files
    trickling in one at a time commit), then bars."""
    monkeypatch.setattr(catch_up, "MAX_GROUP_FILES", 1)
    house = lakehouse(tmp_path)
    spec = SampleSpec(days=2, symbols=3, ticks_per_day=3000, files_per_day=FILES_PER_DAY)
    paths = generate(spec, tmp_path / "landing")
    ingest_paths(paths, tmp_path / "landing", house, tmp_path / "staging", workers=2)
    return house


@pytest.fixture
def day_house(tmp_path: Path) -> Lakehouse:
    """One trading day in six landing files: enough for the races, quicker to build."""
    house = lakehouse(tmp_path)
    spec = SampleSpec(symbols=2, ticks_per_day=1200, files_per_day=6)
    paths = generate(spec, tmp_path / "landing")
    ingest_paths(paths, tmp_path / "landing", house, tmp_path / "staging", workers=2)
    return house


def everything(house: Lakehouse) -> dict[str, pa.Table]:
    return {name: rows_of(house.table(name)) for name in TABLES}


def test_compaction_rewrites_a_day_into_one_file_with_identical_rows_and_bars(house, venues):
    before = everything(house)
    ticks = house.table("ticks")
    snapshot_before = ticks.current_snapshot().snapshot_id
    assert data_file_count(ticks, DAY1) == FILES_PER_DAY

    results = {name: compact_trade_date(house, name, DAY1) for name in TABLES}

    ticks_result = results["ticks"]
    assert (ticks_result.files_before, ticks_result.files_after) == (FILES_PER_DAY, 1)
    assert ticks_result.rows_before == ticks_result.rows_after == 3000
    # Appends merge small manifests as they come (decision 1301): 24 commits left fewer than 24
    # manifests, and the compaction adds at most its own.
    assert ticks_result.manifests_before < 2 * FILES_PER_DAY
    assert ticks_result.manifests_after <= ticks_result.manifests_before + 1
    assert ticks_result.skipped is None
    ticks = house.table("ticks")
    assert data_file_count(ticks, DAY1) == 1
    assert data_file_count(ticks, DAY2) == FILES_PER_DAY  # the other day is untouched
    # Bars have one file per day already: nothing to rewrite, said so.
    assert all(results[bar_table_name(i)].skipped for i in BAR_INTERVALS)
    # Every column of every row of every table, before and after.
    after = everything(house)
    for name in TABLES:
        assert after[name].equals(before[name]), name
    # Bars rebuilt from the compacted ticks are the same bars.
    rebuild_day_bars(house, DAY1, venues, {})
    assert everything(house) == after
    # Time travel to the snapshot before the compaction still reads the old files.
    assert rows_of(ticks, snapshot_before).equals(before["ticks"])
    # Compacting again finds one file and leaves the table alone.
    again = compact_trade_date(house, "ticks", DAY1)
    assert again.skipped and house.table("ticks").current_snapshot().snapshot_id == (
        ticks.current_snapshot().snapshot_id
    )


def test_expiry_keeps_the_window_and_deletes_only_unreferenced_files(house):
    compact_trade_date(house, "ticks", DAY1)
    ticks = house.table("ticks")
    current_rows = rows_of(ticks)
    snapshots = sorted(ticks.snapshots(), key=lambda s: s.timestamp_ms)
    assert len(snapshots) == 2 * FILES_PER_DAY + 2  # + the compaction's delete and append
    # "Now" is one window after the 10th snapshot: the nine before it are outside the window.
    pivot = snapshots[9]
    window = timedelta(hours=168)
    now = datetime.fromtimestamp(pivot.timestamp_ms / 1000, UTC) + window
    older = [s for s in snapshots if s.timestamp_ms < pivot.timestamp_ms]
    inside = [s for s in snapshots if s.timestamp_ms >= pivot.timestamp_ms]
    assert older and inside
    rows_inside = {s.snapshot_id: rows_of(ticks, s.snapshot_id).num_rows for s in inside}

    result = expire_snapshots(house, "ticks", retention=window, retain_last=1, now=now)

    assert (result.snapshots_before, result.expired) == (len(snapshots), len(older))
    assert result.snapshots_after == len(inside)
    # The expired snapshots' manifest lists at least, and the day-1 files the compaction replaced
    # only once no remaining snapshot references them.
    assert result.files_deleted >= len(older)
    ticks = house.table("ticks")
    assert {s.snapshot_id for s in ticks.snapshots()} == set(rows_inside)
    for snapshot_id, rows in rows_inside.items():  # time travel inside the window still works
        assert rows_of(ticks, snapshot_id).num_rows == rows
    with pytest.raises(ValueError):
        ticks.scan(snapshot_id=older[0].snapshot_id).to_arrow()
    assert rows_of(ticks).equals(current_rows)

    # Everything older than "now" except the newest three: the floor of retain_last holds.
    result = expire_snapshots(house, "ticks", retention=timedelta(0), retain_last=3)
    ticks = house.table("ticks")
    assert len(ticks.snapshots()) == result.snapshots_after == 3
    assert ticks.current_snapshot().snapshot_id in {s.snapshot_id for s in ticks.snapshots()}
    assert rows_of(ticks).equals(current_rows)
    # Only files the current snapshot no longer needs went: no live data file is missing.
    for task in ticks.scan().plan_files():
        assert Path(task.file.file_path.removeprefix("file://")).exists()


def test_retention_window_of_the_setting_and_its_default():
    default = TickhouseSettings.from_env({}).snapshot_retention_hours
    assert retention_window(default) == timedelta(hours=168)
    hours = TickhouseSettings.from_env({"TICKHOUSE_SNAPSHOT_RETENTION_HOURS": "36"})
    assert retention_window(hours.snapshot_retention_hours) == timedelta(hours=36)
    with pytest.raises(ValueError, match="retention"):
        retention_window(-1)


def extra_ticks(source: str, ids: range, quantity: int = 1) -> pa.Table:
    return parsed(
        [tick("10:00:00", f"x{i}", "70000", quantity, source=source, day=DAY1) for i in ids]
    )


def keyed(table: pa.Table) -> list[tuple]:
    return sorted(
        (r["source_file"], r["trade_id"], r["quantity"])
        for r in table.select(["source_file", "trade_id", "quantity"]).to_pylist()
    )


def test_a_ticks_commit_landing_during_compaction_fails_the_compaction_not_the_rows(day_house):
    stale = day_house.table("ticks")  # the compaction has read the day's files from this snapshot
    day_house.replace_file_ticks("late.xml", extra_ticks("late.xml", range(3)).to_batches)
    expected = keyed(rows_of(day_house.table("ticks")))

    with pytest.raises((ValidationException, CommitFailedException)):
        compact_once(stale, DAY1)
    assert keyed(rows_of(day_house.table("ticks"))) == expected

    result = compact_trade_date(day_house, "ticks", DAY1)  # from the current table: succeeds
    assert result.files_after == 1 and result.rows_after == result.rows_before
    assert keyed(rows_of(day_house.table("ticks"))) == expected


def test_a_reingest_planned_before_a_compaction_cannot_double_its_rows(day_house):
    source = day_house.ticks_for_days([DAY1]).column("source_file")[0].as_py()
    stale = day_house.table("ticks")  # a re-ingest of `source` planned on this snapshot
    compact_trade_date(day_house, "ticks", DAY1)  # ... then the compaction commits first
    corrected = ticks_from_parsed(extra_ticks(source, range(2), quantity=9), datetime.now(UTC))
    with pytest.raises((ValidationException, CommitFailedException)), stale.transaction() as tx:
        tx.delete(f"source_file == '{source}'")
        tx.append(corrected)
    # Started again from the current table (storage.commits.replace does): exactly the new rows.
    day_house.replace_file_ticks(source, extra_ticks(source, range(2), quantity=9).to_batches)
    rows = [r for r in keyed(rows_of(day_house.table("ticks"))) if r[0] == source]
    assert rows == [(source, "x0", 9), (source, "x1", 9)]


def test_a_reingest_whose_commit_races_a_compaction_starts_again(day_house):
    """The compaction commits between the re-ingest's delete plan and its commit: the rows to
    append are produced after the table is loaded, and producing them runs the compaction first.
    `storage.commits.replace` is the one commit loop every ticks and bars write goes through."""
    source = day_house.ticks_for_days([DAY1]).column("source_file")[0].as_py()
    others = [r for r in keyed(rows_of(day_house.table("ticks"))) if r[0] != source]
    corrected = ticks_from_parsed(extra_ticks(source, range(2), quantity=9), datetime.now(UTC))
    compactions = []

    def chunks() -> list[pa.Table]:
        if not compactions:
            compactions.append(compact_trade_date(Lakehouse(day_house.catalog), "ticks", DAY1))
        return [corrected]

    commit = replace(day_house, "ticks", EqualTo("source_file", source), chunks)
    assert compactions[0].files_after == 1
    assert commit.attempts == 2  # the first plan was stale: validation refused it, no rows lost
    assert keyed(rows_of(day_house.table("ticks"))) == sorted(
        [*others, (source, "x0", 9), (source, "x1", 9)]
    )


def test_compaction_and_reingests_in_parallel_end_with_exactly_the_latest_rows(day_house):
    """Real threads on one SQLite catalog: whoever loses a race starts again; rows are exact."""
    sources = sorted(set(day_house.ticks_for_days([DAY1]).column("source_file").to_pylist()))[:4]
    errors: list[Exception] = []

    def reingest() -> None:
        try:
            mine = Lakehouse(day_house.catalog, day_house.namespace)
            for round_ in range(3):
                for source in sources:
                    rows = extra_ticks(source, range(round_ + 1), quantity=round_ + 1)
                    mine.replace_file_ticks(source, rows.to_batches)
        except Exception as exc:  # collected so the assertion shows it
            errors.append(exc)

    def compact() -> None:
        try:
            mine = Lakehouse(day_house.catalog, day_house.namespace)
            for _ in range(3):
                compact_trade_date(mine, "ticks", DAY1)
        except Exception as exc:
            errors.append(exc)

    untouched = [r for r in keyed(rows_of(day_house.table("ticks"))) if r[0] not in sources]
    threads = [threading.Thread(target=reingest), threading.Thread(target=compact)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    final = keyed(rows_of(day_house.table("ticks")))
    latest = sorted((s, f"x{i}", 3) for s in sources for i in range(3))
    assert final == sorted(untouched + latest)
