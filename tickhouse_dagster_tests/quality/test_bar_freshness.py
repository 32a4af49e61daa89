"""Which session the bars' freshness is judged against, per venue and instant (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tickhouse_dagster.quality.bar_freshness import expectation, judge

SEOUL, CHICAGO = ZoneInfo("Asia/Seoul"), ZoneInfo("America/Chicago")
HALF_HOUR = timedelta(minutes=30)


def at(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone).astimezone(UTC)


def test_in_session_the_bars_must_be_younger_than_the_threshold(venues):
    want = expectation(venues["KRX"], at(SEOUL, 2024, 1, 2, 11, 0), HALF_HOUR)
    assert want.trade_date == date(2024, 1, 2) and want.in_session
    assert want.updated_since == at(SEOUL, 2024, 1, 2, 10, 30)
    assert want.stale(at(SEOUL, 2024, 1, 2, 10, 29)) and not want.stale(
        at(SEOUL, 2024, 1, 2, 10, 31)
    )
    assert want.stale(None)


def test_grace_after_the_open_then_the_previous_close_still_counts(venues):
    # Wednesday 09:10: the session is 10 minutes old, so the previous trading day's (Tuesday's)
    # close is what is judged: its bars must date from 15:00 or later.
    want = expectation(venues["KRX"], at(SEOUL, 2024, 1, 3, 9, 10), HALF_HOUR)
    assert want.trade_date == date(2024, 1, 2) and not want.in_session
    assert want.updated_since == at(SEOUL, 2024, 1, 2, 15, 0)


def test_weekends_and_holidays_judge_the_last_session(venues):
    sunday = expectation(venues["KRX"], at(SEOUL, 2024, 1, 7, 12, 0), HALF_HOUR)
    assert sunday.trade_date == date(2024, 1, 5) and not sunday.in_session
    new_year = expectation(venues["KRX"], at(SEOUL, 2024, 1, 1, 12, 0), HALF_HOUR)
    assert new_year.trade_date == date(2023, 12, 28)  # Dec 29 is the KRX year-end closing day


def test_a_break_and_an_evening_session(venues):
    cbot = venues["CBOT"]
    # 08:40 in the day session's grace: the overnight session's 07:45 close is judged.
    in_grace = expectation(cbot, at(CHICAGO, 2026, 10, 27, 8, 40), HALF_HOUR)
    assert in_grace.trade_date == date(2026, 10, 27)
    assert in_grace.updated_since == at(CHICAGO, 2026, 10, 27, 7, 15)
    # Tuesday 19:40: Wednesday's overnight session has run 40 minutes.
    evening = expectation(cbot, at(CHICAGO, 2026, 10, 27, 19, 40), HALF_HOUR)
    assert evening.trade_date == date(2026, 10, 28) and evening.in_session


def test_verdict_over_several_venues(venues):
    now = at(SEOUL, 2024, 1, 2, 11, 0)
    updates = {date(2024, 1, 2): at(SEOUL, 2024, 1, 2, 10, 50)}
    fresh = judge([venues["KRX"]], now, HALF_HOUR, updates.get)
    assert fresh.passed and "KRX 2024-01-02 (in session): fresh" in fresh.description("x")
    # NYMEX (New York, 21:00 on Jan 1 = trade date Jan 2's evening session) shares the day's
    # bars: updated 10 minutes ago, fresh too; an hour later both are stale.
    both = judge([venues["KRX"], venues["NYMEX"]], now, HALF_HOUR, updates.get)
    assert both.passed
    later = judge(
        [venues["KRX"], venues["NYMEX"]], now + timedelta(hours=1), HALF_HOUR, updates.get
    )
    assert not later.passed and later.description("x").count("STALE") == 2
