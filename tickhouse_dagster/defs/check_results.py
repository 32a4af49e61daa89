"""What a quality rule found, as a Dagster asset check result."""

from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
)

from tickhouse_dagster.quality.findings import Findings


def findings_check_result(
    findings: Findings,
    severity: AssetCheckSeverity,
    asset_key: AssetKey | None = None,
    check_name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> AssetCheckResult:
    """The result of a check from its findings; `asset_key` and `check_name` name the check
    when it is yielded from inside an asset that has several."""
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=findings.passed,
        severity=severity,
        description=findings.summary(),
        metadata={
            "rows_checked": MetadataValue.int(findings.rows_checked),
            "findings": MetadataValue.int(findings.count),
            "examples": MetadataValue.md("\n".join(f"- {e}" for e in findings.examples) or "none"),
            **(metadata or {}),
        },
    )


def as_evaluation(
    result: AssetCheckResult, partition: str | None = None, blocking: bool = False
) -> AssetCheckEvaluation:
    """A check result (which names its asset and check) as the evaluation a sensor records or a
    step reports outside the check's own op."""
    if result.asset_key is None or result.check_name is None:
        raise ValueError("the result must name its asset and check")
    return AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
        blocking=blocking,
        partition=partition,
    )
