"""OHLCV bars per trade date: all four intervals rebuilt from the day's distinct ticks, each
replaced in one commit and then checked as stored."""

from datetime import date

from dagster import (
    AllPartitionMapping,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    multi_asset,
)

from tickhouse_dagster.core.contract import BAR_INTERVALS, bar_table_name
from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.bar_reports import BAR_KEYS, RECONCILES, build_and_report
from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.defs.resources import FeedResource, LakehouseResource
from tickhouse_dagster.defs.retries import retry_transient

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
                RECONCILES,
                asset=key,
                blocking=True,
                description=(
                    f"Per symbol and day, stored {interval} bars' volume and trade count equal the "
                    "distinct ticks exactly."
                ),
            )
        )
    return specs


@multi_asset(
    specs=[_bar_spec(interval) for interval in BAR_INTERVALS],
    check_specs=_check_specs(),
    partitions_def=trade_dates,
    can_subset=True,
    name="ohlcv_bars",
)
def ohlcv_bars(context: AssetExecutionContext, lakehouse: LakehouseResource, feed: FeedResource):
    day = date.fromisoformat(context.partition_key)
    intervals = sorted(
        (_INTERVAL_OF[key] for key in context.selected_asset_keys), key=BAR_INTERVALS.index
    )
    with retry_transient(context):
        reports = build_and_report(lakehouse.lakehouse(), feed.venues(), day, intervals)
    for report in reports:
        yield MaterializeResult(asset_key=report.asset_key, metadata=dict(report.metadata))
        for check in report.checks:
            yield check.result()
