"""Fixtures of the deployment tests: the compose validator (compose-go, built once into the
cache) and the local stack's PostgreSQL (started by the project's stack script if needed)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.conftest import parse_env, stack

COMPOSE_DIR = PROJECT_ROOT / "infra" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
VALIDATE_DIR = COMPOSE_DIR / "validate"
VALIDATE_SOURCES = ("main.go", "go.mod", "go.sum")
CACHE = Path(os.environ.get("TICKHOUSE_CACHE") or Path.home() / ".cache" / "tickhouse")
GO_BUILD_TIMEOUT = 900  # cold: module downloads + compiling compose-go (~35 s measured here)
VALIDATE_TIMEOUT = 60


@dataclass(frozen=True)
class Validator:
    binary: Path
    built: bool  # False: an up-to-date binary from the cache was reused
    seconds: float

    def run(
        self, *args: str | Path, env_file: Path | None = ENV_EXAMPLE
    ) -> subprocess.CompletedProcess:
        """compose-validate [-env-file F] ARGS... (default: the compose file with .env.example)."""
        argv: list[str] = [str(self.binary)]
        if env_file is not None:
            argv += ["-env-file", str(env_file)]
        argv += [str(a) for a in args] or [str(COMPOSE_FILE)]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT,
            check=False,
            cwd=COMPOSE_DIR,
        )


def compose_go_version() -> str:
    match = re.search(
        r"github\.com/compose-spec/compose-go/v2 (v\S+)", (VALIDATE_DIR / "go.mod").read_text()
    )
    assert match, "infra/compose/validate/go.mod does not require compose-go v2"
    return match.group(1)


def build_validator() -> Validator:
    """Builds infra/compose/validate into $TICKHOUSE_CACHE/bin (Go module and build caches under
    $TICKHOUSE_CACHE/go-compose-validate), unless the binary there is newer than its sources."""
    go = shutil.which("go")
    binary = CACHE / "bin" / f"compose-validate-{compose_go_version()}"
    newest_source = max((VALIDATE_DIR / name).stat().st_mtime for name in VALIDATE_SOURCES)
    binary.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with (binary.parent / ".compose-validate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent sessions build once
        if binary.exists() and binary.stat().st_mtime > newest_source:
            return Validator(binary, built=False, seconds=time.monotonic() - start)
        if go is None:
            pytest.fail("the Go toolchain (go) is not on PATH: cannot build the compose validator")
        go_cache = CACHE / "go-compose-validate"
        env = {
            **os.environ,
            "GOMODCACHE": str(go_cache / "mod"),
            "GOCACHE": str(go_cache / "build"),
            # go.sum is committed: verify against it, never rewrite it; caches deletable.
            "GOFLAGS": "-mod=readonly -modcacherw -buildvcs=false",
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
        }
        tmp = binary.with_name(binary.name + ".tmp")
        build = subprocess.run(
            [go, "build", "-trimpath", "-o", str(tmp), "."],
            cwd=VALIDATE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=GO_BUILD_TIMEOUT,
            check=False,
        )
        assert build.returncode == 0, (
            f"building the compose validator failed:\n{build.stderr[-4000:]}"
        )
        tmp.replace(binary)
    return Validator(binary, built=True, seconds=time.monotonic() - start)


@pytest.fixture(scope="session")
def compose_validator() -> Validator:
    return build_validator()


@pytest.fixture(scope="session")
def compose_model(compose_validator: Validator) -> dict[str, Any]:
    """The resolved compose model (as `docker compose config` prints it) with .env.example."""
    result = compose_validator.run()
    assert result.returncode == 0, f"compose file invalid:\n{result.stderr}"
    return json.loads(result.stdout)


# --- the local stack's PostgreSQL --------------------------------------------------------------


def postgres_running(status: str) -> bool:
    return any(line.split()[:2] == ["postgres", "running"] for line in status.splitlines())


@pytest.fixture(scope="session")
def stack_postgres() -> Iterator[dict[str, str]]:
    """The local stack's PostgreSQL (databases `iceberg` and `dagster`); yields `stack env`.
    Started with `infra/local/stack up postgres` when it is not running, and then (only then)
    stopped again at the end of the session."""
    was_running = postgres_running(stack("status").stdout)
    if not was_running:
        up = stack("up", "postgres", timeout=900)
        assert up.returncode == 0, (
            f"stack up postgres failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        )
    try:
        yield parse_env(stack("env").stdout)
    finally:
        if not was_running:
            stack("down", "postgres", timeout=180)


def stack_dir() -> Path:
    return Path(os.environ.get("TICKHOUSE_STACK_DIR") or CACHE / "stack")


def postgres_bin_dir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "psql").exists() and (candidate / "pg_isready").exists():
            return candidate
    found = shutil.which("psql")
    return Path(found).parent if found else None
