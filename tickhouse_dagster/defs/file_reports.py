"""What the Dagster UI shows of one landing file's ingest — the three tick assets'
materialization metadata and their checks — built in one place from the engine's records, for
the per-file asset runs and the batch runs alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    MetadataValue,
)

from tickhouse_dagster.core.contract import TICKS_SCHEMA
from tickhouse_dagster.defs.asset_keys import PARSED_TICKS, RAW_TICK_XML, TICKS
from tickhouse_dagster.defs.check_results import as_evaluation
from tickhouse_dagster.defs.io_managers import table_metadata
from tickhouse_dagster.defs.ticks_commit import TicksCommit
from tickhouse_dagster.engine.catch_up import FileOutcome
from tickhouse_dagster.engine.commit import CommittedFile, TradeCopies
from tickhouse_dagster.engine.landing_file import ParsedFile
from tickhouse_dagster.quality.findings import Findings

__all__ = ["PARSED_TICKS", "RAW_TICK_XML", "TICKS", "CheckOutcome", "file_events"]


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict, reported as an asset's own check result or as a batch run's event."""

    asset: list[str]
    name: str
    passed: bool
    severity: AssetCheckSeverity
    description: str
    metadata: Mapping[str, Any]
    blocking: bool = False

    def result(self) -> AssetCheckResult:
        return AssetCheckResult(
            asset_key=AssetKey(self.asset),
            check_name=self.name,
            passed=self.passed,
            severity=self.severity,
            description=self.description,
            metadata=dict(self.metadata),
        )

    def evaluation(self, partition: str) -> AssetCheckEvaluation:
        return as_evaluation(self.result(), partition, self.blocking)


def findings_outcome(
    findings: Findings,
    asset: list[str],
    name: str,
    severity: AssetCheckSeverity,
    *,
    blocking: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> CheckOutcome:
    return CheckOutcome(
        asset,
        name,
        findings.passed,
        severity,
        findings.summary(),
        {
            "rows_checked": MetadataValue.int(findings.rows_checked),
            "findings": MetadataValue.int(findings.count),
            "examples": MetadataValue.md("\n".join(f"- {e}" for e in findings.examples) or "none"),
            **(metadata or {}),
        },
        blocking,
    )


def raw_metadata(parsed: ParsedFile, landing_uri: str) -> dict[str, Any]:
    return {
        "key": parsed.key,
        "landing": landing_uri,
        "size_bytes": MetadataValue.int(parsed.size),
        "sha256": parsed.sha256,
        "file_version": parsed.version,
        "profile": parsed.profile or "(none recognised)",
    }


def parsed_metadata(parsed: ParsedFile) -> dict[str, Any]:
    staged = parsed.staged
    assert staged is not None
    return {
        "rows": MetadataValue.int(staged.rows),
        # A JSON list, as the ticks commit records them (defs/ticks_commit.py).
        "trade_dates": MetadataValue.json(list(staged.trade_dates)),
        "symbols": MetadataValue.int(staged.symbols),
        "profile": parsed.profile,
        "parser": staged.parser,
        "file_version": parsed.version,
        "sha256": parsed.sha256,
    }


def parsed_checks(
    parsed: ParsedFile, copies: TradeCopies | None, quarantined_at: str | None
) -> list[CheckOutcome]:
    """tick_values and trade_key_conflicts (blocking), session_and_tick_grid (a warning)."""
    moved = {"quarantined_at": quarantined_at or "(quarantine failed, file left in place)"}
    outcomes = []
    if parsed.values is not None:
        refused = parsed.refusal is not None and parsed.refusal.stage == "tick_values"
        outcomes.append(
            findings_outcome(
                parsed.values,
                PARSED_TICKS,
                "tick_values",
                AssetCheckSeverity.ERROR,
                blocking=True,
                metadata=moved if refused else None,
            )
        )
    if parsed.session_grid is not None:
        outcomes.append(
            findings_outcome(
                parsed.session_grid, PARSED_TICKS, "session_and_tick_grid", AssetCheckSeverity.WARN
            )
        )
    if copies is not None:
        outcomes.append(
            findings_outcome(
                copies.conflicts,
                PARSED_TICKS,
                "trade_key_conflicts",
                AssetCheckSeverity.ERROR,
                blocking=True,
                metadata=None if copies.conflicts.passed else moved,
            )
        )
    return outcomes


def ticks_metadata(parsed: ParsedFile, committed: CommittedFile) -> dict[str, Any]:
    staged, commit = parsed.staged, committed.commit
    assert staged is not None
    return {
        # dagster/row_count is the table after the commit (Dagster's meaning), the file's own
        # rows in it are its partition's; ticks are created from TICKS_SCHEMA.
        **table_metadata(
            commit, TICKS_SCHEMA, staged.trade_date_values(), partition_rows=committed.stored_rows
        ),
        "rows_replaced": MetadataValue.int(commit.rows_removed),
        "table": commit.table,
        "commit_attempts": MetadataValue.int(commit.attempts),
        "corrections": MetadataValue.int(commit.corrections),
        # What the sensors, the ledger and `tickhouse ingest` read back.
        **TicksCommit(
            source_file=parsed.key,
            file_version=parsed.version,
            sha256=parsed.sha256,
            trade_dates=tuple(staged.trade_dates),
            snapshot_id=commit.snapshot_id,
            rows_written=commit.rows_written,
        ).to_metadata(),
    }


def ticks_checks(committed: CommittedFile, copies: TradeCopies) -> list[CheckOutcome]:
    """rows_match_parsed (blocking) and duplicate_trades (a warning)."""
    rows_match = CheckOutcome(
        TICKS,
        "rows_match_parsed",
        committed.rows_match,
        AssetCheckSeverity.ERROR,
        f"{committed.stored_rows} rows of the file in the table, {committed.expected_rows} "
        "expected",
        {
            "parsed": committed.parsed_rows,
            "expected_in_table": committed.expected_rows,
            "in_table": committed.stored_rows,
            "corrections": committed.commit.corrections,
        },
        blocking=True,
    )
    duplicates = findings_outcome(
        copies.duplicates,
        TICKS,
        "duplicate_trades",
        AssetCheckSeverity.WARN,
        metadata={"extra_copies": MetadataValue.int(copies.duplicates.count)},
    )
    return [rows_match, duplicates]


def file_events(
    outcome: FileOutcome, landing_uri: str
) -> list[AssetMaterialization | AssetCheckEvaluation]:
    """Everything a batch run records of one file, as the per-file assets would."""
    parsed, key = outcome.parsed, outcome.key
    events: list[AssetMaterialization | AssetCheckEvaluation] = [
        AssetMaterialization(
            RAW_TICK_XML, partition=key, metadata=raw_metadata(parsed, landing_uri)
        )
    ]
    if parsed.staged is None:
        return events
    events.append(
        AssetMaterialization(PARSED_TICKS, partition=key, metadata=parsed_metadata(parsed))
    )
    events += [
        c.evaluation(key) for c in parsed_checks(parsed, outcome.copies, outcome.quarantined_at)
    ]
    if outcome.committed is not None and outcome.copies is not None:
        events.append(
            AssetMaterialization(
                TICKS, partition=key, metadata=ticks_metadata(parsed, outcome.committed)
            )
        )
        events += [c.evaluation(key) for c in ticks_checks(outcome.committed, outcome.copies)]
    return events
