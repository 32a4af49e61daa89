"""Fingerprints of venue reference data and the rules of what a change makes stale."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa

from tickhouse_dagster.market.reference_data import (
    bars_stale_fields,
    changed_fields,
    describe_change,
    fingerprint,
    reference_json,
    ticks_moved,
    trade_date_rule_changed,
    venue_from_reference,
)
from tickhouse_dagster.market.venues import Venue


def test_every_built_in_venue_round_trips_through_its_record(venues: dict[str, Venue]) -> None:
    for name, venue in venues.items():
        again = venue_from_reference(name, reference_json(venue))
        assert again == venue
        assert fingerprint(again) == fingerprint(venue)
    assert len({fingerprint(v) for v in venues.values()}) == len(venues)


def test_a_time_zone_change_makes_every_day_of_bars_stale_and_moves_evening_prints(
    venues: dict[str, Venue],
) -> None:
    new_york = venues["NYMEX"]
    chicago = replace(new_york, timezone=ZoneInfo("America/Chicago"))
    assert fingerprint(chicago) != fingerprint(new_york)
    assert changed_fields(new_york, chicago) == ["timezone"]
    assert bars_stale_fields(new_york, chicago, date(2024, 1, 3)) == ["timezone"]
    assert describe_change("timezone", new_york, chicago) == (
        "timezone America/New_York -> America/Chicago"
    )
    assert trade_date_rule_changed(new_york, chicago) == ["timezone"]

    # 18:30 in New York is past NYMEX's 18:00 roll (next day); in Chicago it is 17:30 (same day).
    ts = pa.array(
        [datetime(2024, 1, 2, 23, 30, tzinfo=UTC), datetime(2024, 1, 3, 16, 0, tzinfo=UTC)],
        pa.timestamp("us", tz="UTC"),
    )
    stored = pa.array([date(2024, 1, 3), date(2024, 1, 3)], pa.date32())
    mask, before, after = ticks_moved(new_york, chicago, ts, stored)
    assert before.to_pylist() == [date(2024, 1, 3), date(2024, 1, 3)]
    assert mask.to_pylist() == [True, False]
    assert after.to_pylist() == [date(2024, 1, 2), date(2024, 1, 3)]
    # A feed's date that is not the old rule's (a feed booking its own way) is not moved.
    feed_dates = pa.array([date(2024, 1, 2), date(2024, 1, 3)], pa.date32())
    assert ticks_moved(new_york, chicago, ts, feed_dates)[0].to_pylist() == [False, False]


def test_a_holiday_makes_only_the_days_it_rebooks_stale(venues: dict[str, Venue]) -> None:
    nymex = venues["NYMEX"]
    bridge = replace(nymex, holidays=nymex.holidays | {date(2024, 7, 5)})
    assert changed_fields(nymex, bridge) == ["holidays"]
    assert describe_change("holidays", nymex, bridge) == "holidays +2024-07-05"
    assert trade_date_rule_changed(nymex, bridge) == ["holidays"]
    # The 5th is no trading day any more and its prints go to Monday the 8th.
    assert bars_stale_fields(nymex, bridge, date(2024, 7, 5)) == ["holidays"]
    assert bars_stale_fields(nymex, bridge, date(2024, 7, 8)) == ["holidays"]
    assert bars_stale_fields(nymex, bridge, date(2024, 7, 3)) == []
    assert bars_stale_fields(nymex, bridge, date(2024, 1, 3)) == []


def test_check_only_fields_make_nothing_stale(venues: dict[str, Venue]) -> None:
    krx = venues["KRX"]
    finer = replace(krx, tick_sizes=((Decimal(0), Decimal("0.5")),))
    closes = replace(krx, early_closes=((date(2024, 1, 2), time(13, 0)),))
    for changed, field in ((finer, "tick_sizes"), (closes, "early_closes")):
        assert changed_fields(krx, changed) == [field]
        assert fingerprint(changed) != fingerprint(krx)
        assert trade_date_rule_changed(krx, changed) == []
        assert bars_stale_fields(krx, changed, date(2024, 1, 2)) == []
    assert describe_change("early_closes", krx, closes) == "early_closes +2024-01-02"
