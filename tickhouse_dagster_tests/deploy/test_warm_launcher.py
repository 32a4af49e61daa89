"""The warm run launcher (tickhouse_dagster/launcher.py) on a real SQLite instance: each run is
its own process, forked from the warm interpreter, that runs the job's code as it is on disk (a
code location in a module is imported ahead by the warm interpreter, and again once edited);
terminating a run cancels it; a run it cannot fork goes to Dagster's default launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.definitions.reconstruct import (
    ReconstructableJob,
    bootstrap_standalone_recon_job,
)
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.launcher import LaunchRunContext
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    LoadableTargetOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)

from tickhouse_dagster.launcher import WARM_UPS, WORKER_PID_TAG, WarmRunLauncher, source_stamp
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.deploy.test_event_log import local_home

pytestmark = pytest.mark.timeout(180)

# A job in its own file, so a test can edit it between runs; its op writes what it saw to `out`.
JOB_SOURCE = """
import gc, os, time
from dagster import in_process_executor, job, op

ANSWER = {answer}
IMPORTED_BY = os.getpid()  # the run's own process, or the warm interpreter it was forked from

@op(config_schema={{"out": str, "sleep": float}})
def probe(context) -> None:
    time.sleep(context.op_config["sleep"])
    with open(context.op_config["out"], "w") as out:
        out.write(f"{{os.getpid()}} {{ANSWER}} {{IMPORTED_BY}} {{gc.get_freeze_count()}}")

@job(executor_def=in_process_executor)
def probe_job() -> None:
    probe()
