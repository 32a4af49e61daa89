"""OHLCV bars per trade date: all four intervals rebuilt from the day's distinct ticks, each
replaced in one commit and then checked as stored."""

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pyarrow as pa
from dagster import (
    AllPartitionMapping,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from tickhouse_dagster.contract import BAR_INTERVALS, BARS_SCHEMA, bar_table_name
from tickhouse_dagster.defs.assets.ticks import TICKS
from tickhouse_dagster.defs.check_results import findings_check_result
from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY, table_metadata
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.defs.resources import FeedResource, LakehouseResource
from tickhouse_dagster.defs.retries import retry_transient
from tickhouse_dagster.engine.day_bars import build_day_bars
from tickhouse_dagster.market.reference_data import venues_fingerprint
from tickhouse_dagster.quality.bar_rules import (
    check_bar_invariants,
    distinct_trade_totals,
    reconcile_bars_with_ticks,
)
from tickhouse_dagster.storage.lakehouse import Commit
from tickhouse_dagster.storage.reference_lineage import record_bars_reference

PREVIEW_ROWS = 10
BAR_KEYS = {interval: AssetKey(["market", bar_table_name(interval)]) for interval in BAR_INTERVALS}
_INTERVAL_OF = {key: interval for interval, key in BAR_KEYS.items()}


def _bar_spec(interval: str) -> AssetSpec:
    # The asset commits its tables itself (docs/decisions/0006-iceberg-io-managers.md); the IO
    # manager key is how assets downstream read them.
    return AssetSpec(
        BAR_KEYS[interval],
        # Any landing file may carry trades of any day: a day depends on all file partitions.
        deps=[AssetDep(TICKS, partition_mapping=AllPartitionMapping())],
        partitions_def=trade_dates,
        group_name="bars",
        description=f"market.{bar_table_name(interval)}: {interval} OHLCV bars of one trade date.",
        skippable=True,
    ).with_io_manager_key(IO_MANAGER_KEY)


def _check_specs() -> list[AssetCheckSpec]:
    specs = []
    for interval, key in BAR_KEYS.items():
        specs.append(
            AssetCheckSpec(
                "ohlc_invariants",
                asset=key,
                description=(
                    "low <= open, close <= high and low <= vwap <= high for every stored bar."
                ),
            )
        )
        specs.append(
            AssetCheckSpec(
                "reconciles_with_ticks",
                asset=key,
                blocking=True,
                description=(
                    f"Per symbol and day, stored {interval} bars' volume and trade count equal the "
                    "distinct ticks exactly."
                ),
            )
        )
    return specs


def _preview(bars: pa.Table) -> MetadataValue:
    head = bars.slice(0, PREVIEW_ROWS).to_pylist()
    if not head:
        return MetadataValue.md("no trades on this day")
    columns = ["symbol", "bar_start", "open", "high", "low", "close", "volume", "vwap"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in head]
    return MetadataValue.md("\n".join(lines))


def _built_from(context: AssetExecutionContext, day: date, reference: str) -> int | None:
    """The ticks snapshot the day's stored bars were last built from (all four intervals
    together), from the latest 1-minute bars materialization; None if unknown or built under
    other venue reference data (`reference`: venues_fingerprint of the venues now)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=BAR_KEYS["1m"], asset_partitions=[day.isoformat()]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    metadata = records[0].asset_materialization.metadata
    built_under = metadata.get("reference_data")
    if built_under is None or str(built_under.value) != reference:
        return None
    recorded = metadata.get("ticks_snapshot_id")
    text = str(recorded.value) if recorded is not None else ""
    return int(text) if text.isdigit() else None


@multi_asset(
    specs=[_bar_spec(interval) for interval in BAR_INTERVALS],
    check_specs=_check_specs(),
    partitions_def=trade_dates,
    can_subset=True,
    name="ohlcv_bars",
)
def ohlcv_bars(context: AssetExecutionContext, lakehouse: LakehouseResource, feed: FeedResource):
    day = date.fromisoformat(context.partition_key)
    house = lakehouse.lakehouse()
    venues = feed.venues()
    with retry_transient(context):
        selected = sorted(
            context.selected_asset_keys, key=lambda k: BAR_INTERVALS.index(_INTERVAL_OF[k])
        )
        intervals = [_INTERVAL_OF[key] for key in selected]
        reference = venues_fingerprint(venues)
        day_bars = build_day_bars(
            house, venues, day, intervals, built_from=_built_from(context, day, reference)
        )
        built = day_bars.bars
        trade_totals = distinct_trade_totals(house.ticks_dataset([day]), day_bars.duplicate_windows)

    def store(interval: str) -> tuple[Commit, pa.Table]:
        commit = house.replace_day_bars(interval, day, built[interval])
        return commit, house.bars_for_day(interval, day)

    # One table each, so the commits cannot conflict: made side by side, they cost one round of
    # object-store and catalog latency instead of four.
    with retry_transient(context), ThreadPoolExecutor(max_workers=len(selected)) as pool:
        results = pool.map(store, [_INTERVAL_OF[key] for key in selected])
        stored_bars = dict(zip(selected, results, strict=True))
        # After the bars, so a crash between leaves them reported stale, never wrongly current.
        record_bars_reference(
            house,
            day,
            {bar_table_name(_INTERVAL_OF[key]): stored for key, (_, stored) in stored_bars.items()},
            venues,
        )
    for key in selected:
        interval = _INTERVAL_OF[key]
        commit, stored = stored_bars[key]
        yield MaterializeResult(
            asset_key=key,
            metadata={
                # The tables are created from BARS_SCHEMA (Lakehouse.ensure_tables), so it is
                # their Iceberg schema without loading each table once more.
                **table_metadata(
                    commit,
                    BARS_SCHEMA,
                    [day],
                    partition_rows=stored.num_rows,
                    bar_interval=interval,
                ),
                "trade_date": day.isoformat(),
                "bars": MetadataValue.int(stored.num_rows),
                "symbols": MetadataValue.int(len(set(stored["symbol"].to_pylist()))),
                "rebuilt": day_bars.rebuilt,
                "ticks_snapshot_id": str(day_bars.ticks_snapshot_id),
                "reference_data": reference,
                "table": commit.table,
                "snapshot_id": str(commit.snapshot_id),
                "preview": _preview(stored),
            },
        )
        yield findings_check_result(
            check_bar_invariants(stored), AssetCheckSeverity.ERROR, key, "ohlc_invariants"
        )
        yield findings_check_result(
            reconcile_bars_with_ticks(stored, trade_totals, interval),
            AssetCheckSeverity.ERROR,
            key,
            "reconciles_with_ticks",
        )
