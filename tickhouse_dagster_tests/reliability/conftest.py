"""The fault stack: a second SeaweedFS + PostgreSQL, started by the project's own stack script with
its own state directory and shifted ports, so the fault tests can stop and restart servers without
touching the shared stack other tests use. Trino does not run on it: its Trino port is where the
"Trino down" test points, and nothing listens there.

The session fixture starts the fault stack from empty state, and always stops it (and removes its
state) at the end. A file lock keeps two test sessions from driving it at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickhouse_dagster_tests.conftest import BASE_PORT_OFFSET, STACK, parse_env

CACHE = Path(os.environ.get("TICKHOUSE_CACHE") or Path.home() / ".cache" / "tickhouse")
FAULT_STACK_DIR = CACHE / "stack-faults"
# 2000, not 1000: the stack's ports are 1000 apart (S3 18333 + 1000 = the shared master's 19333)
# and SeaweedFS also listens on every port + 10000 (gRPC), so 1000 and 10000 collide.
FAULT_PORT_OFFSET = str(BASE_PORT_OFFSET + 2000)
UP_TIMEOUT = 300  # SeaweedFS and PostgreSQL are installed already (the shared stack runs)
HEALTH_TIMEOUT = 90  # a restarted SeaweedFS is healthy in 5-30 s; the stack's default is 180 s
LOCK_TIMEOUT = 900  # another session running the fault tests


def fault_stack(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `infra/local/stack` on the fault stack (never on the shared one). A command that
    outlives `timeout` fails with what the stack printed and the tails of its servers' logs,
    which are removed with the fault stack at the end of the session."""
    env = {
        **os.environ,
        "TICKHOUSE_STACK_DIR": str(FAULT_STACK_DIR),
        "TICKHOUSE_STACK_PORT_OFFSET": FAULT_PORT_OFFSET,
        # Each of `up`'s (at most three) health waits ends before UP_TIMEOUT does, so a server
        # that does not come up is reported by the stack itself, with its log's tail.
        "TICKHOUSE_HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
    }
    try:
        return subprocess.run(
            [str(STACK), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        printed = exc.stderr or ""
        if isinstance(printed, bytes):
            printed = printed.decode(errors="replace")
        raise AssertionError(
            f"stack {' '.join(args)} still running after {timeout:.0f}s:\n{printed[-3000:]}"
            f"{log_tails()}"
        ) from None


def log_tails(lines: int = 40) -> str:
    """The last lines of each fault-stack server log."""
    tails = []
    for log in sorted((FAULT_STACK_DIR / "logs").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"\n----- last {lines} lines of {log.name} -----\n" + "\n".join(text))
    return "".join(tails)


def fault_stack_ok(*args: str, timeout: float = 120) -> float:
    """Run a stack command that must succeed; returns its duration in seconds."""
    started = time.monotonic()
    done = fault_stack(*args, timeout=timeout)
    assert done.returncode == 0, f"stack {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return time.monotonic() - started


@pytest.fixture(scope="session")
def fault_stack_env() -> Iterator[dict[str, str]]:
    FAULT_STACK_DIR.parent.mkdir(parents=True, exist_ok=True)
    with (FAULT_STACK_DIR.parent / "stack-faults.session.lock").open("w") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "another test session holds the fault stack"
                time.sleep(2)
        # A session that was killed may have left servers running: stop them, start from empty
        # state (also avoids SeaweedFS refusing writes after its master state was lost).
        fault_stack("down", timeout=180)
        shutil.rmtree(FAULT_STACK_DIR, ignore_errors=True)
        try:
            fault_stack_ok("up", "postgres", "seaweedfs", timeout=UP_TIMEOUT)
            yield parse_env(fault_stack("env").stdout)
        finally:
            fault_stack("down", timeout=180)
            shutil.rmtree(FAULT_STACK_DIR, ignore_errors=True)


@pytest.fixture
def on_fault_stack(
    fault_stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The process environment pointed at the fault stack, with an Iceberg namespace and landing
    prefix of its own and Trino not configured; every server is running again afterwards, whatever
    the test stopped."""
    run_id = uuid.uuid4().hex[:8]
    for name in list(os.environ):
        if name.startswith(("TICKHOUSE_", "PYICEBERG_CATALOG__")):
            monkeypatch.delenv(name)
    for name, value in fault_stack_env.items():
        monkeypatch.setenv(name, value)
    # The polling path, as for S3 without change notifications; the push tests set it back.
    monkeypatch.delenv("TICKHOUSE_FILER_GRPC", raising=False)
    monkeypatch.delenv("TICKHOUSE_TRINO_URL")  # a test that wants "Trino down" sets it back
    settings = {
        "TICKHOUSE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "TICKHOUSE_NAMESPACE": f"market_f{run_id}",
        "TICKHOUSE_LANDING_URI": f"s3://landing/f{run_id}/",
        # Short backoff keeps the fault tests quick; the production default is 2 s doubling.
        "TICKHOUSE_RETRY_MAX": "3",
        "TICKHOUSE_RETRY_BASE_SECONDS": "1",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "home" / "dagster").mkdir(parents=True)
    try:
        yield {**fault_stack_env, **settings}
    finally:
        unhealthy = unhealthy_services()
        if unhealthy:
            # A server left half-started by a failed test is stopped first: `up` leaves a
            # running process alone, healthy or not.
            fault_stack("down", *unhealthy)
            fault_stack_ok("up", *unhealthy, timeout=UP_TIMEOUT)


def unhealthy_services() -> list[str]:
    """Those of PostgreSQL and SeaweedFS of the fault stack not running and healthy (Trino never
    runs there, so the status command's own exit code does not tell)."""
    lines = fault_stack("status").stdout.splitlines()
    return [
        service
        for service in ("postgres", "seaweedfs")
        if not any(line.split()[:2] == [service, "running"] and "healthy" in line for line in lines)
    ]
