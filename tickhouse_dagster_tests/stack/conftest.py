"""Tests on the real stack (the `stack_env` session fixture, in the top-level conftest, starts it).

Each test gets its own Iceberg namespace and landing prefix, dropped/emptied afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def on_stack(
    stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The process environment pointed at the stack, with a namespace and landing prefix of its
    own; yields the effective settings."""
    run_id = uuid.uuid4().hex[:8]
    for name in list(os.environ):
        if name.startswith(("TICKHOUSE_", "PYICEBERG_CATALOG__")):
            monkeypatch.delenv(name)
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    # The polling path, as for S3 without change notifications; the push tests set it back.
    monkeypatch.delenv("TICKHOUSE_FILER_GRPC", raising=False)
    settings = {
        "TICKHOUSE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "TICKHOUSE_NAMESPACE": f"market_t{run_id}",
        "TICKHOUSE_LANDING_URI": f"s3://landing/t{run_id}/",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "home" / "dagster").mkdir(parents=True)
    yield {**stack_env, **settings}
    _drop_namespace(settings["TICKHOUSE_NAMESPACE"])
    _empty_prefix(stack_env, f"t{run_id}/")


def _drop_namespace(namespace: str) -> None:
    from tickhouse_dagster.defs.resources import resolved_resources
    from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog

    catalog = load_lakehouse_catalog(CatalogSettings("tickhouse", warehouse="s3://warehouse/"))
    if namespace not in {n[0] for n in catalog.list_namespaces()}:
        return
    # Views are Trino's (the BI views asset); pyiceberg's list_tables does not show them.
    trino = resolved_resources()["trino"]
    views = trino.query(
        f"SELECT table_name FROM {trino.catalog}.information_schema.views "
        f"WHERE table_schema = '{namespace}'"
    )
    for (view,) in views:
        trino.query(f"DROP VIEW {trino.catalog}.{namespace}.{view}")
    for identifier in catalog.list_tables(namespace):
        catalog.purge_table(identifier)
    catalog.drop_namespace(namespace)


def _empty_prefix(env: dict[str, str], prefix: str) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["TICKHOUSE_S3_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
    )
    listing = s3.list_objects_v2(Bucket="landing", Prefix=prefix)
    for obj in listing.get("Contents", []):
        s3.delete_object(Bucket="landing", Key=obj["Key"])
