"""Iceberg writes: a file's rows replaced in one commit; a day's bars replaced; tables as contracted."""

from __future__ import annotations

import threading
from datetime import date

import pyarrow as pa
from pyiceberg.types import DateType, DecimalType, TimestamptzType

from tickhouse_dagster.core.contract import PARSED_TICKS_ARROW
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster_tests.market.test_bars import tick


def lakehouse(tmp_path) -> Lakehouse:
    catalog = load_lakehouse_catalog(
        CatalogSettings(
            "tickhouse", warehouse=str(tmp_path / "wh"), embedded_db=str(tmp_path / "c.db")
        )
    )
    house = Lakehouse(catalog, "market")
    house.ensure_tables()
    return house


def parsed(rows: list[dict]) -> pa.Table:
    for number, row in enumerate(rows, 1):
        row.pop("ingested_at", None)
        row.update(record=number, line=number + 1)
    return pa.Table.from_pylist(rows, schema=PARSED_TICKS_ARROW)


def test_ensure_tables_creates_the_missing_tables_without_loading_the_others(tmp_path, monkeypatch):
    """A run's start checks the tables with one listing: none is loaded (each load reads a
    metadata file), a dropped table is created again, the others keep their rows."""
    house = lakehouse(tmp_path)
    names = {t[-1] for t in house.catalog.list_tables("market")}
    assert {"ticks", "tick_corrections", "trade_id_ranges", "reference_data_used"} <= names
    assert {f"ohlcv_{i}" for i in ("1m", "5m", "1h", "1d")} <= names
    house.replace_file_ticks("a.xml", parsed([tick("09:00:00", "1", "100", 1)]).to_batches)
    house.catalog.drop_table("market.ohlcv_5m")
    loaded: list[object] = []
    load = house.catalog.load_table
    monkeypatch.setattr(
        house.catalog, "load_table", lambda *a, **k: loaded.append(a or k) or load(*a, **k)
    )
    house.ensure_tables()
    # Only the created table is loaded (by the catalog's create_table, to return it).
    assert all("ohlcv_5m" in str(args) for args in loaded), loaded
    assert {t[-1] for t in house.catalog.list_tables("market")} == names
    assert house.table("ticks").scan().to_arrow().num_rows == 1


def test_tables_follow_the_contract(tmp_path):
    house = lakehouse(tmp_path)
    ticks = house.table("ticks")
    schema = ticks.schema()
    assert isinstance(schema.find_field("ts").field_type, TimestamptzType)
    assert schema.find_field("price").field_type == DecimalType(18, 6)
    assert isinstance(schema.find_field("trade_date").field_type, DateType)
    assert schema.find_field("side").required is False and schema.find_field("venue").required
    assert [f.name for f in ticks.spec().fields] == ["trade_date"]
    assert house.table("ohlcv_1d").schema().find_field("turnover").field_type == DecimalType(38, 6)


def test_reingest_replaces_exactly_that_files_rows_in_one_commit(tmp_path):
    house = lakehouse(tmp_path)
    a = parsed(
        [
            tick("09:00:00", "1", "100", 1, source="a.xml"),
            tick("09:00:01", "2", "100", 1, source="a.xml"),
        ]
    )
    b = parsed([tick("09:00:02", "3", "100", 1, source="b.xml")])
    house.replace_file_ticks("a.xml", a.to_batches)
    house.replace_file_ticks("b.xml", b.to_batches)
    before = house.table("ticks").current_snapshot().snapshot_id
    corrected = parsed([tick("09:00:00", "1", "101", 9, source="a.xml")])
    commit = house.replace_file_ticks("a.xml", corrected.to_batches)
    assert (commit.rows_written, commit.rows_removed) == (1, 2)
    rows = house.ticks_for_days([date(2024, 1, 2)]).sort_by("trade_id").to_pylist()
    assert [(r["source_file"], r["trade_id"], r["quantity"]) for r in rows] == [
        ("a.xml", "1", 9),
        ("b.xml", "3", 1),
    ]
    # Readers at the previous snapshot still see the old rows; no snapshot in between shows none.
    table = house.table("ticks")
    assert table.scan(snapshot_id=before).to_arrow().num_rows == 3
    new = [
        s for s in table.snapshots() if s.timestamp_ms >= table.snapshot_by_id(before).timestamp_ms
    ]
    assert table.metadata.current_snapshot_id == commit.snapshot_id
    assert len(new) >= 2  # delete + append, published together by one metadata commit


def test_concurrent_writers_both_commit(tmp_path):
    house = lakehouse(tmp_path)
    errors = []

    def write(name: str) -> None:
        try:
            mine = Lakehouse(house.catalog, "market")
            rows = parsed(
                [tick("09:00:00", f"{name}{i}", "100", 1, source=name) for i in range(50)]
            )
            mine.replace_file_ticks(name, rows.to_batches)
        except Exception as exc:  # collected so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"f{i}.xml",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert house.ticks_for_days([date(2024, 1, 2)]).num_rows == 200


def test_reads_as_of_a_snapshot_held_need_no_load_and_always_see_that_snapshot(tmp_path):
    house = lakehouse(tmp_path)
    day = date(2024, 1, 2)
    first = house.replace_file_ticks("a.xml", parsed([tick("09:00:00", "1", "100", 1)]).to_batches)
    held = house.table_at("ticks", first.snapshot_id)
    assert held is house.table_at("ticks", first.snapshot_id)  # served from what is held
    # Another writer commits: a read at the first snapshot still sees exactly it, a read of
    # the current state (or of a snapshot not held) loads the table again and sees the new rows.
    other = Lakehouse(house.catalog, "market")
    second = other.replace_file_ticks("b.xml", parsed([tick("09:01:00", "2", "101", 2)]).to_batches)
    assert house.ticks_for_days([day], snapshot_id=first.snapshot_id).num_rows == 1
    assert house.table_at("ticks", second.snapshot_id) is not held
    assert house.ticks_for_days([day], snapshot_id=second.snapshot_id).num_rows == 2
    assert house.ticks_for_days([day]).num_rows == 2
    assert house.file_totals(["a.xml", "b.xml"], [day], first.snapshot_id) == {
        "a.xml": (1, 1),
        "b.xml": (0, 0),
    }


def test_day_bars_replace_only_that_day(tmp_path, venues):
    from tickhouse_dagster_tests.market.test_bars import table
    from tickhouse_dagster_tests.tables import build_bars

    house = lakehouse(tmp_path)
    d1 = table([tick("09:00:00", "1", "100", 1)])
    d2 = table([tick("09:00:00", "1", "200", 1, day=date(2024, 1, 3))])
    house.replace_day_bars("1m", date(2024, 1, 2), build_bars(d1, "1m", venues))
    house.replace_day_bars("1m", date(2024, 1, 3), build_bars(d2, "1m", venues))
    house.replace_day_bars("1m", date(2024, 1, 2), build_bars(d1, "1m", venues))
    assert house.bars_for_day("1m", date(2024, 1, 2)).num_rows == 1
    assert house.bars_for_day("1m", date(2024, 1, 3)).num_rows == 1
