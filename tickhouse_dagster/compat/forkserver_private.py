"""Python's private forkserver names (CPython 3.11) the warm run launcher relies on. A process
has one forkserver (`multiprocessing.forkserver._forkserver`), started on first use with the
modules `set_forkserver_preload` named then; a later preload list changes nothing while it runs.
The launcher stops it when the code it preloaded has changed, and the next fork starts a new one
(`ensure_running`). tickhouse_dagster_tests/compat/test_private_apis.py checks the names."""

from __future__ import annotations

from multiprocessing import forkserver

__all__ = ["stop_forkserver"]


def stop_forkserver() -> None:
    """Stop this process's forkserver, if running; processes it forked keep running."""
    forkserver._forkserver._stop()  # type: ignore[attr-defined]
