"""The Iceberg IO manager on the real stack: a daily asset written through the PostgreSQL (JDBC
layout) catalog into the SeaweedFS S3 warehouse, a day replaced exactly, a downstream asset
reading it as polars, and Trino reading the table the IO manager created as pyiceberg does."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from dagster import AssetIn, DagsterInstance, asset, materialize

from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.defs.resources import resolved_resources
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
    assert type(house.catalog).__name__ == "SqlCatalog"
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files and all(path.startswith("s3://") for path in files)

    trino = resources["trino"]
    seen = trino.query(
        f"SELECT trade_date, symbol, price FROM {trino.catalog}.{namespace}.sample_prices"
    )
    expected = table.scan().to_arrow().select(["trade_date", "symbol", "price"]).to_pylist()
    assert sorted(tuple(r) for r in seen) == sorted(tuple(r.values()) for r in expected)
