"""The security tests that need the real stack reuse its per-test namespace fixture."""

from tickhouse_dagster_tests.stack.conftest import on_stack

__all__ = ["on_stack"]
