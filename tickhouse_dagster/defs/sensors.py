"""Sensors: new landing files → batch ingest runs; new ticks commits → bar rebuilds of the touched
days.

Every file waiting at a tick goes into one `ingest_landing_batch` run (up to
TICKHOUSE_SENSOR_MAX_FILES_PER_TICK): a lone file gets a prompt run of its own, a burst one run
that parses on both cores instead of a run process per file.

With push ingestion on (TICKHOUSE_FILER_GRPC set, defs/push.py), this sensor is the safety net:
it registers the versions it finds in the listener's queue (insert-if-absent on the run key) and
requests only those it registered first, i.e. that the listener had not queued; the push sensor
requests only the listener's rows. So a version is requested by one of the two sensors, never
both: normally the listener has every file within milliseconds and this sensor requests nothing;
it catches what the listener missed (e.g. uploads while the listener and the filer were both down
and the filer lost its unflushed metadata log).

Dagster has no partition mapping from per-file partitions to daily ones, so the second sensor is
the bridge: it reads the `trade_dates` each ticks materialization recorded and requests one
`rebuild_bars` run per touched day whose bars were not built from that commit or a later one (an
ingest run builds its days' bars itself, so normally there is none). Builds of one day running
side by side are safe: one from older ticks never replaces one from newer (storage.bar_builds).
"""

import hashlib
import time
from collections.abc import Sequence
from datetime import date

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    EventLogRecord,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from tickhouse_dagster.compat.dagster_private import valid_partition_key
from tickhouse_dagster.core.contract import BAR_INTERVALS, TICKS_TABLE, bar_table_name
from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.ingest_batch import BATCH_JOB, batch_run_in_flight
from tickhouse_dagster.defs.jobs import BARS_DAY_TAG, rebuild_bars_job
from tickhouse_dagster.defs.ledger import not_yet_ingested
from tickhouse_dagster.defs.partitions import (
    LANDING_FILES,
    landing_files,
    without_bars_partition,
)
from tickhouse_dagster.defs.push import push_queue
from tickhouse_dagster.defs.resources import FeedResource, LakehouseResource, LandingResource
from tickhouse_dagster.defs.ticks_commit import TicksCommit
from tickhouse_dagster.market.reference_data import fingerprint
from tickhouse_dagster.settings import TickhouseSettings, current
from tickhouse_dagster.storage.bar_builds import behind
from tickhouse_dagster.storage.landing import LandingFile, S3Landing
from tickhouse_dagster.storage.landing_cursor import LandingCursor, plan_ingestion
from tickhouse_dagster.storage.landing_queue import LandingQueue
from tickhouse_dagster.storage.reference_lineage import find_stale

TICKS_EVENTS_PER_TICK = 1000
REFERENCE_SENSOR_INTERVAL = 60
BATCH_FILES_TAG = "tickhouse/batch_files"


def build_landing_sensor(settings: TickhouseSettings) -> SensorDefinition:
    """The polling landing sensor: its interval, batch size and lookback from `settings`."""

    @sensor(
        name="landing_sensor",
        job_name=BATCH_JOB,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Every new or changed XML file in the landing area is ingested once.",
    )
    def landing_sensor(
        context: SensorEvaluationContext, landing: LandingResource, feed: FeedResource
    ) -> SensorResult | SkipReason:
        return _poll_landing(context, landing, feed, settings)

    return landing_sensor


def _poll_landing(
    context: SensorEvaluationContext,
    landing: LandingResource,
    feed: FeedResource,
    settings: TickhouseSettings,
) -> SensorResult | SkipReason:
    refused = feed.refusal()
    if refused is not None:
        return SkipReason(refused)
    store = landing.store()
    plan = plan_ingestion(
        store.iter_files(),
        LandingCursor.from_json(context.cursor),
        now_ns=time.time_ns(),
        margin_ns=settings.sensor_margin_seconds * 1_000_000_000,
        limit=settings.sensor_max_files_per_tick,
    )
    unusable = [f.key for f in plan.to_ingest if not valid_partition_key(f.key)]
    if unusable:
        context.log.warning(f"landing keys Dagster cannot use as partitions, skipped: {unusable}")
    files = not_yet_ingested(
        context.instance, [f for f in plan.to_ingest if valid_partition_key(f.key)]
    )
    queue = push_queue(settings)
    if queue is not None and files and isinstance(store, S3Landing):
        files = _missed_by_listener(queue, store, files)
    known = set(context.instance.get_dynamic_partitions(LANDING_FILES))
    new_keys = sorted({f.key for f in files} - known)
    context.log.info(
        f"listed {plan.files_listed} files, {len(files)} to ingest, {plan.backlog} waiting"
    )
    batch = hashlib.sha256("\n".join(f.run_key for f in files).encode()).hexdigest()[:16]
    config = {"ops": {"ingest_landing_files": {"config": {"keys": [f.key for f in files]}}}}
    return SensorResult(
        run_requests=(
            [
                RunRequest(
                    run_key=f"batch-{batch}",
                    run_config=config,
                    tags={BATCH_FILES_TAG: str(len(files))},
                )
            ]
            if files
            else []
        ),
        dynamic_partitions_requests=[landing_files.build_add_request(new_keys)] if new_keys else [],
        cursor=plan.cursor.to_json(),
    )


