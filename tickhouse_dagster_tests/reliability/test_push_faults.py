"""Push ingestion under faults, on the fault stack (its own SeaweedFS + PostgreSQL, see conftest):
files keep landing while the landing listener is killed (SIGKILL) and started again, while
SeaweedFS's filer is stopped and started again, and after it crashed (SIGKILL); the push sensor
ticks all along, as the daemon does, and once an evaluation is retried with the cursor from
before it (a daemon that died before storing the cursor). Then the real `dagster-daemon` killed
(SIGKILL) mid-stream and started again. What must hold: every file is queued and requested, none
twice, and each is ingested once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter

from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster.storage.landing import LandingStore
from tickhouse_dagster_tests.defs.test_ingest_assets import trades
from tickhouse_dagster_tests.push import PushDaemon, wait_queued
from tickhouse_dagster_tests.reliability.conftest import (
    FAULT_STACK_DIR,
    fault_stack,
    fault_stack_ok,
)

pytestmark = pytest.mark.slow
FILES = 40
EVERY = 0.25  # seconds between uploads
TEST_TIMEOUT = 240


class Uploader(threading.Thread):
    """Uploads FILES files, one every EVERY seconds, retrying each until S3 takes it (the S3
    gateway lives in the filer process, so uploads fail while the filer is down)."""

    def __init__(self, store: LandingStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.keys = [f"KRX/stream/f{n:03d}.xml" for n in range(FILES)]
        self.done = 0
        # A PUT retried after an error may have landed the first time too: that is two versions.
        self.retried: set[str] = set()
        self.failures = 0

    def run(self) -> None:
        for n, key in enumerate(self.keys):
            while True:
                try:
                    self.store.write(key, trades((str(n), "09:00:00", "71000", 5)))
                    break
                except Exception:
                    self.failures += 1
                    self.retried.add(key)
                    time.sleep(0.5)
            self.done += 1
            time.sleep(EVERY)


class Ticker(threading.Thread):
    """The daemon's sensor loop, every 0.5 s, until stopped."""

    def __init__(self, daemon: PushDaemon) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.retry_once = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                before = self.daemon_.cursor
                result = self.daemon_.tick()
                if result.run_requests and self.retry_once.is_set():
                    self.retry_once.clear()
                    self.daemon_.tick(cursor=before)  # the evaluation again, cursor lost
            except Exception as exc:  # recorded, asserted at the end
                self.errors.append(f"{type(exc).__name__}: {exc}")


def pid(name: str) -> int:
    return int((FAULT_STACK_DIR / "run" / f"{name}.pid").read_text().split()[0])


