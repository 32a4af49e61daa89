"""Venue reference data: sessions that cross midnight and have breaks, holiday calendars, the
trade-date rule for evening prints (also across a DST change), and validation that names the
file, the venue and the reason."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from tickhouse_dagster.market.venues import (
    BUILT_IN_FILE,
    Venue,
    VenueFileError,
    is_trading_day,
    load_venues,
    next_trading_day,
    parse_venues,
    sessions_of,
    trade_date_of,
    trade_dates_of,
)
from tickhouse_dagster.settings import PROJECT_ROOT

CHICAGO = ZoneInfo("America/Chicago")
SEOUL = ZoneInfo("Asia/Seoul")


@pytest.fixture
def cbot(venues) -> Venue:
    return venues["CBOT"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def chicago(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), CHICAGO)


# --- sessions ------------------------------------------------------------------------------------


def test_grains_sessions_cross_midnight_and_have_a_break(cbot):
    tuesday = date(2026, 10, 27)
    assert sessions_of(cbot, tuesday) == [
        (chicago(date(2026, 10, 26), 19), chicago(tuesday, 7, 45)),
        (chicago(tuesday, 8, 30), chicago(tuesday, 13, 20)),
    ]
    # Monday's overnight session opens on Sunday evening (the calendar day before).
    monday = date(2026, 10, 26)
    assert sessions_of(cbot, monday)[0][0] == chicago(date(2026, 10, 25), 19)
    assert cbot.crosses_midnight() and cbot.roll == time(19)


def test_a_print_in_the_break_is_outside_the_sessions(cbot):
    from tickhouse_dagster.quality.tick_rules import check_session_and_grid
    from tickhouse_dagster_tests.storage.test_lakehouse import parsed

    tuesday = date(2026, 10, 27)
    rows = parsed(
        [
            _print("1", chicago(date(2026, 10, 26), 19), tuesday),  # the overnight open
            _print("2", chicago(tuesday, 7, 45), tuesday),  # the overnight close, inclusive
            _print("3", chicago(tuesday, 8, 0), tuesday),  # in the break
            _print("4", chicago(tuesday, 13, 20), tuesday),  # the day close
            _print("5", chicago(tuesday, 13, 21), tuesday),  # after it
        ]
    )
    findings = check_session_and_grid(rows.to_batches(), {"CBOT": cbot})
    assert findings.count == 2, findings.examples
    assert "record 3 (ZCZ6 3): 08:00:00 is outside the CBOT session" in findings.examples[0]
    assert "2026-10-27: Mon 19:00–07:45, 08:30–13:20" in findings.examples[0]
    assert "record 5 (ZCZ6 5): 13:21:00 is outside" in findings.examples[1]


def _print(trade_id: str, at: datetime, trade_date: date) -> dict:
    from tickhouse_dagster_tests.market.test_bars import tick

    row = tick("00:00:00", trade_id, "450.25", 1, symbol="ZCZ6", venue="CBOT")
    return {**row, "ts": at.astimezone(UTC), "trade_date": trade_date}


def test_legacy_single_session_still_loads(tmp_path: Path):
    file = tmp_path / "v.yaml"
    file.write_text(
        'XTKS:\n  timezone: Asia/Tokyo\n  session: {open: "09:00", close: "15:30"}\n'
        "  tick_sizes: [[0, 1]]\n"
    )
    tokyo = load_venues(file)["XTKS"]
    assert tokyo.session_open == time(9) and tokyo.session_close == time(15, 30)
    assert not tokyo.crosses_midnight() and tokyo.roll is None
    assert tokyo.weekend == frozenset({5, 6}) and not tokyo.holidays
    day = date(2024, 1, 4)
    zone = ZoneInfo("Asia/Tokyo")
    assert tokyo.session_bounds(day) == (
        datetime.combine(day, time(9), zone),
        datetime.combine(day, time(15, 30), zone),
    )


def test_early_close_cuts_the_day(venues):
    nymex = venues["NYMEX"]
    black_friday = date(2026, 11, 27)
    new_york = ZoneInfo("America/New_York")
    assert sessions_of(nymex, black_friday) == [
        (
            datetime.combine(date(2026, 11, 26), time(18), new_york),
            datetime.combine(black_friday, time(14, 45), new_york),
        )
    ]


# --- calendar ------------------------------------------------------------------------------------


def test_holidays_and_weekends(cbot, venues):
    good_friday = date(2024, 3, 29)
    assert not is_trading_day(cbot, good_friday) and sessions_of(cbot, good_friday) == []
    assert not is_trading_day(cbot, date(2024, 3, 30))  # Saturday
    assert next_trading_day(cbot, date(2024, 3, 28)) == date(2024, 4, 1)  # over Fri, Sat, Sun
    assert is_trading_day(cbot, date(2024, 4, 1))
    # Chuseok 2025: KRX is closed Fri 3 Oct to Thu 9 Oct, a weekend in between.
    krx = venues["KRX"]
    assert next_trading_day(krx, date(2025, 10, 2)) == date(2025, 10, 10)


def test_a_venue_with_a_friday_saturday_weekend(tmp_path: Path):
    file = tmp_path / "v.yaml"
    file.write_text(
        'XSAU:\n  timezone: Asia/Riyadh\n  session: {open: "10:00", close: "15:00"}\n'
        "  weekend: [Fri, Saturday]\n  holidays: [2024-04-09]\n  tick_sizes: [[0, 0.01]]\n"
    )
    tadawul = load_venues(file)["XSAU"]
    assert is_trading_day(tadawul, date(2024, 4, 7))  # a Sunday
    assert next_trading_day(tadawul, date(2024, 4, 4)) == date(2024, 4, 7)  # Thu → Sun
    assert next_trading_day(tadawul, date(2024, 4, 8)) == date(2024, 4, 10)  # over the holiday


# --- the trade-date rule -------------------------------------------------------------------------


def test_evening_prints_get_the_next_trading_day(cbot, venues):
    wednesday = date(2026, 10, 28)
    assert trade_date_of(cbot, chicago(wednesday, 18, 59)) == wednesday
    assert trade_date_of(cbot, chicago(wednesday, 19)) == date(2026, 10, 29)
    # NYMEX rolls at its 18:00 open (New York), not at midnight.
    new_york = ZoneInfo("America/New_York")
    nymex = venues["NYMEX"]
    assert trade_date_of(nymex, datetime(2024, 1, 2, 17, 0, tzinfo=new_york)) == date(2024, 1, 2)
    assert trade_date_of(nymex, datetime(2024, 1, 2, 18, 0, tzinfo=new_york)) == date(2024, 1, 3)


def test_friday_evening_print_is_mondays(cbot):
    friday = date(2026, 10, 30)
    assert trade_date_of(cbot, chicago(friday, 19, 30)) == date(2026, 11, 2)
    # Before a holiday Monday the evening goes to Tuesday (MLK day 2026: grains closed).
    assert trade_date_of(cbot, chicago(date(2026, 1, 16), 19, 30)) == date(2026, 1, 20)


def test_no_roll_venue_books_a_closed_day_print_to_the_next_trading_day(venues):
    krx = venues["KRX"]
    tuesday = datetime(2024, 1, 2, 23, 30, tzinfo=SEOUL)
    assert trade_date_of(krx, tuesday) == date(2024, 1, 2)  # no roll: midnight
    saturday = datetime(2024, 1, 6, 10, 0, tzinfo=SEOUL)
    assert trade_date_of(krx, saturday) == date(2024, 1, 8)
    with pytest.raises(ValueError, match="aware"):
        trade_date_of(krx, datetime(2024, 1, 2, 10))


def test_end_of_us_daylight_saving_time(cbot):
    """2026-11-01 02:00 CDT → 01:00 CST (a Sunday). Friday's evening session opens at 19:00
    CDT = 00:00 UTC; Monday's opens on Sunday at 19:00 CST = 01:00 UTC."""
    friday, monday = date(2026, 10, 30), date(2026, 11, 2)
    assert [(o.astimezone(UTC), c.astimezone(UTC)) for o, c in sessions_of(cbot, friday)] == [
        (utc("2026-10-30T00:00"), utc("2026-10-30T12:45")),
        (utc("2026-10-30T13:30"), utc("2026-10-30T18:20")),
    ]
    assert [(o.astimezone(UTC), c.astimezone(UTC)) for o, c in sessions_of(cbot, monday)] == [
        (utc("2026-11-02T01:00"), utc("2026-11-02T13:45")),
        (utc("2026-11-02T14:30"), utc("2026-11-02T19:20")),
    ]
    cases = {
        "2026-10-30T23:30": friday,  # Fri 18:30 CDT: before the roll
        "2026-10-31T00:30": monday,  # Fri 19:30 CDT (18:30 if read as CST: Friday, wrong)
        "2026-11-01T06:30": monday,  # Sun 01:30 CDT, the first of the repeated hour
        "2026-11-01T07:30": monday,  # Sun 01:30 CST, the second
        "2026-11-02T00:30": monday,  # Sun 18:30 CST: not a trading day, before the roll
        "2026-11-02T01:00": monday,  # Sun 19:00 CST: rolls to the day after Sunday, Monday
        "2026-11-02T19:20": monday,  # Mon 13:20 CST, the close
        "2026-11-03T01:00": date(2026, 11, 3),  # Mon 19:00 CST opens Tuesday
    }
    for instant, expected in cases.items():
        assert trade_date_of(cbot, utc(instant)) == expected, instant


