"""`dagster dev` started for real, as `make dev` starts it, on a generated sample day in a home
of its own (shared by the UI tests of this package through the `dagster_dev` fixture)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tickhouse_dagster.cli import devserver
from tickhouse_dagster.cli.devserver import BIN, dagster_home, free_port


@contextmanager
def running_dagster_dev(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Yields the GraphQL URL and TICKHOUSE_HOME."""
    home = tmp_path / "home"
    env = {**os.environ, **dagster_home(home), "TICKHOUSE_SENSOR_INTERVAL_SECONDS": "5"}
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
    with devserver.running_dagster_dev(env, free_port(), tmp_path / "dagster-dev.log") as url:
        yield f"{url}/graphql", home
