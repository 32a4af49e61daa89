"""Checks on parsed ticks, before anything reaches the ticks table."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from tickhouse_dagster.defs.assets.ticks import parsed_ticks
from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import FeedResource
from tickhouse_dagster.quality.findings import Findings
from tickhouse_dagster.quality.tick_rules import check_session_and_grid, check_tick_values
from tickhouse_dagster.storage.staging import StagedTicks


def _result(findings: Findings, severity: AssetCheckSeverity) -> AssetCheckResult:
    return AssetCheckResult(
        passed=findings.passed,
        severity=severity,
        description=findings.summary(),
        metadata={
            "rows_checked": MetadataValue.int(findings.rows_checked),
            "findings": MetadataValue.int(findings.count),
            "examples": MetadataValue.md("\n".join(f"- {e}" for e in findings.examples) or "none"),
        },
    )


@asset_check(
    asset=parsed_ticks,
    blocking=True,
    partitions_def=landing_files,
    description="Contract values (pandera): positive price and quantity, side B/S/null, "
    "non-empty ids, trade date within a day of the print. Blocks the ticks table.",
)
def tick_values(
    context: AssetCheckExecutionContext, parsed_ticks: StagedTicks, feed: FeedResource
) -> AssetCheckResult:
    return _result(
        check_tick_values(parsed_ticks.batches(), feed.venues()), AssetCheckSeverity.ERROR
    )


@asset_check(
    asset=parsed_ticks,
    partitions_def=landing_files,
    description="Prints outside the venue's session or off its tick-size grid (warning).",
)
def session_and_tick_grid(
    context: AssetCheckExecutionContext, parsed_ticks: StagedTicks, feed: FeedResource
) -> AssetCheckResult:
    return _result(
        check_session_and_grid(parsed_ticks.batches(), feed.venues()), AssetCheckSeverity.WARN
    )