def _missed_by_listener(
    queue: LandingQueue, store: S3Landing, files: list[LandingFile]
) -> list[LandingFile]:
    taken = queue.take_for_poll(store.bucket, store.prefix, files)
    return [f for f in files if f.run_key in taken]


def _touched_days(records: Sequence[EventLogRecord]) -> dict[date, int | None]:
    """Trade date → the latest ticks snapshot among the commits that touched it."""
    touched: dict[date, int | None] = {}
    for record in records:
        if record.asset_materialization is None:
            continue
        commit = TicksCommit.from_materialization(record.asset_materialization)
        for day in commit.trade_dates:
            touched[date.fromisoformat(day)] = commit.snapshot_id  # records come oldest first
    return touched


@sensor(
    job=rebuild_bars_job,
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Rebuilds the bars of every trade date a ticks commit touched, unless the run "
    "that committed them has built them already.",
)
def touched_days_sensor(
    context: SensorEvaluationContext, lakehouse: LakehouseResource
) -> SensorResult | SkipReason:
    running = batch_run_in_flight(context.instance, current().push_run_stall_seconds)
    if running is not None:
        # An ingest run builds the bars of the days it touches once its files are committed;
        # asked for meanwhile, a bars run would build the same day beside it on the same cores
        # (measured: 10 files dropped at once, 2–3 bars runs during the batch). The cursor stays:
        # its commits are looked at once it has ended, and only days still behind are built.
        return SkipReason(f"ingest run {running} in flight; it builds its days' bars")
    result = context.instance.fetch_materializations(
        AssetKey(TICKS), limit=TICKS_EVENTS_PER_TICK, cursor=context.cursor, ascending=True
    )
    if not result.records:
        return SkipReason("no new ticks commits")
    touched = _touched_days(result.records)
    house = lakehouse.lakehouse()
    # Ingest runs build the bars of the days they touch; only days whose bars are older than
    # the commit (a run that failed before its bars, ticks written by Spark, bars off) are
    # requested here.
    behind_days = behind(
        house.table(TICKS_TABLE),
        {i: house.table(bar_table_name(i)) for i in BAR_INTERVALS},
        touched,
    )
    days = {d.isoformat() for d in behind_days}
    outside = without_bars_partition(days)
    if outside:
        # Never dropped silently: each such day, and why it has no bars partition.
        reasons = "; ".join(f"{day}: {outside[day]}" for day in sorted(outside))
        context.log.warning(f"trade dates outside the bars partitions, not rebuilt: {reasons}")
    up_to_date = len(touched) - len(behind_days)
    if up_to_date:
        context.log.info(f"{up_to_date} touched trade date(s) already have current bars")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"{day}@{result.cursor}",
                partition_key=day,
                tags={BARS_DAY_TAG: day},
            )
            for day in sorted(days - set(outside), key=date.fromisoformat)
        ],
        cursor=result.cursor,
    )


@sensor(
    job=rebuild_bars_job,
    minimum_interval_seconds=REFERENCE_SENSOR_INTERVAL,
    default_status=DefaultSensorStatus.RUNNING,
    description="Rebuilds the bars of every trade date built under venue reference data that "
    "has since changed (time zone, trade-date rule); `tickhouse stale` names files to re-ingest.",
)
def reference_data_sensor(
    context: SensorEvaluationContext, feed: FeedResource, lakehouse: LakehouseResource
) -> SensorResult | SkipReason:
    venues = feed.venues()
    # The bars' records only, every minute; which files need re-ingesting (a read of their
    # ticks) is `tickhouse stale`'s and doctor's to say: a sensor cannot re-parse them anyway.
    report = find_stale(lakehouse.lakehouse(), venues, ticks="skip")
    if report.removed:
        context.log.warning(report.render())
    if not report.bars:
        return SkipReason("no bars built under changed reference data")
    outside = without_bars_partition(d.isoformat() for d in report.days())
    requests = []
    for day in report.days():
        key = day.isoformat()
        if key in outside:
            context.log.warning(f"stale bars of {key} not rebuilt: {outside[key]}")
            continue
        # One request per day and state of the reference data it is rebuilt under.
        state = ",".join(
            f"{b.venue}={fingerprint(venues[b.venue])}" for b in report.bars if b.trade_date == day
        )
        requests.append(
            RunRequest(
                run_key=f"reference-{key}-{hashlib.sha256(state.encode()).hexdigest()[:16]}",
                partition_key=key,
                tags={BARS_DAY_TAG: key},
            )
        )
    context.log.info(report.render())
    return SensorResult(run_requests=requests)
