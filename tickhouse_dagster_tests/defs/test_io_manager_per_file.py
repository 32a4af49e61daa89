"""Per-file partitions through the Iceberg IO manager, on the real embedded catalog: a per-file
asset replaces exactly its landing file's rows, and `market/ticks` — committed by its own asset
— is read by downstream assets: a daily one gets its trade date from every file, a per-file one
its own file's rows."""

from datetime import date

import polars as pl
import pyarrow as pa
from dagster import AllPartitionMapping, AssetIn, AssetKey, Config, asset, materialize

from tickhouse_dagster.defs.assets.ticks import parsed_ticks, raw_tick_xml, ticks
from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import landing_files, trade_dates
from tickhouse_dagster_tests.defs.helpers import definitions_with, ingest, step_error
from tickhouse_dagster_tests.defs.test_io_manager import io_resources, tables

TICKS = AssetKey(["market", "ticks"])
TICK_ASSETS = [raw_tick_xml, parsed_ticks, ticks]  # the upstream graph, not run here


class FileConfig(Config):
    rows: int = 2


@asset(key=["market", "file_sizes"], partitions_def=landing_files, io_manager_key=IO_MANAGER_KEY)
def file_sizes(context, config: FileConfig) -> pa.Table:
    # No source_file column: the IO manager adds the partition's file.
    return pa.table(
        {"n": list(range(config.rows)), "key_length": [len(context.partition_key)] * config.rows}
    )


@asset(
    key=["market", "daily_ticks"],
    ins={"ticks": AssetIn(TICKS, partition_mapping=AllPartitionMapping())},
    partitions_def=trade_dates,
    io_manager_key=IO_MANAGER_KEY,
)
def daily_ticks(ticks: pl.DataFrame) -> pl.DataFrame:
    return ticks.group_by("trade_date").agg(
        pl.col("quantity").sum().alias("quantity"), pl.col("source_file").n_unique().alias("files")
    )


@asset(key=["market", "file_ticks"], ins={"ticks": AssetIn(TICKS)}, partitions_def=landing_files)
def file_ticks(context, ticks: pa.Table) -> None:
    context.add_output_metadata(
        {"rows": ticks.num_rows, "files": ",".join(sorted(set(ticks["source_file"].to_pylist())))}
    )


def file_rows(resources) -> dict[str, list[int]]:
    rows = tables(resources).read("file_sizes").rows.to_pylist()
    out: dict[str, list[int]] = {}
    for row in rows:
        out.setdefault(row["source_file"], []).append(row["n"])
    return {k: sorted(v) for k, v in sorted(out.items())}


def test_a_per_file_asset_replaces_exactly_its_files_rows(resources, instance):
    instance.add_dynamic_partitions(landing_files.name, ["KRX/a.xml", "KRX/b.xml"])

    def run(key: str, rows: int) -> None:
        result = materialize(
            [file_sizes],
            resources=io_resources(resources),
            instance=instance,
            partition_key=key,
            run_config={"ops": {"market__file_sizes": {"config": {"rows": rows}}}},
        )
        assert result.success

    run("KRX/a.xml", 2)
    run("KRX/b.xml", 3)
    run("KRX/a.xml", 1)
    assert file_rows(resources) == {"KRX/a.xml": [0], "KRX/b.xml": [0, 1, 2]}
    metadata = instance.fetch_materializations(AssetKey(["market", "file_sizes"]), limit=1)
    shown = metadata.records[0].asset_materialization.metadata
    assert shown["source_files"].value == "KRX/a.xml"
    assert shown["dagster/partition_row_count"].value == 1
    assert shown["dagster/row_count"].value == 4
    assert shown["rows_removed"].value == 2


def krx(trade_date: str, *rows: tuple[str, str, int]) -> bytes:
    body = "".join(
        f'<trade id="{i}" symbol="005930" ts="{trade_date}T{t}+09:00" price="71000" qty="{q}"/>'
        for i, t, q in rows
    )
    return f'<tickhouse venue="KRX" trade_date="{trade_date}">{body}</tickhouse>'.encode()


def test_ticks_are_read_by_day_for_a_daily_asset_and_by_file_for_a_per_file_one(
    resources, instance
):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("KRX/a.xml", krx("2024-01-02", ("1", "09:00:00", 5), ("2", "09:01:00", 7)))
    store.write("KRX/b.xml", krx("2024-01-02", ("3", "09:02:00", 11)))
    store.write("KRX/c.xml", krx("2024-01-03", ("4", "09:00:00", 13)))
    for key in ("KRX/a.xml", "KRX/b.xml", "KRX/c.xml"):
        result = ingest(definitions, instance, key)
        assert result.success, step_error(result)

    daily = materialize(
        [*TICK_ASSETS, daily_ticks],
        selection=[daily_ticks],
        resources=io_resources(resources),
        instance=instance,
        partition_key="2024-01-02",
    )
    assert daily.success
    assert tables(resources).read("daily_ticks").rows.to_pylist() == [
        {"trade_date": date(2024, 1, 2), "quantity": 23, "files": 2}
    ]

    per_file = materialize(
        [*TICK_ASSETS, file_ticks],
        selection=[file_ticks],
        resources=io_resources(resources),
        instance=instance,
        partition_key="KRX/b.xml",
    )
    assert per_file.success
    record = instance.fetch_materializations(AssetKey(["market", "file_ticks"]), limit=1)
    shown = record.records[0].asset_materialization.metadata
    assert (shown["rows"].value, shown["files"].value) == (1, "KRX/b.xml")
