"""What has been ingested, read from Dagster's own event log: the `file_version` recorded on the
latest ticks materialization of each landing file."""

from collections.abc import Iterable

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.ticks_commit import TicksCommit
from tickhouse_dagster.storage.landing import LandingFile


def ingested_version(instance: DagsterInstance, key: str) -> str | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(TICKS), asset_partitions=[key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return TicksCommit.from_materialization(records[0].asset_materialization).file_version


def not_yet_ingested(instance: DagsterInstance, files: Iterable[LandingFile]) -> list[LandingFile]:
    """Files whose current version has no ticks materialization (one query for the partitions
    never materialized, one per file only for those that were)."""
    materialized = instance.get_materialized_partitions(AssetKey(TICKS))
    return [
        f
        for f in files
        if f.key not in materialized or ingested_version(instance, f.key) != f.version
    ]
