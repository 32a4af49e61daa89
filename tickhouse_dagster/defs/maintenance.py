"""Maintenance jobs and their nightly schedules: compact one trade date of every table, expire
snapshots outside the time-travel window. The logic is in `storage.maintenance`; this is wiring.

A compaction run carries the `tickhouse/bars_day` tag of its day, so the run queue never runs it
next to a bars rebuild of the same day (the same limit that serialises bar rebuilds). That is not
what keeps rows safe (a conflicting commit fails Iceberg validation and starts again), but it
avoids rewriting a day's bars twice for nothing. Ticks ingests of that day are not serialised:
they are per file, and a race with the compaction is resolved by the same validation.
"""

from datetime import date, timedelta

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    partitioned_config,
    schedule,
)

from tickhouse_dagster.core.contract import (
    BAR_INTERVALS,
    CORRECTIONS_TABLE,
    REFERENCE_TABLE,
    TICKS_TABLE,
    TRADE_ID_RANGES_TABLE,
    bar_table_name,
)
from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.assets.bars import BAR_KEYS
from tickhouse_dagster.defs.jobs import BARS_DAY_TAG
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.defs.resources import LakehouseResource
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage import maintenance
from tickhouse_dagster.storage.reference_lineage import compact_reference_records

MAINTENANCE_TABLES = (
    TICKS_TABLE,
    CORRECTIONS_TABLE,  # recorded on the ticks asset, which it belongs to
    *(bar_table_name(i) for i in BAR_INTERVALS),
)
# The record of what reference data built them (storage.reference_lineage): compacted whole and
# expired like the others; the trade index (storage.trade_index) keeps one data file per trade
# date by itself and is only expired. Reported in the run log only (they are no assets).
RECORD_TABLES = (REFERENCE_TABLE, TRADE_ID_RANGES_TABLE)
# 02:00 UTC: yesterday's sessions in Asia, Europe and the Americas have closed. A late file of
# that day is harmless: it becomes one more small file, and its commit and the compaction's
# cannot both apply a stale plan (storage.maintenance).
COMPACTION_CRON = "0 2 * * *"
EXPIRY_CRON = "30 2 * * *"  # usually after the compaction; a race between them is retried


def _asset_key(table: str) -> AssetKey:
    # The assets' own keys (fixed "market/…", whatever the Iceberg namespace).
    keys = {bar_table_name(i): key for i, key in BAR_KEYS.items()}
    return keys.get(table) or AssetKey(TICKS)


@partitioned_config(
    partitions_def=trade_dates,
    tags_for_partition_key_fn=lambda key: {BARS_DAY_TAG: key},
)
def _compaction_config(partition_key: str) -> dict:
    # Every run of a day, however launched (schedule, UI, backfill), carries the day's tag.
    return {}


@op(description="Rewrite one trade date of ticks and every bar table into as few files as fit.")
def compact_tables(context: OpExecutionContext, lakehouse: LakehouseResource) -> None:
    day = date.fromisoformat(context.partition_key)
    house = lakehouse.lakehouse()
    # Unpartitioned and small: the whole record table, whichever day the run is for.
    files = compact_reference_records(house)
    context.log.info(
        f"{REFERENCE_TABLE}: " + ("skipped" if files is None else f"{files} → 1 files")
    )
    for table in MAINTENANCE_TABLES:
        result = maintenance.compact_trade_date(house, table, day)
        summary = (
            f"{table} {day}: skipped ({result.skipped})"
            if result.skipped
            else f"{table} {day}: {result.files_before} → {result.files_after} files, "
            f"{result.rows_after:,} rows unchanged, attempt {result.attempts}"
        )
        context.log.info(summary)
        if table == CORRECTIONS_TABLE and result.skipped:
            continue  # usually empty; the ticks asset's page shows the ticks table's figures
        context.log_event(
            AssetObservation(
                asset_key=_asset_key(table),
                # Bars are partitioned by trade date; ticks by landing file, so no partition.
                partition=None if _asset_key(table) == AssetKey(TICKS) else context.partition_key,
                metadata={
                    "maintenance": "compaction",
                    "table": table,
                    "trade_date": day.isoformat(),
                    "files_before": result.files_before,
                    "files_after": result.files_after,
                    "rows_before": result.rows_before,
                    "rows_after": result.rows_after,
                    "bytes_before": result.bytes_before,
                    "bytes_after": result.bytes_after,
                    "manifests_before": result.manifests_before,
                    "manifests_after": result.manifests_after,
                    "snapshot_id": str(result.snapshot_id),
                    "skipped": result.skipped or "",
                },
            )
        )


