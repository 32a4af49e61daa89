"""spark-submit job: landing tick XML files → the Iceberg `ticks` table (Spark XML reader, Iceberg
Spark runtime), replacing those files' rows in one commit.

    spark-submit --master spark://host:7077 \
        --conf spark.jars.packages=<tickhouse_dagster.spark.session.PACKAGES> \
        --conf spark.jars.excludes=software.amazon.awssdk:bundle \
        --conf spark.sql.extensions=<tickhouse_dagster.spark.session.jar_conf()[…]> \
        spark_jobs/ingest_ticks.py [--profile fixml] KEY [KEY ...]   # or --all

Catalog, warehouse, landing and S3 settings come from the same environment variables as the rest
of tickhouse (TICKHOUSE_CATALOG_URI, TICKHOUSE_WAREHOUSE_URI, TICKHOUSE_LANDING_URI,
TICKHOUSE_S3_ENDPOINT, AWS_*); secrets are never taken from the command line. Launched by Dagster
(`spark_backfill_ticks`, engine `submit`), the keys come through Dagster Pipes and every file's
result goes back to it as a Pipes message; run by hand, the result is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes
from pyspark.sql import SparkSession

from tickhouse_dagster import settings
from tickhouse_dagster.market.venues import load_venues
from tickhouse_dagster.parsing.profiles import load_profiles, parse_profile_rules
from tickhouse_dagster.spark.session import apply_runtime_conf, catalog_conf
from tickhouse_dagster.spark.ticks import SparkIngestError, ingest_files, result_message
from tickhouse_dagster.storage.landing import landing_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest_ticks.py", description=__doc__.split("\n")[0])
    parser.add_argument("keys", nargs="*", help="landing keys (relative to the landing URI)")
    parser.add_argument("--all", action="store_true", help="every tick file in the landing area")
    parser.add_argument("--profile", help="force an input profile")
    parser.add_argument("--landing-uri", default=None)
    parser.add_argument("--namespace", default=None)
    return parser


def run(spark: SparkSession, options: dict[str, Any], pipes: PipesContext | None) -> dict:
    landing_uri = options.get("landing_uri") or settings.landing_uri()
    keys = list(options.get("keys") or [])
    if options.get("all"):
        keys = [f.key for f in landing_store(landing_uri).iter_files()]
    name, conf = catalog_conf()
    apply_runtime_conf(spark, conf)
    namespace = options.get("namespace") or settings.setting("TICKHOUSE_NAMESPACE") or "market"
    if pipes:
        pipes.log.info(f"Spark {spark.version} ({spark.sparkContext.master}): {len(keys)} files")
    result = ingest_files(
        spark,
        catalog=name,
        namespace=namespace,
        landing_uri=landing_uri,
        keys=keys,
        profiles=load_profiles(),
        venues=load_venues(),
        forced_profile=options.get("profile"),
        rules=parse_profile_rules(settings.setting("TICKHOUSE_PROFILE_RULES")),
    )
    message = result_message(result)
    if pipes:
        for file in result.files:
            pipes.log.info(
                f"{file.key}: {file.rows} rows, trade dates {', '.join(file.trade_dates)}"
            )
        pipes.report_custom_message(message)
    return message


def _session() -> SparkSession:
    # Master, jars and memory come from spark-submit (or the caller's defaults).
    return SparkSession.builder.appName("tickhouse ingest_ticks").getOrCreate()


def main(argv: list[str] | None = None) -> int:
    options = vars(_parser().parse_args(argv))
    try:
        if PipesEnvVarParamsLoader().is_dagster_pipes_process():
            with open_dagster_pipes() as pipes:
                spark = _session()
                try:
                    run(spark, {**options, **pipes.extras}, pipes)
                except SparkIngestError as exc:
                    # A bad input, not a crash: Dagster shows this message as the step failure.
                    pipes.report_custom_message({"error": str(exc), "source_file": exc.source_file})
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
