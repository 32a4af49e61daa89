"""Checks on parsed ticks (before anything reaches the ticks table), and Trino's read-back of
a ticks commit (only when Trino is configured)."""

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    asset_check,
)
from pyiceberg.expressions import EqualTo

from tickhouse_dagster.defs.assets.ticks import TICKS, parsed_ticks, set_aside
from tickhouse_dagster.defs.check_results import findings_check_result
from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import (
    FeedResource,
    LakehouseResource,
    LandingResource,
    TrinoResource,
)
from tickhouse_dagster.quality.tick_rules import (
    check_session_and_grid,
    check_tick_values,
    file_trading_day,
)
from tickhouse_dagster.storage.staging import StagedTicks
from tickhouse_dagster.storage.trino_sql import file_rows_at_snapshot


@asset_check(
    asset=parsed_ticks,
    blocking=True,
    partitions_def=landing_files,
    description="Contract values (pandera): positive price and quantity, side B/S/null, "
    "non-empty ids, trade date within a day of the print's local date or its venue-rule trade "
    "date, and near the file's trading day. "
    "Blocks the ticks table; a failing file is quarantined.",
)
def tick_values(
    context: AssetCheckExecutionContext,
    parsed_ticks: StagedTicks,
    feed: FeedResource,
    landing: LandingResource,
) -> AssetCheckResult:
    file_day = file_trading_day(parsed_ticks.batches())
    findings = check_tick_values(parsed_ticks.batches(), feed.venues(), file_day)
    if findings.passed:
        return findings_check_result(findings, AssetCheckSeverity.ERROR)
    reason = "; ".join(findings.examples[:3]) + f" ({findings.summary()})"
    where = set_aside(
        context, landing.store(), context.partition_key, reason=reason, stage="tick_values"
    )
    return findings_check_result(
        findings,
        AssetCheckSeverity.ERROR,
        metadata={"quarantined_at": where or "(quarantine failed, file left in place)"},
    )


@asset_check(
    asset=parsed_ticks,
    partitions_def=landing_files,
    description="Prints outside the venue's session or off its tick-size grid (warning).",
)
def session_and_tick_grid(
    context: AssetCheckExecutionContext, parsed_ticks: StagedTicks, feed: FeedResource
) -> AssetCheckResult:
    return findings_check_result(
        check_session_and_grid(parsed_ticks.batches(), feed.venues()), AssetCheckSeverity.WARN
    )


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
    metadata = records[0].asset_materialization.metadata
    snapshot_id = int(metadata["snapshot_id"].value)
    table = lakehouse.lakehouse().table("ticks")
    written = table.scan(row_filter=EqualTo("source_file", key), snapshot_id=snapshot_id).to_arrow()
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
