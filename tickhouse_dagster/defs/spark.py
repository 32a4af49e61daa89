"""The Spark engine in Dagster: one op job, `spark_backfill_ticks`, that ingests many landing files
with Spark and records them as materializations of the existing `market/ticks` partitions.

No second asset graph: the UI shows the same `market/ticks` asset, its per-file partitions
marked materialized by these runs (with `engine: spark`), and the touched-days sensor rebuilds
the bars of the trade dates they report, exactly as after a Python ingest. The engine is chosen
by run config: `local` runs Spark in this process (`LocalSparkResource`); `submit`
runs the package's job (`tickhouse_dagster/spark/job.py`) with spark-submit against the configured
master (a standalone cluster: `spark://…`), over Dagster Pipes. Either way the Spark tasks run the
Python engine's parser and rules. See docs/decisions/0401-spark-engine.md and 1701.
"""

from datetime import date
from typing import Any, Literal

from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)
from pydantic import Field

from tickhouse_dagster.core.contract import TICKS_SCHEMA
from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.io_managers import written_table_metadata
from tickhouse_dagster.defs.ledger import not_yet_ingested
from tickhouse_dagster.defs.partitions import LANDING_FILES
from tickhouse_dagster.defs.resources import (
    FeedResource,
    LakehouseResource,
    LandingResource,
    StagingResource,
)
from tickhouse_dagster.defs.resources_spark import (
    INGEST_JOB,
    LocalSparkResource,
    SparkSubmitResource,
)
from tickhouse_dagster.defs.ticks_commit import TicksCommit
from tickhouse_dagster.parsing.profiles import ProfileError
from tickhouse_dagster.spark.session import SparkConfigError, apply_runtime_conf, catalog_conf
from tickhouse_dagster.storage.landing import LandingFile, LandingStore
from tickhouse_dagster.storage.reference_lineage import record_ticks_reference


class SparkBackfillConfig(Config):
    engine: Literal["local", "submit"] = Field(
        default="local",
        description="local: Spark in the run process; submit: spark-submit.",
    )
    keys: list[str] = Field(
        default_factory=list,
        description="Landing keys; empty = every landing file not yet ingested at its version.",
    )
    reingest: bool = Field(default=False, description="With empty keys: every landing file.")
    profile: str | None = Field(default=None, description="Force an input profile.")
    master: str | None = Field(
        default=None, description="spark-submit --master (submit engine); default: the resource's."
    )
    submit_conf: dict[str, str] = Field(
        default_factory=dict, description="Extra spark-submit --conf settings (no secrets)."
    )


def _files(
    context: OpExecutionContext, store: LandingStore, config: SparkBackfillConfig
) -> list[LandingFile]:
    if config.keys:
        return [store.stat(key) for key in config.keys]
    files = list(store.iter_files())
    return files if config.reingest else not_yet_ingested(context.instance, files)


def _materializations(
    message: dict[str, Any], files: dict[str, LandingFile], engine: str, master: str
) -> list[AssetMaterialization]:
    """One `market/ticks` materialization per file, with what the Python path records (so the
    ledger sees the file version as ingested and the bars sensor sees the touched days)."""
    events = []
    for file in message["files"]:
        events.append(
            AssetMaterialization(
                asset_key=AssetKey(TICKS),
                partition=file["key"],
                metadata={
                    # What the Python path's ticks materializations show (no table row count:
                    # the Spark job does not report one).
                    **written_table_metadata(
                        # Spark names the table with its catalog in front; Dagster's name is the
                        # pyiceberg one (namespace.table) the Python path records.
                        ".".join(str(message["table"]).split(".")[-2:]),
                        message["snapshot_id"],
                        TICKS_SCHEMA,
                        [date.fromisoformat(d) for d in file["trade_dates"]],
                        partition_rows=file["rows"],
                    ),
                    "symbols": MetadataValue.int(file["symbols"]),
                    "table": message["table"],
                    "profile": file["profile"],
                    "engine": f"spark ({engine}, {master})",
                    "write": message["method"],
                    "spark_seconds": MetadataValue.float(message["seconds"]),
                    "parser": file["parser"],
                    "written_by": file["write"],
                    "parsed_rows": MetadataValue.int(file["parsed_rows"]),
                    "corrections": MetadataValue.int(file["corrections"]),
                    **({"session_grid": file["session_grid"]} if file["session_grid"] else {}),
                    **TicksCommit(
                        source_file=file["key"],
                        file_version=files[file["key"]].version,
                        sha256=file["sha256"],
                        trade_dates=tuple(file["trade_dates"]),
                        snapshot_id=None
                        if message["snapshot_id"] is None
                        else int(message["snapshot_id"]),
                        rows_written=file["rows"],
                    ).to_metadata(),
                },
            )
        )
    return events


