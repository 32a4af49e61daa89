"""The Iceberg IO manager under `dagster.materialize`, on the real embedded catalog: assets a user
would write (daily and unpartitioned), replacement of exactly a day, inputs by annotation, as-of
reads, and the metadata each materialization records."""

import time
from datetime import UTC, date, datetime

import duckdb
import polars as pl
import pyarrow as pa
from dagster import (
    AssetIn,
    AssetKey,
    Config,
    TimeWindowPartitionMapping,
    asset,
    materialize,
)

from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY, IcebergIOManager
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.storage.iceberg_io import IcebergTables

PRICES = AssetKey(["market", "sample_prices"])
D1, D2, D3 = "2024-01-02", "2024-01-03", "2024-01-04"


class PricesConfig(Config):
    version: int = 1
    other_day: str | None = None  # a bad output: rows of another trade date


@asset(key=PRICES, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY)
def sample_prices(context, config: PricesConfig) -> pl.DataFrame:
    day = date.fromisoformat(context.partition_key)
    days = [day] * 3 + ([date.fromisoformat(config.other_day)] if config.other_day else [])
    return pl.DataFrame(
        {
            "trade_date": days,
            "symbol": [f"S{i}" for i in range(len(days))],
            "price": [day.day * 100 + config.version] * len(days),
        }
    )


@asset(key=["market", "sample_universe"], io_manager_key=IO_MANAGER_KEY)
def sample_universe(config: PricesConfig) -> pa.Table:
    symbols = ["A", "B", "C"] if config.version == 1 else ["D"]
    return pa.table({"symbol": symbols, "version": [config.version] * len(symbols)})


def io_resources(resources: dict, **io_config) -> dict:
    return {
        **resources,
        IO_MANAGER_KEY: IcebergIOManager(lakehouse=resources["lakehouse"], **io_config),
    }


def tables(resources: dict) -> IcebergTables:
    return IcebergTables(resources["lakehouse"].lakehouse())


def run(assets, resources, instance, partition=None, *, version=1, other_day=None, **io):
    """Materialize assets that take PricesConfig (sample_prices, sample_universe)."""
    config = {"config": {"version": version, "other_day": other_day}}
    return materialize(
        assets,
        resources=io_resources(resources, **io),
        instance=instance,
        partition_key=partition,
        run_config={"ops": {a.op.name: config for a in assets}},
        raise_on_error=False,
    )


def prices_by_day(resources: dict) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in tables(resources).read("sample_prices").rows.to_pylist():
        out.setdefault(row["trade_date"].isoformat(), []).append(row["price"])
    return dict(sorted(out.items()))


def test_daily_asset_replaces_exactly_its_day(resources, instance):
    for day in (D1, D2):
        assert run([sample_prices], resources, instance, day).success
    house = resources["lakehouse"].lakehouse()
    table = house.catalog.load_table(house.identifier("sample_prices"))
    assert [f.name for f in table.spec().fields] == ["trade_date"]
    d2_files = {
        t.file.file_path for t in table.scan(row_filter=f"trade_date = '{D2}'").plan_files()
    }

    assert run([sample_prices], resources, instance, D1, version=2).success

    assert prices_by_day(resources) == {D1: [202] * 3, D2: [301] * 3}
    table = house.catalog.load_table(house.identifier("sample_prices"))
    assert d2_files == {
        t.file.file_path for t in table.scan(row_filter=f"trade_date = '{D2}'").plan_files()
    }


def test_unpartitioned_asset_replaces_the_whole_table(resources, instance):
    assert run([sample_universe], resources, instance).success
    assert run([sample_universe], resources, instance, version=2).success
    assert tables(resources).read("sample_universe").rows.to_pylist() == [
        {"symbol": "D", "version": 2}
    ]


