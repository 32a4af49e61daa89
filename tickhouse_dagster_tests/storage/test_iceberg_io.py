"""Any asset's Iceberg table (storage.iceberg_io) on the real embedded catalog: a daily partition
replaced exactly, the whole table for an unpartitioned asset, concurrent writers, as-of reads,
streams in and out, outputs that do not fit refused with nothing written."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo

from tickhouse_dagster.core.contract import BARS_ARROW
from tickhouse_dagster.storage import iceberg_io
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.iceberg_io import IcebergTables, TableContractError
from tickhouse_dagster.storage.lakehouse import Lakehouse

D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)


def open_tables(tmp_path: Path) -> IcebergTables:
    """A lakehouse of its own (catalog connection included), as a separate run would have."""
    settings = CatalogSettings(
        "tickhouse", warehouse=str(tmp_path / "wh"), embedded_db=str(tmp_path / "c.db")
    )
    return IcebergTables(Lakehouse(load_lakehouse_catalog(settings), "market"))


def day_rows(day: date, values: list[int], symbol: str = "A") -> pa.Table:
    return pa.table(
        {
            "trade_date": pa.array([day] * len(values), pa.date32()),
            "symbol": [symbol] * len(values),
            "value": pa.array(values, pa.int64()),
        }
    )


def rows_by_day(tables: IcebergTables, name: str) -> dict[date, list[int]]:
    return rows_by_day_of(tables.read(name).rows)


def rows_by_day_of(rows: pa.Table) -> dict[date, list[int]]:
    out: dict[date, list[int]] = {}
    for row in rows.to_pylist():
        out.setdefault(row["trade_date"], []).append(row["value"])
    return {day: sorted(values) for day, values in sorted(out.items())}


def data_files(tables: IcebergTables, name: str, day: date | None = None) -> set[str]:
    table = tables.lakehouse.catalog.load_table(tables.lakehouse.identifier(name))
    scan = table.scan(row_filter=EqualTo("trade_date", day.isoformat())) if day else table.scan()
    return {task.file.file_path for task in scan.plan_files()}


def metadata_versions(tables: IcebergTables, name: str) -> int:
    """Catalog commits so far: each one writes one new metadata file."""
    table = tables.lakehouse.catalog.load_table(tables.lakehouse.identifier(name))
    return len(table.metadata.metadata_log) + 1


def parquet_files(tmp_path: Path) -> set[Path]:
    return set((tmp_path / "wh").rglob("*.parquet"))


def test_a_day_replaces_exactly_its_trade_date(tmp_path):
    tables = open_tables(tmp_path)
    tables.write("prices", day_rows(D1, [1, 2, 3]), [D1])
    tables.write("prices", day_rows(D2, [10, 20]), [D2])
    d2_files = data_files(tables, "prices", D2)
    commits = metadata_versions(tables, "prices")

    again = tables.write("prices", day_rows(D1, [7]), [D1])

    assert rows_by_day(tables, "prices") == {D1: [7], D2: [10, 20]}
    assert (again.commit.rows_written, again.commit.rows_removed) == (1, 3)
    assert again.commit.table_rows == 3 and again.trade_dates == (D1,)
    assert metadata_versions(tables, "prices") == commits + 1  # delete + append: one commit
    assert data_files(tables, "prices", D2) == d2_files  # the other day was not rewritten
    assert tables.read("prices", [D2]).rows.column("value").to_pylist() == [10, 20]
    table = tables.lakehouse.catalog.load_table("market.prices")
    assert [f.name for f in table.spec().fields] == ["trade_date"]


def test_an_empty_output_empties_its_day_only(tmp_path):
    tables = open_tables(tmp_path)
    tables.write("prices", day_rows(D1, [1]), [D1])
    tables.write("prices", day_rows(D2, [2]), [D2])
    tables.write("prices", day_rows(D1, []), [D1])
    assert rows_by_day(tables, "prices") == {D2: [2]}


def test_a_range_of_days_is_one_commit_over_those_days(tmp_path):
    tables = open_tables(tmp_path)
    for day in (D1, D2, D3):
        tables.write("prices", day_rows(day, [1]), [day])
    written = tables.write(
        "prices", pa.concat_tables([day_rows(D1, [5]), day_rows(D2, [6, 6])]), [D1, D2]
    )
    assert rows_by_day(tables, "prices") == {D1: [5], D2: [6, 6], D3: [1]}
    assert (written.commit.rows_written, written.commit.rows_removed) == (3, 2)


def test_an_unpartitioned_table_is_replaced_whole(tmp_path):
    tables = open_tables(tmp_path)
    tables.write("symbols", pa.table({"symbol": ["A", "B", "C"]}))
    written = tables.write("symbols", pa.table({"symbol": ["B", "D"]}))
    assert sorted(tables.read("symbols").rows.column("symbol").to_pylist()) == ["B", "D"]
    assert (written.commit.rows_removed, written.trade_dates) == (3, None)
    table = tables.lakehouse.catalog.load_table("market.symbols")
    assert table.spec().is_unpartitioned()


def test_rows_of_another_day_are_refused_and_nothing_is_written(tmp_path, monkeypatch):
    tables = open_tables(tmp_path)
    tables.write("prices", day_rows(D1, [1]), [D1])
    before = tables.read("prices").snapshot_id
    files = parquet_files(tmp_path)
    monkeypatch.setattr(iceberg_io, "WRITE_CHUNK_ROWS", 1)  # the D1 row is written first
    mixed = pa.concat_tables([day_rows(D1, [9]), day_rows(D2, [2]), day_rows(D3, [3])])
    with pytest.raises(
        TableContractError,
        match=r"output for 2024-01-02 holds rows of other trade dates \(2024-01-03\)",
    ):
        tables.write("prices", mixed, [D1])
    assert tables.read("prices").snapshot_id == before
    assert rows_by_day(tables, "prices") == {D1: [1]}
    assert parquet_files(tmp_path) == files  # the piece already written was deleted again


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            pa.table({"trade_date": pa.array([D1], pa.date32()), "symbol": ["A"]}),
            r"market\.prices: the output's columns differ from the table's; missing: value",
        ),
        (
            day_rows(D1, [1]).append_column("extra", pa.array([1.5])),
            r"not in the table: extra",
        ),
        (
            day_rows(D1, [1]).set_column(2, "value", pa.array(["x"])),
            r"market\.prices\.value: cannot store string as int64",
        ),
    ],
)
def test_an_output_that_does_not_fit_the_table_is_refused(tmp_path, rows, message):
    tables = open_tables(tmp_path)
    tables.write("prices", day_rows(D1, [1]), [D1])
    with pytest.raises(TableContractError, match=message):
        tables.write("prices", rows, [D1])
    assert rows_by_day(tables, "prices") == {D1: [1]}


def test_a_contract_table_keeps_its_types_and_required_columns(tmp_path):
    """Writing into a bar table: values are cast to its exact decimals, and a null in a required
    column is refused by name."""
    tables = open_tables(tmp_path)
    tables.lakehouse.ensure_tables()
    bar = {
        "venue": "KRX",
        "symbol": "005930",
        "trade_date": D1,
        "bar_start": datetime(2024, 1, 2, 0, 0, tzinfo=UTC),
        "open": Decimal("1.5"),
        "high": Decimal("2"),
        "low": Decimal("1"),
        "close": Decimal("2"),
        "volume": 10,
        "turnover": Decimal("15"),
        "vwap": Decimal("1.5"),
        "trade_count": 2,
    }
    loose = pa.Table.from_pylist([bar])  # inferred types, every column nullable
    tables.write("ohlcv_15m_test", loose, [D1])  # a new table takes the output's own types
    tables.write("ohlcv_1m", loose, [D1])
    stored = tables.read("ohlcv_1m", [D1]).rows
    assert stored.schema == BARS_ARROW and stored.to_pylist() == [bar]
    with pytest.raises(TableContractError, match=r"market\.ohlcv_1m\.vwap is required, but 1"):
        tables.write(
            "ohlcv_1m", loose.set_column(10, "vwap", pa.nulls(1, loose["vwap"].type)), [D1]
        )


def test_writers_on_different_days_of_a_new_table_all_land(tmp_path):
    open_tables(tmp_path)  # the catalog's own SQL tables exist (the table does not yet)
    errors: list[Exception] = []
    days = [D1 + timedelta(days=i) for i in range(4)]

    def write(day: date) -> None:
        try:
            open_tables(tmp_path).write("prices", day_rows(day, [day.day] * 50), [day])
        except Exception as exc:  # collected so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(day,)) for day in days]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert rows_by_day(open_tables(tmp_path), "prices") == {d: [d.day] * 50 for d in days}


def test_two_writers_planned_on_the_same_snapshot_both_land(tmp_path):
    """Both writers load the table and stage their commit before either commits (a barrier in
    front of the catalog commit): one loses the race, and retries on the new table."""
    open_tables(tmp_path).write("prices", day_rows(D1, [0]), [D1])
    barrier = threading.Barrier(2, timeout=60)
    results, errors, calls = {}, [], []

    def write(day: date) -> None:
        try:
            tables = open_tables(tmp_path)
            catalog = tables.lakehouse.catalog
            commit_table = catalog.commit_table
            waited = []

            def commit_after_the_other_planned(*args):
                calls.append(day)
                if not waited:
                    waited.append(True)
                    barrier.wait()
                return commit_table(*args)

            catalog.commit_table = commit_after_the_other_planned
            results[day] = tables.write("prices", day_rows(day, [day.day]), [day])
        except Exception as exc:  # collected so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(day,)) for day in (D2, D3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(calls) == 3  # the loser's first commit was refused, its retry landed
    assert all(r.commit.rows_written == 1 for r in results.values())
    assert rows_by_day(open_tables(tmp_path), "prices") == {D1: [0], D2: [3], D3: [4]}


def test_reads_as_of_a_snapshot_or_a_time(tmp_path):
    tables = open_tables(tmp_path)
    first = tables.write("prices", day_rows(D1, [1]), [D1])
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    tables.write("prices", day_rows(D1, [2]), [D1])

    def values(**as_of) -> list[int]:
        return tables.read("prices", [D1], **as_of).rows.column("value").to_pylist()

    assert values() == [2]
    assert values(snapshot_id=first.commit.snapshot_id) == [1]
    assert values(as_of=between) == [1]
    assert tables.read("prices", as_of=between).snapshot_id == first.commit.snapshot_id
    with pytest.raises(LookupError, match=r"market\.prices has no snapshot 123"):
        values(snapshot_id=123)
    with pytest.raises(LookupError, match="no snapshot at or before 2000-01-01"):
        values(as_of=datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="needs a time zone"):
        values(as_of=datetime(2030, 1, 1))


def test_streams_are_written_in_pieces_and_read_as_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(iceberg_io, "WRITE_CHUNK_ROWS", 100)
    tables = open_tables(tmp_path)
    batches = [day_rows(D1, list(range(i, i + 30))).to_batches()[0] for i in range(0, 300, 30)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    written = tables.write("prices", reader, [D1])
    assert written.commit.rows_written == 300
    assert len(data_files(tables, "prices")) == 3  # 300 rows written as pieces of 100+
    read = tables.read("prices", [D1], stream=True, columns=["value"])
    assert isinstance(read.rows, pa.RecordBatchReader)
    assert sorted(read.rows.read_all().column("value").to_pylist()) == list(range(300))


def test_reading_what_does_not_exist_says_so(tmp_path):
    tables = open_tables(tmp_path)
    with pytest.raises(Exception, match=r"market\.nothing does not exist: materialize"):
        tables.read("nothing")
    tables.write("prices", day_rows(D1, [1]), [D1])
    assert tables.read("prices", [D2]).rows.num_rows == 0
    with pytest.raises(TableContractError, match="has no column nope"):
        tables.read("prices", columns=["nope"])


def test_many_trade_dates_read_exactly_those_days(tmp_path):
    """Past IN_LIST_LIMIT days the scan covers their range; a day inside it that was not asked
    for is still left out."""
    tables = open_tables(tmp_path)
    for day in (D1, D2, D3):
        tables.write("prices", day_rows(day, [day.day]), [day])
    asked = [D1 - timedelta(days=i) for i in range(iceberg_io.IN_LIST_LIMIT + 10)] + [D3]
    assert rows_by_day_of(tables.read("prices", asked).rows) == {D1: [2], D3: [4]}
    streamed = tables.read("prices", asked, stream=True, columns=["value"]).rows.read_all()
    assert sorted(streamed.column("value").to_pylist()) == [2, 4]
    assert streamed.column_names == ["value"]


def test_landing_files_replace_exactly_their_rows_and_refuse_others(tmp_path):
    tables = open_tables(tmp_path)
    tables.write("per_file", day_rows(D1, [1, 2]), source_files=["a.xml"])
    tables.write("per_file", day_rows(D2, [3]), source_files=["b.xml"])
    tables.write("per_file", day_rows(D1, [4]), source_files=["a.xml"])
    rows = tables.read("per_file").rows.to_pylist()
    assert sorted((r["source_file"], r["value"]) for r in rows) == [("a.xml", 4), ("b.xml", 3)]
    # A per-file table with trade dates is partitioned by them, for daily reads downstream.
    table = tables.lakehouse.catalog.load_table("market.per_file")
    assert [f.name for f in table.spec().fields] == ["trade_date"]
    assert tables.read("per_file", [D2]).rows["value"].to_pylist() == [3]
    assert tables.read("per_file", source_files=["b.xml"]).rows["value"].to_pylist() == [3]

    before = tables.read("per_file").snapshot_id
    tagged = day_rows(D1, [5]).append_column("source_file", pa.array(["b.xml"]))
    with pytest.raises(TableContractError, match=r"holds rows of other landing files \(b\.xml\)"):
        tables.write("per_file", tagged, source_files=["a.xml"])
    with pytest.raises(TableContractError, match="needs a source_file column"):
        tables.write("two_files", day_rows(D1, [1]), source_files=["a.xml", "b.xml"])
    assert tables.read("per_file").snapshot_id == before
