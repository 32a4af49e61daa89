"""The tickhouse code location. Its settings are resolved here, once, as it loads
(`settings.current()`), and passed down to the resources and sensors built from them."""

from collections.abc import Mapping
from typing import Any

from dagster import Definitions, in_process_executor

from tickhouse_dagster.defs.assets.bars import ohlcv_bars
from tickhouse_dagster.defs.assets.bi import bar_views
from tickhouse_dagster.defs.assets.ohlcv_15m import ohlcv_15m
from tickhouse_dagster.defs.assets.ticks import parsed_ticks, raw_tick_xml, ticks
from tickhouse_dagster.defs.automation import automation_sensor
from tickhouse_dagster.defs.checks import trino_reads_commit
from tickhouse_dagster.defs.freshness import (
    bars_freshness,
    bars_freshness_sensor,
    check_bars_freshness_job,
)
from tickhouse_dagster.defs.ingest_batch import build_batch_job
from tickhouse_dagster.defs.io_managers import iceberg_io_managers
from tickhouse_dagster.defs.jobs import ingest_file_job, rebuild_bars_job
from tickhouse_dagster.defs.maintenance import MAINTENANCE_JOBS, MAINTENANCE_SCHEDULES
from tickhouse_dagster.defs.push import build_push_sensor
from tickhouse_dagster.defs.resources import resources_from_settings
from tickhouse_dagster.defs.resources_spark import spark_resources
from tickhouse_dagster.defs.sensors import (
    build_landing_sensor,
    reference_data_sensor,
    touched_days_sensor,
)
from tickhouse_dagster.defs.spark import spark_backfill_ticks
from tickhouse_dagster.settings import TickhouseSettings, current


def build_definitions(
    resources: Mapping[str, Any], settings: TickhouseSettings | None = None
) -> Definitions:
    """The code location over `resources`; `settings` (default: this process's) give the
    sensors' intervals and batch sizes, and the Spark resources' master and jar cache."""
    settings = settings or current()
    # Trino is optional: without a `trino` resource (TICKHOUSE_TRINO_URL unset) its view asset and
    # read-back check are absent (`tickhouse doctor` says so); everything else runs as is.
    with_trino = "trino" in resources
    return Definitions(
        assets=[raw_tick_xml, parsed_ticks, ticks, ohlcv_bars, ohlcv_15m]
        + ([bar_views] if with_trino else []),
        asset_checks=[bars_freshness] + ([trino_reads_commit] if with_trino else []),
        jobs=[
            build_batch_job(with_trino),
            ingest_file_job,
            rebuild_bars_job,
            check_bars_freshness_job,
            *MAINTENANCE_JOBS,
            spark_backfill_ticks,
        ],
        schedules=MAINTENANCE_SCHEDULES,
        # The push sensor only where a SeaweedFS filer feeds the landing listener.
        sensors=[
            build_landing_sensor(settings),
            touched_days_sensor,
            automation_sensor,
            bars_freshness_sensor,
            reference_data_sensor,
        ]
        + ([build_push_sensor(settings)] if settings.push_enabled else []),
        # The Spark engine's resources cost nothing until a spark_backfill_ticks run uses them.
        # The Iceberg IO manager stores on the `lakehouse` resource's catalog and warehouse.
        resources={
            **spark_resources(settings),
            **iceberg_io_managers(resources["lakehouse"]),
            **resources,
        },
        # A run's steps (one file, or one day's bars) run one after another; a process per step
        # would only add start-up time. Parallelism comes from concurrent runs.
        executor=in_process_executor,
    )


_settings = current()
defs = build_definitions(resources_from_settings(_settings), _settings)
