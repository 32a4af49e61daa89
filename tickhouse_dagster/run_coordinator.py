"""Dagster's run queue, except for the runs that need none: those carrying a tag the instance
names (`launch_at_once`) are launched as they are submitted.

Dagster's queued coordinator stores a submitted run as QUEUED and its daemon launches it on its
next pass, every `dequeue_interval_seconds` (an integer, at least 1) rounded up to the
half-second sleeps of the daemon's loop: a pushed landing file waited 0.66–0.72 s (p50 of four
`make bench-latency` runs; 0.21–1.48 s) between its run's request and its launch, more than
its run's start-up (decision 1608). A push run needs no queue: the push sensor requests one only
when no other push run is queued or running (`defs/push.py`), and it carries no
`tickhouse/bars_day` tag, so no tag limit ever held it back. It does not count against
`max_concurrent_runs` either while it runs; every other run, a re-execution of a push run
included, is queued as before, under the same limits.

A launch that fails marks the run failed, as a failed dequeue does. A daemon stopped between
creating the run and launching it leaves it NOT_STARTED under its run key, and the sensor's next
tick submits it again (Dagster's own resumption of a sensor tick).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from dagster import (
    Array,
    DagsterRun,
    DagsterRunStatus,
    Field,
    QueuedRunCoordinator,
    String,
    SubmitRunContext,
)

from tickhouse_dagster.compat.dagster_runs import ConfigurableClassData


def launches_at_once(tags: Mapping[str, str], at_once: Sequence[Mapping[str, str]]) -> bool:
    """Whether a run with `tags` carries one of the `at_once` tags (`{key, value}`)."""
    return any(tags.get(tag["key"]) == tag["value"] for tag in at_once)


class PushFirstRunCoordinator(QueuedRunCoordinator):
    """`QueuedRunCoordinator` with its config, plus `launch_at_once`: a list of `{key, value}`
    tags whose runs skip the queue (see the module docstring)."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        launch_at_once: Sequence[Mapping[str, str]] = (),
        **queued: Any,
    ) -> None:
        super().__init__(inst_data=inst_data, **queued)
        self.launch_at_once = [dict(tag) for tag in launch_at_once]

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        queued = QueuedRunCoordinator.config_type()
        assert isinstance(queued, dict)  # Dagster's is a dict of fields
        tags = Array({"key": String, "value": String})
        return {**queued, "launch_at_once": Field(tags, is_required=False, default_value=[])}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        # Dagster's coordinator takes its config keys as keyword arguments of the same names.
        queued = {k: v for k, v in config_value.items() if k != "launch_at_once"}
        return cls(inst_data, config_value.get("launch_at_once", []), **queued)

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        # A re-execution (from the UI, say) copies its parent's tags but not the sensor's
        # one-at-a-time guarantee: it is queued like any run a person starts.
        if (
            run.status != DagsterRunStatus.NOT_STARTED
            or run.parent_run_id is not None
            or not launches_at_once(run.tags, self.launch_at_once)
        ):
            return super().submit_run(context)
        self._instance.launch_run(run.run_id, context.workspace)
        launched = self._instance.get_run_by_id(run.run_id)
        if launched is None:
            raise RuntimeError(f"run {run.run_id} vanished while it was launched")
        return launched
