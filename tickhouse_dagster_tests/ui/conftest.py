"""One `dagster dev` for all the UI tests of this package: starting it costs about a minute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tickhouse_dagster_tests.ui.dagster_dev import running_dagster_dev


@pytest.fixture(scope="package")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with running_dagster_dev(tmp_path_factory.mktemp("dagster-dev")) as server:
        yield server
