"""Dagster's SQLite event log (dagster 1.13), without the costs it pays again for every event.

`SqliteEventLogStorage` makes a new SQLAlchemy engine for every connection: each event a run
writes (36 for one landing file: 7 materializations, 14 check evaluations, the run's own) pays
for a new engine, so SQLAlchemy compiles every statement again, and the first connection of a
process to each database checks alembic's revision by parsing all of Dagster's migration
scripts. Measured on this machine: 21 asset events in 0.52–0.58 s, about a third of a pushed
file's processing after its parse (decision 1606).

`SteadySqliteEventLogStorage` is the same storage with one engine per database (the last
`ENGINES_KEPT` databases used; a run uses two: its own and the index) that keeps its
connection open between events, so compiled statements are reused and a connection's close
(SQLite checkpoints its WAL when the last one closes) is not paid per event, and with alembic's
head revision read once per process: a database already at it is left alone, one that is not
goes through Dagster's own initialisation, as before. Commits stay synchronous: an event
stored is on disk. Files,
schema, WAL mode and every query are Dagster's; the instance reads what Dagster wrote and Dagster
reads what it writes. Configured in infra/dagster/dagster.local.yaml;
tickhouse_dagster_tests/compat/test_private_apis.py checks the names it overrides, and
tickhouse_dagster_tests/deploy/test_event_log.py its behaviour on a real instance.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from dagster import DagsterInstance, Field, StringSource
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import get_alembic_config
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

ENGINES_KEPT = 16  # a webserver reads many runs' databases; a run writes two


def event_logs_dir(instance_dir: str) -> str:
    """Where Dagster's default SQLite storage keeps an instance's event logs."""
    return os.path.join(instance_dir, "history", "runs", "")


@cache
def head_revision() -> str | None:
    """The event log schema's newest alembic revision (Dagster's scripts, parsed once)."""
    from alembic.script import ScriptDirectory

    config = get_alembic_config(sqlite_event_log.__file__)
    return ScriptDirectory.from_config(config).get_current_head()


def at_head(engine: Engine) -> bool:
    """Whether the database's stamped alembic revision is the head (a missing table or file
    is not: Dagster's initialisation then creates it)."""
    try:
        with engine.connect() as conn:
            stamped = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return list(stamped) == [head_revision()]
    except OperationalError:
        return False


class SteadySqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with engines kept and alembic's head read once (see the
    module doc). Configured with no settings, its folder is the instance's own
    `history/runs`, where Dagster's default storage keeps it, whichever process opens the
    instance and whatever its DAGSTER_HOME says; `base_dir` (tools, tests) names the folder."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables_seen: set[str] = set()
        self._inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SteadySqliteEventLogStorage:
        return cls(config_value.get("base_dir"), inst_data=inst_data)

    def register_instance(self, instance: DagsterInstance) -> None:
        # Dagster passes a storage its instance before anything uses it, with the instance's
        # folder already known: the place to open the default folder, as Dagster's own
        # default storage is given it by the instance's directory.
        if not hasattr(self, "_base_dir"):
            super().__init__(event_logs_dir(instance.root_directory), inst_data=self._inst_data)
        super().register_instance(instance)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, made on first use: SQLAlchemy's default pool for a file, with one
        connection kept (`_connect` holds the storage's lock, so one is in use at a time; the
        pool lets it pass between threads). Processes that use it are started afresh, never
        forked from one holding it (the warm launcher forks from a process with no instance)."""
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                pool_size=1,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
        self._engines[shard] = engine
        while len(self._engines) > ENGINES_KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's `_connect`, with the engine kept instead of made and disposed each time.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        if not at_head(engine):
            super()._initdb(engine, for_index_shard=for_index_shard)

    def has_table(self, table_name: str) -> bool:
        # Asked before every check evaluation is stored (Dagster's makes an engine for it); a
        # table once there stays.
        if table_name not in self._tables_seen and super().has_table(table_name):
            self._tables_seen.add(table_name)
        return table_name in self._tables_seen

    def _forget_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._forget_engines()  # their connections would hold the deleted files
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._forget_engines()
