"""Trino's read-back of a ticks commit (only when Trino is configured). The checks on parsed
ticks and on the ticks commit are the ingest engine's, reported by the tick assets themselves
(`defs/file_reports.py`)."""

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    asset_check,
)

from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import (
    LakehouseResource,
    TrinoResource,
)
from tickhouse_dagster.defs.ticks_commit import TicksCommit
from tickhouse_dagster.storage.row_filters import equal_to
from tickhouse_dagster.storage.trino_sql import file_rows_at_snapshot


@asset_check(
    asset=TICKS,
    partitions_def=landing_files,
    description="Trino reads this file's commit (at its Iceberg snapshot) exactly as written.",
)
def trino_reads_commit(
    context: AssetCheckExecutionContext, trino: TrinoResource, lakehouse: LakehouseResource
) -> AssetCheckResult:
    key = context.partition_key
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(TICKS), asset_partitions=[key]), limit=1
    ).records
    snapshot_id = TicksCommit.from_materialization(records[0].asset_materialization).snapshot_id
    if snapshot_id is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=f"the ticks materialization of {key} records no snapshot to read at",
        )
    table = lakehouse.lakehouse().table("ticks")
    written = table.scan(
        row_filter=equal_to("source_file", key), snapshot_id=snapshot_id
    ).to_arrow()
    expected = (written.num_rows, pc.sum(written["quantity"]).as_py() or 0)
    sql = file_rows_at_snapshot(trino.catalog, lakehouse.namespace, snapshot_id)
    try:
        [seen] = trino.query(sql, [key])
    except Exception as exc:  # Trino down must not stop ingestion: the check says why
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=f"Trino unreachable or failing: {type(exc).__name__}: {exc}"[:500],
        )
    return AssetCheckResult(
        passed=tuple(seen) == expected,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "snapshot_id": str(snapshot_id),
            "pyiceberg_rows_quantity": str(expected),
            "trino_rows_quantity": str(tuple(seen)),
        },
    )
