"""Spark configuration for the lakehouse: which jars (cached under TICKHOUSE_CACHE, passed in),
which catalog (the `CatalogSettings` the lakehouse resource opens). Secrets (the catalog
password, S3 keys) are never put on a command line: S3 keys stay in the AWS environment (read by
the SDKs in the JVM) and the catalog password is set in-process on the session, where Spark's
redaction hides it from UIs and logs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from tickhouse_dagster.compat.py4j_private import hadoop_configuration
from tickhouse_dagster.storage.catalog import CatalogSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ICEBERG_VERSION = "1.12.0"
SPARK_BINARY = "4.1_2.13"  # the Spark/Scala line of pyspark 4.1.x pinned in pyproject.toml
POSTGRES_JDBC_VERSION = "42.7.14"
HADOOP_VERSION = "3.4.2"  # the hadoop-client jars bundled with pyspark 4.1.4
AWS_SDK_VERSION = "2.54.17"  # the AWS SDK v2 inside iceberg-aws-bundle 1.12.0

# From Maven Central, cached in ~/.cache/tickhouse/ivy. S3A (for reading landing files) needs
# hadoop-aws, which declares the 600 MB AWS SDK `bundle`; iceberg-aws-bundle already carries the
# SDK, so the bundle is excluded and only the two SDK modules S3A needs on top are added.
PACKAGES = (
    f"org.apache.iceberg:iceberg-spark-runtime-{SPARK_BINARY}:{ICEBERG_VERSION}",
    f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}",
    f"org.postgresql:postgresql:{POSTGRES_JDBC_VERSION}",
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    f"software.amazon.awssdk:s3-transfer-manager:{AWS_SDK_VERSION}",
    f"software.amazon.awssdk:apache-client:{AWS_SDK_VERSION}",
)
EXCLUDES = ("software.amazon.awssdk:bundle",)
# A catalog without a region (the embedded defaults set one; a hand-built one may not).
DEFAULT_REGION = "us-east-1"


class SparkConfigError(ValueError):
    """A configuration the Spark engine cannot run with (says which setting and why)."""


def ivy_dir(cache: Path) -> str:
    """Ivy's folder in the download cache (TICKHOUSE_CACHE)."""
    return str(cache / "ivy")


def _manifest(cache: Path) -> Path:
    key = hashlib.sha256(",".join((*PACKAGES, *EXCLUDES)).encode()).hexdigest()[:16]
    return Path(ivy_dir(cache)) / f"tickhouse-jars-{key}.txt"


def cached_jars(cache: Path) -> list[str] | None:
    """The local jar files a previous resolution of PACKAGES produced, if all still exist."""
    manifest = _manifest(cache)
    if not manifest.is_file():
        return None
    jars = [line for line in manifest.read_text().splitlines() if line]
    return jars if jars and all(Path(j).is_file() for j in jars) else None


def remember_jars(spark: Any, cache: Path) -> None:
    """Record the jars Ivy resolved, so later sessions skip resolution (15-30 s of start-up);
    only local files in the cache are recorded, never anything else."""
    resolved = spark.sparkContext.getConf().get("spark.jars", "")
    jars = [j.removeprefix("file://") for j in resolved.split(",") if j]
    if jars and all(j.startswith(ivy_dir(cache)) and Path(j).is_file() for j in jars):
        _manifest(cache).write_text("\n".join(jars) + "\n")


def jar_conf(cache: Path) -> dict[str, str]:
    """Static (submit-time) settings: the jars and SQL extensions. No secrets. The jars come from
    Maven Central through Ivy into <cache>/ivy the first time, from there after."""
    jars = cached_jars(cache)
    source = (
        {"spark.jars": ",".join(jars)}
        if jars
        else {
            "spark.jars.packages": ",".join(PACKAGES),
            "spark.jars.excludes": ",".join(EXCLUDES),
            "spark.jars.ivy": ivy_dir(cache),
        }
    )
    return {
        **source,
        "spark.sql.extensions": (
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
        ),
        # Timestamps are instants; the session zone only matters for rendering, keep it neutral.
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
    }


def python_conf(python: str | None = None) -> dict[str, str]:
    """The Python the executors' tasks run: the project's own interpreter (its venv holds the
    parser, pyarrow and the reference data), unless PYSPARK_PYTHON names another one. An
    in-process SparkContext reads only the PYSPARK_PYTHON variable (not the setting), so it is
    set for this process too when unset."""
    import sys

    python = python or os.environ.get("PYSPARK_PYTHON") or sys.executable
    os.environ.setdefault("PYSPARK_PYTHON", python)
    return {"spark.pyspark.python": python, "spark.pyspark.driver.python": sys.executable}


