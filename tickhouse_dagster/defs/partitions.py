"""Partitions: one per landing file for the tick assets, one per trade date for the bars."""

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition

from tickhouse_dagster import settings

landing_files = DynamicPartitionsDefinition(name="landing_files")

trade_dates = DailyPartitionsDefinition(
    start_date=settings.setting("TICKHOUSE_FIRST_TRADE_DATE") or "2020-01-01",
    end_offset=1,  # today's session is a partition while it trades
)

FILE_VERSION_TAG = "tickhouse/file_version"
