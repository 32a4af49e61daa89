"""Spark engine tests: a real local Spark (`local[2]`, 1 GB heap) writing through the real stack's
PostgreSQL JDBC catalog to SeaweedFS. One Spark session serves the whole module (its start-up,
with the cached Iceberg/AWS/PostgreSQL jars, is most of the cost); each test gets its own
namespaces and landing prefix (the `on_stack` fixture), dropped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tickhouse_dagster_tests.stack.conftest import _drop_namespace, on_stack  # noqa: F401


@pytest.fixture(scope="module")
def spark(stack_env: dict[str, str]) -> Iterator[object]:
    """The in-process Spark, created exactly as the `pyspark` resource creates it, so Dagster
    runs in these tests reuse it (`getOrCreate`)."""
    from pyspark.sql import SparkSession

    from tickhouse_dagster.spark.session import local_conf

    builder = SparkSession.builder.appName("tickhouse tests")
    for key, value in local_conf().items():
        builder = builder.config(key, value)
    with pytest.MonkeyPatch.context() as patch:
        # The JVM's S3 clients read the AWS keys from its environment, fixed at launch.
        for name, value in stack_env.items():
            if name.startswith("AWS_"):
                patch.setenv(name, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


@pytest.fixture
def extra_namespaces(on_stack) -> Iterator[list[str]]:  # noqa: F811
    """Namespaces a test creates besides its own; dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(Exception):
            _drop_namespace(name)
