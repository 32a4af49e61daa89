"""Imported by the warm run launcher's interpreter (tickhouse_dagster.launcher), never by a run:
the code location its runs load (the module named by CODE_LOCATION_ENV, a `python_module`
workspace entry), so a forked run finds its definitions built instead of importing them
(0.24 s of a run's start-up on this project's machine, decision 1609).

The launcher stamps the code location's sources before this import and starts a new warm
interpreter when they change, so a run still sees its code as it is on disk. A code location
that fails to import here is forgotten (its modules dropped from `sys.modules`): each run then
imports it itself and fails with Dagster's "Could not load job definition." and the error, as
it would without the warm interpreter. Python's forkserver would stop at any error but an
ImportError, and every launch with it."""

from __future__ import annotations

import importlib
import os
import sys

CODE_LOCATION_ENV = "TICKHOUSE_WARM_CODE_LOCATION"


def _forget(module: str) -> None:
    package = module.partition(".")[0]
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


_module = os.environ.get(CODE_LOCATION_ENV)
if _module:
    try:
        importlib.import_module(_module)
    except BaseException:  # the run reports it itself; here it must not stop the server
        _forget(_module)