def wait_until(what: str, probe, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def gone(process: int) -> bool:
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(TEST_TIMEOUT)
def test_listener_and_filer_restarts_lose_nothing_and_request_nothing_twice(
    on_fault_stack, monkeypatch
):
    monkeypatch.setenv("TICKHOUSE_FILER_GRPC", on_fault_stack["TICKHOUSE_FILER_GRPC"])
    fault_stack_ok("up", "landing-listener")
    try:
        landing = resolved_resources()["landing"]
        with DagsterInstance.ephemeral() as instance:
            daemon = PushDaemon(instance, landing)
            daemon.start_at_queue_end()
            uploader, ticker = Uploader(landing.store()), Ticker(daemon)
            ticker.start()
            uploader.start()

            wait_until("8 uploads", lambda: uploader.done >= 8)
            listener = pid("landing-listener")
            os.kill(listener, signal.SIGKILL)  # a crash: nothing flushed, no goodbye
            wait_until("the listener to die", lambda: gone(listener), 10)
            wait_until("3 more uploads", lambda: uploader.done >= 11)  # while it is down
            listener_restart = fault_stack_ok("up", "landing-listener")

            ticker.retry_once.set()
            wait_until("16 uploads", lambda: uploader.done >= 16)
            filer = pid("seaweedfs-filer")
            os.kill(filer, signal.SIGTERM)
            wait_until("the filer to stop", lambda: gone(filer), 60)
            filer_restart = fault_stack_ok("up", "seaweedfs", timeout=300)

            wait_until("28 uploads", lambda: uploader.done >= 28)
            filer = pid("seaweedfs-filer")
            os.kill(filer, signal.SIGKILL)  # the filer crashes: its unflushed log is gone
            wait_until("the filer to die", lambda: gone(filer), 10)
            filer_crash_restart = fault_stack_ok("up", "seaweedfs", timeout=300)

            uploader.join(TEST_TIMEOUT / 2)
            assert not uploader.is_alive(), f"uploads stuck at {uploader.done}/{FILES}"
            wait_queued(uploader.keys, landing, 60)
            wait_until(
                "the push sensor to request every file",
                lambda: set(uploader.keys) <= set(daemon.requested_keys()),
                30,
            )
            ticker.stop.set()
            ticker.join(10)
        print(
            f"listener restart {listener_restart:.1f}s, filer restart {filer_restart:.1f}s, "
            f"after a filer crash {filer_crash_restart:.1f}s, "
            f"{uploader.failures} failed uploads retried, {len(daemon.runs)} runs, "
            f"{daemon.requests} requests"
        )
        assert ticker.errors == []
        counts = Counter(daemon.requested_keys())
        assert set(counts) == set(uploader.keys)  # nothing lost
        twice = {k for k, c in counts.items() if c > 1}
        assert twice <= uploader.retried, f"requested twice: {sorted(twice - uploader.retried)}"
        assert daemon.requests > len(daemon.runs)  # the retried evaluation did happen...
        # ...and asked for a run key already requested, which Dagster drops.
    finally:
        fault_stack("down", "landing-listener")


DAEMON_FILES = 16
DAEMON_TIMEOUT = 420


def start_daemon(env: dict[str, str], log) -> subprocess.Popen:
    """The real `dagster-daemon` on the code location (its sensors, run queue and launcher)."""
    return subprocess.Popen(
        [str(PROJECT_ROOT / ".venv" / "bin" / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def batch_runs(instance: DagsterInstance) -> list[tuple[str, list[str]]]:
    """(status, landing keys) of every ingest run."""
    out = []
    for record in instance.get_run_records(RunsFilter(job_name="ingest_landing_batch")):
        config = record.dagster_run.run_config["ops"]["ingest_landing_files"]["config"]
        out.append((record.dagster_run.status.value, list(config["keys"])))
    return out


@pytest.mark.timeout(DAEMON_TIMEOUT)
def test_a_dagster_daemon_killed_mid_stream_loses_nothing_and_ingests_nothing_twice(
    on_fault_stack, monkeypatch, tmp_path
):
    monkeypatch.setenv("TICKHOUSE_FILER_GRPC", on_fault_stack["TICKHOUSE_FILER_GRPC"])
    home = Path(on_fault_stack["DAGSTER_HOME"])
    shutil.copy(PROJECT_ROOT / "infra" / "dagster" / "dagster.local.yaml", home / "dagster.yaml")
    fault_stack_ok("up", "landing-listener")
    env = dict(os.environ)
    landing = resolved_resources()["landing"]
    store = landing.store()
    keys = [f"KRX/daemon/f{n:03d}.xml" for n in range(DAEMON_FILES)]
    log = (tmp_path / "daemon.log").open("w")
    daemon = start_daemon(env, log)
    try:
        with DagsterInstance.from_config(str(home)) as instance:

            def ingested() -> set[str]:
                return {k for status, ks in batch_runs(instance) if status == "SUCCESS" for k in ks}

            for n, key in enumerate(keys[:6]):
                store.write(key, trades((str(n), "09:00:00", "71000", 5)))
                time.sleep(0.5)
            # The daemon killed while files are queued and runs requested or running: no
            # goodbye, no cursor written after its last evaluation. (Runs already launched are
            # their own processes and finish; a run worker killed too would need Dagster's run
            # monitoring and retries, which the default run launcher cannot serve.)
            wait_until("a first run requested", lambda: batch_runs(instance), 120)
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
            for n, key in enumerate(keys[6:], start=6):  # files keep landing meanwhile
                store.write(key, trades((str(n), "09:00:00", "71000", 5)))
                time.sleep(0.5)
            daemon = start_daemon(env, log)
            wait_until(
                "every file ingested by a successful run",
                lambda: set(keys) <= ingested(),
                DAEMON_TIMEOUT - 120,
            )
            runs = batch_runs(instance)
        requested = Counter(k for _, ks in runs for k in ks)
        assert set(requested) == set(keys)  # nothing lost
        # A run the kill interrupted may be retried by a later one; a file is ingested by one
        # successful run only, and its rows are in the table once.
        succeeded = Counter(k for status, ks in runs if status == "SUCCESS" for k in ks)
        assert all(count == 1 for count in succeeded.values()), succeeded
        ticks = resolved_resources()["lakehouse"].lakehouse().ticks_for_days([date(2024, 1, 2)])
        rows = Counter(ticks["source_file"].to_pylist())
        assert rows == {k: 1 for k in keys}
        print(f"{len(runs)} runs: {[(s, len(ks)) for s, ks in runs]}")
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
        fault_stack("down", "landing-listener")
