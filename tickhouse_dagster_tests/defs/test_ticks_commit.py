"""The ticks-commit record: what a ticks materialization stores and how it is read back,
including the comma-separated trade dates of events written before the JSON list."""

from __future__ import annotations

from dagster import AssetKey, AssetMaterialization, DagsterInstance, MetadataValue

from tickhouse_dagster.defs.asset_keys import TICKS
from tickhouse_dagster.defs.ticks_commit import TicksCommit

RECORD = TicksCommit(
    source_file="2024/01/02/ticks-1.xml",
    file_version="etag-1@1704189600",
    sha256="ab" * 32,
    trade_dates=("2024-01-02", "2024-01-03"),
    snapshot_id=7_311_234_567_890_123_456,
    rows_written=4000,
)


def test_the_record_round_trips_through_an_instance():
    with DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=AssetKey(TICKS),
                partition=RECORD.source_file,
                metadata={**RECORD.to_metadata(), "corrections": 0},
            )
        )
        [record] = instance.fetch_materializations(AssetKey(TICKS), limit=1).records
        assert record.asset_materialization is not None
        assert TicksCommit.from_materialization(record.asset_materialization) == RECORD


def test_trade_dates_are_stored_as_a_json_list():
    stored = RECORD.to_metadata()
    assert stored["trade_dates"] == MetadataValue.json(["2024-01-02", "2024-01-03"])
    # Text: a 63-bit snapshot id as a JSON number would lose digits in the UI.
    assert stored["snapshot_id"] == "7311234567890123456"


def test_events_of_the_old_format_are_still_read():
    """As the ticks materializations of earlier releases stored it: trade dates ", "-joined."""
    old = AssetMaterialization(
        asset_key=AssetKey(TICKS),
        partition="old.xml",
        metadata={
            "trade_dates": "2024-01-02, 2024-01-03",
            "snapshot_id": "42",
            "rows_written": MetadataValue.int(3),
            "file_version": "v1",
            "source_file": "old.xml",
        },
    )
    record = TicksCommit.from_materialization(old)
    assert record.trade_dates == ("2024-01-02", "2024-01-03")
    assert (record.snapshot_id, record.rows_written, record.file_version) == (42, 3, "v1")
    assert TicksCommit.from_metadata({"trade_dates": ""}, "k.xml").trade_dates == ()


def test_a_record_without_snapshot_or_source_names_its_partition():
    record = TicksCommit.from_metadata({"snapshot_id": "None"}, partition="a/b.xml")
    assert record.source_file == "a/b.xml"
    assert record.snapshot_id is None and record.file_version is None
