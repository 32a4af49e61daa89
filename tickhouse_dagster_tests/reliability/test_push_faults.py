"""Push ingestion under faults, on the fault stack (its own SeaweedFS + PostgreSQL, see conftest):
files keep landing while the landing listener is killed (SIGKILL) and started again, while
SeaweedFS's filer is stopped and started again, and after it crashed (SIGKILL); the push sensor ticks all along, as the daemon
does, and once an evaluation is retried with the cursor from before it (a daemon that died
before storing the cursor). What must hold: every file is queued and requested, none twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
from dagster import DagsterInstance

from tickhouse_dagster.defs.resources import resolved_resources
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