def test_materialization_metadata(resources, instance):
    assert run([sample_prices], resources, instance, D1).success
    assert run([sample_prices], resources, instance, D2).success
    record = instance.fetch_materializations(PRICES, limit=1).records[0]
    metadata = record.asset_materialization.metadata
    assert record.asset_materialization.partition == D2
    schema = metadata["dagster/column_schema"].value
    assert [(c.name, c.type) for c in schema.columns] == [
        ("trade_date", "date"),
        ("symbol", "string"),
        ("price", "long"),
    ]
    current = tables(resources).read("sample_prices")
    assert metadata["snapshot_id"].value == str(current.snapshot_id)
    assert metadata["dagster/table_name"].value == "market.sample_prices"
    assert metadata["dagster/row_count"].value == 6  # the table after the commit
    assert metadata["dagster/partition_row_count"].value == 3  # the partition written
    assert metadata["trade_dates"].value == D2
    assert metadata["rows_removed"].value == 0


def test_a_bad_output_fails_its_run_and_leaves_the_table_alone(resources, instance):
    assert run([sample_prices], resources, instance, D1).success
    before = tables(resources).read("sample_prices").snapshot_id
    result = run([sample_prices], resources, instance, D2, other_day=D3)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "output for 2024-01-03 holds rows of other trade dates (2024-01-04)" in message
    assert tables(resources).read("sample_prices").snapshot_id == before


def test_inputs_arrive_as_their_annotation_says(resources, instance):
    assert run([sample_prices], resources, instance, D1).success
    assert run([sample_prices], resources, instance, D2).success

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def read_arrow(prices: pa.Table) -> pa.Table:
        assert isinstance(prices, pa.Table)
        return prices.group_by("trade_date").aggregate([("price", "sum")])

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def read_polars(prices: pl.DataFrame) -> pl.DataFrame:
        assert isinstance(prices, pl.DataFrame)
        return prices.group_by("trade_date").agg(pl.col("price").sum())

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def read_lazy(prices: pl.LazyFrame) -> pl.LazyFrame:
        assert isinstance(prices, pl.LazyFrame)
        return prices.group_by("trade_date").agg(pl.col("price").sum())

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def read_duckdb(prices: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
        assert isinstance(prices, duckdb.DuckDBPyRelation)
        return prices.aggregate("trade_date, sum(price)::BIGINT AS price_sum")

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def read_stream(prices: pa.RecordBatchReader) -> pa.RecordBatchReader:
        assert isinstance(prices, pa.RecordBatchReader)
        rows = prices.read_all().group_by("trade_date").aggregate([("price", "sum")])
        return pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches())

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def read_plain(prices):
        assert isinstance(prices, pa.Table)  # no annotation: Arrow
        return prices.group_by("trade_date").aggregate([("price", "sum")])

    readers = [
        read_arrow,
        read_polars,
        read_lazy,
        read_duckdb,
        read_stream,
        read_plain,
    ]
    result = materialize(
        [sample_prices, *readers],
        resources=io_resources(resources),
        instance=instance,
        partition_key=D2,
        selection=readers,
    )
    assert result.success
    for reader in readers:
        rows = tables(resources).read(reader.key.path[-1]).rows.to_pylist()
        assert [tuple(r.values()) for r in rows] == [(date(2024, 1, 3), 3 * 301)], reader.key


