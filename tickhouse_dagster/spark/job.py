"""spark-submit job: landing tick files → the Iceberg `ticks` table, parsed in Spark tasks by the
Python engine's own parser and rules, written by Iceberg's Spark runtime (spark/ticks.py).

    spark-submit --master spark://host:7077 \
        --conf spark.pyspark.python=<the project's python> \
        --conf spark.jars=<tickhouse_dagster.spark.session.cached_jars(cache)> \
        $(python -c 'import tickhouse_dagster.spark.job as j; print(j.__file__)') \
        [--profile fixml] KEY [KEY ...]   # or --all

The job lives inside the package, so an installed project (the Docker image) finds it without a
repository checkout: `tickhouse_dagster.spark.job.JOB_FILE`. Catalog, warehouse, landing, staging
and S3 settings come from the same environment variables as the rest of tickhouse
(TICKHOUSE_CATALOG_URI, TICKHOUSE_WAREHOUSE_URI, TICKHOUSE_LANDING_URI, TICKHOUSE_STAGING_URI,
TICKHOUSE_S3_ENDPOINT, AWS_*); secrets are never taken from the command line. Launched by Dagster
(`spark_backfill_ticks`, engine `submit`), the keys come through Dagster Pipes, logs go back with
`pipes.log` and every file's result as a Pipes custom message; run by hand, the result is printed
as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JOB_FILE = Path(__file__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickhouse spark job", description=__doc__.split("\n")[0])
    parser.add_argument("keys", nargs="*", help="landing keys (relative to the landing URI)")
    parser.add_argument("--all", action="store_true", help="every tick file in the landing area")
    parser.add_argument("--profile", help="force an input profile")
    parser.add_argument("--landing-uri", default=None)
    parser.add_argument("--namespace", default=None)
    return parser


def run(spark: SparkSession, options: dict[str, Any], pipes: PipesContext | None) -> dict:
    from tickhouse_dagster.defs.resources import resolved_resources
    from tickhouse_dagster.engine.landing_file import LandingAddress
    from tickhouse_dagster.spark.session import apply_runtime_conf, catalog_conf
    from tickhouse_dagster.spark.ticks import ingest_files, result_message
    from tickhouse_dagster.storage.catalog import load_lakehouse_catalog
    from tickhouse_dagster.storage.lakehouse import Lakehouse

    resources = resolved_resources()
    landing = resources["landing"]
    address = LandingAddress(
        options.get("landing_uri") or landing.uri, landing.s3_endpoint, landing.region
    )
    lakehouse = resources["lakehouse"]
    house = Lakehouse(
        load_lakehouse_catalog(lakehouse.catalog_settings()),
        options.get("namespace") or lakehouse.namespace,
    )
    keys = list(options.get("keys") or [])
    if options.get("all"):
        keys = [f.key for f in address.open().iter_files()]
    name, conf = catalog_conf(lakehouse.catalog_settings())
    apply_runtime_conf(spark, conf)
    log = pipes.log.info if pipes else (lambda message: print(message, file=sys.stderr))
    if log:
        log(f"Spark {spark.version} ({spark.sparkContext.master}): {len(keys)} files")
    result = ingest_files(
        spark,
        catalog=name,
        house=house,
        landing=address,
        feed=resources["feed"].feed(),
        staging_uri=resources["staging"].uri,
        keys=keys,
        forced_profile=options.get("profile"),
        log=log,
    )
    message = result_message(result)
    if pipes:
        for file in message["files"]:
            pipes.log.info(
                f"{file['key']}: {file['rows']} rows, trade dates {', '.join(file['trade_dates'])}"
                f", parsed by {file['parser'].split(' ')[0]} in {file['parse_seconds']} s"
                f", written {file['write']}"
            )
            if file["session_grid"]:
                pipes.log.warning(f"{file['key']}: session / tick grid: {file['session_grid']}")
        pipes.report_custom_message(message)
    return message


def _session() -> SparkSession:
    # Master, jars and memory come from spark-submit (or the caller's defaults).
    from pyspark.sql import SparkSession

    return SparkSession.builder.appName("tickhouse ingest_ticks").getOrCreate()


def main(argv: list[str] | None = None) -> int:
    from tickhouse_dagster.spark.ticks import SparkIngestError

    options = vars(_parser().parse_args(argv))
    try:
        if PipesEnvVarParamsLoader().is_dagster_pipes_process():
            with open_dagster_pipes() as pipes:
                spark = _session()
                try:
                    run(spark, {**options, **pipes.extras}, pipes)
                except SparkIngestError as exc:
                    # A bad input, not a crash: Dagster shows this message as the step failure.
                    refusal = exc.refusal
                    pipes.report_custom_message(
                        {
                            "error": str(exc),
                            "source_file": exc.source_file,
                            "stage": refusal.stage if refusal else None,
                            "record": refusal.record if refusal else None,
                            "line": refusal.line if refusal else None,
                            "field": refusal.field if refusal else None,
                        }
                    )
                    raise
                finally:
                    spark.stop()
            return 0
        spark = _session()
        try:
            print(json.dumps(run(spark, options, None), indent=2))
        finally:
            spark.stop()
    except SparkIngestError as exc:
        # One line naming the file and the reason, last on stderr where an operator looks first.
        print(f"ingest_ticks: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
