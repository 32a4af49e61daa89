"""infra/dagster/dagster.yaml, the deployment's Dagster instance, on a real PostgreSQL: the
local stack's (`infra/local/stack up postgres`), with the variables `infra/local/stack env`
prints, which are the names the compose file sets."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, job, op
from dagster._core.launcher import DefaultRunLauncher
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from tickhouse_dagster.defs.push import PUSH_TAG
from tickhouse_dagster.run_coordinator import PushFirstRunCoordinator
from tickhouse_dagster.settings import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a cold `stack up postgres` installs

DAGSTER_DIR = PROJECT_ROOT / "infra" / "dagster"
INSTANCE_VARS = (
    "TICKHOUSE_PG_HOST",
    "TICKHOUSE_PG_PORT",
    "TICKHOUSE_PG_USER",
    "TICKHOUSE_PG_PASSWORD",
)


@op
def deploy_probe_op() -> int:
    return 1


@job
def deploy_probe() -> None:
    deploy_probe_op()


@pytest.fixture
def deployment_home(
    stack_postgres: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A DAGSTER_HOME holding infra/dagster/dagster.yaml, the environment pointed at the stack."""
    for name in INSTANCE_VARS:
        monkeypatch.setenv(name, stack_postgres[name])
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(DAGSTER_DIR / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(deployment_home: Path) -> Iterator[DagsterInstance]:
    with DagsterInstance.from_config(str(deployment_home)) as instance:
        yield instance


def test_instance_names_are_the_ones_the_stack_prints(stack_postgres: dict[str, str]) -> None:
    for name in INSTANCE_VARS:
        assert stack_postgres.get(name), name


def test_storage_is_postgres_and_the_queue_is_configured(instance: DagsterInstance) -> None:
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, PushFirstRunCoordinator)
    assert instance.run_coordinator.launch_at_once == [{"key": PUSH_TAG, "value": "true"}]
    assert isinstance(instance.run_launcher, DefaultRunLauncher)
    assert not instance.telemetry_enabled
    assert instance.run_monitoring_enabled
    queue = instance.get_concurrency_config().run_queue_config
    local = yaml.safe_load((DAGSTER_DIR / "dagster.local.yaml").read_text())["run_coordinator"][
        "config"
    ]
    assert queue.max_concurrent_runs == local["max_concurrent_runs"]
    assert list(queue.tag_concurrency_limits) == local["tag_concurrency_limits"]
    assert list(queue.tag_concurrency_limits) == [
        {"key": "tickhouse/bars_day", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]


def test_runs_events_and_partitions_persist(
    deployment_home: Path, instance: DagsterInstance
) -> None:
    partitions = f"deploy_test_{uuid.uuid4().hex[:8]}"
    run_id = None
    try:
        instance.add_dynamic_partitions(partitions, ["landing/a.xml", "landing/b.xml.gz"])
        result = deploy_probe.execute_in_process(
            instance=instance, tags={"tickhouse/bars_day": "2024-01-02"}
        )
        run_id = result.run_id
        assert result.success
        # A second, independent instance on the same dagster.yaml reads it all back from PostgreSQL.
        with DagsterInstance.from_config(str(deployment_home)) as other:
            assert set(other.get_dynamic_partitions(partitions)) == {
                "landing/a.xml",
                "landing/b.xml.gz",
            }
            run = other.get_run_by_id(run_id)
            assert run is not None and run.status == DagsterRunStatus.SUCCESS
            assert run.job_name == "deploy_probe" and run.tags["tickhouse/bars_day"] == "2024-01-02"
            types = {
                event.dagster_event_type
                for event in other.all_logs(run_id)
                if event.is_dagster_event
            }
            assert {
                DagsterEventType.RUN_START,
                DagsterEventType.STEP_OUTPUT,
                DagsterEventType.RUN_SUCCESS,
            } <= types
    finally:
        if run_id:
            instance.delete_run(run_id)
        for key in instance.get_dynamic_partitions(partitions):
            instance.delete_dynamic_partition(partitions, key)
    assert instance.get_run_by_id(run_id) is None
    assert instance.get_dynamic_partitions(partitions) == []
