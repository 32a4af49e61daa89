"""The local instance's event log (compat/dagster_event_log.py, set in
infra/dagster/dagster.local.yaml) on real SQLite files: it is Dagster's storage with its engines
kept, so what it writes Dagster's own storage reads and the other way round; runs, assets and
checks are found as before; threads share it; a fresh or wiped directory works."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetCheckResult,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    asset,
    asset_check,
    define_asset_job,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy import create_engine

from tickhouse_dagster.compat.dagster_event_log import (
    ENGINES_KEPT,
    SteadySqliteEventLogStorage,
    at_head,
)
from tickhouse_dagster.settings import PROJECT_ROOT

pytestmark = pytest.mark.timeout(180)


@asset(key=["market", "probe_bars"])
def probe_bars() -> MaterializeResult:
    return MaterializeResult(metadata={"rows": 3})


@asset_check(asset=probe_bars)
def probe_bars_positive() -> AssetCheckResult:
    return AssetCheckResult(passed=True, metadata={"negative": 0})


DEFS = Definitions(
    assets=[probe_bars],
    asset_checks=[probe_bars_positive],
    jobs=[define_asset_job("probe_job", AssetSelection.all())],
)
PROBE_KEY = AssetKey(["market", "probe_bars"])


def local_home(path: Path) -> Path:
    """A DAGSTER_HOME holding the project's local dagster.yaml."""
    path.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "infra" / "dagster" / "dagster.local.yaml", path / "dagster.yaml")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = local_home(tmp_path / "dagster")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(home: Path) -> Iterator[DagsterInstance]:
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


def run_probe(instance: DagsterInstance) -> str:
    result = DEFS.resolve_job_def("probe_job").execute_in_process(instance=instance)
    assert result.success
    return result.run_id


def seen_by(instance: DagsterInstance, run_id: str) -> tuple[set[DagsterEventType], int | None]:
    """The run's event types and the latest probe materialization's `rows`, as `instance`
    reads them."""
    types = {e.dagster_event_type for e in instance.all_logs(run_id) if e.is_dagster_event}
    latest = instance.get_latest_materialization_event(PROBE_KEY)
    rows = None
    if latest is not None and latest.asset_materialization is not None:
        rows = latest.asset_materialization.metadata["rows"].value  # type: ignore[assignment]
    return types, rows


def test_the_local_instance_uses_it_in_dagsters_own_directory(
    instance: DagsterInstance, home: Path
) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, SteadySqliteEventLogStorage)
    run_id = run_probe(instance)
    # The same file Dagster's default storage would write.
    assert (home / "history" / "runs" / f"{run_id}.db").is_file()


def test_an_instance_opened_by_its_folder_keeps_its_events_there_whatever_dagster_home_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tools open an instance by its folder (`DagsterInstance.from_config(path)`) from
    processes with another DAGSTER_HOME or none: the events are in that folder, as with
    Dagster's default storage."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    first, second = local_home(tmp_path / "first"), local_home(tmp_path / "second")
    with DagsterInstance.from_config(str(first)) as instance:
        run_id = run_probe(instance)
    monkeypatch.setenv("DAGSTER_HOME", str(second))
    with DagsterInstance.from_config(str(first)) as instance:
        types, rows = seen_by(instance, run_id)
    assert DagsterEventType.ASSET_MATERIALIZATION in types and rows == 3
    assert (first / "history" / "runs" / f"{run_id}.db").is_file()
    assert not (second / "history").exists()


def test_dagsters_own_storage_reads_what_it_wrote_and_it_reads_dagsters(
    instance: DagsterInstance, home: Path, tmp_path: Path
) -> None:
    ours = run_probe(instance)
    # Dagster's default instance on the same directory (no event_log_storage configured).
    plain_home = tmp_path / "plain"
    plain_home.mkdir()
    (plain_home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home}\ntelemetry:\n  enabled: false\n"
    )
    with DagsterInstance.from_config(str(plain_home)) as plain:
        assert type(plain.event_log_storage) is SqliteEventLogStorage
        types, rows = seen_by(plain, ours)
        assert {
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_CHECK_EVALUATION,
            DagsterEventType.RUN_SUCCESS,
        } <= types
        assert rows == 3
        theirs = run_probe(plain)
    types, _ = seen_by(instance, theirs)
    assert DagsterEventType.ASSET_MATERIALIZATION in types
    records = instance.event_log_storage.get_asset_check_execution_history(
        probe_bars_positive.check_key, limit=10
    )
    assert {r.run_id for r in records} == {ours, theirs}


def test_more_runs_than_engines_kept_are_all_stored_and_read(instance: DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, SteadySqliteEventLogStorage)
    run_ids = [run_probe(instance) for _ in range(ENGINES_KEPT + 4)]
    assert len(storage._engines) <= ENGINES_KEPT
    for run_id in run_ids:
        types, _ = seen_by(instance, run_id)
        assert DagsterEventType.ASSET_MATERIALIZATION in types, run_id
    records = instance.fetch_materializations(PROBE_KEY, limit=100).records
    assert sorted(r.run_id for r in records) == sorted(run_ids)


def test_events_from_several_threads_are_all_stored(instance: DagsterInstance) -> None:
    """The webserver reads and a run writes from several threads: the kept connection passes
    between them (one at a time) and nothing is lost."""
    errors: list[BaseException] = []

    def report(thread: int) -> None:
        try:
            for n in range(10):
                instance.report_runless_asset_event(
                    AssetMaterialization(PROBE_KEY, metadata={"rows": thread * 100 + n})
                )
                instance.get_latest_materialization_event(PROBE_KEY)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    records = instance.fetch_materializations(PROBE_KEY, limit=100).records
    rows = sorted(r.asset_materialization.metadata["rows"].value for r in records)  # type: ignore[union-attr]
    assert rows == sorted(t * 100 + n for t in range(4) for n in range(10))


def test_a_new_database_is_made_by_dagster_and_then_at_head(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    engine = create_engine(f"sqlite:///{path}")
    assert not at_head(engine)  # an empty file: Dagster's initialisation makes the schema
    storage = SteadySqliteEventLogStorage(str(tmp_path / "runs"))
    storage._initdb(engine)
    assert at_head(engine)
    engine.dispose()
    storage.dispose()


def test_wipe_forgets_every_run_and_the_next_run_is_stored(instance: DagsterInstance) -> None:
    first = run_probe(instance)
    instance.wipe()
    assert instance.all_logs(first) == []
    assert instance.get_latest_materialization_event(PROBE_KEY) is None
    second = run_probe(instance)
    types, rows = seen_by(instance, second)
    assert DagsterEventType.ASSET_MATERIALIZATION in types and rows == 3
