"""The bars' daily partitions are the venues' trading days: weekends and days no venue trades are
excluded, the first partition is configurable, today's (and, for venues whose trade date runs
ahead of UTC, tomorrow's) session is a partition while it trades, a date-range backfill skips
non-trading days, and the touched-days sensor warns about trade dates with no partition."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from dagster import AssetMaterialization, PartitionKeyRange, build_sensor_context

from tickhouse_dagster.defs.partitions import (
    trade_dates,
    trading_day_partitions,
    why_not_a_partition,
    without_bars_partition,
)
from tickhouse_dagster.defs.sensors import touched_days_sensor
from tickhouse_dagster.market.venues import load_venues, parse_venues
from tickhouse_dagster.settings import TickhouseSettings

KRX_ONLY = {"KRX": load_venues()["KRX"]}


def keys(partitions, first: str, last: str) -> list[str]:
    return partitions.get_partition_keys_in_range(PartitionKeyRange(first, last))


def test_a_week_with_a_holiday_everywhere_has_no_partition_for_it():
    # Christmas 2024 (Wed): KRX, NYMEX and CBOT are all closed; Dec 24 KRX and NYMEX trade.
    assert keys(trade_dates, "2024-12-23", "2024-12-27") == [
        "2024-12-23",
        "2024-12-24",
        "2024-12-26",
        "2024-12-27",
    ]
    assert not trade_dates.has_partition_key("2024-12-25")
    assert not trade_dates.has_partition_key("2024-12-28")  # Saturday
    # A holiday of one venue only is still a partition: Good Friday 2024, KRX trades.
    assert trade_dates.has_partition_key("2024-03-29")


def test_one_venues_calendar_alone():
    cbot = {"CBOT": load_venues()["CBOT"]}
    grains = trading_day_partitions(cbot, first=date(2026, 1, 1))
    # MLK day 2026 (Mon 19 Jan): the grains are closed; KRX is open, so the shared def keeps it.
    assert keys(grains, "2026-01-16", "2026-01-23") == [
        "2026-01-16",
        "2026-01-20",
        "2026-01-21",
        "2026-01-22",
        "2026-01-23",
    ]
    assert grains.get_first_partition_key() == "2026-01-02"  # Jan 1 is a holiday
    assert trade_dates.has_partition_key("2026-01-19")


def test_any_venue_trading_makes_a_partition():
    both = {
        **KRX_ONLY,
        **parse_venues(
            'XSAU:\n  timezone: Asia/Riyadh\n  session: {open: "10:00", close: "15:00"}\n'
            "  weekend: [Fri, Sat]\n  tick_sizes: [[0, 0.01]]\n",
            "v.yaml",
        ),
    }
    partitions = trading_day_partitions(both, first=date(2024, 1, 1))
    # Fri: KRX trades; Sat: nobody; Sun: Tadawul trades. Jan 1: KRX holiday, Tadawul open.
    assert keys(partitions, "2024-01-01", "2024-01-08") == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-07",
        "2024-01-08",
    ]


def test_first_partition_is_configurable():
    first = TickhouseSettings.from_env(
        {"TICKHOUSE_FIRST_TRADE_DATE": "2024-12-25"}
    ).first_trade_date
    assert trading_day_partitions(KRX_ONLY, first).get_first_partition_key() == "2024-12-26"
    assert trade_dates.get_first_partition_key() == "2020-01-02"  # the default, 2020-01-01 closed


def test_todays_session_is_a_partition_while_it_trades():
    # Friday 30 Oct 2026 22:30 UTC = 18:30 in New York: NYMEX trades Monday's session already.
    evening = datetime(2026, 10, 30, 22, 30, tzinfo=UTC)
    assert trade_dates.get_partition_keys(current_time=evening)[-2:] == ["2026-10-30", "2026-11-02"]
    # Monday 08:30 in Seoul is still Sunday in UTC: Monday is a partition.
    seoul_morning = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
    krx = trading_day_partitions(KRX_ONLY, first=date(2026, 1, 1))
    assert "2026-11-02" in krx.get_partition_keys(current_time=seoul_morning)


def test_a_date_range_backfill_skips_non_trading_days():
    # What the UI's range backfill launches: the keys of the range, trading days only.
    days = keys(trade_dates, "2025-12-24", "2026-01-05")
    assert days == ["2025-12-24", "2025-12-26", "2025-12-29", "2025-12-30", "2025-12-31",
                    "2026-01-02", "2026-01-05"]  # fmt: skip
    assert all(date.fromisoformat(d).weekday() < 5 for d in days)


def test_why_a_day_has_no_partition():
    assert why_not_a_partition("2024-12-25").startswith("no venue trades that day")
    assert why_not_a_partition("2019-12-31").startswith("before TICKHOUSE_FIRST_TRADE_DATE")
    assert why_not_a_partition("2099-01-05").startswith("after the last partition")


def test_days_without_a_bars_partition_are_exactly_those_not_listed():
    """`without_bars_partition` asks the partitions one key at a time; the answer is the
    listing's, on every calendar day from before the first trade date to after the last."""
    listed = set(trade_dates.get_partition_keys())
    first, last = date(2019, 12, 1), date.today() + timedelta(days=10)
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days)]
    outside = without_bars_partition(days)
    assert set(outside) == set(days) - listed
    assert listed <= set(days) and len(listed) > 1000
    assert outside["2024-12-25"].startswith("no venue trades that day")
    assert without_bars_partition(["not-a-day"]) == {"not-a-day": "not a date"}


class _Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_touched_days_sensor_warns_about_days_without_a_partition(instance, resources):
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=["market", "ticks"],
            partition="KRX/late.xml",
            metadata={"trade_dates": "2024-12-24, 2024-12-25, 2019-12-31"},
        )
    )
    context = build_sensor_context(
        instance=instance, resources={"lakehouse": resources["lakehouse"]}
    )
    recorded = _Recorded()
    context.log.addHandler(recorded)  # the sensor's own log, as the daemon records it
    result = touched_days_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["2024-12-24"]
    warning = next(m for m in recorded.messages if "outside the bars" in m)
    assert "2024-12-25: no venue trades that day" in warning
    assert "2019-12-31: before TICKHOUSE_FIRST_TRADE_DATE 2020-01-01" in warning
