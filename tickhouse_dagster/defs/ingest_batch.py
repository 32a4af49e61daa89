"""Many landing files in one run: the sensors' runs (a lone pushed file, a burst) and
`tickhouse ingest`.

One op runs the ingest engine over the files (parsed on both cores, committed one commit per
file, in key order) and records, for every file, the materializations and check results the
per-file tick assets would — so the lineage graph, the partitions and the checks look the same
whichever way a file came in. With Trino configured one Trino query reads every committed file
back (`trino_reads_commit`, per file). Then the bars of every trade date the files touched are
rebuilt for the minutes that changed (config `bars`, on by default), with the bars asset's
materializations and checks: a landing file is one run, and the touched-days sensor finds those
days' bars current (it stays the bridge for ticks written any other way).
"""

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    RunsFilter,
    job,
    op,
)

from tickhouse_dagster.defs.bar_reports import build_and_report
from tickhouse_dagster.defs.file_reports import TICKS, file_events
from tickhouse_dagster.defs.ledger import not_yet_ingested
from tickhouse_dagster.defs.partitions import LANDING_FILES, without_bars_partition
from tickhouse_dagster.defs.retries import retry_transient
from tickhouse_dagster.engine.catch_up import FileOutcome, Progress, iter_ingest_files
from tickhouse_dagster.engine.commit import trade_dates_of
from tickhouse_dagster.engine.reference_records import ReferenceRecords, ReferenceRecordsFailed
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.trade_index import TradeIndex
from tickhouse_dagster.storage.trino_sql import files_rows_at_snapshot

BATCH_JOB = "ingest_landing_batch"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def batch_run_in_flight(
    instance: DagsterInstance, stall: float, tags: Mapping[str, str] | None = None
) -> str | None:
    """The id (short) of an ingest batch run queued or running (with `tags`), if any. Only runs
    created in the last `stall` seconds (TICKHOUSE_PUSH_RUN_STALL_SECONDS) count, so a run left
    hanging (its worker killed) holds nothing back for longer."""
    runs = instance.get_runs(
        RunsFilter(
            job_name=BATCH_JOB,
            statuses=IN_FLIGHT,
            tags=dict(tags or {}),
            created_after=datetime.now(UTC) - timedelta(seconds=stall),
        ),
        limit=1,
    )
    return runs[0].run_id[:8] if runs else None


# `tickhouse ingest` shows these lines on a terminal as a progress display.
progress_log = logging.getLogger("tickhouse.progress")
MAX_REASONS_SHOWN = 5
TRINO_FILES_PER_QUERY = 500


class BatchConfig(Config):
    keys: list[str]
    profile: str | None = None  # force an input profile instead of recognising it
    reingest: bool = False  # also files whose current version is ingested already
    workers: int | None = None  # parse processes (default: one per core)
    # Build the bars of the days the files touched in this run (their changed minutes), so a
    # landing file is one run; off, the touched-days sensor requests a bars run per day.
    bars: bool = True


def _trino_read_back(
    trino: object, house: Lakehouse, committed: list[FileOutcome]
) -> Iterator[AssetCheckEvaluation]:
    """Trino reads every committed file as pyiceberg does, at the batch's last ticks snapshot;
    Trino being down fails these checks (saying why), never the ingest."""
    snapshot = house.table("ticks").current_snapshot()
    if snapshot is None or not committed:
        return
    days = trade_dates_of([o.parsed.staged for o in committed if o.parsed.staged is not None])
    expected = house.file_totals([o.key for o in committed], days, snapshot.snapshot_id)
    seen: dict[str, tuple[int, int]] = {}
    error = None
    keys = list(expected)
    try:
        for start in range(0, len(keys), TRINO_FILES_PER_QUERY):
            chunk = keys[start : start + TRINO_FILES_PER_QUERY]
            sql = files_rows_at_snapshot(
                trino.catalog,  # type: ignore[attr-defined]
                house.namespace,
                snapshot.snapshot_id,
                len(chunk),
            )
            for key, rows, quantity in trino.query(sql, chunk):  # type: ignore[attr-defined]
                seen[key] = (rows, quantity)
    except Exception as exc:  # Trino down must not stop ingestion: the checks say why
        error = f"Trino unreachable or failing: {type(exc).__name__}: {exc}"[:500]
    for key, totals in expected.items():
        yield AssetCheckEvaluation(
            asset_key=AssetKey(TICKS),
            check_name="trino_reads_commit",
            passed=error is None and seen.get(key, (0, 0)) == totals,
            severity=AssetCheckSeverity.ERROR,
            description=error,
            metadata={
                "snapshot_id": str(snapshot.snapshot_id),
                "pyiceberg_rows_quantity": str(totals),
                "trino_rows_quantity": str(seen.get(key)),
            },
            partition=key,
        )


