"""Reference records written behind the run, on a real embedded lakehouse: all of them, in
order, once waited for; a failed one named with its files, the others still written."""

from __future__ import annotations

import pytest

from tickhouse_dagster.core.contract import TICKS_BUILT
from tickhouse_dagster.engine.reference_records import ReferenceRecords, ReferenceRecordsFailed
from tickhouse_dagster.storage.row_filters import equal_to
from tickhouse_dagster_tests.storage.test_lakehouse import lakehouse


def recorded_files(house) -> list[str]:
    rows = house.reference_records(["source_file"], equal_to("built", TICKS_BUILT))
    return sorted(rows["source_file"].to_pylist())


def test_every_record_asked_for_is_written_once_waited_for(tmp_path, venues):
    house = lakehouse(tmp_path)
    with ReferenceRecords(house, venues) as records:
        records.record_ticks({"KRX/a.xml": ["KRX"]})
        records.record_ticks({"KRX/b.xml": ["KRX"], "NYMEX/c.xml": ["NYMEX"]})
        records.record_ticks({})  # nothing committed: nothing to record
        records.wait()
        assert recorded_files(house) == ["KRX/a.xml", "KRX/b.xml", "NYMEX/c.xml"]
        records.record_ticks({"KRX/d.xml": ["KRX"]})
    # Leaving the block waits for the rest.
    assert recorded_files(house) == ["KRX/a.xml", "KRX/b.xml", "KRX/d.xml", "NYMEX/c.xml"]


def test_a_failed_record_names_its_files_and_the_others_are_written(tmp_path, venues):
    house = lakehouse(tmp_path)
    records = ReferenceRecords(house, venues)
    records.record_ticks({"KRX/a.xml": ["KRX"]})
    records.record_ticks({"XXX/b.xml": ["XXX"]})  # a venue not configured: the record fails
    records.record_ticks({"KRX/c.xml": ["KRX"]})
    with pytest.raises(ReferenceRecordsFailed) as failed:
        records.wait()
    assert failed.value.keys == ["XXX/b.xml"]
    assert "XXX/b.xml: KeyError" in str(failed.value)
    assert "tickhouse ingest --all" in str(failed.value)
    assert recorded_files(house) == ["KRX/a.xml", "KRX/c.xml"]
    records.wait()  # reported once: nothing is pending any more