@pytest.mark.parametrize("name", ["KRX", "NYMEX", "CBOT"])
def test_vectorised_rule_equals_the_scalar_one(venues, name):
    """Every 7 minutes over three weeks around the DST change, weekends and a holiday."""
    venue = venues[name]
    start = utc("2026-10-20T00:00")
    instants = [start + timedelta(minutes=7 * i) for i in range(21 * 24 * 60 // 7)]
    ts = pa.array(instants, pa.timestamp("us", tz="UTC"))
    names = pa.array([name] * len(instants), pa.string())
    vectorised = trade_dates_of(names, ts, venues).to_pylist()
    assert vectorised == [trade_date_of(venue, at) for at in instants]


def test_vectorised_rule_over_mixed_venues_and_nulls(venues):
    at = [utc("2026-10-30T23:30"), utc("2026-10-31T00:30"), None, utc("2026-10-31T00:30")]
    ts = pa.array(at, pa.timestamp("us", tz="UTC"))
    names = pa.array(["CBOT", "CBOT", "KRX", None], pa.string())
    assert trade_dates_of(names, ts, venues).to_pylist() == [
        date(2026, 10, 30),
        date(2026, 11, 2),
        None,
        None,
    ]


@pytest.mark.parametrize("name", ["KRX", "NYMEX", "CBOT"])
def test_rule_as_data_gives_the_same_calendar(venues, name):
    """The Spark engine applies `trade_date_rule()`; it must equal the calendar on every day."""
    venue = venues[name]
    rule = venue.trade_date_rule()
    targets = dict(rule.holiday_targets)
    day = date(2019, 12, 1)
    while day <= date(2027, 1, 31):
        weekday = day + timedelta(days=rule.days_to_weekday[day.weekday()])
        assert targets.get(weekday, weekday) == venue.trading_day_on_or_after(day), day
        day += timedelta(days=1)


# --- validation ----------------------------------------------------------------------------------


GOOD = """GRAINS:
  timezone: America/Chicago
  sessions:
    - {open: "19:00", close: "07:45"}
    - {open: "08:30", close: "13:20"}
  tick_sizes: [[0, 0.25]]
"""


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (GOOD + "  holdays: [2026-01-01]\n", "unknown key(s) holdays (allowed: timezone"),
        (
            GOOD.replace('"08:30", close', '"08:30", clsoe'),
            "sessions[1]: unknown key(s) clsoe (allowed: open, close, previous_day)",
        ),
        (GOOD.replace('"13:20"', '"13:75"'), "sessions[1].close: '13:75' is not a time HH:MM"),
        (GOOD.replace('"13:20"', "13:20"), "sessions[1].close: 800 is not a time; quote it"),
        (GOOD.replace("America/Chicago", "America/Chicagoo"), "timezone 'America/Chicagoo' is"),
        (GOOD.replace('"08:30"', '"07:00"'), "sessions[1] (07:00–13:20) must open after"),
        (GOOD + '  trade_date_roll: "20:00"\n', "trade_date_roll 20:00:00 is after the evening"),
        (GOOD + '  trade_date_roll: "13:00"\n', "is not after the trade date's last close"),
        (GOOD + "  weekend: [Sat, Sunday, Caturday]\n", "weekend: 'Caturday' is not a day name"),
        (GOOD + "  holidays: [2026-13-01]\n", "holidays: '2026-13-01' is not a date YYYY-MM-DD"),
        (GOOD + '  early_closes: {2026-11-27: "15:00"}\n', "early_closes[2026-11-27]: 15:00"),
        (
            GOOD.replace("  sessions:", '  session: {open: "09:00", close: "10:00"}\n  sessions:'),
            "give either 'session' (one) or 'sessions'",
        ),
    ],
)
def test_validation_names_file_venue_and_reason(tmp_path: Path, broken: str, reason: str):
    file = tmp_path / "my-venues.yaml"
    file.write_text(broken)
    with pytest.raises(VenueFileError) as raised:
        load_venues(file)
    message = str(raised.value)
    assert message.startswith(f"venues file {file}, venue 'GRAINS': "), message
    assert reason in message, message
    assert raised.value.venue == "GRAINS" and raised.value.file == str(file)


