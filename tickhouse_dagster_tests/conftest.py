"""Shared fixtures: every test gets its own embedded lakehouse (folders + SQLite) under tmp_path."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from tickhouse_dagster.market.venues import Venue, load_venues
from tickhouse_dagster.parsing.profiles import Profile, load_profiles
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.lakehouse import Lakehouse


@pytest.fixture
def venues() -> dict[str, Venue]:
    return load_venues()


@pytest.fixture
def profiles() -> dict[str, Profile]:
    return load_profiles()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated TICKHOUSE_HOME: landing, warehouse, staging and catalog under tmp_path."""
    home = tmp_path / "tickhouse"
    monkeypatch.setenv("TICKHOUSE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for name in [
        "TICKHOUSE_LANDING_URI",
        "TICKHOUSE_WAREHOUSE_URI",
        "TICKHOUSE_STAGING_URI",
        "TICKHOUSE_CATALOG_URI",
        "TICKHOUSE_PROFILES_DIR",
        "TICKHOUSE_PROFILE_RULES",
        "TICKHOUSE_VENUES_FILE",
        "TICKHOUSE_FILER_GRPC",  # push ingestion off unless a test turns it on
        "TICKHOUSE_LANDING_QUEUE_URL",
    ]:
        monkeypatch.delenv(name, raising=False)
    (home / "dagster").mkdir(parents=True)
    return home


@pytest.fixture
def resources(home: Path) -> dict[str, object]:
    from tickhouse_dagster.defs.resources import resources_from_env

    return dict(resources_from_env())


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    """An embedded lakehouse of its own (SQLite catalog, local warehouse), tables created."""
    settings = CatalogSettings(
        name="tickhouse",
        warehouse=str(tmp_path / "warehouse"),
        embedded_db=str(tmp_path / "catalog.db"),
    )
    lakehouse = Lakehouse(load_lakehouse_catalog(settings))
    lakehouse.ensure_tables()
    return lakehouse


@pytest.fixture
def instance(home: Path) -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def xml_stream(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


# The real stack (SeaweedFS S3, PostgreSQL, Trino), started by the project's own script: the
# session fixture starts it when it is not running and stops it afterwards only if it started it.
STACK = PROJECT_ROOT / "infra" / "local" / "stack"
COLD_START_TIMEOUT = 1200  # `infra/prepare test` installs beforehand; this bounds a start only
# The shared stack's ports are shifted by TICKHOUSE_STACK_PORT_OFFSET (the fresh-machine rehearsal
# sets one, so it never collides with a stack already running); the tests' own second stacks are
# placed relative to it.
BASE_PORT_OFFSET = int(os.environ.get("TICKHOUSE_STACK_PORT_OFFSET") or 0)


def stack(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(STACK), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def parse_env(text: str) -> dict[str, str]:
    """`export NAME=value` lines as printed by `infra/local/stack env`."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def stopped_services(status_output: str) -> list[str]:
    """The default services `stack status` shows as stopped."""
    return [
        line.split()[0]
        for line in status_output.splitlines()
        if line.split()[1:2] == ["stopped"] and "(optional" not in line
    ]


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    status = stack("status")
    was_running = status.returncode == 0
    # Only what this session starts is stopped afterwards: a stack that was partly running (e.g.
    # started before a service was added to it) keeps the services it had.
    started = [] if was_running else stopped_services(status.stdout)
    if not was_running:
        up = stack("up", timeout=COLD_START_TIMEOUT)
        assert up.returncode == 0, f"stack up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    try:
        yield parse_env(stack("env").stdout)
    finally:
        if started:
            stack("down", *started, timeout=120)
