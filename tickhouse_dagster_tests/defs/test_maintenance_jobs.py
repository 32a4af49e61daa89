"""The maintenance jobs and schedules of the code location, run in process on the embedded
lakehouse: compaction and expiry keep every row and report what they did."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml
from dagster import DefaultScheduleStatus, build_schedule_context

from tickhouse_dagster.definitions import defs
from tickhouse_dagster.defs.jobs import BARS_DAY_TAG
from tickhouse_dagster.defs.maintenance import MAINTENANCE_TABLES
from tickhouse_dagster.engine.batch import ingest_paths
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.defs.helpers import definitions_with, step_error
from tickhouse_dagster_tests.tables import data_file_count, rows_of

DAY = "2024-01-02"


def observations(result) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_observation_events():
        observation = event.asset_observation_data.asset_observation
        metadata = {k: v.value for k, v in observation.metadata.items()}
        out["/".join(observation.asset_key.path)] = metadata
    return out


def test_compaction_and_expiry_jobs_keep_every_row(resources, instance, tmp_path: Path):
    house = resources["lakehouse"].lakehouse()
    house.ensure_tables()
    landing = Path(resources["landing"].uri)
    paths = generate(SampleSpec(ticks_per_day=2000, symbols=3, files_per_day=8), landing)
    ingest_paths(paths, landing, house, tmp_path / "staging", workers=2)
    ingest_commits = len(house.table("ticks").snapshots())
    assert 1 <= ingest_commits <= 8
    before = {t: rows_of(house.table(t)) for t in MAINTENANCE_TABLES}
    assert data_file_count(house.table("ticks")) == 8
    definitions = definitions_with(resources)

    compaction = definitions.resolve_job_def("compact_trade_date").execute_in_process(
        instance=instance, partition_key=DAY, raise_on_error=False
    )
    assert compaction.success, step_error(compaction)
    # Serialised with the day's bar rebuilds by the run queue's tag limit.
    assert compaction.dagster_run.tags[BARS_DAY_TAG] == DAY
    seen = observations(compaction)
    assert (seen["market/ticks"]["files_before"], seen["market/ticks"]["files_after"]) == (8, 1)
    assert seen["market/ticks"]["rows_before"] == seen["market/ticks"]["rows_after"] == 2000
    assert seen["market/ohlcv_1m"]["skipped"]  # one file already
    assert data_file_count(house.table("ticks")) == 1
    assert {t: rows_of(house.table(t)) for t in MAINTENANCE_TABLES} == before

    expiry = definitions.resolve_job_def("expire_snapshots").execute_in_process(
        instance=instance,
        run_config={
            "ops": {"expire_table_snapshots": {"config": {"retention_hours": 0, "retain_last": 1}}}
        },
        raise_on_error=False,
    )
    assert expiry.success, step_error(expiry)
    seen = observations(expiry)
    # The ingest's commits (files grouped while the workers were ahead) + the compaction's two.
    assert seen["market/ticks"]["snapshots_before"] == ingest_commits + 2
    assert seen["market/ticks"]["snapshots_after"] == 1
    assert seen["market/ticks"]["files_deleted"] > 8  # the 8 small files and their metadata
    for table in MAINTENANCE_TABLES:
        # tick_corrections: no file carried a correction, so it never had a snapshot
        assert len(house.table(table).snapshots()) == (table != "tick_corrections"), table
    assert {t: rows_of(house.table(t)) for t in MAINTENANCE_TABLES} == before
    assert len(house.table("trade_id_ranges").snapshots()) == 1  # the trade index: expired too


def test_nightly_schedules_compact_yesterday_then_expire(instance):
    compaction = defs.resolve_schedule_def("nightly_compaction")
    expiry = defs.resolve_schedule_def("nightly_expiry")
    assert compaction.cron_schedule == "0 2 * * *" and expiry.cron_schedule == "30 2 * * *"
    assert compaction.execution_timezone == expiry.execution_timezone == "UTC"
    assert compaction.default_status == expiry.default_status == DefaultScheduleStatus.RUNNING
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2024, 1, 3, 2, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    (request,) = compaction.evaluate_tick(context).run_requests
    assert request.partition_key == DAY and request.tags[BARS_DAY_TAG] == DAY
    (request,) = expiry.evaluate_tick(context).run_requests
    assert request.job_name in (None, "expire_snapshots")


def test_nightly_compaction_skips_a_day_without_a_partition(instance):
    compaction = defs.resolve_schedule_def("nightly_compaction")
    sunday_night = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2024, 1, 7, 2, tzinfo=UTC),  # yesterday: a Saturday
        repository_def=defs.get_repository_def(),
    )
    result = compaction.evaluate_tick(sunday_night)
    assert not result.run_requests and "2024-01-06 is not a trade date" in result.skip_message


def test_the_bars_day_tag_is_limited_to_one_run_per_day_in_every_instance_config():
    for name in ("dagster.yaml", "dagster.local.yaml"):
        config = yaml.safe_load((PROJECT_ROOT / "infra" / "dagster" / name).read_text())
        limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
        assert {
            "key": BARS_DAY_TAG,
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        } in limits, name
