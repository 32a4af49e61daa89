"""Push ingestion: the landing listener's queue → `ingest_landing_batch` runs, within a second.

On when `TICKHOUSE_FILER_GRPC` is set (a SeaweedFS filer feeds the listener, see
`tickhouse_dagster/listener.py` and docs/decisions/1601-push-ingestion.md). Every tick the
push sensor claims the queue rows after its cursor (at most TICKHOUSE_SENSOR_MAX_FILES_PER_TICK)
and requests one batch run for the versions under its landing prefix that are not ingested yet:
a lone file gets a run of its own at once, a burst one run. The claim is stored in the queue
before the request is returned, so a retried evaluation requests the same batch under the same
run key (Dagster drops the duplicate) and every version is requested exactly once.

Dagster's sensor daemon runs its loop every 5 s whatever `minimum_interval_seconds` says
(`MIN_INTERVAL_LOOP_TIME`, a constant in dagster/_daemon/sensor.py): a 1 s sensor is evaluated
every 5 s, and a file waited 3.3–4.5 s for its request (measured). So an evaluation that finds
nothing waits for the queue (TICKHOUSE_PUSH_WAIT_SECONDS, default 4 s, polling the queue's last
seq every 50 ms) and returns as soon as a file is queued: the evaluation covers most of the
daemon's loop, and a file is requested within a fraction of a second of being queued. While a
push run is queued or running no new one is requested: the evaluation waits for it to end (within
the same wait) and what landed meanwhile goes into the next run together (a run's own cost is
mostly fixed, so two runs side by side on the same cores take longer than one after the other,
and under a burst they would pile up).

What the UI shows: the sensor's cursor (queue position, backlog, how long ago the listener heard
from the filer) and, with every request, an observation on `raw_tick_xml` with the backlog and
the landing → requested lag.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import cache

from dagster import (
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from tickhouse_dagster.compat.dagster_private import valid_partition_key
from tickhouse_dagster.defs.asset_keys import RAW_TICK_XML
from tickhouse_dagster.defs.ingest_batch import BATCH_JOB, batch_run_in_flight
from tickhouse_dagster.defs.ledger import not_yet_ingested
from tickhouse_dagster.defs.partitions import LANDING_FILES, landing_files
from tickhouse_dagster.defs.resources import FeedResource, LandingResource
from tickhouse_dagster.settings import TickhouseSettings
from tickhouse_dagster.storage.landing import S3Landing, is_tick_file
from tickhouse_dagster.storage.landing_queue import LandingQueue

QUEUE_CHECK_SECONDS = 0.05
RUN_CHECK_SECONDS = 0.1  # a run-status query on the instance's storage: cheap, not free
BATCH_FILES_TAG = "tickhouse/batch_files"
LAG_TAG = "tickhouse/landed_to_requested_ms"  # oldest file of the batch: filer event → request
PUSH_TAG = "tickhouse/push"


@cache
def _queue(url: str) -> LandingQueue:
    return LandingQueue(url)


def push_queue(settings: TickhouseSettings) -> LandingQueue | None:
    """The listener's queue when push ingestion is configured, else None (polling only)."""
    return _queue(settings.landing_queue_url) if settings.push_enabled else None


def _push_run_in_flight(context: SensorEvaluationContext, stall: float) -> str | None:
    """The id of a push run queued or running, if any (ingest_batch.batch_run_in_flight)."""
    return batch_run_in_flight(context.instance, stall, {PUSH_TAG: "true"})


def _wait_for_push_run(
    context: SensorEvaluationContext, stall: float, deadline: float
) -> str | None:
    """The push run in flight once it has ended or `deadline` (monotonic) has passed, whichever
    comes first: None when it ended. Without the wait a file that landed during a run waited for
    the run and then for the daemon's next loop (up to 5 s); once runs took longer than the
    files' spacing minus that loop, every file waited a whole spacing more (measured: 60 files
    every 10 s, visible after 6–8 s for 20 files, then 16–17 s for the rest)."""
    busy = _push_run_in_flight(context, stall)
    while busy is not None and time.monotonic() < deadline:
        time.sleep(RUN_CHECK_SECONDS)
        busy = _push_run_in_flight(context, stall)
    return busy


def _wait_for_queue(queue: LandingQueue, after: int, deadline: float) -> None:
    """Until something is queued after `after`, at most until `deadline` (monotonic; see the
    module doc). Any new row ends the wait, even one under another prefix: the evaluation then
    just finds nothing."""
    while queue.last_seq() <= after and time.monotonic() < deadline:
        time.sleep(QUEUE_CHECK_SECONDS)


