"""Freshness of the bars during the venues' sessions: the `fresh_in_session` check on each bar
table, evaluated every minute by `bars_freshness_sensor` (and runnable from the UI).

Dagster's own `FreshnessPolicy.time_window` / `build_last_update_freshness_checks` measure the age
of the last materialization against a fixed window or cron, which cannot follow several venues'
sessions, breaks and holidays: bars are not stale on a Sunday. So the rule is this project's
(`quality.bar_freshness`), judged against the materialization times Dagster records per trade-date
partition, and reported as an ordinary asset check (severity WARN): the UI shows the bars stale on
their asset pages and in the asset graph, with which venue, which trade date and since when.
The sensor records an evaluation only when the state changes (no runs, no noise).
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import partial

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    multi_asset_check,
    sensor,
)

from tickhouse_dagster.compat.dagster_private import current_datetime
from tickhouse_dagster.defs.assets.bars import BAR_KEYS
from tickhouse_dagster.defs.check_results import as_evaluation
from tickhouse_dagster.defs.jobs import BARS_FRESHNESS_CHECK
from tickhouse_dagster.defs.resources import FeedResource, LakehouseResource
from tickhouse_dagster.quality.bar_freshness import Verdict, judge, watched
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.pipeline_status import ticks_figures

CHECK_NAME = BARS_FRESHNESS_CHECK
FRESHNESS_SENSOR_INTERVAL = 60


def freshness_threshold() -> timedelta:
    """TICKHOUSE_BARS_FRESHNESS_MINUTES, as the process evaluating a check or sensor has it."""
    return current().bars_freshness_threshold


def _last_update(instance: DagsterInstance, key: AssetKey, day: date) -> datetime | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()]), limit=1
    ).records
    return datetime.fromtimestamp(records[0].timestamp, UTC) if records else None


def evaluate_freshness(
    instance: DagsterInstance,
    feed: FeedResource,
    lakehouse: LakehouseResource,
    keys: Iterable[AssetKey],
    now: datetime | None = None,
) -> dict[AssetKey, Verdict]:
    """Each bar table's verdict at `now` (default: Dagster's clock), for the venues the ticks
    table holds prints of."""
    now = now or current_datetime()
    with_ticks = ticks_figures(lakehouse.lakehouse()).venues
    venues = watched(feed.venues(), with_ticks)
    threshold = freshness_threshold()
    return {
        key: judge(venues, now, threshold, partial(_last_update, instance, key)) for key in keys
    }


def _metadata(verdict: Verdict) -> dict[str, MetadataValue]:
    threshold = freshness_threshold()
    stale = [w for w, last in verdict.expectations if w.stale(last)]
    return {
        "threshold_minutes": MetadataValue.float(threshold.total_seconds() / 60),
        "venues_in_session": MetadataValue.text(
            ", ".join(w.venue for w, _ in verdict.expectations if w.in_session) or "none"
        ),
        "stale_venues": MetadataValue.text(", ".join(w.venue for w in stale) or "none"),
        "trade_dates": MetadataValue.text(
            ", ".join(f"{w.venue} {w.trade_date}" for w, _ in verdict.expectations) or "none"
        ),
    }


def _result(key: AssetKey, verdict: Verdict) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        description=verdict.description("/".join(key.path))[:2000],
        metadata=_metadata(verdict),
    )


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            description=(
                "While a venue with ticks trades, its trade date's bars were rebuilt within "
                "TICKHOUSE_BARS_FRESHNESS_MINUTES (default 30); evaluated every minute by "
                "bars_freshness_sensor."
            ),
        )
        for key in BAR_KEYS.values()
    ],
    can_subset=True,
    name="bars_freshness",
)
def bars_freshness(
    context: AssetCheckExecutionContext, feed: FeedResource, lakehouse: LakehouseResource
) -> Iterable[AssetCheckResult]:
    keys = {k.asset_key for k in context.selected_asset_check_keys}
    for key, verdict in evaluate_freshness(context.instance, feed, lakehouse, keys).items():
        yield _result(key, verdict)


check_bars_freshness_job = define_asset_job(
    "check_bars_freshness",
    selection=AssetSelection.checks(bars_freshness),
    description="Evaluate the bars' fresh_in_session checks now.",
)


def _last_passed(instance: DagsterInstance, key: AssetCheckKey) -> bool | None:
    summary = instance.event_log_storage.get_asset_check_summary_records([key])[key]
    record = summary.last_completed_check_execution_record
    evaluation = record.event.asset_check_evaluation if record and record.event else None
    return None if evaluation is None else evaluation.passed


@sensor(
    minimum_interval_seconds=FRESHNESS_SENSOR_INTERVAL,
    default_status=DefaultSensorStatus.RUNNING,
    description="Judges the bars' freshness during the venues' sessions every minute and records "
    "the fresh_in_session check when its state changes.",
)
def bars_freshness_sensor(
    context: SensorEvaluationContext, feed: FeedResource, lakehouse: LakehouseResource
) -> SensorResult | SkipReason:
    events = []
    for key, verdict in evaluate_freshness(
        context.instance, feed, lakehouse, BAR_KEYS.values()
    ).items():
        check_key = AssetCheckKey(key, CHECK_NAME)
        if _last_passed(context.instance, check_key) == verdict.passed:
            continue
        events.append(as_evaluation(_result(key, verdict)))
    if not events:
        return SkipReason("bars freshness unchanged")
    return SensorResult(asset_events=events)
