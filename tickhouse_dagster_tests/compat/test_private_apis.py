"""The private library APIs behind tickhouse_dagster/compat/: an upgrade that renames, moves or
changes one fails here, by name, before any run does."""

from __future__ import annotations

import inspect
import os
from datetime import UTC, date, datetime

import pytest
from dagster import DagsterInvalidDefinitionError, StaticPartitionsDefinition
from dagster._core.test_utils import freeze_time

from tickhouse_dagster.compat import (
    dagster_private,
    dagster_runs,
    forkserver_private,
    pyiceberg_private,
)
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_filters import is_in
from tickhouse_dagster.storage.ticks_writes import ticks_from_parsed, write_data_files
from tickhouse_dagster_tests.market.test_bars import tick
from tickhouse_dagster_tests.storage.test_lakehouse import parsed


def test_dagster_refuses_exactly_the_partition_keys_valid_partition_key_refuses():
    bad = dagster_private.INVALID_PARTITION_SUBSTRINGS
    assert "..." in bad and all(isinstance(s, str) and s for s in bad)
    for substring in bad:
        key = f"2024/01/02{substring}krx.xml"
        assert not dagster_private.valid_partition_key(key)
        with pytest.raises(DagsterInvalidDefinitionError):
            StaticPartitionsDefinition([key])
    good = "2024/01/02/krx-ticks.xml.gz"
    assert dagster_private.valid_partition_key(good)
    assert StaticPartitionsDefinition([good]).get_partition_keys() == [good]


def test_current_datetime_is_dagsters_clock():
    now = dagster_private.current_datetime()
    assert now.tzinfo is not None and abs((datetime.now(UTC) - now).total_seconds()) < 60
    frozen = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
    with freeze_time(frozen):
        assert dagster_private.current_datetime() == frozen


def test_the_run_worker_body_keeps_its_signature():
    """What the warm run launcher's forked process calls (the body of `dagster api
    execute_run`); its behaviour is tested in deploy/test_warm_launcher.py."""
    assert list(inspect.signature(dagster_runs.execute_run_body).parameters) == [
        "run_id",
        "instance",
        "write_stream_fn",
        "set_exit_code_on_failure",
    ]
    assert callable(dagster_runs.setup_interrupt_handlers)
    with dagster_runs.capture_interrupts():
        pass


def test_a_module_code_pointer_names_its_module():
    """The warm run launcher preloads the module a run's code location is loaded from."""
    module = dagster_runs.ModuleCodePointer("tickhouse_dagster.definitions", "defs", "/tmp")
    package = dagster_runs.PackageCodePointer("tickhouse_dagster", "defs", "/tmp")
    assert (module.module, package.module) == ("tickhouse_dagster.definitions", "tickhouse_dagster")


def test_a_stopped_forkserver_starts_again_with_the_modules_named_since():
    """What the warm run launcher does when its code location's sources change; its behaviour
    is tested in deploy/test_warm_launcher.py."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    pids = []
    for preload in (["json"], ["json", "csv"]):
        forkserver_private.stop_forkserver()
        context.set_forkserver_preload(preload)
        with context.Pool(1) as pool:
            pids.append(pool.apply(os.getppid))
    forkserver_private.stop_forkserver()
    forkserver_private.stop_forkserver()  # stopping a stopped one is a no-op
    assert pids[0] != pids[1]  # two forkservers, one after the other


def test_the_sql_catalog_methods_the_remembering_catalog_overrides_keep_their_signatures():
    """RememberingSqlCatalog overrides these; its behaviour is tested in
    storage/test_catalog.py on a real SQLite catalog."""
    from pyiceberg.catalog.sql import SqlCatalog

    def parameters(function: object) -> list[str]:
        return list(inspect.signature(function).parameters)

    assert parameters(SqlCatalog._convert_orm_to_iceberg) == ["self", "orm_table"]
    assert parameters(SqlCatalog._load_file_io) == ["self", "properties", "location"]
    assert parameters(SqlCatalog.commit_table) == ["self", "table", "requirements", "updates"]


def test_the_sqlite_event_log_methods_the_steady_storage_overrides_keep_their_signatures(
    tmp_path,
):
    """SteadySqliteEventLogStorage (compat/dagster_event_log.py) overrides these and uses the
    lock and the set of initialised databases Dagster's `_connect` uses; its behaviour is
    tested in deploy/test_event_log.py."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    def parameters(function: object) -> list[str]:
        return list(inspect.signature(function).parameters)

    assert parameters(SqliteEventLogStorage._connect) == ["self", "shard"]
    assert parameters(SqliteEventLogStorage._initdb) == ["self", "engine", "for_index_shard"]
    assert parameters(SqliteEventLogStorage.has_table) == ["self", "table_name"]
    assert parameters(SqliteEventLogStorage.conn_string_for_shard) == ["self", "shard_name"]
    assert parameters(SqliteEventLogStorage.wipe) == ["self"]
    storage = SqliteEventLogStorage(str(tmp_path))
    assert isinstance(storage._initialized_dbs, set)
    assert hasattr(storage._db_lock, "acquire")
    storage.dispose()


def test_the_queued_coordinator_takes_its_config_keys_as_keyword_arguments():
    # run_coordinator.PushFirstRunCoordinator passes Dagster's config through by name.
    from dagster import QueuedRunCoordinator

    config = QueuedRunCoordinator.config_type()
    assert isinstance(config, dict)
    parameters = inspect.signature(QueuedRunCoordinator.__init__).parameters
    assert set(config) <= set(parameters), set(config) - set(parameters)
    assert "inst_data" in parameters
    submit = inspect.signature(QueuedRunCoordinator.submit_run)
    assert list(submit.parameters) == ["self", "context"]


