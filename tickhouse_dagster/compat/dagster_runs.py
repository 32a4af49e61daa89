"""Dagster's private run-launching names (dagster 1.13): the launcher base classes a custom
launcher extends (Dagster documents the extension point, not a public import path) and what
`dagster api execute_run` runs once it has its instance, which the warm run launcher
(`tickhouse_dagster.launcher`) calls in a forked process. Kept apart from `dagster_private` so
that loading the code location does not import Dagster's CLI;
tickhouse_dagster_tests/compat/test_private_apis.py checks the names."""

from __future__ import annotations

from dagster._cli.api import _execute_run_command_body as execute_run_body
from dagster._core.code_pointer import ModuleCodePointer, PackageCodePointer
from dagster._core.instance import InstanceRef
from dagster._core.launcher import DefaultRunLauncher, LaunchRunContext
from dagster._serdes import ConfigurableClassData, deserialize_value, serialize_value
from dagster._utils.interrupts import capture_interrupts, setup_interrupt_handlers

__all__ = [
    "ConfigurableClassData",
    "DefaultRunLauncher",
    "InstanceRef",
    "LaunchRunContext",
    "ModuleCodePointer",
    "PackageCodePointer",
    "capture_interrupts",
    "deserialize_value",
    "execute_run_body",
    "serialize_value",
    "setup_interrupt_handlers",
]
