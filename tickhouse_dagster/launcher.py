"""A run launcher that starts each run in its own process without paying the imports again.

Dagster's default launcher asks the code server to spawn a fresh interpreter per run, which
imports Dagster, pyarrow, pyiceberg, DuckDB, … before the first step (≈1.5–2 s of a run's
start-up on this project's machine; decision 1605). Here the run's process is forked from a
warm interpreter (Python's `forkserver`) that has imported those libraries, the `WARM_UPS`
(`compat.boto_warmup`, which readies boto3, and `compat.alembic_scripts`, which reads Dagster's
migration scripts once) and the run's code location (`compat.code_location_warmup`, decision
1609). The code location's package is stamped (every file's size and modification time) before
the warm interpreter imports it, and again at each launch: when it has changed, the warm
interpreter is replaced before the run is forked, so an edited definition takes effect at the
next run exactly as with the default launcher. Each run is still its own process.

It launches only what it can run as the code server would: a run whose code location uses
another Python executable than the launching process (the daemon) goes to the default launcher.
Termination signals the worker (its pid is a run tag), which Dagster turns into a cancelled run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Self

from dagster import Array, DagsterInstance, Field

from tickhouse_dagster.compat.code_location_warmup import CODE_LOCATION_ENV
from tickhouse_dagster.compat.dagster_runs import (
    ConfigurableClassData,
    DefaultRunLauncher,
    InstanceRef,
    LaunchRunContext,
    ModuleCodePointer,
    PackageCodePointer,
    capture_interrupts,
    deserialize_value,
    execute_run_body,
    serialize_value,
    setup_interrupt_handlers,
)
from tickhouse_dagster.compat.forkserver_private import stop_forkserver

# The project's modules the configured preload may name: they ready libraries. The code location
# itself comes through CODE_LOCATION_WARMUP, with its sources stamped (see the module doc).
WARM_UPS = ("tickhouse_dagster.compat.boto_warmup", "tickhouse_dagster.compat.alembic_scripts")
# Libraries a run of this code location imports before and during its first step: loaded once in
# the warm interpreter (`python -X importtime`, and tickhouse_dagster_tests/deploy/
# test_warm_launcher.py, which fails naming any heavy library a run still imports itself, for
# a code location that could not be preloaded).
DEFAULT_PRELOAD: tuple[str, ...] = (
    # Dagster: the run worker, the instance and its SQLite storages, the daemon modules the
    # instance imports, its logging (structlog, rich) and migrations (alembic).
    "dagster",
    "dagster._cli.api",
    "dagster._core.execution.api",
    "dagster._core.definitions.external_asset",
    "dagster._core.types.primitive_mapping",
    "dagster._core.types.transform_typing",
    "dagster._core.instance",
    "dagster._core.instance.factory",
    "dagster._core.storage.root",
    "dagster._core.storage.runs",
    "dagster._core.storage.event_log",
    "dagster._core.storage.schedules",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.migration.utils",
    "dagster._daemon",
    "dagster._core.execution.plan.active",
    "dagster._core.executor.in_process",
    "dagster._core.execution.execute_in_process",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.instance.runs.run_domain",
    "dagster._core.system_config.composite_descent",
    # The composite storage Dagster makes when dagster.yaml names the event log alone.
    "dagster._core.storage.legacy_storage",
    "alembic.script",
    "alembic.runtime.migration",
    "structlog",
    "rich",
    # The engines and stores.
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "pyarrow.acero",
    "pyiceberg.catalog.sql",
    "pyiceberg.io.pyarrow",
    "pyiceberg.table",
    "pyiceberg.avro.decoder_fast",
    "duckdb",
    # The contract's value rules: pandera's polars schemas (pandera brings polars, typeguard and
    # pyspark's Python modules along, ≈0.7 s that every run paid at its first check).
    "pandera.polars",
    "pandera.backends.polars.container",
    "pandera.backends.polars.components",
    "pandera.backends.polars.builtin_checks",
    "pandera.backends.polars.checks",
    "pandera.backends.register_checks",
    "pandera.errors",
    "polars",
    "lxml.etree",
    "xml2arrow",
    "pandas",
    "sqlalchemy.orm",
    "psycopg2",
    "boto3",
    "boto3.s3.inject",
    "boto3.s3.transfer",
    "botocore.client",
    "fsspec",
    "upath",
    "yaml",
    # boto3's default session with the S3 model read, and Dagster's migration scripts read.
    *WARM_UPS,
)
WORKER_PID_TAG = "tickhouse/run_worker_pid"
CODE_LOCATION_WARMUP = "tickhouse_dagster.compat.code_location_warmup"
# Last: what the warm interpreter imported is frozen out of the garbage collector's walks.
FROZEN_HEAP_WARMUP = "tickhouse_dagster.compat.frozen_heap_warmup"


def code_location_module(run: Any) -> str | None:
    """The module a run's code location is loaded from, when it is a module (a `python_module`
    or `python_package` workspace entry): what the warm interpreter can import ahead."""
    origin = run.job_code_origin
    pointer = origin.repository_origin.code_pointer if origin is not None else None
    if isinstance(pointer, ModuleCodePointer | PackageCodePointer):
        return str(pointer.module)
    return None


def source_stamp(module: str) -> tuple[tuple[str, int, int], ...]:
    """Every file of `module`'s top-level package (compiled bytecode aside) with its size and
    modification time: what changes when its code or its data files are edited."""
    spec = find_spec(module.partition(".")[0])
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    stamp = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                path = Path(folder, name)
                info = path.stat()
                stamp.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamp)


@dataclass(frozen=True)
class _Warm:
    """What the process's forkserver was started with."""

    modules: tuple[str, ...]
    code_location: str | None
    sources: tuple[tuple[str, int, int], ...]