def _run_local(
    pyspark: LocalSparkResource,
    landing: LandingResource,
    feed: FeedResource,
    lakehouse: LakehouseResource,
    staging: StagingResource,
    keys: list[str],
    profile: str | None,
    context: OpExecutionContext,
) -> dict[str, Any]:
    # pyspark is imported by the runs that use it, not by every load of the code location.
    from tickhouse_dagster.spark.ticks import SparkIngestError, ingest_files, result_message

    spark = pyspark.spark_session
    name, conf = catalog_conf(lakehouse.catalog_settings())
    apply_runtime_conf(spark, conf)
    try:
        result = ingest_files(
            spark,
            catalog=name,
            house=lakehouse.lakehouse(),
            landing=landing.address(),
            feed=feed.feed(),
            staging_uri=staging.uri,
            keys=keys,
            forced_profile=profile,
            log=context.log.info,
        )
    except SparkIngestError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    return result_message(result)


def _run_submit(
    context: OpExecutionContext,
    spark_submit: SparkSubmitResource,
    landing: LandingResource,
    lakehouse: LakehouseResource,
    keys: list[str],
    config: SparkBackfillConfig,
) -> dict[str, Any]:
    command = spark_submit.command(INGEST_JOB, master=config.master, extra_conf=config.submit_conf)
    context.log.info(f"spark-submit --master {config.master or spark_submit.master}: {len(keys)}")
    extras = {
        "keys": keys,
        "profile": config.profile,
        "landing_uri": landing.uri,
        "namespace": lakehouse.namespace,
    }
    code, session = spark_submit.run(context, command, extras)
    messages = session.get_custom_messages()
    errors = [m for m in messages if isinstance(m, dict) and "error" in m]
    if errors:
        error = errors[0]
        where = {k: str(error[k]) for k in ("stage", "record", "line", "field") if error.get(k)}
        raise Failure(
            description=error["error"],
            metadata={"source_file": str(error.get("source_file")), **where},
            allow_retries=False,
        )
    results = [m for m in messages if isinstance(m, dict) and "files" in m]
    if code != 0 or not results:
        raise Failure(description=f"spark-submit exited with code {code} and reported no result")
    return results[-1]


@op(
    name="spark_ingest_ticks",
    out={},
    description="Landing files → market.ticks with Spark (one commit), as ticks materializations.",
)
def spark_ingest_ticks(
    context: OpExecutionContext,
    config: SparkBackfillConfig,
    landing: LandingResource,
    feed: FeedResource,
    lakehouse: LakehouseResource,
    staging: StagingResource,
    pyspark: LocalSparkResource,
    spark_submit: SparkSubmitResource,
):
    files = {f.key: f for f in _files(context, landing.store(), config)}
    if not files:
        context.log.info("nothing to ingest: every landing file is ingested at its version")
        return
    keys = sorted(files)
    known = set(context.instance.get_dynamic_partitions(LANDING_FILES))
    if set(keys) - known:
        context.instance.add_dynamic_partitions(LANDING_FILES, sorted(set(keys) - known))
    try:
        if config.engine == "local":
            master = "in-process " + str(pyspark.spark_config.get("spark.master", "local"))
            message = _run_local(
                pyspark, landing, feed, lakehouse, staging, keys, config.profile, context
            )
        else:
            master = config.master or spark_submit.master
            message = _run_submit(context, spark_submit, landing, lakehouse, keys, config)
    except (SparkConfigError, ProfileError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    # The reference data the Spark rule derived trade dates under, as the Python engine records.
    record_ticks_reference(
        lakehouse.lakehouse(),
        {f["key"]: f.get("venues", []) for f in message["files"]},
        feed.venues(),
    )
    context.log.info(
        f"{message['table']}: {sum(f['rows'] for f in message['files'])} rows of {len(keys)} "
        f"files in {message['seconds']} s ({message['method']}, snapshot {message['snapshot_id']})"
    )
    yield from _materializations(message, files, config.engine, master)


@job(
    name="spark_backfill_ticks",
    description=(
        "Backfill market.ticks with Spark: many landing files in one Spark job and one Iceberg "
        "commit; recorded as materializations of the market/ticks partitions."
    ),
)
def spark_backfill_ticks() -> None:
    spark_ingest_ticks()
