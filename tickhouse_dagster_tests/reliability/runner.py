"""Run the code location's ingest job for one landing file, optionally pausing at the ticks commit.

The pause is the fault tests' hook point: the run has parsed the file, written its Parquet data
files and manifests to the warehouse, and is about to ask the catalog to commit. It announces
`at-commit.<party>` in the barrier folder and waits for `go`. Meanwhile a test stops a server (a
fault) or lets a second run reach the same point (a race). Only the first ticks commit pauses;
retries go straight through.

The tests run each such run in a thread of their own (`RunThread`): the runs are separate Dagster
runs with their own resources and catalog connections, and the barrier, not the scheduler, makes
them collide. To reproduce one by hand, in a process of its own:
    python -m tickhouse_dagster_tests.reliability.runner KEY [--barrier DIR --party NAME]
prints the run summary as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterInstance
from pyiceberg.exceptions import CommitFailedException

from tickhouse_dagster.cli.ingest import QUIET_CONSOLE, failure_reason
from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import LakehouseResource, resources_from_env
from tickhouse_dagster.storage.lakehouse import Lakehouse

BARRIER_TIMEOUT = 120.0
GO = "go"

# What the commit hook saw, per party (runs may share a process, one thread each).
COMMITS: dict[str, dict[str, int]] = {}
_paused: set[str] = set()


def _pause_at_commit(barrier: Path, party: str) -> None:
    if party in _paused:
        return
    _paused.add(party)
    (barrier / f"at-commit.{party}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not (barrier / GO).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no '{GO}' in {barrier} within {BARRIER_TIMEOUT}s")
        time.sleep(0.05)


def _hook_commits(house: Lakehouse, barrier: Path | None, party: str) -> None:
    catalog = house.catalog
    if getattr(catalog, "_tickhouse_hooked", False):
        return
    original = catalog.commit_table

    def commit_table(table: Any, requirements: Any, updates: Any) -> Any:
        if barrier is not None and table.name()[-1] == "ticks":
            _pause_at_commit(barrier, party)
        seen = COMMITS.setdefault(party, {"calls": 0, "conflicts": 0})
        seen["calls"] += 1
        try:
            return original(table, requirements, updates)
        except CommitFailedException:
            seen["conflicts"] += 1
            raise
        except Exception:
            # Lets a test wait until the outage has really failed a commit before ending it.
            if barrier is not None:
                (barrier / f"commit-failed.{party}.{seen['calls']}").touch()
            raise

    catalog.commit_table = commit_table  # type: ignore[method-assign]
    catalog._tickhouse_hooked = True  # type: ignore[attr-defined]


class HookedLakehouseResource(LakehouseResource):
    """The project's lakehouse resource with the commit hook on its catalog."""

    barrier: str | None = None
    party: str = "run"

    def lakehouse(self) -> Lakehouse:
        house = super().lakehouse()
        _hook_commits(house, Path(self.barrier) if self.barrier else None, self.party)
        return house


def hooked_resources(barrier: Path | None = None, party: str = "run") -> dict[str, Any]:
    resources = dict(resources_from_env())
    plain: LakehouseResource = resources["lakehouse"]
    fields = {name: getattr(plain, name) for name in LakehouseResource.model_fields}
    resources["lakehouse"] = HookedLakehouseResource(
        **fields, barrier=str(barrier) if barrier else None, party=party
    )
    return resources


def run_ingest(
    key: str,
    *,
    barrier: Path | None = None,
    party: str = "run",
    instance: DagsterInstance | None = None,
) -> dict[str, Any]:
    """One ingest run of `key`; a summary of what its event log shows."""
    from tickhouse_dagster.definitions import build_definitions

    _paused.discard(party)
    COMMITS[party] = {"calls": 0, "conflicts": 0}
    definitions = build_definitions(hooked_resources(barrier, party))
    job = definitions.resolve_job_def("ingest_landing_file")
    own = instance is None
    instance = instance or DagsterInstance.ephemeral()
    try:
        if not instance.has_dynamic_partition(landing_files.name, key):
            instance.add_dynamic_partitions(landing_files.name, [key])
        started = time.monotonic()
        result = job.execute_in_process(
            instance=instance,
            partition_key=key,
            run_config={"loggers": QUIET_CONSOLE},
            raise_on_error=False,
        )
        return summarise(result, time.monotonic() - started, COMMITS[party])
    finally:
        if own:
            instance.dispose()


class RunThread(threading.Thread):
    """`run_ingest` in a thread; `finish` returns its summary (or raises what it raised)."""

    def __init__(self, key: str, barrier: Path | None, party: str) -> None:
        super().__init__(name=f"ingest-{party}", daemon=True)
        self.key, self.barrier, self.party = key, barrier, party
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.summary = run_ingest(self.key, barrier=self.barrier, party=self.party)
        except BaseException as exc:  # handed to the test thread by finish()
            self.error = exc

    def finish(self, timeout: float) -> dict[str, Any]:
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"run {self.party} of {self.key} still running after {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


_STEP_KINDS = (
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_UP_FOR_RETRY,
    DagsterEventType.STEP_RESTARTED,
    DagsterEventType.STEP_FAILURE,
)


def summarise(result: Any, seconds: float, commits: dict[str, int]) -> dict[str, Any]:
    steps: list[tuple[str, str]] = []
    waits: list[float] = []
    checks: dict[str, dict[str, Any]] = {}
    ticks: dict[str, Any] = {}
    for event in result.all_events:
        if event.event_type in _STEP_KINDS:
            steps.append((event.event_type.value, event.step_key))
        if event.is_step_up_for_retry:
            waits.append(float(event.step_retry_data.seconds_to_wait or 0))
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            if materialization.asset_key.path == ["market", "ticks"]:
                ticks = {k: v.value for k, v in materialization.metadata.items()}
    for evaluation in result.get_asset_check_evaluations():
        checks[evaluation.check_name] = {
            "passed": evaluation.passed,
            "description": evaluation.description,
        }
    return {
        "success": result.success,
        "failure": None if result.success else failure_reason(result),
        "steps": steps,
        "retry_waits": waits,
        "checks": checks,
        "ticks": ticks,
        "commit_calls": commits["calls"],
        "commit_conflicts": commits["conflicts"],
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("key")
    parser.add_argument("--barrier", type=Path)
    parser.add_argument("--party", default="run")
    args = parser.parse_args(argv)
    summary = run_ingest(args.key, barrier=args.barrier, party=args.party)
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
