"""The repository Dockerfile, without a Docker engine.

No engine can build the image here, so the Dockerfile is checked as text (base image, uv pin,
`uv sync --frozen --no-dev`, non-root user, DAGSTER_HOME, the gRPC command, .dockerignore),
and its install step is replayed natively: the files its COPY lines take from the build
context go into a temporary directory, `uv sync` runs there with the Dockerfile's flags, and
the image's command (code server) and the compose webserver command run from that runtime-only
environment, with the deployment's dagster.yaml on the local stack's PostgreSQL.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from dagster._api.list_repositories import sync_list_repositories_grpc
from dagster._grpc.client import DagsterGrpcClient

from tickhouse_dagster.cli.devserver import free_port
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.deploy.conftest import CACHE, COMPOSE_DIR

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
WORKSPACE_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename
    ... on RepositoryLocation { repositories { name jobs { name } } }
    ... on PythonError { message } } } } } }"""


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        joined.append(current)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in joined]


def arg_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)


def image_command() -> list[str]:
    (cmd,) = [a for i, a in instructions() if i == "CMD"]
    return json.loads(cmd)


def context_copies() -> list[str]:
    """Sources the Dockerfile COPYs from the build context (not --from another stage)."""
    sources = []
    for instruction, args in instructions():
        if instruction == "COPY" and "--from=" not in args:
            sources += [s for s in shlex.split(args)[:-1] if not s.startswith("--")]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Enough of .dockerignore's matching for this file (no `!` exceptions are used)."""
    assert not any(p.startswith("!") for p in patterns)
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], bare):
                return True
    return False


def makefile_uv_version() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert match
    return match.group(1)


def uv_sync_flags() -> list[list[str]]:
    """The arguments of each `uv sync` the Dockerfile runs, in order."""
    syncs = []
    for instruction, args in instructions():
        if instruction == "RUN":
            words = shlex.split(args)
            at = next((i for i in range(len(words) - 1) if words[i : i + 2] == ["uv", "sync"]), -1)
            if at >= 0:
                syncs.append(words[at + 2 :])
    return syncs


def runtime_run_commands() -> list[list[str]]:
    """The runtime stage's RUN lines as commands (split at `&&`), each as its words."""
    stage, commands = "", []
    for instruction, args in instructions():
        if instruction == "FROM":
            stage = args.split()[-1]
        elif instruction == "RUN" and stage == "runtime":
            words = shlex.split(args)
            while "&&" in words:
                at = words.index("&&")
                commands.append(words[:at])
                words = words[at + 1 :]
            commands.append(words)
    return commands


def test_dockerfile_builds_from_the_pinned_python_and_uv() -> None:
    steps = instructions()
    defaults = arg_defaults()
    assert defaults["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert [a for i, a in steps if i == "FROM"] == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE} AS runtime",
    ]
    assert defaults["UV_VERSION"] == makefile_uv_version()
    # The image installs the lock with the syncs the replay below runs: dependencies first (a
    # layer kept while only the code changes), then the project; nothing re-resolves.
    assert uv_sync_flags() == [
        ["--frozen", "--no-dev", "--no-install-project"],
        ["--frozen", "--no-dev"],
    ]
    lock_copy = next(n for n, (i, a) in enumerate(steps) if i == "COPY" and "uv.lock" in a.split())
    first_sync = next(n for n, (i, a) in enumerate(steps) if i == "RUN" and "uv sync" in a)
    assert lock_copy < first_sync


def test_image_runs_the_code_server_as_a_non_root_user(compose_model: dict[str, Any]) -> None:
    steps = instructions()
    user = [a for i, a in steps if i == "USER"][-1]
    uid = user.split(":")[0].replace("${APP_UID}", arg_defaults()["APP_UID"])
    assert uid.isdigit() and int(uid) >= 1000, user
    env = dict(
        pair.split("=", 1) for i, a in steps if i == "ENV" for pair in shlex.split(a) if "=" in pair
    )
    assert env["DAGSTER_HOME"] == "/opt/dagster/home"
    assert env["TICKHOUSE_HOME"] == "/var/lib/tickhouse"
    # Every directory compose mounts a named volume on, in the services run from this image as
    # its user (not as root, like seaweedfs-config), is made in the image and owned by that
    # user: a new volume takes the ownership of the image directory it is mounted on.
    targets = {
        volume["target"]
        for service in compose_model["services"].values()
        if str(service.get("image", "")).startswith("tickhouse-dagster:")
        and service.get("user") in (None, user)
        for volume in service.get("volumes", [])
        if volume["type"] == "volume"
    }
    assert targets, "no service of this image mounts a named volume"
    commands = runtime_run_commands()
    made = {d for c in commands if c[:2] == ["mkdir", "-p"] for d in c[2:]}
    owned = {
        d
        for c in commands
        if c[:2] == ["chown", "-R"] and c[2] == "tickhouse:tickhouse"
        for d in c[3:]
    }
    useradd = next(c for c in commands if c[0] == "useradd")
    assert useradd[useradd.index("--uid") + 1] == "${APP_UID}"
    for target in targets:
        assert any(target == d or target.startswith(d + "/") for d in made), target
        assert any(target == d or target.startswith(d + "/") for d in owned), target
    command = image_command()
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-h") + 1] == "0.0.0.0"
    port = command[command.index("-p") + 1]
    assert [a for i, a in steps if i == "EXPOSE"] == [port]
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert command[command.index("-m") + 1] == pyproject["module_name"]
    assert command[command.index("--location-name") + 1] == pyproject["code_location_name"]


