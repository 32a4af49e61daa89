"""Dagster's alembic migration scripts read once per process, not once per storage and database.

Every Dagster storage asks alembic for its schema's head revision when it opens (the run and
schedule storages) or creates a database (each run's own event log database is stamped at
head): `ScriptDirectory.from_config` makes a new script directory each time, which executes
every migration script of that schema again to learn the revision graph. A run process did that
four times before its first step, 0.15–0.16 s (measured on this project's machine).

Importing this module makes `ScriptDirectory.from_config` return one script directory per
Dagster configuration for the life of the process, and reads the scripts for the three storages'
configurations (event log, runs, schedules; today three identical alembic.ini files naming the
same scripts, kept apart so that an ini that differs is never served another's) once each.
The warm run launcher's interpreter imports it (tickhouse_dagster.launcher), so every forked
run inherits the parsed graphs; `tickhouse ingest` imports it too. Script
directories of anything but Dagster's own packaged migrations are made afresh, as alembic does.
A script directory holds only what its configuration and files say, and Dagster's migration
files are those of the installed package, which a process never sees change.
tickhouse_dagster_tests/compat/test_private_apis.py checks the names used here.
"""

from __future__ import annotations

import os
from typing import Any

import dagster
from alembic.config import Config
from alembic.script import ScriptDirectory

_DAGSTER_DIR = os.path.dirname(dagster.__file__) + os.sep
_DAGSTER_RESOURCE = "dagster:"
_from_config = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]
_parsed: dict[tuple[str | None, str], ScriptDirectory] = {}


def _dagsters_own(config: Config) -> tuple[str | None, str] | None:
    """The cache key of a configuration that names Dagster's packaged migrations (as the
    resource `dagster:…`, which is how Dagster names them, or as a folder of the package)."""
    location = config.get_main_option("script_location")
    if location is None:
        return None
    if not location.startswith(_DAGSTER_RESOURCE):
        location = os.path.abspath(location)
        if not location.startswith(_DAGSTER_DIR):
            return None
    return config.config_file_name, location


def _once_per_process(cls: type[ScriptDirectory], config: Config) -> ScriptDirectory:
    key = _dagsters_own(config)
    if key is None:
        return _from_config(cls, config)  # type: ignore[no-any-return]
    if key not in _parsed:
        script = _from_config(cls, config)
        script.revision_map.heads  # noqa: B018 — executes the migration scripts, once
        _parsed[key] = script
    return _parsed[key]


def read_dagsters_schemas() -> None:
    """Read the scripts for the event log's, runs' and schedules' configurations now."""
    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage
    from dagster._core.storage.sql import get_alembic_config

    for storage in (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage):
        ScriptDirectory.from_config(get_alembic_config(storage.__file__))


cached: Any = classmethod(_once_per_process)
ScriptDirectory.from_config = cached  # type: ignore[method-assign]
read_dagsters_schemas()
