"""The package's layers (docs/decisions/0001-layout-and-flow.md): each folder imports only the
layers the decision allows, read from the source with `ast`, so a new import that breaks the
flow fails here by name."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tickhouse_dagster.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "tickhouse_dagster"

# Layer -> the project layers it may import (itself always). The same table as decision 0001.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "compat": set(),
    "settings": set(),
    "market": {"core"},
    "parsing": {"core", "market"},
    "quality": {"core", "market"},
    "sample": {"core", "market"},
    "storage": {"core", "compat", "market", "parsing", "quality"},
    "engine": {"core", "market", "parsing", "quality", "storage"},
    "spark": {"core", "compat", "market", "parsing", "quality", "storage", "engine", "settings"},
    "defs": {
        "core",
        "compat",
        "market",
        "parsing",
        "quality",
        "storage",
        "engine",
        "spark",
        "settings",
    },
    "definitions": {"defs", "settings"},
    "listener": {"storage", "settings"},
    "launcher": {"compat"},
    "run_coordinator": {"compat"},
    "observability": {"core", "market", "storage", "defs", "settings"},
    "view": {"core", "market", "storage", "defs", "settings"},
    "cli": {
        "core",
        "compat",
        "market",
        "parsing",
        "storage",
        "engine",
        "sample",
        "defs",
        "definitions",
        "listener",
        "observability",
        "view",
        "settings",
    },
}

# Programs inside a layer, which resolve the resources as the CLI does: spark/job.py is what
# spark-submit runs (it lives in the package so an installed project has it).
ENTRY_POINTS: dict[str, set[str]] = {"spark/job.py": {"defs"}}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "tickhouse_dagster" and len(parts) > 1 else None


def _parse(source: str) -> ast.Module:
    """`ast.parse` with the garbage collector held off. In the full suite, a collection that
    runs during the parse ran finalizers left by earlier tests (SQLAlchemy connections), and
    CPython 3.11 failed with "SystemError: AST constructor recursion depth mismatch"."""
    gc.collect()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        gc.enable()


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Layer -> (importing file, imported layer) for every project import in the package."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts == ("__init__.py",):
            continue
        layer = relative.parts[0].removesuffix(".py")
        for node in ast.walk(_parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "tickhouse_dagster":
                    names = [f"tickhouse_dagster.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                target = _layer(name)
                if target is not None and target != layer:
                    found[layer].add((str(relative), target))
    return found


def test_every_folder_is_a_known_layer():
    layers = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert layers - {"__init__", "py.typed"} == set(ALLOWED)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = sorted(
        f"{file} imports {target}"
        for layer, edges in _imports().items()
        for file, target in edges
        if target not in ALLOWED[layer] | ENTRY_POINTS.get(file, set())
    )
    assert wrong == []


def test_only_compat_imports_dagsters_private_modules():
    """Dagster's private names are behind tickhouse_dagster/compat/, where
    compat/test_private_apis.py checks each one (an upgrade fails there, by name)."""
    private = sorted(
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "compat"
        for node in ast.walk(_parse(path.read_text()))
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        if name.startswith("dagster._")
    )
    assert private == []


def test_importing_the_ingest_command_does_not_build_the_code_location():
    """`tickhouse_dagster.cli.ingest` builds the definitions only when a command runs."""
    code = (
        "import sys, tickhouse_dagster.cli.ingest; "
        "print('tickhouse_dagster.definitions' in sys.modules)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert shown.stdout.strip() == "False"


def test_loading_the_code_location_imports_no_engine_it_may_not_use():
    """Every run process loads the code location before its first step: libraries only some
    steps use (pyspark, dagster-pyspark, pandera, polars) are imported by those steps."""
    code = (
        "import sys, tickhouse_dagster.definitions; "
        "print(sorted(m for m in ('pyspark', 'dagster_pyspark', 'pandera', 'polars') "
        "if m in sys.modules))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert shown.stdout.strip() == "[]"


def test_the_spark_job_ships_inside_the_package():
    """What Dagster submits and the Docker image runs: a file of the installed package."""
    from tickhouse_dagster.defs.resources_spark import INGEST_JOB

    assert Path(INGEST_JOB).resolve().is_relative_to(PACKAGE)
