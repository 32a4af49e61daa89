"""Faults on the real stack (the fault stack: its own SeaweedFS and PostgreSQL, see conftest).

Every fault is injected at one well-defined moment: the ingest run has parsed the file and written
its Parquet data files and manifests, and is about to ask the catalog to commit (the runner's
hook, see runner.py). Then a real server is stopped. What must hold afterwards: the run failed
with a clear error or recovered through its retries, the table is exactly as before the run until
a run succeeds (same snapshot, same rows; pyiceberg, as Trino does not run on the fault stack), and
in the end the table holds every expected row exactly once.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pytest
from dagster import DagsterInstance
from sqlalchemy import text

from tickhouse_dagster.cli.ingest import QUIET_CONSOLE
from tickhouse_dagster.definitions import build_definitions
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster_tests.reliability.conftest import fault_stack_ok
from tickhouse_dagster_tests.reliability.runner import GO, RunThread, run_ingest
from tickhouse_dagster_tests.reliability.tally import record

pytestmark = pytest.mark.slow
TICKS_STEP = "market__ticks"
IDENTITY = ["source_file", "venue", "symbol", "trade_date", "trade_id"]
RUN_TIMEOUT = 180.0


# --- helpers ---------------------------------------------------------------------------------


def upload_sample(tmp_path: Path, files: int = 2, ticks: int = 4000) -> dict[str, int]:
    """Sample tick files in the landing prefix; landing key → trade prints in the file."""
    sample = tmp_path / "sample"
    generate(SampleSpec(symbols=3, ticks_per_day=ticks, files_per_day=files), sample)
    store = resolved_resources()["landing"].store()
    expected = {}
    for path in sorted(sample.rglob("*.xml")):
        key = path.relative_to(sample).as_posix()
        data = path.read_bytes()
        store.write(key, data)
        expected[key] = data.count(b"<trade ")
    return expected


def lakehouse() -> Lakehouse:
    return resolved_resources()["lakehouse"].lakehouse()


def table_state(house: Lakehouse) -> dict[str, Any]:
    """What a reader sees: the current snapshot, every snapshot, rows per file, duplicates."""
    table = house.table("ticks")
    snapshot = table.current_snapshot()
    rows = table.scan(selected_fields=tuple(IDENTITY)).to_arrow() if snapshot else None
    if rows is None or rows.num_rows == 0:
        return {"snapshot": None, "snapshots": 0, "rows": 0, "per_file": {}, "duplicated": 0}
    per_file = rows.group_by("source_file").aggregate([("trade_id", "count")])
    distinct = rows.group_by(IDENTITY).aggregate([]).num_rows
    return {
        "snapshot": snapshot.snapshot_id,
        "parent": snapshot.parent_snapshot_id,
        "snapshots": len(table.snapshots()),
        "rows": rows.num_rows,
        "per_file": dict(
            zip(
                per_file["source_file"].to_pylist(),
                per_file["trade_id_count"].to_pylist(),
                strict=True,
            )
        ),
        "duplicated": rows.num_rows - distinct,
    }


def catalog_pointer(house: Lakehouse) -> str:
    """The ticks table's current metadata file as the JDBC catalog records it (readable while
    S3 is down)."""
    with house.catalog.engine.connect() as connection:  # type: ignore[attr-defined]
        return connection.execute(
            text(
                "SELECT metadata_location FROM iceberg_tables "
                "WHERE table_namespace = :ns AND table_name = 'ticks'"
            ),
            {"ns": house.namespace},
        ).scalar_one()


def start_run(key: str, barrier: Path, party: str) -> RunThread:
    run = RunThread(key, barrier, party)
    run.start()
    return run


def wait_for(barrier: Path, pattern: str, count: int = 1, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"{count} × {pattern} not in {barrier} after {timeout}s"
        time.sleep(0.05)


def finish(run: RunThread, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    return run.finish(timeout)


def attempts(summary: dict[str, Any], step: str = TICKS_STEP) -> int:
    """Executions of the step: the first is STEP_START, each retry STEP_RESTARTED."""
    return sum(
        1
        for kind, key in summary["steps"]
        if kind in ("STEP_START", "STEP_RESTARTED") and key == step
    )


def retries(summary: dict[str, Any], step: str = TICKS_STEP) -> int:
    return sum(1 for kind, key in summary["steps"] if kind == "STEP_UP_FOR_RETRY" and key == step)


def barrier_dir(tmp_path: Path) -> Path:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    return barrier


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_seaweedfs_stopped_mid_commit(on_fault_stack, tmp_path: Path):
    """S3 gone at the commit and for the rest of the run: the run fails after its bounded retries
    saying the storage is unavailable; the table does not move; after SeaweedFS is back a re-run
    ingests the file's rows exactly once."""
    expected = upload_sample(tmp_path)
    first, second = sorted(expected)
    house = lakehouse()
    assert run_ingest(first)["success"]
    before = table_state(house)
    pointer = catalog_pointer(house)

    barrier = barrier_dir(tmp_path)
    run = start_run(second, barrier, "b")
    try:
        wait_for(barrier, "at-commit.b")
        fault_stack_ok("down", "seaweedfs")
        started = time.monotonic()
        (barrier / GO).touch()
        summary = finish(run)
        failed_after = time.monotonic() - started
        assert catalog_pointer(house) == pointer  # while S3 is still down
    finally:
        restart = fault_stack_ok("up", "seaweedfs", timeout=300)

    assert not summary["success"]
    assert "storage unavailable" in summary["failure"], summary["failure"]
    assert attempts(summary) == 4 and retries(summary) == 3  # TICKHOUSE_RETRY_MAX=3
    assert summary["retry_waits"] == sorted(summary["retry_waits"])  # backing off
    assert table_state(house) == before  # no partial commit

    rerun = run_ingest(second)
    assert rerun["success"], rerun["failure"]
    after = table_state(house)
    assert after["per_file"] == expected
    assert after["duplicated"] == 0
    record(
        "fault",
        "SeaweedFS stopped at the ticks commit (run fails, re-run after restart)",
        expected_rows=sum(expected.values()),
        found_rows=after["rows"],
        duplicated_rows=after["duplicated"],
        outcome=(
            f"run failed after {attempts(summary)} attempts in {failed_after:.0f}s "
            f"({summary['failure'][:200]}); table unchanged; SeaweedFS restart {restart:.0f}s; "
            "re-run ingested the file once"
        ),
    )


