"""Both directions between pyiceberg and Trino, on both catalogs (JDBC and SeaweedFS REST):
pyiceberg writes → Trino reads exactly; Trino writes → pyiceberg reads exactly
(`infra/local/stack smoke`, which cleans up after itself)."""

from __future__ import annotations

import subprocess

import pytest

from tickhouse_dagster_tests.conftest import STACK

pytestmark = pytest.mark.slow


def test_pyiceberg_and_trino_interoperate_both_ways(stack_env):
    result = subprocess.run(
        [str(STACK), "smoke"], capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "FAIL" not in output
    assert "=== jdbc: PASS" in output and "=== rest: PASS" in output