@job(
    config=_compaction_config,
    partitions_def=trade_dates,
    description="Compact one trade date of market.ticks and every market.ohlcv_* table.",
)
def compact_trade_date() -> None:
    compact_tables()


class ExpiryConfig(Config):
    retention_hours: float | None = None  # None: TICKHOUSE_SNAPSHOT_RETENTION_HOURS (168)
    retain_last: int | None = None  # None: TICKHOUSE_SNAPSHOT_RETAIN_LAST (5)
    delete_files: bool = True  # delete the files only expired snapshots referenced


@op(description="Expire snapshots outside the time-travel window; delete files no one needs.")
def expire_table_snapshots(
    context: OpExecutionContext, config: ExpiryConfig, lakehouse: LakehouseResource
) -> None:
    house = lakehouse.lakehouse()
    settings = current()
    window = maintenance.retention_window(
        settings.snapshot_retention_hours
        if config.retention_hours is None
        else config.retention_hours
    )
    retain_last = (
        settings.snapshot_retain_last if config.retain_last is None else config.retain_last
    )
    for table in (*MAINTENANCE_TABLES, *RECORD_TABLES):
        result = maintenance.expire_snapshots(
            house,
            table,
            retention=window,
            retain_last=retain_last,
            delete_files=config.delete_files,
        )
        context.log.info(
            f"{table}: {result.snapshots_before} → {result.snapshots_after} snapshots, "
            f"{result.files_deleted} files deleted (window {window}, cutoff {result.cutoff})"
        )
        if (table == CORRECTIONS_TABLE and not result.expired) or table in RECORD_TABLES:
            continue
        context.log_event(
            AssetObservation(
                asset_key=_asset_key(table),
                metadata={
                    "maintenance": "expire_snapshots",
                    "table": table,
                    "snapshots_before": result.snapshots_before,
                    "snapshots_after": result.snapshots_after,
                    "snapshots_expired": result.expired,
                    "files_deleted": result.files_deleted,
                    "retention_hours": window / timedelta(hours=1),
                    "cutoff": result.cutoff.isoformat(),
                },
            )
        )


@job(description="Expire old snapshots of market.ticks and every market.ohlcv_* table.")
def expire_snapshots() -> None:
    expire_table_snapshots()


# Running by default, like the sensors: without maintenance every per-file commit adds a file, a
# manifest and a snapshot forever, and a stopped schedule is one nobody remembers to start. Both
# jobs keep every row (tests prove it) and the window is configurable.
@schedule(
    job=compact_trade_date,
    cron_schedule=COMPACTION_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: compact yesterday's trade date (UTC calendar) in every table.",
)
def nightly_compaction(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    day = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
    if not trade_dates.has_partition_key(day):
        return SkipReason(f"{day} is not a trade date partition (no venue trades that day)")
    return RunRequest(run_key=f"compact-{day}", partition_key=day, tags={BARS_DAY_TAG: day})


@schedule(
    job=expire_snapshots,
    cron_schedule=EXPIRY_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: expire snapshots older than TICKHOUSE_SNAPSHOT_RETENTION_HOURS.",
)
def nightly_expiry(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest(run_key=f"expire-{context.scheduled_execution_time.date().isoformat()}")


MAINTENANCE_JOBS = [compact_trade_date, expire_snapshots]
MAINTENANCE_SCHEDULES = [nightly_compaction, nightly_expiry]
