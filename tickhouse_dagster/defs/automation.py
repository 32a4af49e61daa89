"""Declarative automation for assets built on the bars (`ohlcv_15m`, and the ones users add):
an asset with an automation condition follows its upstream — e.g. a day's 15m bars are rebuilt
after that day's 1m bars are. On by default, like the other sensors (Dagster's own default
automation sensor starts stopped)."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),  # assets without an automation condition are never requested
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes assets whose automation condition is met (e.g. ohlcv_15m).",
)
