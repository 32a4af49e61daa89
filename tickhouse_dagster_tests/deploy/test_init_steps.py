"""The compose deployment's init steps, run natively: the template renderer (against the local
stack's own rule), Trino's entrypoint, the PostgreSQL init script (on the local stack's
PostgreSQL, with a throwaway role and databases) and the bucket job (on the local stack's
SeaweedFS when it is running)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.deploy.conftest import (
    COMPOSE_DIR,
    parse_env,
    postgres_bin_dir,
    stack,
    stack_dir,
)

pytestmark = pytest.mark.timeout(300)

INFRA = PROJECT_ROOT / "infra"
RENDER = COMPOSE_DIR / "render-template.sh"
TEMPLATES = [
    *sorted((INFRA / "trino" / "etc").iterdir()),
    INFRA / "seaweedfs" / "s3-identities.template.json",
]


def stack_render_rule() -> str:
    """The perl expression infra/local/stack renders templates with (lib/common.sh)."""
    match = re.search(r"perl -pe '([^']+)'", (INFRA / "local" / "lib" / "common.sh").read_text())
    assert match, "render_template in infra/local/lib/common.sh changed shape"
    return match.group(1)


def run(argv: list[str | Path], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def template_env() -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "TRINO_DATA_DIR": "/data/trino",
        "TRINO_BIND_IP": "10.1.2.3",
        "TRINO_HTTP_PORT": "8080",
        "TRINO_HEAP": "2G",
        "TRINO_TMP_DIR": "/tmp/trino",
        "TICKHOUSE_S3_ACCESS_KEY": "ak.example",
        "TICKHOUSE_S3_SECRET_KEY": "s/k+x=y~z-1",
    }


def test_renderer_matches_the_local_stack(tmp_path: Path) -> None:
    env = template_env()
    for template in TEMPLATES:
        ours, theirs = tmp_path / f"{template.name}.ours", tmp_path / f"{template.name}.stack"
        result = run(["bash", RENDER, template, ours], env)
        assert result.returncode == 0, result.stderr
        stack_result = run(["perl", "-pe", stack_render_rule(), template], env)
        assert stack_result.returncode == 0, stack_result.stderr
        theirs.write_text(stack_result.stdout)
        assert ours.read_text() == theirs.read_text(), template.name
        assert "${" not in ours.read_text().replace("${ENV:", ""), template.name
    identities = (tmp_path / "s3-identities.template.json.ours").read_text()
    assert '"secretKey": "s/k+x=y~z-1"' in identities
    # Trino's own placeholders are left alone; values are not scanned again.
    mixed = tmp_path / "mixed.properties"
    mixed.write_text("a=${ENV:TICKHOUSE_S3_ENDPOINT}\nb=${TRINO_HEAP}${TRINO_HTTP_PORT}\nc=${X\n")
    result = run(
        ["bash", RENDER, mixed, tmp_path / "mixed.out"], {**env, "TRINO_HEAP": "${TRINO_HTTP_PORT}"}
    )
    assert result.returncode == 0, result.stderr
    assert (
        tmp_path / "mixed.out"
    ).read_text() == "a=${ENV:TICKHOUSE_S3_ENDPOINT}\nb=${TRINO_HTTP_PORT}8080\nc=${X\n"


def test_renderer_mode_owner_and_unset_variables(tmp_path: Path) -> None:
    env = template_env()
    target = tmp_path / "s3.json"
    owner = f"{os.getuid()}:{os.getgid()}"
    result = run(
        ["bash", RENDER, INFRA / "seaweedfs" / "s3-identities.template.json", target, "600", owner],
        env,
    )
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    del env["TRINO_HEAP"]
    result = run(
        ["bash", RENDER, INFRA / "trino" / "etc" / "jvm.config", tmp_path / "jvm.config"], env
    )
    assert result.returncode == 1
    assert "template variable TRINO_HEAP is not set" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3.json"]  # nothing half-written


def test_trino_entrypoint_renders_the_stack_templates(
    compose_model: dict[str, Any], tmp_path: Path
) -> None:
    """With exactly the environment the compose file gives Trino."""
    etc = tmp_path / "etc"
    shutil.copytree(INFRA / "trino" / "catalog", etc / "catalog")
    fake_run = tmp_path / "run-trino"
    fake_run.write_text('#!/usr/bin/env bash\necho "run-trino $*"\n')
    fake_run.chmod(0o755)
    env = {
        **compose_model["services"]["trino"]["environment"],
        "PATH": os.environ["PATH"],
        "HOSTNAME": "localhost",
        "TRINO_ETC": str(etc),
        "TRINO_ETC_TEMPLATES": str(INFRA / "trino" / "etc"),
        "TICKHOUSE_RENDER_TEMPLATE": str(RENDER),
        "TRINO_RUN": str(fake_run),
        "TRINO_DATA_DIR": str(tmp_path / "data"),
        "TRINO_TMP_DIR": str(tmp_path / "tmp"),
    }
    result = run(["bash", COMPOSE_DIR / "trino" / "entrypoint.sh", "--extra"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("run-trino --extra")
    assert sorted(p.name for p in etc.iterdir() if p.is_file()) == sorted(
        p.name for p in (INFRA / "trino" / "etc").iterdir()
    )
    config = (etc / "config.properties").read_text()
    assert "http-server.http.port=8080" in config
    # HOSTNAME=localhost: the address comes from /etc/hosts, as a container's own name does.
    assert "discovery.uri=http://127.0.0.1:8080" in config
    assert "node.bind-ip=127.0.0.1" in (etc / "node.properties").read_text()
    assert "-Xmx2G" in (etc / "jvm.config").read_text()
    assert "${" not in "".join(p.read_text() for p in etc.iterdir() if p.is_file())
    env["HOSTNAME"] = "no-such-host-entry"
    result = run(["bash", COMPOSE_DIR / "trino" / "entrypoint.sh"], env)
    assert result.returncode == 1 and "set TRINO_BIND_IP" in result.stderr


def test_postgres_init_refuses_passwords_unsafe_in_urls(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "TICKHOUSE_PG_USER": "tickhouse",
        "TICKHOUSE_PG_PASSWORD": "has@and/",
        "TICKHOUSE_ICEBERG_CATALOG_SQL": str(INFRA / "postgres" / "iceberg_jdbc_catalog_v1.sql"),
    }
    result = run(["bash", COMPOSE_DIR / "postgres" / "init.sh"], env)
    assert result.returncode == 1 and "must match [A-Za-z0-9._~-]+" in result.stderr


@pytest.mark.slow
def test_postgres_init_on_the_local_stack(stack_postgres: dict[str, str]) -> None:
    bin_dir = postgres_bin_dir()
    socket_dir = stack_dir() / "postgres" / "run"
    assert bin_dir is not None and os.access(socket_dir, os.X_OK), (
        "psql or the stack's PostgreSQL socket directory is not reachable"
    )
    role = f"th_deploy_{secrets.token_hex(4)}"
    databases = [f"{role}_iceberg", f"{role}_dagster"]
    admin = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PGHOST": str(socket_dir),  # the bootstrap superuser, as in the stack's own setup
        "PGPORT": stack_postgres["TICKHOUSE_PG_PORT"],
        "PGUSER": "postgres",
    }
    password = secrets.token_hex(16)
    env = {
        **admin,
        "TICKHOUSE_PG_USER": role,
        "TICKHOUSE_PG_PASSWORD": password,
        "TICKHOUSE_PG_DATABASES": " ".join(databases),
        "TICKHOUSE_PG_ICEBERG_DB": databases[0],
        "TICKHOUSE_ICEBERG_CATALOG_SQL": str(INFRA / "postgres" / "iceberg_jdbc_catalog_v1.sql"),
        "TICKHOUSE_PG_HOST": stack_postgres["TICKHOUSE_PG_HOST"],
        "TICKHOUSE_PG_PORT": stack_postgres["TICKHOUSE_PG_PORT"],
    }

    def psql(sql: str, db: str = "postgres", **extra: str) -> str:
        result = run(
            ["psql", "-X", "-qtA", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql], {**admin, **extra}
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    try:
        for attempt in (1, 2):  # idempotent: the compose job runs on every `up`
            result = run(["bash", COMPOSE_DIR / "postgres" / "init.sh"], env)
            assert result.returncode == 0, f"run {attempt}: {result.stderr}"
            assert "Iceberg JDBC catalog tables (V1)" in result.stdout
        assert psql(f"SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = '{role}'") == "f|f"
        owners = psql(
            f"SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE '{role}%' ORDER BY 1"
        )
        assert owners.splitlines() == sorted(f"{db}:{role}" for db in databases)
        tables = psql(
            "SELECT table_name || ':' || string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns"
            " WHERE table_schema = 'public' GROUP BY table_name ORDER BY 1",
            db=databases[0],
        )
        assert tables.splitlines() == [
            "iceberg_namespace_properties:catalog_name,namespace,property_key,property_value",
            "iceberg_tables:catalog_name,iceberg_type,metadata_location,previous_metadata_location,table_name,table_namespace",
        ]
        assert (
            psql(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
                db=databases[0],
            )
            == role
        )
        login = run(
            [
                "psql",
                "-X",
                "-qtA",
                "-w",
                "-h",
                env["TICKHOUSE_PG_HOST"],
                "-U",
                role,
                "-d",
                databases[1],
                "-c",
                "SELECT current_user",
            ],
            {**admin, "PGPASSWORD": password},
        )
        assert login.returncode == 0 and login.stdout.strip() == role, login.stderr
    finally:
        for db in databases:
            psql(f'DROP DATABASE IF EXISTS "{db}"')
        psql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.slow
def test_bucket_job_on_the_local_stack_seaweedfs(stack_env: dict[str, str]) -> None:
    import boto3
    from botocore.config import Config

    stack_env = parse_env(stack("env").stdout)
    name = f"th-deploy-{secrets.token_hex(4)}"
    env = {
        "PATH": os.environ["PATH"],
        "TICKHOUSE_S3_ENDPOINT": stack_env["TICKHOUSE_S3_ENDPOINT"],
        "TICKHOUSE_S3_ACCESS_KEY": stack_env["TICKHOUSE_S3_ACCESS_KEY"],
        "TICKHOUSE_S3_SECRET_KEY": stack_env["TICKHOUSE_S3_SECRET_KEY"],
        "TICKHOUSE_S3_BUCKETS": f"{name}-landing {name}-warehouse",
        "TICKHOUSE_ICEBERG_REST_TABLE_BUCKET": f"{name}-rest",
        "TICKHOUSE_S3_WAIT_SECONDS": "30",
    }
    kwargs = {
        "endpoint_url": stack_env["TICKHOUSE_S3_ENDPOINT"],
        "region_name": "us-east-1",
        "aws_access_key_id": stack_env["TICKHOUSE_S3_ACCESS_KEY"],
        "aws_secret_access_key": stack_env["TICKHOUSE_S3_SECRET_KEY"],
        "config": Config(s3={"addressing_style": "path"}),
    }
    s3, tables = boto3.client("s3", **kwargs), boto3.client("s3tables", **kwargs)
    script = COMPOSE_DIR / "seaweedfs" / "create_buckets.py"
    try:
        for attempt in (1, 2):  # idempotent
            result = run([sys.executable, script], env)
            assert result.returncode == 0, f"run {attempt}: {result.stderr}"
            assert "S3 auth verified (anonymous 403, wrong key 403)" in result.stdout
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert {f"{name}-landing", f"{name}-warehouse"} <= buckets
        assert f"{name}-rest" in {b["name"] for b in tables.list_table_buckets()["tableBuckets"]}
        assert s3.list_objects_v2(Bucket=f"{name}-landing").get("KeyCount", 0) == 0  # probe removed
        wrong = run([sys.executable, script], {**env, "TICKHOUSE_S3_SECRET_KEY": "not-the-key"})
        assert wrong.returncode != 0
    finally:
        for bucket in (f"{name}-landing", f"{name}-warehouse"):
            with contextlib.suppress(s3.exceptions.ClientError):
                s3.delete_bucket(Bucket=bucket)
        for bucket in tables.list_table_buckets()["tableBuckets"]:
            if bucket["name"] == f"{name}-rest":
                tables.delete_table_bucket(tableBucketARN=bucket["arn"])
