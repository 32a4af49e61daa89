"""pyspark's py4j internals tickhouse relies on (pyspark 4.1): the running session's Hadoop
`Configuration` in the JVM. pyspark has no public call that sets a Hadoop option on a session
that is already running (`spark.hadoop.*` in the builder works only before the JVM starts), and
the Spark engine sets the S3A options of the catalog it is handed at run time
(`spark.session.apply_runtime_conf`). `SparkContext._jsc` is the JavaSparkContext py4j proxy;
tickhouse_dagster_tests/compat/test_private_apis.py checks it on a real session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["hadoop_configuration"]


def hadoop_configuration(spark: SparkSession) -> Any:
    """The session's org.apache.hadoop.conf.Configuration (a py4j JavaObject: `.get`, `.set`)."""
    java_context = getattr(spark.sparkContext, "_jsc", None)
    if java_context is None:
        raise RuntimeError(
            "pyspark's SparkContext has no _jsc (the JavaSparkContext): the private API behind "
            "tickhouse_dagster/compat/py4j_private.py changed with this pyspark version"
        )
    return java_context.hadoopConfiguration()
