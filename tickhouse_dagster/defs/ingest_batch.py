"""Many landing files in one run: the landing sensor's bursts and `tickhouse ingest`.

One op runs the ingest engine over the files (parsed on both cores, committed one commit per
file, in key order) and records, for every file, the materializations and check results the
per-file tick assets would — so the lineage graph, the partitions and the checks look the same
whichever way a file came in, and the touched-days sensor rebuilds the bars once per burst.
"""

import logging
from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)

from tickhouse_dagster.defs.file_reports import file_events
from tickhouse_dagster.defs.ledger import not_yet_ingested
from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import (
    FeedResource,
    LakehouseResource,
    LandingResource,
    StagingResource,
)
from tickhouse_dagster.defs.retries import retry_transient
from tickhouse_dagster.engine.catch_up import Progress, iter_ingest_files

# `tickhouse ingest` shows these lines on a terminal as a progress display.
progress_log = logging.getLogger("tickhouse.progress")
MAX_REASONS_SHOWN = 5


class BatchConfig(Config):
    keys: list[str]
    profile: str | None = None  # force an input profile instead of recognising it
    reingest: bool = False  # also files whose current version is ingested already
    workers: int | None = None  # parse processes (default: one per core)


@op(
    description="Ingest landing files: parse, check, commit and verify each, in one run.",
    out={},
)
def ingest_landing_files(
    context: OpExecutionContext,
    config: BatchConfig,
    landing: LandingResource,
    feed: FeedResource,
    lakehouse: LakehouseResource,
    staging: StagingResource,
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    store = landing.store()
    keys = list(dict.fromkeys(config.keys))
    if context.retry_number or not config.reingest:
        # A retry after a storage outage carries on where the last attempt stopped.
        files = [store.stat(key) for key in keys if store.exists(key)]
        keys = [f.key for f in not_yet_ingested(context.instance, files)]
    known = set(context.instance.get_dynamic_partitions(landing_files.name))
    context.instance.add_dynamic_partitions(landing_files.name, [k for k in keys if k not in known])
    progress = Progress(len(keys))
    outcomes = []
    with retry_transient(context):
        # Each file's events are yielded as it settles: a run that fails later has still
        # recorded every file it committed.
        for outcome in iter_ingest_files(
            keys,
            landing=landing.address(),
            lakehouse=lakehouse.lakehouse().address(),
            feed=feed.feed(),
            staging=staging.for_run(context.run_id),
            forced_profile=config.profile,
            workers=config.workers,
        ):
            outcomes.append(outcome)
            yield from file_events(outcome, store.uri)
            progress.add(outcome)
            progress_log.info(progress.line())
            if not outcome.ok:
                context.log.error(f"{outcome.key}: {outcome.reason()}")
    context.log.info(progress.line())
    refused = [o for o in outcomes if not o.ok]
    if refused:
        shown = "; ".join(f"{o.key}: {o.reason()}" for o in refused[:MAX_REASONS_SHOWN])
        more = f" (and {len(refused) - MAX_REASONS_SHOWN} more)" if len(refused) > 5 else ""
        raise Failure(
            description=f"{len(refused)} of {len(outcomes)} landing files refused: {shown}{more}",
            metadata={
                "refused": MetadataValue.json({o.key: o.reason() for o in refused}),
                "ingested": MetadataValue.int(len(outcomes) - len(refused)),
            },
            allow_retries=False,
        )


@job(
    name="ingest_landing_batch",
    description="Landing files (a burst, a catch-up): the ingest engine over all of them in one "
    "run, each file's ticks in one commit with every check; bars follow per touched day.",
)
def ingest_batch_job() -> None:
    ingest_landing_files()
