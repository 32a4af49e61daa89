"""The lakehouse's SQL catalog (storage.catalog → compat.pyiceberg_private.RememberingSqlCatalog)
on a real SQLite catalog and a local warehouse: metadata it has read or committed is reused while
the catalog row points at it, and every change made elsewhere is still seen and still conflicts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tickhouse_dagster.compat.pyiceberg_private import RememberingSqlCatalog
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog

ROWS = pa.table({"n": pa.array([1, 2, 3], pa.int64())})


def catalog(tmp_path: Path) -> RememberingSqlCatalog:
    settings = CatalogSettings(
        name="memory_test",
        warehouse=str(tmp_path / "warehouse"),
        embedded_db=str(tmp_path / "c.db"),
    )
    loaded = load_lakehouse_catalog(settings)
    assert isinstance(loaded, RememberingSqlCatalog)
    return loaded


@pytest.fixture
def two(tmp_path: Path) -> tuple[RememberingSqlCatalog, RememberingSqlCatalog]:
    """Two catalogs on one database, as two processes would have."""
    first = catalog(tmp_path)
    first.create_namespace("m")
    first.create_table("m.t", ROWS.schema)
    return first, catalog(tmp_path)


def test_an_unchanged_table_is_loaded_from_the_metadata_already_read(two) -> None:
    first, _ = two
    a, b = first.load_table("m.t"), first.load_table("m.t")
    assert a.metadata is b.metadata  # parsed once
    assert a.io is b.io  # one FileIO (and S3 client) for every table


def test_a_commit_is_remembered_as_committed(two, tmp_path: Path) -> None:
    first, _ = two
    table = first.load_table("m.t")
    table.append(ROWS)
    again = first.load_table("m.t")
    assert again.metadata is table.metadata
    plain = SqlCatalog("memory_test", uri=f"sqlite:///{tmp_path / 'c.db'}")
    assert plain.load_table("m.t").metadata == again.metadata
    assert again.scan().to_arrow().num_rows == 3


def test_a_commit_made_elsewhere_is_seen_and_a_stale_table_still_conflicts(two, caplog) -> None:
    first, second = two
    stale = first.load_table("m.t")
    second.load_table("m.t").append(ROWS)
    current = first.load_table("m.t")
    assert current.metadata is not stale.metadata
    assert current.current_snapshot() is not None and current.scan().to_arrow().num_rows == 3
    # The commit's requirement check reads the catalog row, not what this catalog remembers:
    # the stale commit conflicts, and pyiceberg replays it on the current table (no row lost).
    with caplog.at_level("WARNING", logger="pyiceberg.table"):
        stale.append(ROWS)
    assert "concurrent update" in caplog.text
    assert first.load_table("m.t").scan().to_arrow().num_rows == 6


def test_it_remembers_a_bounded_number_of_metadata_files(two, monkeypatch) -> None:
    first, _ = two
    monkeypatch.setattr(RememberingSqlCatalog, "METADATA_ENTRIES", 2)
    table = first.load_table("m.t")
    for _ in range(4):
        table.append(ROWS)
    assert len(first._metadata) == 2
    assert first.load_table("m.t").scan().to_arrow().num_rows == 12