def test_an_unpartitioned_downstream_reads_every_day_and_a_window_reads_its_days(
    resources, instance
):
    for day in (D1, D2, D3):
        assert run([sample_prices], resources, instance, day).success

    @asset(ins={"prices": AssetIn(PRICES)}, io_manager_key=IO_MANAGER_KEY)
    def all_days(prices: pl.DataFrame) -> pl.DataFrame:
        return prices.group_by("trade_date").agg(pl.len().alias("rows")).sort("trade_date")

    @asset(
        ins={
            "prices": AssetIn(PRICES, partition_mapping=TimeWindowPartitionMapping(start_offset=-1))
        },
        partitions_def=trade_dates,
        io_manager_key=IO_MANAGER_KEY,
    )
    def two_days(context, prices: pl.DataFrame) -> pl.DataFrame:
        """A moving window: its own trade date, from this day's and the previous day's rows."""
        days = ",".join(d.isoformat() for d in prices["trade_date"].unique().sort())
        day = date.fromisoformat(context.partition_key)
        return pl.DataFrame({"trade_date": [day], "window": [days], "rows": [prices.height]})

    assert materialize(
        [sample_prices, all_days],
        resources=io_resources(resources),
        instance=instance,
        selection=[all_days],
    ).success
    every_day = tables(resources).read("all_days").rows.to_pylist()
    assert [(r["trade_date"].isoformat(), r["rows"]) for r in every_day] == [
        (D1, 3),
        (D2, 3),
        (D3, 3),
    ]

    result = materialize(
        [sample_prices, two_days],
        resources=io_resources(resources),
        instance=instance,
        partition_key=D3,
        selection=[two_days],
    )
    assert result.success
    two = tables(resources).read("two_days").rows.to_pylist()
    assert [(r["trade_date"].isoformat(), r["window"], r["rows"]) for r in two] == [
        (D3, f"{D2},{D3}", 6)
    ]
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    snapshot = tables(resources).read("sample_prices").snapshot_id
    assert (
        f"read market.sample_prices trade dates {D2},{D3} at snapshot {snapshot}, 6 rows" in logged
    )


def test_inputs_read_as_of_a_snapshot_or_a_time(resources, instance):
    assert run([sample_prices], resources, instance, D1).success
    first = tables(resources).read("sample_prices").snapshot_id
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    assert run([sample_prices], resources, instance, D1, version=2).success

    def reader(name: str, metadata: dict):
        @asset(
            name=name,
            ins={"prices": AssetIn(PRICES, metadata=metadata)},
            partitions_def=trade_dates,
            io_manager_key=IO_MANAGER_KEY,
        )
        def read(prices: pl.DataFrame) -> pl.DataFrame:
            return prices.select("trade_date", "price").unique()

        return read

    by_snapshot = reader("by_snapshot", {"snapshot_id": first})
    by_time = reader("by_time", {"as_of": between.isoformat()})
    current = reader("current", {})
    for read in (by_snapshot, by_time, current):
        assert materialize(
            [sample_prices, read],
            resources=io_resources(resources),
            instance=instance,
            partition_key=D1,
            selection=[read],
        ).success
    # The IO manager's own `as_of` applies to every input that names no snapshot of its own.
    as_configured = reader("as_configured", {})
    assert materialize(
        [sample_prices, as_configured],
        resources=io_resources(resources, as_of=between.isoformat()),
        instance=instance,
        partition_key=D1,
        selection=[as_configured],
    ).success

    def price(name: str) -> list[int]:
        return tables(resources).read(name).rows.column("price").to_pylist()

    assert price("by_snapshot") == [201]
    assert price("by_time") == [201]
    assert price("current") == [202]
    assert price("as_configured") == [201]
    record = instance.fetch_materializations(AssetKey("by_snapshot"), limit=1).records[0]
    assert record.asset_materialization.metadata["dagster/row_count"].value == 1


def test_an_input_annotation_it_cannot_give_is_named(resources, instance):
    assert run([sample_prices], resources, instance, D1).success

    @asset(
        ins={"prices": AssetIn(PRICES)}, partitions_def=trade_dates, io_manager_key=IO_MANAGER_KEY
    )
    def wants_a_dict(prices: dict) -> pa.Table:
        return pa.table({})

    result = materialize(
        [sample_prices, wants_a_dict],
        resources=io_resources(resources),
        instance=instance,
        partition_key=D1,
        selection=[wants_a_dict],
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "input 'prices' is annotated dict; the Iceberg IO manager gives pyarrow.Table" in str(
        failure.step_failure_data.error
    )