def test_the_alembic_names_the_script_cache_uses_keep_their_shape():
    """compat/alembic_scripts.py replaces `ScriptDirectory.from_config` and recognises Dagster's
    migrations by the `dagster:` resource its configurations name; its behaviour is tested in
    compat/test_alembic_scripts.py."""
    from alembic.script import ScriptDirectory
    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage
    from dagster._core.storage.sql import get_alembic_config

    from tickhouse_dagster.compat import alembic_scripts

    assert list(inspect.signature(alembic_scripts._from_config).parameters) == ["cls", "config"]
    assert callable(ScriptDirectory._load_revisions)
    for storage in (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage):
        config = get_alembic_config(storage.__file__)
        assert alembic_scripts._dagsters_own(config) is not None, storage.__name__
        assert config.get_main_option("script_location", "").startswith("dagster:")


def test_pyiceberg_write_functions_keep_their_signatures():
    def parameters(function: object) -> list[str]:
        return list(inspect.signature(function).parameters)

    assert parameters(pyiceberg_private.dataframe_to_data_files)[:3] == [
        "table_metadata",
        "df",
        "io",
    ]
    assert parameters(pyiceberg_private.write_file) == ["io", "table_metadata", "tasks"]
    fields = parameters(pyiceberg_private.WriteTask)
    assert {"write_uuid", "task_id", "schema", "record_batches", "partition_key"} <= set(fields)


@pytest.mark.parametrize("days", [[date(2024, 1, 2)], [date(2024, 1, 2), date(2024, 1, 3)]])
def test_written_data_files_commit_the_rows_to_their_partitions(house: Lakehouse, days):
    """One trade date goes through WriteTask + write_file, several through
    _dataframe_to_data_files: both must give data files a commit adds as they are."""
    rows = ticks_from_parsed(
        parsed(
            [
                tick("09:00:00", str(n), "100", 1, day=day, source="a.xml")
                for n, day in enumerate(days)
            ]
        ),
        datetime(2024, 1, 2, 10, tzinfo=UTC),
    )
    table = house.table("ticks")
    data_files = write_data_files(table, rows)
    assert sorted(f.partition[0] for f in data_files) == sorted(
        (d - date(1970, 1, 1)).days for d in days
    )
    house.replace_data_files("ticks", is_in("source_file", ["a.xml"]), data_files)
    stored = house.table("ticks").scan().to_arrow()
    assert stored.num_rows == len(days)
    assert sorted(stored["trade_date"].to_pylist()) == days
    assert sorted(stored["trade_id"].to_pylist()) == sorted(rows["trade_id"].to_pylist())


PY4J_CHECK = """
from pyspark.sql import SparkSession

from tickhouse_dagster.compat.py4j_private import hadoop_configuration

spark = (
    SparkSession.builder.master("local[1]")
    .config("spark.ui.enabled", "false")
    .appName("tickhouse compat check")
    .getOrCreate()
)
try:
    conf = hadoop_configuration(spark)
    print(conf.getClass().getName())
    conf.set("fs.s3a.endpoint.region", "tickhouse-compat-check")
    # What Spark's file sources are handed: the same JVM object, so the value set is read back.
    print(hadoop_configuration(spark).get("fs.s3a.endpoint.region"))
finally:
    spark.stop()
"""


@pytest.mark.slow
def test_py4j_hadoop_configuration_is_the_running_sessions():
    """pyspark's `SparkContext._jsc` (compat/py4j_private.py) on a real local session, in a
    process of its own so no other test's session is touched."""
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-c", PY4J_CHECK],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert shown.stdout.split() == [
        "org.apache.hadoop.conf.Configuration",
        "tickhouse-compat-check",
    ]


def test_cached_transaction_computes_its_metadata_once_per_staged_state(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch
):
    """Reads of an unchanged state share one computation; staging an update or committing gives
    the new state (not a stale copy); the commit stores what a plain Transaction would."""
    import pyiceberg.table

    computed = []
    replay = pyiceberg.table.update_table_metadata

    def counting(*args: object, **kwargs: object) -> object:
        computed.append(1)
        return replay(*args, **kwargs)

    monkeypatch.setattr(pyiceberg.table, "update_table_metadata", counting)
    rows = ticks_from_parsed(
        parsed([tick("09:00:00", str(n), "100", 1, source="a.xml") for n in range(3)]),
        datetime(2024, 1, 2, 10, tzinfo=UTC),
    )
    table = house.table("ticks")
    tx = pyiceberg_private.CachedTransaction(table)
    first = tx.table_metadata
    assert all(tx.table_metadata is first for _ in range(10)) and len(computed) == 1
    tx.set_properties({"tickhouse.test": "staged"})
    staged = tx.table_metadata
    assert staged.properties["tickhouse.test"] == "staged" and len(computed) == 2
    tx.append(rows)
    assert tx.table_metadata.current_snapshot_id is not None
    tx.commit_transaction()
    stored = house.table("ticks")
    assert stored.properties["tickhouse.test"] == "staged"
    assert stored.scan().to_arrow().num_rows == 3
    # A second transaction on the committed table starts from the new metadata.
    again = pyiceberg_private.CachedTransaction(stored)
    again.delete(is_in("source_file", ["a.xml"]))
    again.commit_transaction()
    assert house.table("ticks").scan().to_arrow().num_rows == 0
