"""A stack of its own for the monitoring tests: SeaweedFS (with both metrics ports) and
Prometheus, started by the project's stack script in a separate stack dir with shifted ports, so
the shared stack other tests use is never restarted."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickhouse_dagster_tests.conftest import (
    BASE_PORT_OFFSET,
    COLD_START_TIMEOUT,
    STACK,
    parse_env,
)

CACHE = Path(os.environ.get("TICKHOUSE_CACHE") or Path.home() / ".cache" / "tickhouse")
MONITORING_STACK_DIR = CACHE / "stack-monitoring"
# Every port of this stack, SeaweedFS's gRPC ports (+10000) included, stays below Linux's
# ephemeral range (32768 up): at +20000 the master's metrics port once lost its bind to an
# outgoing connection that had been given that port as its local end. 2800 also meets none of
# the ports of the shared stack (+0) or the fault tests' (+2000), nor those of a fresh-machine
# rehearsal beside them (+500 on all three).
MONITORING_PORT_OFFSET = BASE_PORT_OFFSET + 2800
SERVICES = ("seaweedfs", "prometheus")


def monitoring_stack(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TICKHOUSE_STACK_DIR": str(MONITORING_STACK_DIR),
        "TICKHOUSE_STACK_PORT_OFFSET": str(MONITORING_PORT_OFFSET),
    }
    return subprocess.run(
        [str(STACK), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def running_services() -> set[str]:
    status = monitoring_stack("status").stdout
    return {
        s
        for s in SERVICES
        if any(line.split()[:2] == [s, "running"] for line in status.splitlines())
    }


@pytest.fixture(scope="session")
def monitoring_env() -> Iterator[dict[str, str]]:
    """`stack env` of the monitoring stack; stops at the end what this session started."""
    before = running_services()
    up = monitoring_stack("up", *SERVICES, timeout=COLD_START_TIMEOUT)
    assert up.returncode == 0, f"stack up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    try:
        yield parse_env(monitoring_stack("env").stdout)
    finally:
        started = [s for s in SERVICES if s not in before]
        if started:
            monitoring_stack("down", *started)
