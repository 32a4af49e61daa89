"""A sample trading day in an Iceberg namespace of its own on the real stack: written by the
project's generator, ingested by the `tickhouse ingest` command as a user runs it, and the Trino BI
views created by the `bar_views` asset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tickhouse_dagster.sample import SampleSpec, generate

BIN = Path(sys.executable).parent
OWN_PREFIXES = ("TICKHOUSE_", "PYICEBERG_CATALOG__", "DAGSTER_")


def stack_settings(stack_env: dict[str, str], namespace: str, home: Path) -> dict[str, str]:
    """The process environment for the CLI: the stack's catalog and warehouse, a local landing
    folder (nothing to clean up in the shared bucket) and a namespace of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update(stack_env)
    env.update(
        {
            "TICKHOUSE_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "TICKHOUSE_NAMESPACE": namespace,
            "TICKHOUSE_LANDING_URI": str(home / "landing"),
        }
    )
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """This process configured by `env` (for the in-process steps), restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(OWN_PREFIXES) and name not in env:
                patch.delenv(name)
        for name, value in env.items():
            if name.startswith(OWN_PREFIXES):
                patch.setenv(name, value)
        yield


def load_sample(env: dict[str, str], *, symbols: int = 3, ticks_per_day: int = 6000) -> None:
    from dagster import materialize

    from tickhouse_dagster.defs.assets.bi import bar_views
    from tickhouse_dagster.defs.resources import resolved_resources

    home = Path(env["TICKHOUSE_HOME"])
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    generate(
        SampleSpec(days=1, symbols=symbols, ticks_per_day=ticks_per_day, files_per_day=1),
        home / "landing",
    )
    done = subprocess.run(
        [str(BIN / "tickhouse"), "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (
        f"tickhouse ingest failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    )
    with environment(env):
        assert materialize([bar_views], resources=resolved_resources()).success


def drop_namespace(env: dict[str, str]) -> None:
    from tickhouse_dagster_tests.stack.conftest import _drop_namespace

    with environment(env):
        _drop_namespace(env["TICKHOUSE_NAMESPACE"])