"""


def write_job(path: Path, answer: int) -> None:
    path.write_text(JOB_SOURCE.format(answer=answer))
    # The same second's mtime would let a cached .pyc stand for the edited source.
    os.utime(path, (time.time() + answer, time.time() + answer))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_launcher:\n"
        "  module: tickhouse_dagster.launcher\n"
        "  class: WarmRunLauncher\n"
        "  config:\n"
        "    preload_modules: [dagster, dagster._cli.api, tickhouse_dagster.launcher]\n"
        "telemetry:\n  enabled: false\n"
    )
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


def queued_run(
    instance: DagsterInstance,
    job_file: Path,
    out: Path,
    sleep: float = 0.0,
    executable: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    module: str | None = None,
) -> DagsterRun:
    """A run of `job_file`'s probe job, made but not launched; `executable`: the Python its
    code location says it runs on (default: this one); `module`: the job file's module name, to
    load it as a `python_module` code location (default: as a file). It names its code location
    as a workspace would (a queue takes no run without)."""
    recon = (
        bootstrap_standalone_recon_job(
            ModuleCodePointer(module, "probe_job", str(job_file.parent.parent))
        )
        if module is not None
        else ReconstructableJob.for_file(str(job_file), "probe_job")
    )
    origin = recon.get_python_origin()
    if executable is not None:
        origin = origin._replace(
            repository_origin=origin.repository_origin._replace(executable_path=executable)
        )
    target = (
        LoadableTargetOrigin(module_name=module, working_directory=str(job_file.parent.parent))
        if module is not None
        else LoadableTargetOrigin(python_file=str(job_file))
    )
    location = InProcessCodeLocationOrigin(target)
    return instance.create_run_for_job(
        job_def=recon.get_definition(),
        run_config={"ops": {"probe": {"config": {"out": str(out), "sleep": sleep}}}},
        tags=tags,
        root_run_id=parent_run_id,
        parent_run_id=parent_run_id,
        job_code_origin=origin,
        remote_job_origin=RemoteJobOrigin(
            RemoteRepositoryOrigin(location, "__repository__"), "probe_job"
        ),
    )


def launch(
    instance: DagsterInstance,
    job_file: Path,
    out: Path,
    sleep: float = 0.0,
    module: str | None = None,
) -> str:
    run = queued_run(instance, job_file, out, sleep, module=module)
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    return run.run_id


def wait_for_end(instance: DagsterInstance, run_id: str, timeout: float = 90) -> DagsterRunStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run.status
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} did not end within {timeout:.0f}s")


def test_the_launcher_is_the_configured_one_and_preloads_no_project_module_but_its_warm_ups(
    instance: DagsterInstance,
) -> None:
    launcher = instance.run_launcher
    assert isinstance(launcher, WarmRunLauncher)
    assert launcher.preload == ["dagster", "dagster._cli.api"]
    # By default the project's warm-ups are the only modules of its own it preloads; the code
    # location comes through its own warm-up, stamped (the tests below).
    default = WarmRunLauncher().preload
    assert [m for m in default if m.startswith("tickhouse_dagster")] == list(WARM_UPS)


def test_each_run_is_its_own_process_and_imports_the_code_as_it_is_now(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    job_file = tmp_path / "probe_jobs.py"
    write_job(job_file, 1)
    first = launch(instance, job_file, tmp_path / "first.txt")
    assert wait_for_end(instance, first) == DagsterRunStatus.SUCCESS
    write_job(job_file, 2)
    second = launch(instance, job_file, tmp_path / "second.txt")
    assert wait_for_end(instance, second) == DagsterRunStatus.SUCCESS

    (pid1, answer1, importer1, frozen1), (pid2, answer2, importer2, frozen2) = (
        (tmp_path / name).read_text().split() for name in ("first.txt", "second.txt")
    )
    assert (answer1, answer2) == ("1", "2")  # the edit reached the second run
    assert len({pid1, pid2, str(os.getpid())}) == 3
    # A code location in a file is not imported ahead: each run imports it itself.
    assert (importer1, importer2) == (pid1, pid2)
    # What the warm interpreter imported is frozen out of every run's garbage collections
    # (compat.frozen_heap): Dagster alone is tens of thousands of objects.
    assert int(frozen1) > 10_000 and int(frozen2) > 10_000, (frozen1, frozen2)
    for run_id, pid in ((first, pid1), (second, pid2)):
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags[WORKER_PID_TAG] == pid


def test_a_run_whose_code_does_not_load_fails_saying_why(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    job_file = tmp_path / "probe_jobs.py"
    write_job(job_file, 5)
    run = queued_run(instance, job_file, tmp_path / "x.txt")
    broken_after_queueing(instance, run, job_file, "def probe_job(:\n", says="SyntaxError")


def broken_after_queueing(
    instance: DagsterInstance, run: DagsterRun, job_file: Path, source: str, says: str
) -> None:
    """`job_file` rewritten to `source` after `run` was queued: the launched run fails with
    Dagster's "Could not load job definition." and an error that `says` so."""
    job_file.write_text(source)
    os.utime(job_file, (time.time() + 10, time.time() + 10))
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    assert wait_for_end(instance, run.run_id) == DagsterRunStatus.FAILURE
    said = [
        (e.message, str(e.dagster_event.event_specific_data))
        for e in instance.all_logs(run.run_id)
        if e.dagster_event is not None
    ]
    assert any(
        "Could not load job definition" in message and says in data for message, data in said
    ), said


def probe_package(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package `name` under `tmp_path`, on this process's path and on PYTHONPATH (Python
    3.11's forkserver starts with the default path, not its parent's); returns its job module's
    file."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return package / "jobs.py"


def test_the_source_stamp_changes_with_an_edit_or_a_new_file_but_not_with_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_file = probe_package(tmp_path, "probe_location_stamped", monkeypatch)
    write_job(job_file, 1)
    first = source_stamp("probe_location_stamped.jobs")
    assert {Path(path).name for path, _, _ in first} == {"__init__.py", "jobs.py"}
    (job_file.parent / "__pycache__").mkdir()
    (job_file.parent / "__pycache__" / "jobs.cpython-311.pyc").write_bytes(b"compiled")
    assert source_stamp("probe_location_stamped.jobs") == first
    write_job(job_file, 2)
    edited = source_stamp("probe_location_stamped.jobs")
    assert edited != first
    (job_file.parent / "venues.yaml").write_text("KRX: {}\n")  # data files count too
    assert source_stamp("probe_location_stamped.jobs") != edited


