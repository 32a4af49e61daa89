"""The bars' fresh_in_session check on a real ephemeral instance: real ingest and bar runs (at
frozen Dagster clock times inside the KRX session of 2024-01-02), then the check's state as the
bars stop arriving and start again — through the sensor (which records an evaluation only on a
change) and through the check's own job."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from dagster._core.test_utils import freeze_time

from tickhouse_dagster.defs.freshness import CHECK_NAME, bars_freshness_sensor
from tickhouse_dagster_tests.defs.helpers import definitions_with, ingest, rebuild_bars, step_error
from tickhouse_dagster_tests.defs.test_ingest_assets import trades

SEOUL = ZoneInfo("Asia/Seoul")
DAY = "2024-01-02"
BARS_1M = AssetKey(["market", "ohlcv_1m"])


def seoul(hour: int, minute: int) -> datetime:
    return datetime(2024, 1, 2, hour, minute, tzinfo=SEOUL)


def sense(instance, resources) -> SensorResult | SkipReason:
    """One sensor tick, its events recorded as the sensor daemon records them."""
    context = build_sensor_context(
        instance=instance,
        resources={"feed": resources["feed"], "lakehouse": resources["lakehouse"]},
    )
    result = bars_freshness_sensor(context)
    if isinstance(result, SensorResult):
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
    return result


def states(result: SensorResult) -> dict[str, bool]:
    return {"/".join(e.asset_key.path): e.passed for e in result.asset_events}


def recorded(instance) -> bool:
    key = AssetCheckKey(BARS_1M, CHECK_NAME)
    record = instance.event_log_storage.get_asset_check_summary_records([key])[key]
    return record.last_completed_check_execution_record.event.asset_check_evaluation.passed


def test_freshness_goes_stale_when_bars_stop_and_fresh_when_they_return(
    resources, instance, monkeypatch
):
    monkeypatch.setenv("TICKHOUSE_BARS_FRESHNESS_MINUTES", "30")
    definitions = definitions_with(resources)
    resources["landing"].store().write("KRX/a.xml", trades(("1", "09:35:00", "71000", 5)))
    with freeze_time(seoul(9, 40)):
        assert ingest(definitions, instance, "KRX/a.xml").success
        built = rebuild_bars(definitions, instance, DAY)
        assert built.success, step_error(built)

    with freeze_time(seoul(10, 0)):  # 20 minutes after the last bars: fresh
        first = sense(instance, resources)
    assert states(first) == {f"market/ohlcv_{i}": True for i in ("1m", "5m", "1h", "1d")}
    assert "KRX 2024-01-02 (in session): fresh" in first.asset_events[0].description

    with freeze_time(seoul(10, 5)):  # unchanged: nothing recorded
        assert isinstance(sense(instance, resources), SkipReason)

    with freeze_time(seoul(10, 11)):  # 31 minutes without bars while KRX trades: stale
        stopped = sense(instance, resources)
    assert set(states(stopped).values()) == {False} and not recorded(instance)
    event = stopped.asset_events[0]
    assert "KRX 2024-01-02 (in session): STALE" in event.description
    assert event.metadata["stale_venues"].value == "KRX"

    # The check's own job, as the UI runs it, judges the same.
    with freeze_time(seoul(10, 12)):
        run = definitions.resolve_job_def("check_bars_freshness").execute_in_process(
            instance=instance, raise_on_error=False
        )
    evaluations = run.get_asset_check_evaluations()
    assert len(evaluations) == 4 and not any(e.passed for e in evaluations)
    assert {e.severity for e in evaluations} == {AssetCheckSeverity.WARN}

    # Bars arrive again: fresh on the next tick.
    with freeze_time(seoul(10, 20)):
        assert rebuild_bars(definitions, instance, DAY).success
    with freeze_time(seoul(10, 21)):
        resumed = sense(instance, resources)
    assert set(states(resumed).values()) == {True} and recorded(instance)

    # After the close the day's last bars (10:20) are older than 15:00: the day ended stale.
    with freeze_time(seoul(16, 0)):
        closed = sense(instance, resources)
    assert set(states(closed).values()) == {False}
    assert "KRX 2024-01-02 (session closed): STALE" in closed.asset_events[0].description