def test_dockerignore_keeps_local_state_out_but_not_what_is_copied() -> None:
    patterns = dockerignore_patterns()
    for local in (
        ".venv",
        ".tickhouse",
        ".git",
        ".pytest_cache",
        ".ruff_cache",
        "x/__pycache__",
        "infra/compose/.env",
    ):
        assert ignored(local, patterns), local
    assert set(context_copies()) == {"pyproject.toml", "uv.lock", "README.md", "tickhouse_dagster"}
    for source in context_copies():
        assert (PROJECT_ROOT / source).exists(), source
        assert not ignored(source, patterns), source


# --- the install step and the image's command, replayed natively ---------------------------


def uv_binary() -> str:
    bootstrap = CACHE / "bootstrap" / "bin" / "uv"  # what `make` installs (Makefile UV_VERSION)
    found = str(bootstrap) if bootstrap.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv not installed (run `make install` first)")
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert version.split()[1] == makefile_uv_version(), version
    return found


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and its children
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(what: str, probe, timeout: float, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what}: process exited\n{log.read_text()[-3000:]}"
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context's COPY sources (.dockerignore applied) synced like the Dockerfile does."""
    uv = uv_binary()
    context = tmp_path_factory.mktemp("image") / "opt-tickhouse"
    patterns = dockerignore_patterns()
    for source in context_copies():
        origin = PROJECT_ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                context / source,
                ignore=lambda d, names: [
                    n
                    for n in names
                    if ignored(str((Path(d) / n).relative_to(PROJECT_ROOT)), patterns)
                ],
            )
        else:
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, context / source)
    env = {
        **os.environ,
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(CACHE / "uv")),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(context / ".venv"),
        "UV_LINK_MODE": "hardlink",  # the Dockerfile copies; hardlinks keep this test fast
    }
    env.pop("VIRTUAL_ENV", None)
    for flags in uv_sync_flags():  # the Dockerfile's own syncs
        sync = subprocess.run(
            [uv, "sync", *flags, "--python", "python3.11"],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert sync.returncode == 0, sync.stderr[-3000:]
    venv = context / ".venv"
    for tool in ("dagster", "dagster-webserver", "dagster-daemon", "tickhouse"):
        assert (venv / "bin" / tool).exists(), tool
    return venv


def locked_packages(group: str | None = None) -> dict[str, str]:
    """name -> version that uv.lock pins: every package, or those of the project's `group`."""
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    versions = {p["name"]: p.get("version", "") for p in lock["package"]}
    if group is None:
        return versions
    (project,) = [p for p in lock["package"] if p["name"] == "tickhouse"]
    return {d["name"]: versions[d["name"]] for d in project["dev-dependencies"][group]}


@pytest.mark.slow
def test_image_environment_holds_the_locked_runtime_packages_only(image_venv: Path) -> None:
    """What the Dockerfile's syncs install: uv.lock's versions, and none of the dev tools."""
    listing = subprocess.run(
        [
            str(image_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in json.loads(listing.stdout).items()
    }
    locked = locked_packages()
    assert installed["tickhouse"] == locked["tickhouse"]
    assert {name: installed[name] for name in installed} == {
        name: locked[name] for name in installed
    }
    dev_only = set(locked_packages("dev")) - runtime_closure()
    assert {"pytest", "ruff", "mypy"} <= dev_only
    assert not dev_only & set(installed), "--no-dev installed dev tools"


def runtime_closure() -> set[str]:
    """The project's runtime dependencies and theirs, from uv.lock (some dev tools, e.g.
    requests, are among them: installed either way)."""
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    (project,) = [p for p in lock["package"] if p["name"] == "tickhouse"]
    runtime = {d["name"] for d in project["dependencies"]}
    by_name = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = list(runtime)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [d["name"] for d in by_name[name].get("dependencies", [])]
    return seen


@pytest.fixture(scope="module")
def code_server(image_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The image's CMD from the runtime-only environment (host 127.0.0.1, a free port)."""
    port = free_port()
    argv = image_command()
    argv[argv.index("-h") + 1], argv[argv.index("-p") + 1] = "127.0.0.1", str(port)
    home = tmp_path_factory.mktemp("code-home")
    env = {**os.environ, "TICKHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    for name in list(env):
        if (
            name.startswith(("TICKHOUSE_", "PYICEBERG_CATALOG__", "AWS_"))
            and name != "TICKHOUSE_HOME"
        ):
            env.pop(name)
    log = home / "code-server.log"
    process = start([str(image_venv / "bin" / argv[0]), *argv[1:]], env, log)
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")

        def loaded() -> bool:
            try:
                return bool(sync_list_repositories_grpc(client).repository_code_pointer_dict)
            except Exception:
                return False

        wait_for("the code server", loaded, 120, process, log)
        yield port
    finally:
        stop(process)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_image_command_serves_the_code_location(image_venv: Path, code_server: int) -> None:
    health = subprocess.run(
        [str(image_venv / "bin" / "dagster"), "api", "grpc-health-check", "-p", str(code_server)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert health.returncode == 0, health.stdout + health.stderr
    listing = sync_list_repositories_grpc(DagsterGrpcClient(port=code_server, host="127.0.0.1"))
    assert listing.entry_point == ["dagster"]
    (pointer,) = listing.repository_code_pointer_dict.values()
    assert pointer.module == "tickhouse_dagster.definitions", pointer


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_webserver_loads_the_workspace_over_grpc(
    image_venv: Path, code_server: int, stack_postgres: dict[str, str], tmp_path: Path
) -> None:
    """The compose webserver command, with infra/dagster/dagster.yaml on PostgreSQL and
    infra/compose/workspace.yaml (only host and port pointed at the native code server)."""
    workspace = yaml.safe_load((COMPOSE_DIR / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_server)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "infra" / "dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.update({k: v for k, v in stack_postgres.items() if k.startswith("TICKHOUSE_PG_")})
    port = free_port()
    log = tmp_path / "webserver.log"
    process = start(
        [
            str(image_venv / "bin" / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(tmp_path / "workspace.yaml"),
        ],
        env,
        log,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def server_info() -> bool:
            try:
                return requests.get(f"{url}/server_info", timeout=5).ok
            except requests.RequestException:
                return False

        wait_for("the webserver", server_info, 120, process, log)
        response = requests.post(f"{url}/graphql", json={"query": WORKSPACE_QUERY}, timeout=60)
        response.raise_for_status()
        (entry,) = response.json()["data"]["workspaceOrError"]["locationEntries"]
        assert entry["name"] == "tickhouse" and entry["loadStatus"] == "LOADED", entry
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        jobs = {j["name"] for repository in location["repositories"] for j in repository["jobs"]}
        assert {"ingest_landing_file", "rebuild_bars"} <= jobs, jobs
    finally:
        stop(process)


def test_image_can_run_the_spark_job() -> None:
    """Java for pyspark's JVM, the jars resolved at build time into the image's cache, the
    executors' Python named; the job itself ships inside the package (no repository needed)."""
    steps = instructions()
    run_text = " ".join(a for i, a in steps if i == "RUN")
    assert "openjdk-17-jre-headless" in run_text
    assert "python -m tickhouse_dagster.spark.session resolve-jars" in run_text
    env = " ".join(a for i, a in steps if i == "ENV")
    assert "TICKHOUSE_CACHE=/opt/tickhouse/cache" in env
    assert "PYSPARK_PYTHON=/opt/tickhouse/.venv/bin/python" in env
    assert "tickhouse_dagster" in context_copies()


def test_spark_job_is_found_in_the_installed_package(image_venv: Path) -> None:
    """The image's environment (the Dockerfile's install replayed) finds the spark-submit job in
    its own copy of the package, not in a repository checkout."""
    found = subprocess.run(
        [
            str(image_venv / "bin" / "python"),
            "-c",
            "from tickhouse_dagster.defs.resources_spark import INGEST_JOB; print(INGEST_JOB)",
        ],
        cwd=image_venv.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    job = Path(found.stdout.strip())
    assert job.is_file() and job.name == "job.py"
    assert image_venv.parent in job.parents and PROJECT_ROOT not in job.parents