# Python keeps one forkserver per process, so what it holds is kept per process too.
_warm_lock = threading.Lock()
_warm: _Warm | None = None


def _warm_process(modules: Sequence[str], code_location: str | None, **process: Any) -> Any:
    """A not yet started process forked from a warm interpreter holding `modules` and
    `code_location` as its sources are now: the running one, or a new one if it holds other
    modules or older sources. Call under `_warm_lock` until the process is started."""
    global _warm
    wanted = _Warm(
        tuple(modules),
        code_location,
        source_stamp(code_location) if code_location is not None else (),
    )
    context = multiprocessing.get_context("forkserver")
    if wanted != _warm:
        stop_forkserver()  # whoever started it, it holds something else
        if code_location is not None:
            os.environ[CODE_LOCATION_ENV] = code_location  # read by the warm-up, at its start
        else:
            os.environ.pop(CODE_LOCATION_ENV, None)
        extra = [CODE_LOCATION_WARMUP] if code_location is not None else []
        context.set_forkserver_preload([*modules, *extra, FROZEN_HEAP_WARMUP])
        _warm = wanted
    return context.Process(**process)


def run_worker(serialized_instance_ref: str, run_id: str) -> None:
    """The body of a forked run process: what `dagster api execute_run` does with its instance."""
    # SIGTERM (terminate) becomes the interrupt Dagster reports as a cancelled run.
    setup_interrupt_handlers()
    with capture_interrupts():
        ref = deserialize_value(serialized_instance_ref, InstanceRef)
        with DagsterInstance.from_ref(ref) as instance:
            # A code location that no longer loads (it is imported fresh) fails the run with
            # Dagster's "Could not load job definition." and the error (tested).
            execute_run_body(run_id, instance, lambda _event: None, False)


class WarmRunLauncher(DefaultRunLauncher):
    """Each run in a process forked from a warm interpreter (see the module docstring).

    Config: `preload_modules` (default `DEFAULT_PRELOAD`) — the libraries the warm interpreter
    imports; anything not listed is imported by the run itself."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        preload_modules: Sequence[str] = DEFAULT_PRELOAD,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self.preload = [
            m for m in preload_modules if m in WARM_UPS or not m.startswith("tickhouse_dagster")
        ]

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        preload = Field(Array(str), is_required=False, default_value=list(DEFAULT_PRELOAD))
        return {"preload_modules": preload}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None or origin.executable_path != sys.executable:
            super().launch_run(context)
            return
        # The warm interpreter is started on the first launch, not when the instance is made:
        # the webserver and the CLI make this launcher too and never launch a run.
        with _warm_lock:
            process = _warm_process(
                self.preload,
                code_location_module(run),
                target=run_worker,
                args=(serialize_value(self._instance.get_ref()), run.run_id),
                name=f"dagster-run-{run.run_id}",
            )
            process.start()
        multiprocessing.active_children()  # reaps the records of runs that have ended
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(process.pid)})

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = run.tags.get(WORKER_PID_TAG)
        if pid is None:
            return bool(super().terminate(run_id))  # type: ignore[no-untyped-call]
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True