def test_validation_of_the_file_itself(tmp_path: Path):
    file = tmp_path / "v.yaml"
    file.write_text("- not a mapping\n")
    with pytest.raises(VenueFileError, match=f"venues file {re.escape(str(file))}: must be"):
        load_venues(file)
    with pytest.raises(VenueFileError, match="cannot be read"):
        load_venues(tmp_path / "missing.yaml")
    assert parse_venues(GOOD, "x.yaml")["GRAINS"].roll == time(19)


def test_built_in_file_is_valid_and_named_in_errors(venues):
    assert set(venues) >= {"KRX", "NYMEX", "CBOT"}
    with pytest.raises(VenueFileError, match=re.escape(f"venues file {BUILT_IN_FILE}, venue 'X'")):
        parse_venues("X: {timezone: UTC}\n", str(BUILT_IN_FILE))


def test_readme_example_file_loads():
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("<!-- venues-example -->", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    example = parse_venues(block, "README.md")
    grains = example["CBOT"]
    assert grains.sessions == load_venues()["CBOT"].sessions
    assert grains.trade_date_of(chicago(date(2026, 10, 30), 19, 30)) == date(2026, 11, 2)
    assert grains.sessions_of(date(2026, 11, 27))[-1][1] == chicago(date(2026, 11, 27), 12, 5)


def test_venue_and_profile_files_are_read_with_libyaml_and_dates_stay_text() -> None:
    import yaml

    from tickhouse_dagster.core.yaml_loader import SAFE_LOADER
    from tickhouse_dagster.market import venues

    # The lock's PyYAML wheels carry libyaml; losing it would cost every run's start.
    assert SAFE_LOADER is yaml.CSafeLoader
    assert issubclass(venues._Loader, yaml.CSafeLoader)
    assert yaml.load("d: 2026-13-01", Loader=venues._Loader) == {"d": "2026-13-01"}
    assert yaml.load("d: 2026-01-02", Loader=SAFE_LOADER) == {"d": date(2026, 1, 2)}
