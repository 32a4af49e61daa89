"""Shared fixtures: every test gets its own embedded lakehouse (folders + SQLite) under tmp_path."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from tickhouse_dagster.market.venues import Venue, load_venues
from tickhouse_dagster.parsing.profiles import Profile, load_profiles


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
    ]:
        monkeypatch.delenv(name, raising=False)
    (home / "dagster").mkdir(parents=True)
    return home


@pytest.fixture
def resources(home: Path) -> dict[str, object]:
    from tickhouse_dagster.defs.resources import resources_from_env

    return dict(resources_from_env())


@pytest.fixture
def instance(home: Path) -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def xml_stream(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())
