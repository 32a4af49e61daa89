"""`dagster dev` started for real, as `make dev` starts it, on a generated sample day in a home
of its own (shared by the UI tests of this package through the `dagster_dev` fixture)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tickhouse_dagster.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_dagster_dev(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Yields the GraphQL URL and TICKHOUSE_HOME."""
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(
        PROJECT_ROOT / "infra" / "dagster" / "dagster.local.yaml", home / "dagster" / "dagster.yaml"
    )
    env = {
        **os.environ,
        "TICKHOUSE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "TICKHOUSE_SENSOR_INTERVAL_SECONDS": "5",
    }
    subprocess.run(
        [
            BIN / "tickhouse",
            "generate",
            "--symbols",
            "3",
            "--ticks-per-day",
            "3000",
            "--files-per-day",
            "2",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}/graphql", home
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
