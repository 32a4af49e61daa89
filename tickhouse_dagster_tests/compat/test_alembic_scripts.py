"""Dagster's migration scripts read once per process (compat/alembic_scripts.py): an instance and
a new run database made afterwards execute none of them again and are stamped at the head a
fresh read finds, runs are stored as before, and any other alembic project is read afresh."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from dagster import DagsterInstance
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.sql import get_alembic_config

from tickhouse_dagster.compat import alembic_scripts
from tickhouse_dagster_tests.deploy.test_event_log import local_home, run_probe

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def revisions_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The script folders alembic reads revisions from while the test runs."""
    read: list[str] = []
    original = ScriptDirectory._load_revisions

    def counted(self: ScriptDirectory) -> Iterator[object]:
        read.append(self.dir)
        return original(self)  # type: ignore[no-any-return]

    monkeypatch.setattr(ScriptDirectory, "_load_revisions", counted)
    yield read


def test_dagsters_schema_is_one_script_directory_per_process() -> None:
    config = get_alembic_config(sqlite_event_log.__file__)
    assert ScriptDirectory.from_config(config) is ScriptDirectory.from_config(config)


def test_an_instance_and_a_new_run_database_execute_no_migration_script_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revisions_read: list[str]
) -> None:
    home = local_home(tmp_path / "dagster")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.from_config(str(home)) as instance:
        run_id = run_probe(instance)
        assert instance.get_run_by_id(run_id) is not None
        assert [e for e in instance.all_logs(run_id) if e.is_dagster_event]
    assert revisions_read == []
    # Stamped at the head that reading the scripts afresh finds.
    fresh = alembic_scripts._from_config(
        ScriptDirectory, get_alembic_config(sqlite_event_log.__file__)
    )
    with sqlite3.connect(home / "history" / "runs" / f"{run_id}.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (fresh.get_current_head(),)
        ]


def test_another_alembic_project_is_read_afresh(tmp_path: Path) -> None:
    """Only Dagster's packaged migrations are kept: a project's own are read as they are now."""
    command.init(Config(str(tmp_path / "alembic.ini")), str(tmp_path / "migrations"))
    config = Config(str(tmp_path / "alembic.ini"))  # as init wrote it
    config.set_main_option("script_location", str(tmp_path / "migrations"))
    first = ScriptDirectory.from_config(config)
    assert first.get_current_head() is None
    command.revision(config, "add a table")
    second = ScriptDirectory.from_config(config)
    assert second is not first
    assert second.get_current_head() is not None
