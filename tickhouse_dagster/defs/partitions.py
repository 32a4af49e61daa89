"""Partitions: one per landing file for the tick assets, one per trading day for the bars.

The bars' daily partitions are the trading days of the configured venues (docs/decisions/
0801-trading-day-partitions.md): a day is a partition when ANY venue trades on it, so one
partitions definition serves every venue. Days no venue trades are Dagster `exclusions`: a
cron exclusion for the weekend days all venues share, and a date for each day that every venue
has off otherwise (a holiday everywhere, or a holiday at some and weekend at the others).
"""

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition

from tickhouse_dagster.market.venues import Venue, load_venues
from tickhouse_dagster.settings import current

LANDING_FILES = "landing_files"
"""The name of `landing_files` (whose `.name` is typed optional: not every one has a name)."""
landing_files = DynamicPartitionsDefinition(name=LANDING_FILES)

FILE_VERSION_TAG = "tickhouse/file_version"

_CRON_WEEKDAY = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 0}  # Python Mon = 0 → cron Sun = 0


def _leads_utc(venue: Venue) -> bool:
    """Whether some of a trade date's prints come before 00:00 UTC of that date: an evening
    session (roll time), or a clock ahead of UTC whose local midnight falls the UTC day before."""
    if venue.roll is not None:
        return True
    year = date.today().year
    return any(
        (venue.local_midnight(date(year, month, 1)).utcoffset() or timedelta(0)) > timedelta(0)
        for month in (1, 7)
    )


def end_offset(venues: Mapping[str, Venue]) -> int:
    """Partitions after the last UTC day that has ended: today's (1), and tomorrow's as well (2)
    when a venue's trade date runs ahead of the UTC date, so a session's trade date is a
    partition from its first print (NYMEX's 18:00 New York evening session books tomorrow's date
    while it is still today in UTC)."""
    return 2 if any(_leads_utc(v) for v in venues.values()) else 1


def non_trading_exclusions(venues: Mapping[str, Venue], first: date) -> list[str | datetime]:
    """Dagster exclusions for the days no venue trades: a cron string for the weekend days all
    venues share, and each other such day from `first` to the last listed holiday (after it no
    venue has a holiday, so only shared weekend days are closed everywhere)."""
    shared = frozenset.intersection(*(v.weekend for v in venues.values()))
    exclusions: list[str | datetime] = []
    if shared:
        days = ",".join(
            str(_CRON_WEEKDAY[d]) for d in sorted(shared, key=_CRON_WEEKDAY.__getitem__)
        )
        exclusions.append(f"0 0 * * {days}")
    last = max((day for v in venues.values() for day in v.holidays), default=None)
    day = first
    while last is not None and day <= last:
        if day.weekday() not in shared and not any(v.is_trading_day(day) for v in venues.values()):
            exclusions.append(datetime(day.year, day.month, day.day))
        day += timedelta(days=1)
    return exclusions


def trading_day_partitions(venues: Mapping[str, Venue], first: date) -> DailyPartitionsDefinition:
    """Daily partitions (UTC day windows keyed by trade date) on the venues' trading days."""
    return DailyPartitionsDefinition(
        start_date=first.isoformat(),
        end_offset=end_offset(venues),
        exclusions=non_trading_exclusions(venues, first) or None,
    )


# The one setting read as a module is imported: Dagster binds an asset's partitions definition
# when the asset is declared, so the bars' partitions (TICKHOUSE_FIRST_TRADE_DATE, the venues of
# TICKHOUSE_VENUES_FILE) exist before `definitions.py` resolves the rest of the settings.
_settings = current()
PARTITION_VENUES = load_venues(_settings.venues_file)
FIRST_TRADE_DATE = _settings.first_trade_date
trade_dates = trading_day_partitions(PARTITION_VENUES, FIRST_TRADE_DATE)


def why_not_a_partition(key: str, venues: Mapping[str, Venue] | None = None) -> str:
    """Why a trade date has no bars partition, in words for a sensor's warning."""
    try:
        day = date.fromisoformat(key)
    except ValueError:
        return "not a date"
    venues = venues or PARTITION_VENUES
    if day < FIRST_TRADE_DATE:
        return f"before TICKHOUSE_FIRST_TRADE_DATE {FIRST_TRADE_DATE}"
    if not any(v.is_trading_day(day) for v in venues.values()):
        return "no venue trades that day (weekend or holiday everywhere)"
    last = trade_dates.get_last_partition_key()
    if last is not None and key > last:
        return f"after the last partition so far ({last})"
    return "not a partition"


def without_bars_partition(days: Iterable[str]) -> dict[str, str]:
    """Each of these trade dates (ISO) that has no bars partition, with why: every caller names
    such a day instead of dropping it silently."""
    # One key at a time: listing every key since FIRST_TRADE_DATE took 0.07–0.19 s per run.
    return {day: why_not_a_partition(day) for day in days if not trade_dates.has_partition_key(day)}
