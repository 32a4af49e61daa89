"""Jobs: ingest one landing file; rebuild the bars of one trade date. Steps retry transient
storage errors themselves (`retries.retry_transient`); bad input and bugs fail at once."""

from dagster import AssetCheckKey, AssetSelection, define_asset_job

from tickhouse_dagster.defs.asset_keys import PARSED_TICKS, RAW_TICK_XML, TICKS
from tickhouse_dagster.defs.assets.bars import BAR_KEYS

BARS_DAY_TAG = "tickhouse/bars_day"

ingest_file_job = define_asset_job(
    "ingest_landing_file",
    selection=AssetSelection.assets(RAW_TICK_XML, PARSED_TICKS, TICKS),
    description="One landing file: fingerprint, parse, check, replace its rows in market.ticks.",
)

# The bars' checks, but not their freshness (judged by its sensor against the sessions, not by
# each rebuild: a backfill of a thousand days would judge it a thousand times).
BARS_FRESHNESS_CHECK = "fresh_in_session"

rebuild_bars_job = define_asset_job(
    "rebuild_bars",
    selection=AssetSelection.assets(*BAR_KEYS.values())
    - AssetSelection.checks(
        *(AssetCheckKey(key, BARS_FRESHNESS_CHECK) for key in BAR_KEYS.values())
    ),
    description="All OHLCV bar tables of one trade date, from the day's distinct ticks.",
)
