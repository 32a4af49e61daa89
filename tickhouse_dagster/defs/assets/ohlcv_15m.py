"""An asset built on the bars the way a user adds one (README, "Add your own asset"): a plain
function of its input, with no storage code. The Iceberg IO manager hands it the trade date's
1-minute bars and replaces that trade date of `market.ohlcv_15m` with what it returns."""

import pyarrow as pa
from dagster import AssetIn, AutomationCondition, asset

from tickhouse_dagster.defs.assets.bars import BAR_KEYS
from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.defs.resources import FeedResource
from tickhouse_dagster.market.bars import roll_up_bars


@asset(
    key=["market", "ohlcv_15m"],
    ins={"ohlcv_1m": AssetIn(BAR_KEYS["1m"])},
    partitions_def=trade_dates,
    io_manager_key=IO_MANAGER_KEY,
    group_name="bars",
    # Rebuilt whenever the day's 1-minute bars change (any trade date, not only the latest).
    automation_condition=AutomationCondition.eager().without(
        AutomationCondition.in_latest_time_window()
    ),
    description="market.ohlcv_15m: 15-minute OHLCV bars of one trade date, from its 1m bars.",
)
def ohlcv_15m(ohlcv_1m: pa.Table, feed: FeedResource) -> pa.Table:
    return roll_up_bars(ohlcv_1m, "15m", feed.venues())
