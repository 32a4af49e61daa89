"""The record of which reference data built what, on a real embedded lakehouse: what a change
without effect says, the sensor's bars-only read, and the record table's compaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa

from tickhouse_dagster.core.contract import REFERENCE_TABLE
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.reference_lineage import (
    BAR_TABLES,
    compact_reference_records,
    find_stale,
    record_bars_reference,
    record_ticks_reference,
)

DAY = date(2024, 1, 3)


def day_bars(*venues: str) -> dict[str, pa.Table]:
    # The record reads only which venues a day's bars hold.
    return {table: pa.table({"venue": list(venues)}) for table in BAR_TABLES}


def test_a_change_only_checks_read_is_reported_as_such(
    house: Lakehouse, venues: dict[str, Venue]
) -> None:
    record_bars_reference(house, DAY, day_bars("KRX", "NYMEX"), venues)
    record_ticks_reference(house, {"KRX/a.xml": ["KRX"]}, venues)
    assert find_stale(house, venues).render() == "nothing stale"

    finer = {**venues, "KRX": replace(venues["KRX"], tick_sizes=((Decimal(0), Decimal("0.5")),))}
    report = find_stale(house, finer)
    assert not report.stale and report.days() == []
    first, last = report.render().splitlines()
    assert first.startswith("KRX reference data changed: tick_sizes [[")
    assert first.endswith(
        "-> [['0', '0.5']] (only the session_and_tick_grid check reads it; ticks and bars are "
        "unaffected)"
    )
    assert last == "nothing stale"


def test_the_sensor_reads_the_bars_records_only(house: Lakehouse, venues: dict[str, Venue]) -> None:
    record_bars_reference(house, DAY, day_bars("NYMEX"), venues)
    record_ticks_reference(house, {"NYMEX/evening.xml": ["NYMEX"]}, venues)
    chicago = {**venues, "NYMEX": replace(venues["NYMEX"], timezone=ZoneInfo("America/Chicago"))}

    counted = find_stale(house, chicago, ticks="count")
    assert counted.days() == [DAY] and counted.ticks_unchecked == {"NYMEX": 1}
    skipped = find_stale(house, chicago, ticks="skip")
    assert skipped.days() == [DAY] and skipped.ticks_unchecked == {} and skipped.ticks == []
    [bars] = skipped.bars
    assert bars.tables == tuple(sorted(BAR_TABLES))
    assert bars.changes == ("timezone America/New_York -> America/Chicago",)


def test_the_record_table_is_compacted_without_losing_a_record(
    house: Lakehouse, venues: dict[str, Venue]
) -> None:
    for n in range(18):  # one small data file per ticks commit
        record_ticks_reference(house, {f"KRX/{n:02d}.xml": ["KRX"]}, venues)
    record_bars_reference(house, DAY, day_bars("KRX"), venues)
    columns = ["built", "venue", "trade_date", "source_file", "fingerprint", "reference"]

    def rows() -> list[dict]:
        table = house.reference_records(columns).to_pylist()
        return sorted(table, key=lambda r: (r["built"], r["source_file"] or ""))

    before = rows()
    assert len(before) == 18 + len(BAR_TABLES)
    assert compact_reference_records(house) == 19
    assert rows() == before
    assert sum(1 for _ in house.table(REFERENCE_TABLE).scan().plan_files()) == 1
    assert compact_reference_records(house) is None  # one file: nothing to do


def test_a_rebuild_that_says_the_same_leaves_the_bars_record(
    house: Lakehouse, venues: dict[str, Venue]
) -> None:
    def state() -> tuple[int | None, list[dict]]:
        snapshot = house.table(REFERENCE_TABLE).current_snapshot()
        records = house.reference_records(["built", "venue", "fingerprint", "recorded_at"])
        return snapshot and snapshot.snapshot_id, sorted(
            records.to_pylist(), key=lambda r: (r["built"], r["venue"])
        )

    assert record_bars_reference(house, DAY, day_bars("KRX"), venues) is not None
    first = state()
    # Same venues, same reference data: no commit, the first record (and its time) stays.
    assert record_bars_reference(house, DAY, day_bars("KRX"), venues) is None
    assert state() == first
    # A venue more, or changed reference data: recorded again.
    assert record_bars_reference(house, DAY, day_bars("KRX", "NYMEX"), venues) is not None
    assert {r["venue"] for r in state()[1]} == {"KRX", "NYMEX"}
    finer = {**venues, "KRX": replace(venues["KRX"], tick_sizes=((Decimal(0), Decimal("0.5")),))}
    before = state()
    assert record_bars_reference(house, DAY, day_bars("KRX", "NYMEX"), finer) is not None
    after = state()
    assert after[0] != before[0]
    changed = {r["fingerprint"] for r in after[1]} - {r["fingerprint"] for r in before[1]}
    assert changed and len(after[1]) == len(before[1])


def test_the_record_tables_manifests_stay_few_as_files_come_in(
    house: Lakehouse, venues: dict[str, Venue]
) -> None:
    """Every ticks commit adds a record: its manifests are merged once 16 pile up, so a bar
    build's read of the record plans a bounded number of them, not one per file of the day."""
    for n in range(40):
        record_ticks_reference(house, {f"KRX/{n:02d}.xml": ["KRX"]}, venues)
    table = house.table(REFERENCE_TABLE)
    snapshot = table.current_snapshot()
    assert snapshot is not None and len(snapshot.manifests(table.io)) <= 16
    assert house.reference_records(["source_file"]).num_rows == 40
