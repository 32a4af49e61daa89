"""Spark engine tests: a real local Spark (`local[2]`, 1 GB heap) and a real Spark standalone
cluster (`infra/local/stack up spark`: a master and two 1-core workers on 127.0.0.1), writing
through the real stack's PostgreSQL JDBC catalog to SeaweedFS. One in-process Spark session
serves the whole session (its start-up, with the cached Iceberg/AWS/PostgreSQL jars, is most of
the cost); each test gets its own namespaces and landing prefix (the `on_stack` fixture), dropped
afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tickhouse_dagster_tests.conftest import parse_env, stack
from tickhouse_dagster_tests.stack.conftest import _drop_namespace, on_stack  # noqa: F401

CLUSTER_UP_TIMEOUT = 300


@pytest.fixture(scope="session")
def spark(stack_env: dict[str, str]) -> Iterator[object]:
    """The in-process Spark, created exactly as the `pyspark` resource creates it, so Dagster
    runs in these tests reuse it (`getOrCreate`)."""
    from pyspark.sql import SparkSession

    from tickhouse_dagster.settings import current
    from tickhouse_dagster.spark.session import local_conf

    builder = SparkSession.builder.appName("tickhouse tests")
    for key, value in local_conf(current().cache).items():
        builder = builder.config(key, value)
    with pytest.MonkeyPatch.context() as patch:
        # The JVM's S3 clients read the AWS keys from its environment, fixed at launch; the
        # Python tasks read landing files with them.
        for name, value in stack_env.items():
            if name.startswith("AWS_"):
                patch.setenv(name, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


@pytest.fixture(scope="session")
def spark_cluster(stack_env: dict[str, str]) -> Iterator[str]:
    """The stack's Spark standalone cluster (started by the project's own script if it is not
    running, and then stopped again); yields its master URL."""
    was_running = "spark      running" in stack("status").stdout
    if not was_running:
        up = stack("up", "spark", timeout=CLUSTER_UP_TIMEOUT)
        assert up.returncode == 0, f"stack up spark failed:\n{up.stderr[-3000:]}"
    try:
        yield parse_env(stack("env").stdout)["TICKHOUSE_SPARK_STANDALONE_URL"]
    finally:
        if not was_running:
            stack("down", "spark", timeout=120)


@pytest.fixture
def extra_namespaces(on_stack) -> Iterator[list[str]]:  # noqa: F811
    """Namespaces a test creates besides its own; dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(Exception):
            _drop_namespace(name)
