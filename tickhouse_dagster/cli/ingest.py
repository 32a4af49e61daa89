"""One-shot catch-up: every landing file not yet ingested goes through the code location's own
batch job (the ingest engine and the touched days' bars, as the sensors' runs do), in process,
on the shared Dagster instance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
)

import tickhouse_dagster.compat.alembic_scripts  # noqa: F401  (Dagster's migrations, read once)
from tickhouse_dagster.compat.frozen_heap import freeze_long_lived
from tickhouse_dagster.core.contract import BAR_INTERVALS
from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.bar_reports import BAR_KEYS
from tickhouse_dagster.defs.ingest_batch import BATCH_JOB
from tickhouse_dagster.defs.jobs import BARS_DAY_TAG, rebuild_bars_job
from tickhouse_dagster.defs.ledger import not_yet_ingested
from tickhouse_dagster.defs.resources import LandingResource, resolved_resources
from tickhouse_dagster.defs.ticks_commit import TicksCommit
from tickhouse_dagster.market.venues import VenueFileError
from tickhouse_dagster.parsing.profiles import ProfileError
from tickhouse_dagster.storage.landing import LandingFile

# Run events (with stack traces) still go to the instance's event log, visible in the UI; the
# terminal shows the report below, one line per file.
QUIET_CONSOLE = {"console": {"config": {"log_level": "CRITICAL"}}}


@dataclass
class IngestReport:
    listed: int = 0
    ingested: list[tuple[str, int]] = field(default_factory=list)  # (key, rows)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key or day, reason)
    days: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def render(self) -> str:
        lines = [f"landing: {self.listed} files, {len(self.ingested)} ingested"]
        lines += [f"  ingested {key}: {rows:,} ticks" for key, rows in self.ingested]
        if self.days:
            lines.append(f"bars rebuilt for {len(self.days)} trade date(s): {', '.join(self.days)}")
        lines += [f"  FAILED {what}: {reason}" for what, reason in self.failed]
        lines.append("ok" if self.ok else f"{len(self.failed)} failure(s)")
        return "\n".join(lines)


def _code_location() -> Definitions:
    """The code location, built when a command runs, not when this module is imported: the
    other `tickhouse` commands and a test importing this module do not pay for it."""
    from tickhouse_dagster.definitions import defs

    return defs


def failure_reason(result: ExecuteInProcessResult) -> str:
    """The first step error or failed blocking check of a run, as one line."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        failure = event.step_failure_data
        if failure.user_failure_data is not None and failure.user_failure_data.description:
            return failure.user_failure_data.description
        if failure.error is not None:
            return f"{failure.error.cls_name}: {failure.error.message.strip().splitlines()[0]}"
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            return f"check {evaluation.check_name} failed: {evaluation.description or ''}".strip()
    return "run failed"


def _materializations(result: ExecuteInProcessResult, key: AssetKey) -> list[AssetMaterialization]:
    events = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
    ]
    return [m for m in events if m is not None and m.asset_key == key]


def _refused(result: ExecuteInProcessResult) -> dict[str, str]:
    """key → reason of the files a batch run refused (the step failure's metadata)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.user_failure_data is not None:
            refused = event.step_failure_data.user_failure_data.metadata.get("refused")
            if refused is not None and isinstance(refused.value, Mapping):
                return {str(key): str(reason) for key, reason in refused.value.items()}
    return {}


def ingest_landing(
    *, profile: str | None = None, reingest: bool = False, keys: list[str] | None = None
) -> IngestReport:
    """One batch run of the engine over every file to ingest and the bars of the days they
    touched (the sensors' runs are the same)."""
    instance = DagsterInstance.get()
    resources = resolved_resources(instance=instance)
    landing: LandingResource = resources["landing"]
    try:
        # Profiles and venues are checked before any run: a bad profile is one line naming
        # its file, field and reason, not a step failure of every file's run.
        resources["feed"].feed()
    except (ProfileError, VenueFileError) as exc:
        report = IngestReport()
        report.failed.append(("configuration", str(exc)))
        return report
    files: list[LandingFile] = list(landing.store().iter_files())
    if keys:
        files = [f for f in files if f.key in set(keys)]
    report = IngestReport(listed=len(files))
    todo = files if reingest else not_yet_ingested(instance, files)
    if todo:
        config = {"keys": [f.key for f in todo], "profile": profile, "reingest": reingest}
        job = _code_location().resolve_job_def(BATCH_JOB)
        freeze_long_lived()  # everything imported by now lives as long as the command
        result = job.execute_in_process(
            instance=instance,
            run_config={
                "ops": {"ingest_landing_files": {"config": config}},
                "loggers": QUIET_CONSOLE,
            },
            raise_on_error=False,
        )
        for event in _materializations(result, AssetKey(TICKS)):
            commit = TicksCommit.from_materialization(event)
            assert commit.rows_written is not None, f"{event.partition}: no rows_written"
            report.ingested.append((str(event.partition), commit.rows_written))
        report.days = sorted(
            str(m.partition) for m in _materializations(result, BAR_KEYS[BAR_INTERVALS[0]])
        )
        refused = _refused(result)
        report.failed += sorted(refused.items())
        if not result.success and not refused:
            report.failed.append(("ingest run", failure_reason(result)))
    return report


def rebuild_bars(
    instance: DagsterInstance, days: Iterable[str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """One `rebuild_bars` run per trade date, in process on the shared instance (as the
    touched-days sensor would run them): (days rebuilt, (what, reason) of each failure)."""
    bars = _code_location().resolve_job_def(rebuild_bars_job.name)
    rebuilt: list[str] = []
    failed: list[tuple[str, str]] = []
    for day in sorted(days):
        result = bars.execute_in_process(
            instance=instance,
            partition_key=day,
            run_config={"loggers": QUIET_CONSOLE},
            tags={BARS_DAY_TAG: day},
            raise_on_error=False,
        )
        if result.success:
            rebuilt.append(day)
        else:
            failed.append((f"bars {day}", failure_reason(result)))
    return rebuilt, failed