@pytest.mark.timeout(300)
def test_postgres_restarted_mid_commit(on_fault_stack, tmp_path: Path):
    """The catalog database gone at the commit, back a moment later: the run's own retry policy
    (RetryRequested with backoff) completes it; the failed attempt left nothing behind (the one
    new snapshot's parent is the snapshot before the run); every row once."""
    expected = upload_sample(tmp_path)
    first, second = sorted(expected)
    house = lakehouse()
    assert run_ingest(first)["success"]
    before = table_state(house)

    barrier = barrier_dir(tmp_path)
    run = start_run(second, barrier, "b")
    try:
        wait_for(barrier, "at-commit.b")
        fault_stack_ok("down", "postgres")
        (barrier / GO).touch()
        wait_for(barrier, "commit-failed.b.*")  # the outage really failed a commit attempt
    finally:
        restart = fault_stack_ok("up", "postgres")
    summary = finish(run)

    assert summary["success"], summary["failure"]
    assert retries(summary) >= 1
    after = table_state(house)
    assert after["parent"] == before["snapshot"]
    assert after["snapshots"] == before["snapshots"] + 1
    assert after["per_file"] == expected
    assert after["duplicated"] == 0
    record(
        "fault",
        "PostgreSQL catalog stopped at the ticks commit, restarted (retry policy recovers)",
        expected_rows=sum(expected.values()),
        found_rows=after["rows"],
        duplicated_rows=after["duplicated"],
        outcome=(
            f"retried {retries(summary)}x, waits "
            f"{', '.join(f'{w:.1f}' for w in summary['retry_waits'])}s; PostgreSQL restart "
            f"{restart:.0f}s; run succeeded in {summary['seconds']:.0f}s, one new snapshot"
        ),
    )


@pytest.mark.timeout(300)
def test_seaweedfs_outage_retried_until_it_is_back(on_fault_stack, monkeypatch, tmp_path: Path):
    """S3 gone at the commit, restarted while the run backs off: the retry policy carries the run
    through the outage; the failed attempts left nothing behind; every row once."""
    # Waits of about 1, 2, 4, 8, 16, 32 s: longer than a SeaweedFS stop and restart (~25 s).
    monkeypatch.setenv("TICKHOUSE_RETRY_MAX", "6")
    expected = upload_sample(tmp_path)
    first, second = sorted(expected)
    house = lakehouse()
    assert run_ingest(first)["success"]
    before = table_state(house)

    barrier = barrier_dir(tmp_path)
    run = start_run(second, barrier, "b")
    try:
        wait_for(barrier, "at-commit.b")
        fault_stack_ok("down", "seaweedfs")
        (barrier / GO).touch()
        wait_for(barrier, "commit-failed.b.*")
    finally:
        restart = fault_stack_ok("up", "seaweedfs", timeout=300)
    summary = finish(run)

    assert summary["success"], summary["failure"]
    assert retries(summary) >= 1
    assert summary["retry_waits"] == sorted(summary["retry_waits"])
    after = table_state(house)
    assert after["parent"] == before["snapshot"]
    assert after["snapshots"] == before["snapshots"] + 1
    assert after["per_file"] == expected
    assert after["duplicated"] == 0
    record(
        "fault",
        "SeaweedFS stopped at the ticks commit, restarted (retry policy recovers)",
        expected_rows=sum(expected.values()),
        found_rows=after["rows"],
        duplicated_rows=after["duplicated"],
        outcome=(
            f"retried {retries(summary)}x, waits "
            f"{', '.join(f'{w:.1f}' for w in summary['retry_waits'])}s; SeaweedFS restart "
            f"{restart:.0f}s; run succeeded in {summary['seconds']:.0f}s, one new snapshot"
        ),
    )