def _touched_days_bars(
    context: OpExecutionContext,
    house: Lakehouse,
    venues: Mapping[str, Venue],
    committed: list[FileOutcome],
    blocked: list[str],
    index: TradeIndex,
    on_stored: Callable[[], object],
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """The bars of every trade date the committed files touched, rebuilt for what changed, with
    the materializations and checks the bars asset records; a failed blocking check is added
    to `blocked` (the run fails after every day was reported). `on_stored`: called after each
    day's bars are committed (see `build_and_report`)."""
    touched = trade_dates_of([o.parsed.staged for o in committed if o.parsed.staged is not None])
    outside = without_bars_partition(d.isoformat() for d in touched)
    for day in sorted(touched):
        if day.isoformat() in outside:
            context.log.warning(f"bars of {day} not built: {outside[day.isoformat()]}")
            continue
        with retry_transient(context):
            reports = build_and_report(house, venues, day, index=index, on_stored=on_stored)
        for report in reports:
            yield from report.events()
            blocked += [
                f"{report.asset_key.to_user_string()} {day}: {c.description}"
                for c in report.blocked
            ]
        context.log.info(f"bars of {day}: rebuilt {reports[0].metadata['rebuilt']}")


def build_batch_job(with_trino: bool) -> JobDefinition:
    """The batch job; with Trino configured it also reads every commit back through Trino."""
    resources = {"landing", "feed", "lakehouse", "staging"} | ({"trino"} if with_trino else set())

    @op(
        name="ingest_landing_files",
        description="Ingest landing files: parse, check, commit and verify each, in one run.",
        out={},
        required_resource_keys=resources,
    )
    def ingest_landing_files(
        context: OpExecutionContext, config: BatchConfig
    ) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
        landing, feed = context.resources.landing, context.resources.feed
        house = context.resources.lakehouse.lakehouse()
        store = landing.store()
        keys = list(dict.fromkeys(config.keys))
        if context.retry_number or not config.reingest:
            # A retry after a storage outage carries on where the last attempt stopped.
            files = [store.stat(key) for key in keys if store.exists(key)]
            keys = [f.key for f in not_yet_ingested(context.instance, files)]
        known = set(context.instance.get_dynamic_partitions(LANDING_FILES))
        context.instance.add_dynamic_partitions(LANDING_FILES, [k for k in keys if k not in known])
        progress = Progress(len(keys))
        outcomes = []
        # The copy check's ranges of the touched days, kept for their bars' duplicate windows.
        index = TradeIndex(house)
        ingest_feed = feed.feed()
        with ReferenceRecords(house, ingest_feed.venues) as records:
            with retry_transient(context):
                # Each file's events are yielded as it settles: a run that fails later has
                # still recorded every file it committed.
                for outcome in iter_ingest_files(
                    keys,
                    landing=landing.address(),
                    lakehouse=house.address(),
                    feed=ingest_feed,
                    staging=context.resources.staging.for_run(context.run_id),
                    forced_profile=config.profile,
                    workers=config.workers,
                    index=index,
                    records=records,
                ):
                    outcomes.append(outcome)
                    yield from file_events(outcome, store.uri)
                    progress.add(outcome)
                    progress_log.info(progress.line())
                    if not outcome.ok:
                        context.log.error(f"{outcome.key}: {outcome.reason()}")
            context.log.info(progress.line())
            committed = [o for o in outcomes if o.committed is not None]
            blocked: list[str] = []
            # Trino's read-back mostly waits on Trino, but its query costs the machine 0.6–1
            # CPU-s (decision 1607): it starts once the first day's bars are committed, so the
            # bars users wait for are not slowed by it, and runs while they are checked.
            with ThreadPoolExecutor(max_workers=1) as pool:
                read_back: list[Future[list[AssetCheckEvaluation]]] = []

                def start_read_back() -> None:
                    if with_trino and not read_back:
                        trino = context.resources.trino
                        read_back.append(
                            pool.submit(lambda: list(_trino_read_back(trino, house, committed)))
                        )

                if config.bars and committed:
                    yield from _touched_days_bars(
                        context,
                        house,
                        ingest_feed.venues,
                        committed,
                        blocked,
                        index,
                        start_read_back,
                    )
                start_read_back()  # no bars built: nothing to wait for
                for started in read_back:
                    yield from started.result()
            try:
                records.wait()
            except ReferenceRecordsFailed as failed:
                raise Failure(description=str(failed), allow_retries=False) from failed
        refused = [o for o in outcomes if not o.ok]
        if refused:
            shown = "; ".join(f"{o.key}: {o.reason()}" for o in refused[:MAX_REASONS_SHOWN])
            more = len(refused) - MAX_REASONS_SHOWN
            raise Failure(
                description=f"{len(refused)} of {len(outcomes)} landing files refused: {shown}"
                + (f" (and {more} more)" if more > 0 else ""),
                metadata={
                    "refused": MetadataValue.json({o.key: o.reason() for o in refused}),
                    "ingested": MetadataValue.int(len(outcomes) - len(refused)),
                },
                allow_retries=False,
            )
        if blocked:
            raise Failure(
                description="bars failed a blocking check: " + "; ".join(blocked),
                allow_retries=False,
            )

    @job(
        name=BATCH_JOB,
        description="Landing files (a burst, a catch-up): the ingest engine over all of them in "
        "one run, each file's ticks in one commit with every check, then the bars of the minutes "
        "and days they touched.",
    )
    def ingest_batch_job() -> None:
        ingest_landing_files()

    return ingest_batch_job
