"""Run the code location's own jobs against a test instance and an isolated lakehouse."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult

from tickhouse_dagster.definitions import build_definitions
from tickhouse_dagster.defs.partitions import landing_files


def definitions_with(resources: dict[str, object]) -> Definitions:
    return build_definitions(resources)


def ingest(
    definitions: Definitions, instance: DagsterInstance, key: str, profile: str | None = None
) -> ExecuteInProcessResult:
    if not instance.has_dynamic_partition(landing_files.name, key):
        instance.add_dynamic_partitions(landing_files.name, [key])
    return definitions.resolve_job_def("ingest_landing_file").execute_in_process(
        instance=instance,
        partition_key=key,
        run_config={"ops": {"staging__parsed_ticks": {"config": {"profile": profile}}}},
        raise_on_error=False,
    )


def rebuild_bars(
    definitions: Definitions, instance: DagsterInstance, day: str
) -> ExecuteInProcessResult:
    return definitions.resolve_job_def("rebuild_bars").execute_in_process(
        instance=instance, partition_key=day, raise_on_error=False
    )


def materialized(result: ExecuteInProcessResult) -> set[AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def check_results(result: ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {
        ("/".join(e.asset_key.path), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }


def step_error(result: ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            return event.step_failure_data.error.message
    return ""


def requested_keys(result) -> list[str]:
    """The landing keys a landing-sensor tick requests (one batch run per tick, or none)."""
    assert len(result.run_requests) <= 1
    return [
        key
        for request in result.run_requests
        for key in request.run_config["ops"]["ingest_landing_files"]["config"]["keys"]
    ]
