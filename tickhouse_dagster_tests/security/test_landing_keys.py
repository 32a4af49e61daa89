"""A landing key that would escape a local landing folder is refused by the ingest run itself,
not only by the store: someone can add any dynamic partition in the UI and launch it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickhouse_dagster_tests.defs.helpers import definitions_with, ingest, step_error


@pytest.mark.parametrize("key", ["KRX/../../outside.xml"])
def test_ingest_of_an_escaping_key_fails_and_reads_nothing(resources, instance, key, tmp_path):
    outside = Path(resources["landing"].uri).parent / "outside.xml"
    outside.write_text('<tickhouse venue="KRX" trade_date="2024-01-02"></tickhouse>')
    result = ingest(definitions_with(resources), instance, key)
    assert not result.success
    assert "refused landing key" in step_error(result)
    house = resources["lakehouse"].lakehouse()
    assert house.table("ticks").current_snapshot() is None  # nothing was committed