@pytest.mark.timeout(180)
def test_trino_down_ingestion_carries_on(on_fault_stack, fault_stack_env, monkeypatch, tmp_path):
    """TICKHOUSE_TRINO_URL points where no Trino listens: ticks commit, bars rebuild, and only the
    Trino read-back check fails, saying why."""
    url = fault_stack_env["TICKHOUSE_TRINO_URL"]
    parsed = urlparse(url)
    with pytest.raises(OSError), socket.create_connection((parsed.hostname, parsed.port), 2):
        pass
    monkeypatch.setenv("TICKHOUSE_TRINO_URL", url)
    expected = upload_sample(tmp_path, files=1)
    [key] = expected

    with DagsterInstance.ephemeral() as instance:
        summary = run_ingest(key, instance=instance)
        assert summary["success"], summary["failure"]
        assert summary["checks"]["rows_match_parsed"]["passed"]
        trino = summary["checks"]["trino_reads_commit"]
        assert trino["passed"] is False
        assert "Trino unreachable" in trino["description"], trino
        bars = (
            build_definitions(dict(resolved_resources()))
            .resolve_job_def("rebuild_bars")
            .execute_in_process(
                instance=instance,
                partition_key=key.split("/")[1],
                run_config={"loggers": QUIET_CONSOLE},
                raise_on_error=False,
            )
        )
        assert bars.success
    house = lakehouse()
    after = table_state(house)
    assert after["per_file"] == expected
    bar_rows = house.table("ohlcv_1d").scan().to_arrow()
    assert pa.compute.sum(bar_rows["trade_count"]).as_py() == expected[key]
    record(
        "fault",
        "Trino down (ingest and bars)",
        expected_rows=sum(expected.values()),
        found_rows=after["rows"],
        duplicated_rows=after["duplicated"],
        outcome=f"ticks and bars committed; trino_reads_commit failed: {trino['description'][:80]}",
    )


# --- concurrent writers ----------------------------------------------------------------------


def race(tmp_path: Path, keys: list[str]) -> list[dict[str, Any]]:
    """One run per key, each held at its ticks commit until all are there, then let go at once:
    every run built its commit on the same table snapshot, so all but one must conflict."""
    barrier = barrier_dir(tmp_path)
    runs = [start_run(key, barrier, f"r{i}") for i, key in enumerate(keys)]
    wait_for(barrier, "at-commit.*", count=len(runs))
    (barrier / GO).touch()
    return [finish(run) for run in runs]


@pytest.mark.timeout(240)
def test_two_files_committed_at_once(on_fault_stack, tmp_path: Path):
    expected = upload_sample(tmp_path)
    house = lakehouse()
    house.ensure_tables()
    summaries = race(tmp_path, sorted(expected))

    assert all(s["success"] for s in summaries), [s["failure"] for s in summaries]
    assert sum(s["commit_conflicts"] for s in summaries) >= 1  # they really collided
    after = table_state(house)
    assert after["per_file"] == expected
    assert after["duplicated"] == 0
    record(
        "fault",
        "two runs commit different files at the same moment (PostgreSQL catalog)",
        expected_rows=sum(expected.values()),
        found_rows=after["rows"],
        duplicated_rows=after["duplicated"],
        outcome=(
            f"both committed; {sum(s['commit_conflicts'] for s in summaries)} commit conflict(s) "
            "retried"
        ),
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("already_ingested", [False, True], ids=["new-file", "re-ingest"])
def test_same_file_committed_twice_at_once(on_fault_stack, tmp_path: Path, already_ingested):
    expected = upload_sample(tmp_path, files=1)
    [key] = expected
    house = lakehouse()
    house.ensure_tables()
    if already_ingested:
        assert run_ingest(key)["success"]
    summaries = race(tmp_path, [key, key])

    assert all(s["success"] for s in summaries), [s["failure"] for s in summaries]
    assert sum(s["commit_conflicts"] for s in summaries) >= 1
    after = table_state(house)
    assert after["per_file"] == expected
    assert after["duplicated"] == 0
    record(
        "fault",
        f"the same file committed by two runs at once ({'re-ingest' if already_ingested else 'new file'})",
        expected_rows=sum(expected.values()),
        found_rows=after["rows"],
        duplicated_rows=after["duplicated"],
        outcome=(
            "both runs succeeded, the file's rows once; runs (rows written, replaced, commit "
            "attempts, catalog conflicts): "
            + "; ".join(
                f"{r['ticks']['rows_written']}, {r['ticks']['rows_replaced']}, "
                f"{r['ticks']['commit_attempts']}, {r['commit_conflicts']}"
                for r in summaries
            )
        ),
    )