def local_conf(cache: Path, master: str = "local[2]", driver_memory: str = "1g") -> dict[str, str]:
    """A small in-process Spark (tests, `dagster dev`, the benchmark)."""
    return {
        **jar_conf(cache),
        "spark.master": master,
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        **python_conf(),
    }


def _jdbc_from_sqlalchemy(uri: str) -> tuple[str, str | None, str | None]:
    """`postgresql+psycopg2://user:pw@host:port/db` → (jdbc url, user, password)."""
    parsed = urlparse(uri)
    if not parsed.scheme.startswith("postgresql"):
        raise SparkConfigError(
            "TICKHOUSE_CATALOG_URI: the Spark engine supports the PostgreSQL JDBC catalog "
            f"(postgresql://…), not {parsed.scheme}://"
        )
    host = parsed.hostname or "localhost"
    port = parsed.port or 5432
    query = f"?{parsed.query}" if parsed.query else ""
    url = f"jdbc:postgresql://{host}:{port}{parsed.path}{query}"
    user = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    return url, user, password


def _s3a(catalog: CatalogSettings) -> dict[str, str]:
    endpoint = catalog.s3_endpoint
    conf = {
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.endpoint.region": catalog.s3_region or DEFAULT_REGION,
        # Keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the driver and executors.
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"
        ),
    }
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            endpoint.startswith("https")
        ).lower()
    return conf


def catalog_conf(catalog: CatalogSettings) -> tuple[str, dict[str, str]]:
    """(catalog name, session settings) for the Iceberg catalog the Python path uses (the
    lakehouse resource's `catalog_settings()`): the PostgreSQL JDBC-layout catalog
    (TICKHOUSE_CATALOG_URI) with S3FileIO on the warehouse."""
    name, uri, warehouse = catalog.name, catalog.uri, catalog.warehouse
    if not uri:
        raise SparkConfigError(
            "TICKHOUSE_CATALOG_URI is not set: the Spark engine writes through the shared "
            "PostgreSQL JDBC catalog (see `infra/local/stack env`), not the embedded SQLite one"
        )
    if not warehouse.startswith("s3://"):
        raise SparkConfigError(
            f"TICKHOUSE_WAREHOUSE_URI={warehouse or '(unset)'}: the Spark engine writes to an "
            "S3 warehouse (s3://bucket/prefix)"
        )
    jdbc_url, user, password = _jdbc_from_sqlalchemy(uri)
    prefix = f"spark.sql.catalog.{name}"
    conf = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": jdbc_url,
        # The table layout pre-created for Trino and pyiceberg (infra/postgres/…_v1.sql).
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.warehouse": warehouse,
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.client.region": catalog.s3_region or DEFAULT_REGION,
        **_s3a(catalog),
    }
    if catalog.s3_endpoint:
        conf[f"{prefix}.s3.endpoint"] = catalog.s3_endpoint
    if user:
        conf[f"{prefix}.jdbc.user"] = user
    if password:
        conf[f"{prefix}.jdbc.password"] = password
    return name, conf


def apply_runtime_conf(spark: SparkSession, conf: Mapping[str, str]) -> None:
    """Set catalog and S3A settings on a running session (they are read lazily, per use)."""
    for key, value in conf.items():
        if key.startswith("spark.hadoop."):
            hadoop_configuration(spark).set(key.removeprefix("spark.hadoop."), value)
        else:
            spark.conf.set(key, value)


def resolve_jars(cache: Path) -> list[str]:
    """Resolve PACKAGES into the Ivy cache once, with a local session that stops at once, so no
    Spark run (a test, the benchmark's peer) pays for the download inside its own time."""
    jars = cached_jars(cache)
    if jars:
        return jars
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("tickhouse resolve jars").master("local[1]")
    for key, value in jar_conf(cache).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        remember_jars(spark, cache)
    finally:
        spark.stop()
    jars = cached_jars(cache)
    if not jars:
        raise SparkConfigError(
            f"Ivy resolved no jars into {ivy_dir(cache)} for {', '.join(PACKAGES)}"
        )
    return jars


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["resolve-jars"]:
        raise SystemExit("usage: python -m tickhouse_dagster.spark.session resolve-jars")
    from tickhouse_dagster.settings import current

    print("\n".join(resolve_jars(current().cache)))