def test_a_module_code_location_is_imported_ahead_and_again_once_edited(
    instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_file = probe_package(tmp_path, "probe_location_ahead", monkeypatch)
    module = "probe_location_ahead.jobs"
    write_job(job_file, 1)
    runs = []
    for name in ("first", "second"):
        runs.append(launch(instance, job_file, tmp_path / f"{name}.txt", module=module))
        assert wait_for_end(instance, runs[-1]) == DagsterRunStatus.SUCCESS
    write_job(job_file, 2)
    runs.append(launch(instance, job_file, tmp_path / "third.txt", module=module))
    assert wait_for_end(instance, runs[-1]) == DagsterRunStatus.SUCCESS

    (pid1, answer1, importer1, _), (pid2, answer2, importer2, _), (pid3, answer3, importer3, _) = (
        (tmp_path / f"{name}.txt").read_text().split() for name in ("first", "second", "third")
    )
    assert len({pid1, pid2, pid3, str(os.getpid())}) == 4  # each run its own process
    # The first two ran the code the warm interpreter imported (neither imported it itself)...
    assert importer1 == importer2 and importer1 not in {pid1, pid2, str(os.getpid())}
    # ...and the edit reached the third run, through a new warm interpreter.
    assert (answer1, answer2, answer3) == ("1", "1", "2")
    assert importer3 not in {importer1, pid3}


def test_a_module_code_location_that_fails_to_import_fails_its_run_saying_why(
    instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_file = probe_package(tmp_path, "probe_location_broken", monkeypatch)
    module = "probe_location_broken.jobs"
    write_job(job_file, 6)
    run = queued_run(instance, job_file, tmp_path / "x.txt", module=module)
    source = "raise RuntimeError('broken at import')\n"
    broken_after_queueing(instance, run, job_file, source, says="broken at import")
    # The warm interpreter survived the broken import: the mended code runs.
    write_job(job_file, 7)
    mended = launch(instance, job_file, tmp_path / "mended.txt", module=module)
    assert wait_for_end(instance, mended) == DagsterRunStatus.SUCCESS
    assert (tmp_path / "mended.txt").read_text().split()[1] == "7"


def test_terminate_cancels_a_running_run(instance: DagsterInstance, tmp_path: Path) -> None:
    job_file = tmp_path / "probe_jobs.py"
    write_job(job_file, 3)
    run_id = launch(instance, job_file, tmp_path / "never.txt", sleep=60)
    deadline = time.monotonic() + 60
    while (run := instance.get_run_by_id(run_id)) and run.status != DagsterRunStatus.STARTED:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)
    assert instance.run_launcher.terminate(run_id)
    assert wait_for_end(instance, run_id, timeout=30) == DagsterRunStatus.CANCELED
    assert not (tmp_path / "never.txt").exists()
    assert not instance.run_launcher.terminate(run_id)  # a finished run is left alone


def test_a_run_of_another_python_goes_to_the_default_launcher(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    job_file = tmp_path / "probe_jobs.py"
    write_job(job_file, 4)
    run = queued_run(
        instance, job_file, tmp_path / "x.txt", executable=sys.executable + "-elsewhere"
    )
    # The default launcher needs the workspace's code server, which this test has none of.
    with pytest.raises(DagsterInvariantViolationError, match="requires a workspace"):
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert WORKER_PID_TAG not in (instance.get_run_by_id(run.run_id) or run).tags


# A run's start as its process does it: the instance, the code location, the resources, the
# landing store's S3 client and a table. What it imports beyond the warm interpreter's modules.
RUN_START = """
import importlib, json, os, sys, tempfile
from tickhouse_dagster.launcher import DEFAULT_PRELOAD
for module in DEFAULT_PRELOAD:
    importlib.import_module(module)
before = set(sys.modules)
import boto3
warm_session = boto3.DEFAULT_SESSION
from dagster import DagsterInstance
home = sys.argv[1]
with DagsterInstance.from_config(home) as instance:
    instance.get_runs(limit=1)
    import tickhouse_dagster.definitions
    from tickhouse_dagster.defs.resources import resolved_resources
    resources = resolved_resources(instance=instance)
    resources["landing"].store()
    resources["lakehouse"].lakehouse().table("ticks")
print(json.dumps([sorted(set(sys.modules) - before), boto3.DEFAULT_SESSION is warm_session]))
"""
HEAVY = (
    "dagster",
    "pyarrow",
    "pyiceberg",
    "duckdb",
    "sqlalchemy",
    "alembic",
    "boto3",
    "botocore",
    "pandas",
    "numpy",
    "lxml",
    "structlog",
    "rich",
    "pandera",
    "polars",
    "pyspark",
    "py4j",
    "typeguard",
    "psutil",
)


def after_preload(script: str, tmp_path: Path, timeout: float, **env: str) -> tuple[Any, str]:
    """`script`'s last line (JSON) and its stderr, run in a new Python whose DAGSTER_HOME holds
    the project's local dagster.yaml (passed as its argument) and whose TICKHOUSE_HOME is
    fresh, with `env` on top."""
    home = local_home(tmp_path / "dagster")
    shown = subprocess.run(
        [sys.executable, "-c", script, str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "DAGSTER_HOME": str(home),
            "TICKHOUSE_HOME": str(tmp_path / "tickhouse"),
            **env,
        },
        check=True,
    )
    return json.loads(shown.stdout.strip().splitlines()[-1]), shown.stderr


def test_a_run_imports_no_heavy_library_the_warm_interpreter_has_not(tmp_path: Path) -> None:
    (imported, same_session), _ = after_preload(
        RUN_START,
        tmp_path,
        120,
        # An S3 landing area (its client is made, nothing is sent) and the embedded catalog.
        TICKHOUSE_LANDING_URI="s3://landing/warm-test/",
        TICKHOUSE_S3_ENDPOINT="http://127.0.0.1:9",
    )
    # The landing store's client was made on the session the warm interpreter readied.
    assert same_session
    assert any(m.startswith("tickhouse_dagster.") for m in imported)  # the project's, fresh
    heavy = [m for m in imported if m.split(".")[0] in HEAVY]
    assert heavy == [], heavy


# A whole run's work as its process does it, after the preload: `tickhouse ingest`'s run of one
# landing file (parse, every check, the ticks commit, the bars of its day and their checks).
RUN_BODY = """
import gc, importlib, json, sys
from tickhouse_dagster.launcher import DEFAULT_PRELOAD
for module in DEFAULT_PRELOAD:
    importlib.import_module(module)
before = set(sys.modules)
from tickhouse_dagster.cli.ingest import ingest_landing
report = ingest_landing()
print(json.dumps([sorted(set(sys.modules) - before), report.ok, len(report.ingested),
                  gc.get_freeze_count()]))
"""


def test_a_runs_work_imports_no_heavy_library_the_warm_interpreter_has_not(
    tmp_path: Path,
) -> None:
    """The checks' libraries (pandera and the polars, typeguard and pyspark modules it brings)
    cost every forked run 0.7 s when they were imported at the first check."""
    from tickhouse_dagster.sample.files import generate
    from tickhouse_dagster.sample.spec import SampleSpec

    landing = tmp_path / "landing"
    generate(SampleSpec(ticks_per_day=2_000, files_per_day=1, symbols=3), landing)
    (imported, ok, ingested, frozen), stderr = after_preload(
        RUN_BODY, tmp_path, 150, TICKHOUSE_LANDING_URI=str(landing)
    )
    assert ok and ingested == 1, stderr[-2000:]
    # `tickhouse ingest` froze what it had imported before its run (compat.frozen_heap).
    assert frozen > 10_000, frozen
    heavy = [m for m in imported if m.split(".")[0] in HEAVY]
    assert heavy == [], heavy


def test_the_install_compiled_the_code_location_so_a_run_does_not() -> None:
    """The forked runs import the project's code fresh; with bytecode written at install
    (infra/prepare) they do not compile it, even where Python writes none (PYTHONDONTWRITEBYTECODE
    or a read-only checkout). Every module's bytecode is there and is of its current source."""
    import importlib.util

    stale = []
    for source in sorted((PROJECT_ROOT / "tickhouse_dagster").rglob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16] if cached.exists() else b""
        stat = source.stat()
        current = (
            len(header) == 16
            and header[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF
        )
        if not current:
            stale.append(str(source.relative_to(PROJECT_ROOT)))
    assert stale == [], f"not compiled by the install (run `make install`): {stale[:10]}"
