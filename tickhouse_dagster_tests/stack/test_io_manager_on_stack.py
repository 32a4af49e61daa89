"""The Iceberg IO manager on the real stack: a daily asset written through the PostgreSQL (JDBC
layout) catalog into the SeaweedFS S3 warehouse, a day replaced exactly, a downstream asset
reading it as polars, and Trino reading the table the IO manager created as pyiceberg does; two
writers planned on the same snapshot both landing through PostgreSQL's compare-and-swap, reads as
of a snapshot and a time, and an unpartitioned table replaced whole."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
import pytest
from dagster import AssetIn, DagsterInstance, asset, materialize
from pyiceberg.catalog.sql import SqlCatalog

from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.storage.catalog import load_lakehouse_catalog
from tickhouse_dagster.storage.iceberg_io import IcebergTables, TableWrite
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster_tests.defs.test_io_manager import (
    PRICES,
    io_resources,
    prices_by_day,
    run,
    sample_prices,
    tables,
)

pytestmark = pytest.mark.slow
D1, D2 = "2024-01-02", "2024-01-03"


@asset(ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY)
def day_summary(context, prices: pl.DataFrame) -> pl.DataFrame:
    day = date.fromisoformat(context.partition_key)
    return pl.DataFrame(
        {"trade_date": [day], "rows": [prices.height], "top": [prices["price"].max()]}
    )


def test_io_manager_writes_s3_through_the_postgresql_catalog(on_stack):
    resources = resolved_resources()
    lakehouse = resources["lakehouse"]
    assert lakehouse.warehouse.startswith("s3://")
    assert lakehouse.catalog_settings().source() in {
        "pyiceberg configuration",
        "TICKHOUSE_CATALOG_URI",
    }
    namespace = on_stack["TICKHOUSE_NAMESPACE"]

    with DagsterInstance.ephemeral() as instance:
        for day, version in [(D1, 1), (D2, 1), (D1, 2)]:
            assert run([sample_prices], resources, instance, day, version=version).success
        assert prices_by_day(resources) == {D1: [202] * 3, D2: [301] * 3}
        assert materialize(
            [sample_prices, day_summary],
            selection=[day_summary],
            partition_key=D1,
            resources=io_resources(resources),
            instance=instance,
        ).success

    summary = tables(resources).read("day_summary").rows.to_pylist()
    assert summary == [{"trade_date": date(2024, 1, 2), "rows": 3, "top": 202}]
    house = lakehouse.lakehouse()
    table = house.catalog.load_table(f"{namespace}.sample_prices")
    assert isinstance(house.catalog, SqlCatalog)  # the PostgreSQL catalog, not REST
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files and all(path.startswith("s3://") for path in files)

    trino = resources["trino"]
    seen = trino.query(
        f"SELECT trade_date, symbol, price FROM {trino.catalog}.{namespace}.sample_prices"
    )
    expected = table.scan().to_arrow().select(["trade_date", "symbol", "price"]).to_pylist()
    assert sorted(tuple(r) for r in seen) == sorted(tuple(r.values()) for r in expected)


def separate_tables() -> IcebergTables:
    """A catalog connection of its own, as another run's process would have."""
    lakehouse = resolved_resources()["lakehouse"]
    return IcebergTables(
        Lakehouse(load_lakehouse_catalog(lakehouse.catalog_settings()), lakehouse.namespace)
    )


def values_of(day: date, values: list[int]) -> pa.Table:
    return pa.table({"trade_date": pa.array([day] * len(values), pa.date32()), "value": values})


def test_concurrent_writers_as_of_reads_and_a_whole_table_on_the_stack(on_stack):
    d1, d2, d3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
    first = separate_tables().write("stack_values", values_of(d1, [1]), [d1])

    # Both writers stage their commit on the same snapshot before either commits: PostgreSQL's
    # compare-and-swap refuses the second, which retries on the table the first made.
    barrier = threading.Barrier(2, timeout=60)
    calls: list[date] = []
    results: dict[date, TableWrite] = {}
    errors: list[Exception] = []

    def write(day: date) -> None:
        try:
            tables = separate_tables()
            catalog = tables.lakehouse.catalog
            commit_table = catalog.commit_table
            waited: list[bool] = []

            def commit_after_the_other_planned(*args):
                calls.append(day)
                if not waited:
                    waited.append(True)
                    barrier.wait()
                return commit_table(*args)

            catalog.commit_table = commit_after_the_other_planned
            results[day] = tables.write("stack_values", values_of(day, [day.day] * 2), [day])
        except Exception as exc:  # collected so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(day,)) for day in (d2, d3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert errors == []
    assert len(calls) == 3  # the loser's first commit was refused, its retry landed
    # (pyiceberg's own commit retry lands it, before the lakehouse's retry loop is needed)
    assert all(r.commit.rows_written == 2 for r in results.values())
    tables = separate_tables()
    current = tables.read("stack_values").rows.sort_by("trade_date").to_pylist()
    assert [(r["trade_date"], r["value"]) for r in current] == [
        (d1, 1),
        (d2, 3),
        (d2, 3),
        (d3, 4),
        (d3, 4),
    ]

    # As of the first snapshot, and of a time before d1 is written again.
    between = datetime.now(UTC)
    time.sleep(0.05)
    tables.write("stack_values", values_of(d1, [7]), [d1])
    old = tables.read("stack_values", [d1], snapshot_id=first.commit.snapshot_id).rows
    assert old["value"].to_pylist() == [1]
    at_time = tables.read("stack_values", [d1, d2], as_of=between)
    assert sorted(at_time.rows["value"].to_pylist()) == [1, 3, 3]
    assert tables.read("stack_values", [d1]).rows["value"].to_pylist() == [7]

    # An unpartitioned table: each write replaces it whole.
    tables.write("stack_universe", pa.table({"symbol": ["A", "B"]}))
    tables.write("stack_universe", pa.table({"symbol": ["C"]}))
    assert tables.read("stack_universe").rows.to_pylist() == [{"symbol": "C"}]
