"""The run coordinator (tickhouse_dagster/run_coordinator.py) on a real SQLite instance with the
project's coordinator config and the warm launcher: a push run is launched as it is submitted,
without a pass through the queue; every other run is queued, under Dagster's limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, SubmitRunContext

from tickhouse_dagster.defs.push import PUSH_TAG
from tickhouse_dagster.launcher import WORKER_PID_TAG
from tickhouse_dagster.run_coordinator import PushFirstRunCoordinator, launches_at_once
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.deploy.test_warm_launcher import queued_run, wait_for_end, write_job

pytestmark = pytest.mark.timeout(180)
DAGSTER_DIR = PROJECT_ROOT / "infra" / "dagster"
PUSH_RUN = {PUSH_TAG: "true"}


def coordinator_block(file: str) -> dict[str, object]:
    return yaml.safe_load((DAGSTER_DIR / file).read_text())["run_coordinator"]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    home = tmp_path / "home"
    home.mkdir()
    config = {
        "run_coordinator": coordinator_block("dagster.local.yaml"),
        "run_launcher": {
            "module": "tickhouse_dagster.launcher",
            "class": "WarmRunLauncher",
            "config": {"preload_modules": ["dagster", "dagster._cli.api"]},
        },
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_a_run_launches_at_once_only_with_one_of_the_named_tags() -> None:
    at_once = [{"key": PUSH_TAG, "value": "true"}]
    assert launches_at_once({PUSH_TAG: "true", "other": "x"}, at_once)
    assert not launches_at_once({PUSH_TAG: "false"}, at_once)
    assert not launches_at_once({"other": "true"}, at_once)
    assert not launches_at_once(PUSH_RUN, [])


@pytest.mark.parametrize("file", ["dagster.local.yaml", "dagster.yaml"])
def test_both_instances_launch_the_push_sensors_runs_at_once(file: str) -> None:
    block = coordinator_block(file)
    assert (block["module"], block["class"]) == (
        "tickhouse_dagster.run_coordinator",
        "PushFirstRunCoordinator",
    )
    config = block["config"]
    assert isinstance(config, dict)
    assert config["launch_at_once"] == [{"key": PUSH_TAG, "value": "true"}]
    assert config["tag_concurrency_limits"][0]["key"] == "tickhouse/bars_day"


def test_a_push_run_is_launched_as_it_is_submitted(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, PushFirstRunCoordinator)
    assert coordinator.get_run_queue_config().max_concurrent_runs == 4  # Dagster's own config
    job_file = tmp_path / "probe_jobs.py"
    write_job(job_file, 7)
    run = queued_run(instance, job_file, tmp_path / "push.txt", tags=PUSH_RUN)

    submitted = coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]

    # No daemon runs here: only a launch at submission can start it.
    assert submitted.status != DagsterRunStatus.QUEUED
    assert WORKER_PID_TAG in submitted.tags
    assert wait_for_end(instance, run.run_id) == DagsterRunStatus.SUCCESS
    assert (tmp_path / "push.txt").read_text().split()[1] == "7"
    types = [e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert DagsterEventType.RUN_ENQUEUED not in types
    assert DagsterEventType.RUN_STARTING in types


@pytest.mark.parametrize("tags, parent", [({PUSH_TAG: "false"}, False), (PUSH_RUN, True)])
def test_every_other_run_waits_in_the_queue_a_re_executed_push_run_too(
    instance: DagsterInstance, tmp_path: Path, tags: dict[str, str], parent: bool
) -> None:
    job_file = tmp_path / "probe_jobs.py"
    write_job(job_file, 8)
    parent_run_id = queued_run(instance, job_file, tmp_path / "p.txt").run_id if parent else None
    run = queued_run(
        instance, job_file, tmp_path / "queued.txt", tags=tags, parent_run_id=parent_run_id
    )

    submitted = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]

    assert submitted.status == DagsterRunStatus.QUEUED
    assert WORKER_PID_TAG not in submitted.tags
    types = [e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert types == [DagsterEventType.RUN_ENQUEUED]
    assert not (tmp_path / "queued.txt").exists()
