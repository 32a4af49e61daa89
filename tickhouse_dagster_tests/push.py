"""Driving the push sensor as the Dagster daemon does, against a real listener's queue."""

from __future__ import annotations

import time
from collections.abc import Iterable

from dagster import DagsterInstance, SensorResult, build_sensor_context

from tickhouse_dagster.defs.push import build_push_sensor, push_queue
from tickhouse_dagster.defs.resources import FeedResource, LandingResource
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.landing import S3Landing
from tickhouse_dagster.storage.landing_queue import LandingQueue


def queue() -> LandingQueue:
    found = push_queue(current())
    assert found is not None, "TICKHOUSE_FILER_GRPC is not set: push ingestion is off"
    return found


class PushDaemon:
    """Ticks the push sensor with its stored cursor, applies its partition requests, and keeps
    every run request by run key — as the daemon does, which drops a run key it has seen."""

    def __init__(self, instance: DagsterInstance, landing: LandingResource) -> None:
        self.instance, self.landing = instance, landing
        self.cursor: str | None = None
        self.runs: dict[str, list[str]] = {}  # run key -> landing keys, first request only
        self.requests = 0  # every request, duplicates (same run key) included

    def start_at_queue_end(self) -> None:
        """Begin after everything already queued (the shared stack's queue holds other tests'
        files; a fresh deployment starts at 0)."""
        self.cursor = f'{{"seq": {queue().last_seq()}}}'

    def tick(self, cursor: str | None = None) -> SensorResult:
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor if cursor is None else cursor,
            resources={"landing": self.landing, "feed": FeedResource()},
        )
        result = build_push_sensor(current())(context)
        assert isinstance(result, SensorResult)
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        for request in result.run_requests:
            self.requests += 1
            keys = request.run_config["ops"]["ingest_landing_files"]["config"]["keys"]
            self.runs.setdefault(request.run_key, keys)
        if cursor is None and result.cursor is not None:
            self.cursor = result.cursor  # as the daemon: a result without one keeps the last
        return result

    def requested_keys(self) -> list[str]:
        return [key for keys in self.runs.values() for key in keys]


def wait_queued(keys: Iterable[str], landing: LandingResource, timeout: float) -> float:
    """Seconds until every landing key (relative to the landing prefix) is in the queue."""
    store = landing.store()
    assert isinstance(store, S3Landing)
    wanted, started = set(keys), time.monotonic()
    while True:
        queued = {q.file.key for q in queue().files(0, 1 << 62, store.bucket, store.prefix)}
        if wanted <= queued:
            return time.monotonic() - started
        if time.monotonic() - started >= timeout:
            # Which stage lagged: a position far behind now is a listener still catching up
            # (or not hearing the filer); a recent one means the events never came.
            now = time.time_ns()
            where = [
                f"{s.name}: position {(now - s.since_ns) / 1e9:.1f}s ago, "
                f"heard {(now - s.heard_ns) / 1e9:.1f}s ago"
                for s in queue().listener_states()
            ]
            missing = sorted(wanted - queued)
            raise AssertionError(f"not queued after {timeout}s: {missing}; listeners: {where}")
        time.sleep(0.02)
