"""Each ticks data file's row totals, counted once: the reconciliation's sum of a day, taken per
data file, equals the sum over the day's rows, and a build reads only the files added since."""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq
import pytest

from tickhouse_dagster.quality.bar_rules import distinct_trade_totals, row_totals
from tickhouse_dagster.storage import row_totals as row_totals_module
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_totals import RowTotalsMismatch, cache_entry
from tickhouse_dagster_tests.market.test_bars import tick
from tickhouse_dagster_tests.storage.test_lakehouse import lakehouse, parsed

DAY = date(2024, 1, 2)


def with_cache(tmp_path) -> Lakehouse:
    house = lakehouse(tmp_path)
    return Lakehouse(house.catalog, house.namespace, tmp_path / "row-totals")


def commit(house: Lakehouse, key: str, *rows: dict) -> int:
    table = parsed([dict(row, source_file=key) for row in rows])
    snapshot_id = house.replace_file_ticks(key, table.to_batches).snapshot_id
    assert snapshot_id is not None
    return snapshot_id


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The data files read to count their totals (the real reader, recorded)."""
    seen: list[str] = []
    real = pq.read_table

    def read_table(path, **options):
        seen.append(str(path))
        return real(path, **options)

    monkeypatch.setattr(row_totals_module.pq, "read_table", read_table)
    return seen


def test_a_days_totals_per_data_file_sum_to_the_totals_of_its_rows(tmp_path, reads):
    house = with_cache(tmp_path)
    commit(house, "a.xml", tick("09:00:00", "1", "100", 5), tick("09:00:01", "2", "101", 7))
    commit(
        house,
        "b.xml",
        tick("09:01:00", "3", "102", 11),
        tick("09:01:00", "1", "100", 4, symbol="000660"),
    )
    parts = house.day_row_totals(DAY)
    assert parts is not None and parts.num_rows == 3  # a.xml one symbol, b.xml two
    ticks = house.ticks_dataset([DAY])
    assert distinct_trade_totals(ticks, every_row=parts).to_pylist() == (
        distinct_trade_totals(ticks).to_pylist()
    )
    by_symbol = {
        r["symbol"]: (r["volume"], r["trade_count"]) for r in row_totals(ticks).to_pylist()
    }
    assert by_symbol == {"005930": (23, 3), "000660": (4, 1)}
    assert len(reads) == 2


def test_a_build_reads_only_the_data_files_it_has_not_counted(tmp_path, reads):
    house = with_cache(tmp_path)
    commit(house, "a.xml", tick("09:00:00", "1", "100", 5))
    first = commit(house, "b.xml", tick("09:01:00", "2", "101", 7))
    house.day_row_totals(DAY)
    assert len(reads) == 2
    commit(house, "c.xml", tick("09:02:00", "3", "102", 9))
    latest = house.day_row_totals(DAY)
    assert len(reads) == 3  # c.xml only
    assert latest is not None and sum(latest["volume"].to_pylist()) == 21
    # As of an earlier snapshot: that snapshot's files, every one already counted.
    earlier = house.day_row_totals(DAY, first)
    assert earlier is not None and sum(earlier["volume"].to_pylist()) == 12
    assert len(reads) == 3


def test_a_reingested_file_is_counted_from_its_new_data_file(tmp_path, reads):
    house = with_cache(tmp_path)
    commit(house, "a.xml", tick("09:00:00", "1", "100", 5))
    assert house.day_row_totals(DAY) is not None
    commit(house, "a.xml", tick("09:00:00", "1", "100", 8))  # the file again, another quantity
    again = house.day_row_totals(DAY)
    assert again is not None and again["volume"].to_pylist() == [8]


def test_an_unreadable_cache_entry_is_counted_again(tmp_path, reads):
    house = with_cache(tmp_path)
    commit(house, "a.xml", tick("09:00:00", "1", "100", 5))
    assert house.day_row_totals(DAY) is not None
    [task] = house.table("ticks").scan().plan_files()
    entry = cache_entry(tmp_path / "row-totals", task.file)
    entry.write_bytes(b"torn")
    again = house.day_row_totals(DAY)
    assert again is not None and again["volume"].to_pylist() == [5]
    assert len(reads) == 2


def test_a_data_file_read_with_other_rows_than_its_manifest_says_is_an_error(tmp_path):
    house = with_cache(tmp_path)
    commit(house, "a.xml", tick("09:00:00", "1", "100", 5))
    [task] = house.table("ticks").scan().plan_files()
    path = task.file.file_path.removeprefix("file://")
    rows = pq.read_table(path)
    pq.write_table(rows.slice(0, 0), path)  # the file under the table's feet, emptied
    with pytest.raises(RowTotalsMismatch, match="read 0 rows, its manifest entry says 1"):
        house.day_row_totals(DAY)


def test_without_a_cache_the_reconciliation_sums_the_rows_itself(tmp_path):
    house = lakehouse(tmp_path)
    commit(house, "a.xml", tick("09:00:00", "1", "100", 5))
    assert house.day_row_totals(DAY) is None
