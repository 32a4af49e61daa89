"""`dagster dev` as `make dev` starts it, in a Dagster home of its own: for the UI tests and the
latency benchmark, which drive the real webserver and daemon rather than in-process runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tickhouse_dagster.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the system picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dagster_home(home: Path) -> dict[str, str]:
    """Make `home` a TICKHOUSE_HOME with a DAGSTER_HOME inside it (the local instance config:
    SQLite storage, queued runs, one bars rebuild per day at a time); returns its variables."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(
        PROJECT_ROOT / "infra" / "dagster" / "dagster.local.yaml", home / "dagster" / "dagster.yaml"
    )
    return {"TICKHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


@contextmanager
def running_dagster_dev(env: Mapping[str, str], port: int, log: Path) -> Iterator[str]:
    """`dagster dev` on 127.0.0.1:`port` with `env`, its output in `log`; yields the base URL and
    stops the webserver, the daemon and their runs (one process group) on exit."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
