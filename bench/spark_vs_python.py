"""Spark local vs the Python path: ingest the same landing files into `market.ticks` on the real
stack (SeaweedFS landing and warehouse, PostgreSQL JDBC catalog), each into its own namespace.

    eval "$(infra/local/stack env)"
    .venv/bin/python -m bench.spark_vs_python [--data DIR] [--master local[2]] [--memory 1g]

DIR defaults to the 1M-tick bench data set (`make bench-quick` generates it). Prints one Markdown
table; the Python path is the code location's own `ingest_landing_file` job, one run per file in
one process (what `tickhouse ingest` does, bars excluded); the Spark path is one `ingest_files`
call over all files (one XML scan, one commit), its session start-up reported separately.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import resolved_resources

DEFAULT_DATA = Path.home() / ".cache" / "tickhouse" / "bench-data" / "1000000-10"


def _python(keys: list[str]) -> float:
    from dagster import DagsterInstance

    from tickhouse_dagster.definitions import build_definitions

    definitions = build_definitions(resolved_resources())
    job = definitions.resolve_job_def("ingest_landing_file")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(landing_files.name, keys)
        started = time.perf_counter()
        for key in keys:
            result = job.execute_in_process(instance=instance, partition_key=key)
            assert result.success, key
        return time.perf_counter() - started


def _spark(keys: list[str], master: str, memory: str) -> tuple[float, float, int]:
    from pyspark.sql import SparkSession

    from tickhouse_dagster.market.venues import load_venues
    from tickhouse_dagster.parsing.profiles import load_profiles
    from tickhouse_dagster.spark.session import apply_runtime_conf, catalog_conf, local_conf
    from tickhouse_dagster.spark.ticks import ingest_files

    started = time.perf_counter()
    builder = SparkSession.builder.appName("tickhouse bench")
    for key, value in local_conf(master, memory).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    name, conf = catalog_conf()
    apply_runtime_conf(spark, conf)
    startup = time.perf_counter() - started
    result = ingest_files(
        spark,
        catalog=name,
        namespace=os.environ["TICKHOUSE_NAMESPACE"],
        landing_uri=os.environ["TICKHOUSE_LANDING_URI"],
        keys=keys,
        profiles=load_profiles(),
        venues=load_venues(),
    )
    spark.stop()
    return startup, result.seconds, result.rows


def _drop(namespace: str) -> None:
    catalog = resolved_resources()["lakehouse"].lakehouse().catalog
    for identifier in catalog.list_tables(namespace):
        catalog.purge_table(identifier)
    catalog.drop_namespace(namespace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--memory", default="1g")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    os.environ["TICKHOUSE_LANDING_URI"] = f"s3://landing/bench-{run}/"
    files = sorted(p for p in args.data.rglob("*.xml*"))
    store = resolved_resources()["landing"].store()
    keys = []
    for path in files:
        key = path.relative_to(args.data).as_posix()
        store.write(key, path.read_bytes())
        keys.append(key)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    try:
        os.environ["TICKHOUSE_NAMESPACE"] = f"bench_py_{run}"
        python_s = _python(keys)
        os.environ["TICKHOUSE_NAMESPACE"] = f"bench_spark_{run}"
        startup_s, spark_s, rows = _spark(keys, args.master, args.memory)
    finally:
        for namespace in (f"bench_py_{run}", f"bench_spark_{run}"):
            os.environ["TICKHOUSE_NAMESPACE"] = namespace
            try:
                _drop(namespace)
            except Exception as exc:  # a namespace a failed run never created
                print(f"(cleanup {namespace}: {exc})")
        for key in keys:
            store.client.delete_object(Bucket=store.bucket, Key=store.prefix + key)  # type: ignore[attr-defined]
    print(f"{len(keys)} files, {rows:,} ticks, {size_mb:.0f} MB of XML, real stack\n")
    print("| engine | wall time | ticks/s | MB/s |")
    print("| --- | --- | --- | --- |")
    for name, seconds in (
        ("Python path (ingest_landing_file per file)", python_s),
        (f"Spark {args.master}, {args.memory} driver (one job, one commit)", spark_s),
        (f"Spark {args.master} incl. session start ({startup_s:.1f} s)", spark_s + startup_s),
    ):
        print(f"| {name} | {seconds:.1f} s | {rows / seconds:,.0f} | {size_mb / seconds:.1f} |")
    print(f"\nratio Spark/Python (ingest only): {spark_s / python_s:.2f}")


if __name__ == "__main__":
    main()
