"""The Dagster UI listens on loopback unless someone asks otherwise. `make dev` binds 127.0.0.1 by
default; the only 0.0.0.0 bind of a Dagster webserver is inside the compose container, where it
must be (Docker forwards to the container's interface, not its loopback) and whose port is
published on the host's 127.0.0.1 only (tickhouse_dagster_tests/deploy/test_compose.py checks
every published port)."""

from __future__ import annotations

import os
import re
import subprocess

import yaml

from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.deploy.test_dockerfile import image_command

WEBSERVER = re.compile(r"dagster(?:-webserver|\s+dev)\b")


def make_dry_run(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", "dev", *args],
        cwd=PROJECT_ROOT,
        # The default, not whatever HOST the environment running the tests happens to have.
        env={k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_dev_binds_loopback_by_default():
    (command,) = [line for line in make_dry_run().splitlines() if WEBSERVER.search(line)]
    assert " -h 127.0.0.1 " in command
    # Opening it up is an explicit choice.
    (command,) = [
        line for line in make_dry_run("HOST=0.0.0.0").splitlines() if WEBSERVER.search(line)
    ]
    assert " -h 0.0.0.0 " in command


def test_no_webserver_binds_all_interfaces_except_inside_the_compose_container():
    files = [PROJECT_ROOT / "Makefile", PROJECT_ROOT / "workspace.yaml"]
    files += [p for p in (PROJECT_ROOT / "infra").rglob("*") if p.is_file()]
    files += [p for p in (PROJECT_ROOT / "bench").rglob("*.py")]
    compose = PROJECT_ROOT / "infra" / "compose" / "docker-compose.yaml"
    offenders = []
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for line in text.splitlines():
            if WEBSERVER.search(line) and "0.0.0.0" in line and path != compose:
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}: {line.strip()}")
    assert offenders == []

    service = yaml.safe_load(compose.read_text())["services"]["dagster-webserver"]
    command = service["command"]
    assert command[command.index("-h") + 1] == "0.0.0.0"  # the container's own interface
    assert [str(p).split(":")[0] for p in service["ports"]] == ["127.0.0.1"]
    # The image's own command binds 0.0.0.0 too: the code server's gRPC port, inside the
    # container network (compose publishes no port of it), not a webserver.
    image = image_command()
    assert image[:3] == ["dagster", "code-server", "start"], image
    assert "ports" not in yaml.safe_load(compose.read_text())["services"]["tickhouse-code"]