def build_push_sensor(settings: TickhouseSettings) -> SensorDefinition:
    """The push sensor: its interval, batch size, waits and queue from `settings`."""

    @sensor(
        name="landing_push_sensor",
        job_name=BATCH_JOB,
        minimum_interval_seconds=settings.push_sensor_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Files the SeaweedFS landing listener queued are ingested within a second, "
        "once per version (the polling landing_sensor stays on as a slow safety net).",
    )
    def landing_push_sensor(
        context: SensorEvaluationContext, landing: LandingResource, feed: FeedResource
    ) -> SensorResult:
        return _take_pushed(context, landing, feed, settings)

    return landing_push_sensor


def _take_pushed(
    context: SensorEvaluationContext,
    landing: LandingResource,
    feed: FeedResource,
    settings: TickhouseSettings,
) -> SensorResult:
    refused = feed.refusal()
    if refused is not None:
        return SensorResult(skip_reason=refused)  # the queue stays unclaimed
    store = landing.store()
    if not isinstance(store, S3Landing):
        return SensorResult(skip_reason=f"push needs an s3:// landing, not {store.uri}")
    queue = _queue(settings.landing_queue_url)
    state = json.loads(context.cursor) if context.cursor else {}
    after = int(state.get("seq", 0))
    # One wait per evaluation, shared: for the push run in flight to end, then for the queue.
    deadline = time.monotonic() + settings.push_wait_seconds
    busy = _wait_for_push_run(context, settings.push_run_stall_seconds, deadline)
    if busy is not None:
        # One push run at a time: files landing meanwhile wait in the queue and go into the
        # next run together, instead of runs piling up side by side on the same cores.
        return SensorResult(skip_reason=f"push run {busy} in progress; files wait for the next")
    _wait_for_queue(queue, after, deadline)
    after, last = queue.claim(store.uri, after, settings.sensor_max_files_per_tick)
    queued = [
        q for q in queue.files(after, last, store.bucket, store.prefix) if is_tick_file(q.file.key)
    ]
    unusable = [q.file.key for q in queued if not valid_partition_key(q.file.key)]
    if unusable:
        context.log.warning(f"landing keys Dagster cannot use as partitions, skipped: {unusable}")
    usable = [q for q in queued if valid_partition_key(q.file.key)]
    todo = {f.run_key for f in not_yet_ingested(context.instance, [q.file for q in usable])}
    batch = [q for q in usable if q.file.run_key in todo]
    now = time.time_ns()
    backlog, _ = queue.backlog(last, store.bucket, store.prefix)
    heard = [now - s.heard_ns for s in queue.listener_states()]
    heard_s = round(min(heard) / 1e9, 3) if heard else None
    cursor = json.dumps(
        {"seq": last, "backlog": backlog, "listener_heard_seconds_ago": heard_s}, sort_keys=True
    )
    if not batch:
        listener = "no listener has written yet" if heard_s is None else f"heard {heard_s}s ago"
        return SensorResult(
            skip_reason=f"no new files (queue position {last}, backlog {backlog}; listener "
            f"{listener})",
            cursor=cursor,
        )
    files = [q.file for q in batch]
    lag_ms = (now - min(q.event_ts_ns for q in batch)) // 1_000_000
    known = set(context.instance.get_dynamic_partitions(LANDING_FILES))
    new_keys = sorted({f.key for f in files} - known)
    digest = hashlib.sha256("\n".join(f.run_key for f in files).encode()).hexdigest()[:16]
    context.log.info(f"queue ({after}, {last}]: {len(files)} to ingest, lag {lag_ms} ms")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"push-{digest}",
                run_config={
                    "ops": {"ingest_landing_files": {"config": {"keys": [f.key for f in files]}}}
                },
                tags={BATCH_FILES_TAG: str(len(files)), LAG_TAG: str(lag_ms), PUSH_TAG: "true"},
            )
        ],
        dynamic_partitions_requests=[landing_files.build_add_request(new_keys)] if new_keys else [],
        asset_events=[
            AssetObservation(
                asset_key=AssetKey(RAW_TICK_XML),
                metadata={
                    "requested_files": MetadataValue.int(len(files)),
                    "backlog": MetadataValue.int(backlog),
                    "landed_to_requested_ms": MetadataValue.int(lag_ms),
                    "queue_position": MetadataValue.int(last),
                    "listener_heard_seconds_ago": MetadataValue.float(heard_s)
                    if heard_s is not None
                    else MetadataValue.text("never"),
                    "source": MetadataValue.text("SeaweedFS filer change stream"),
                },
            )
        ],
        cursor=cursor,
    )
