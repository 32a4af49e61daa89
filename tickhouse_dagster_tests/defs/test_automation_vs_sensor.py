"""Why the bars are rebuilt by `touched_days_sensor`, not by an automation condition
(docs/decisions/1501-automation-and-sensors.md), measured on Dagster's own automation engine:
with the bars' dependency on ticks as it is (every landing-file partition → every trading day,
AllPartitionMapping), one new file makes the eager condition request every trading day since the
first partition, while the sensor requests the one day the file touched, once."""

from __future__ import annotations

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetKey,
    AutomationCondition,
    DagsterInstance,
    MaterializeResult,
    asset,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from tickhouse_dagster.defs.partitions import landing_files, trade_dates
from tickhouse_dagster.defs.sensors import touched_days_sensor

TICKS = AssetKey(["market", "ticks"])
DAY = "2024-01-02"


@asset(key=TICKS, partitions_def=landing_files)
def ticks_of_a_file() -> MaterializeResult:
    # What the real ticks asset records that matters here: the trade dates the file touched.
    return MaterializeResult(metadata={"trade_dates": DAY})


# The bars' real dependency, with the condition ohlcv_15m uses (eager, for any trade date).
@asset(
    key=["market", "ohlcv_1m"],
    partitions_def=trade_dates,
    deps=[AssetDep(TICKS, partition_mapping=AllPartitionMapping())],
    automation_condition=AutomationCondition.eager().without(
        AutomationCondition.in_latest_time_window()
    ),
)
def bars_by_automation() -> None:
    return None


def ingest(instance: DagsterInstance, *keys: str) -> None:
    instance.add_dynamic_partitions(landing_files.name, list(keys))
    for key in keys:
        assert materialize([ticks_of_a_file], instance=instance, partition_key=key).success


def test_automation_blocks_on_a_failed_file_then_rebuilds_every_day_and_the_sensor_one(
    resources,
):
    every_day = trade_dates.get_partition_keys()
    assets = [ticks_of_a_file, bars_by_automation]
    with DagsterInstance.ephemeral() as instance:
        # A file the landing sensor registered whose ingest failed (bad values, a conflict:
        # quarantined), so its ticks partition is missing.
        instance.add_dynamic_partitions(landing_files.name, ["KRX/refused.xml"])
        baseline = evaluate_automation_conditions(defs=assets, instance=instance)
        assert baseline.total_requested == 0

        # A good file: eager's "no dependency missing" holds for no day while one file is
        # missing, so no day is rebuilt at all.
        ingest(instance, "KRX/a.xml")
        blocked = evaluate_automation_conditions(
            defs=assets, instance=instance, cursor=baseline.cursor
        )
        assert blocked.total_requested == 0

        # The refused file corrected and ingested: one file touching one day makes every
        # trading day since the first partition "dependency updated".
        ingest(instance, "KRX/refused.xml")
        updated = evaluate_automation_conditions(
            defs=assets, instance=instance, cursor=blocked.cursor
        )
        assert updated.total_requested == len(every_day) > 1700

        # The sensor, over the same two commits: the one day they touched, one rebuild.
        sensor = touched_days_sensor(
            build_sensor_context(instance=instance, resources={"lakehouse": resources["lakehouse"]})
        )
        assert [r.partition_key for r in sensor.run_requests] == [DAY]
