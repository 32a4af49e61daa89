"""Venue reference data: time zone, trading sessions, trading calendar, trade-date rule and
tick-size grid per exchange.

The trade-date rule lives here, once, for every engine:

    local   = the print's instant on the venue's clock
    day     = local date, plus one when the local time is at or after the venue's roll time
    trade date = the first trading day on or after `day` (weekends and holidays skipped)

The roll time is `trade_date_roll` when the venues file sets it, else the open of a session that
opens the evening before its trade date (CME style: a 19:00 open in Chicago starts the next
trading day's session), else none (midnight). So a Friday-evening print gets Monday, and a print
on a day the venue does not trade is booked to the next day it does.

`trade_dates_of` applies the rule to Arrow arrays (both Python readers, through
`parsing.ticks_xml.contract_batch`); `Venue.trade_date_rule` hands the same rule to the Spark
engine as data (roll time, weekend skips, holiday targets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from tickhouse_dagster.core.yaml_loader import SAFE_LOADER

VENUES_FILE_ENV = "TICKHOUSE_VENUES_FILE"

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEKDAY_OF = {name.lower(): number for number, name in enumerate(WEEKDAY_NAMES)} | {
    full: number
    for number, full in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
}
DEFAULT_WEEKEND = frozenset({5, 6})  # Saturday, Sunday
_DAY = 86_400  # seconds
# A trading calendar has gaps of days, not months: searching further means a broken calendar.
_MAX_CLOSED_RUN = 366


def _seconds(clock: time) -> int:
    return clock.hour * 3600 + clock.minute * 60 + clock.second


@dataclass(frozen=True)
class Session:
    """One trading session of a trade date on the venue's clock. `open_day` / `close_day` are 0
    for the trade date itself and -1 for the calendar day before it (an evening session)."""

    open: time
    close: time
    open_day: int = 0
    close_day: int = 0

    @classmethod
    def of(cls, open: time, close: time, previous_day: bool | None = None) -> Session:
        """A session from its clock times: one that closes at or before it opens crosses
        midnight and opens the evening before the trade date; `previous_day` puts a session
        that does not cross midnight entirely on the evening before."""
        if close <= open:
            return cls(open, close, -1, 0)
        return cls(open, close, -1, -1) if previous_day else cls(open, close, 0, 0)

    @property
    def open_offset(self) -> int:
        """Seconds from midnight at the start of the trade date (negative: the evening before)."""
        return self.open_day * _DAY + _seconds(self.open)

    @property
    def close_offset(self) -> int:
        return self.close_day * _DAY + _seconds(self.close)

    def bounds(self, trade_date: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        return (
            datetime.combine(trade_date + timedelta(days=self.open_day), self.open, zone),
            datetime.combine(trade_date + timedelta(days=self.close_day), self.close, zone),
        )

    def describe(self) -> str:
        evening = " (evening before)" if self.open_day < 0 else ""
        return f"{self.open:%H:%M}{evening}–{self.close:%H:%M}"


@dataclass(frozen=True)
class TradeDateRule:
    """The trade-date rule of one venue as data, for engines that cannot call Python (Spark):

    day  = local date + (1 if roll_seconds is set and the local clock is at or after it)
    w    = day + days_to_weekday[weekday(day)]       (Mon = 0; past the weekend)
    date = holiday_targets.get(w, w)                 (a holiday → the first trading day after)
    """

    roll_seconds: int | None
    days_to_weekday: tuple[int, ...]  # indexed by weekday, Mon = 0
    holiday_targets: tuple[tuple[date, date], ...]


@dataclass(frozen=True)
class Venue:
    name: str
    timezone: ZoneInfo
    sessions: tuple[Session, ...]
    tick_sizes: tuple[tuple[Decimal, Decimal], ...]  # (lower bound inclusive, tick) ascending
    weekend: frozenset[int] = DEFAULT_WEEKEND  # weekday numbers, Mon = 0
    holidays: frozenset[date] = frozenset()
    early_closes: tuple[tuple[date, time], ...] = ()  # (trade date, close on that date)
    trade_date_roll: time | None = None  # None: derived from the sessions (see `roll`)

    # --- price grid ---------------------------------------------------------------------------

    def tick_size(self, price: Decimal) -> Decimal:
        size = self.tick_sizes[0][1]
        for lower, tick in self.tick_sizes:
            if price >= lower:
                size = tick
        return size

    def on_grid(self, price: Decimal) -> bool:
        return price % self.tick_size(price) == 0

    # --- sessions -----------------------------------------------------------------------------

    @property
    def session_open(self) -> time:
        """The first session's open (on the evening before when it crosses midnight)."""
        return self.sessions[0].open

    @property
    def session_close(self) -> time:
        return self.sessions[-1].close

    def crosses_midnight(self) -> bool:
        """Whether the trading day starts on the evening before the trade date."""
        return self.sessions[0].open_day < 0

    @property
    def roll(self) -> time | None:
        """Local time from which prints belong to the next trading day (None: midnight)."""
        if self.trade_date_roll is not None:
            return self.trade_date_roll
        first = self.sessions[0]
        return first.open if first.open_day < 0 else None

    def session_bounds(self, trade_date: date) -> tuple[datetime, datetime]:
        """The regular schedule's outer bounds for `trade_date` as aware local datetimes [first
        open, last close], whatever the calendar says (the sample generator's day)."""
        first, last = self.sessions[0], self.sessions[-1]
        return first.bounds(trade_date, self.timezone)[0], last.bounds(trade_date, self.timezone)[1]

    def sessions_of(self, trade_date: date) -> list[tuple[datetime, datetime]]:
        """The sessions of `trade_date` as [open, close] aware local datetimes (close inclusive:
        the closing auction prints at it); none on a day the venue does not trade, and cut at
        the early close of a shortened day."""
        if not self.is_trading_day(trade_date):
            return []
        bounds = [s.bounds(trade_date, self.timezone) for s in self.sessions]
        early = self._early_closes.get(trade_date)
        if early is None:
            return bounds
        cut = datetime.combine(trade_date, early, self.timezone)
        return [(start, min(end, cut)) for start, end in bounds if start < cut]

    def local_midnight(self, trade_date: date) -> datetime:
        return datetime.combine(trade_date, time(0), self.timezone)

    # --- calendar -----------------------------------------------------------------------------

    @cached_property
    def _early_closes(self) -> dict[date, time]:
        return dict(self.early_closes)

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def trading_day_on_or_after(self, day: date) -> date:
        for _ in range(_MAX_CLOSED_RUN):
            if self.is_trading_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError(f"venue {self.name!r}: no trading day within a year after {day}")

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after `day`."""
        return self.trading_day_on_or_after(day + timedelta(days=1))

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before `day`."""
        for _ in range(_MAX_CLOSED_RUN):
            day -= timedelta(days=1)
            if self.is_trading_day(day):
                return day
        raise ValueError(f"venue {self.name!r}: no trading day within a year before {day}")

    def trading_days(self, first: date, last: date) -> list[date]:
        days, day = [], first
        while day <= last:
            if self.is_trading_day(day):
                days.append(day)
            day += timedelta(days=1)
        return days

    # --- the trade-date rule ------------------------------------------------------------------

    def trade_date_of(self, instant: datetime) -> date:
        """The trade date of a print at `instant` (an aware datetime)."""
        if instant.tzinfo is None:
            raise ValueError("trade_date_of needs an aware datetime (a naive one has no instant)")
        local = instant.astimezone(self.timezone)
        day = local.date()
        roll = self.roll
        if roll is not None and local.time().replace(microsecond=0) >= roll:
            day += timedelta(days=1)
        return self.trading_day_on_or_after(day)

    def trade_dates(self, ts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """`trade_date_of` for an Arrow array of UTC timestamps, vectorised: the clock
        arithmetic runs in Arrow, the calendar once per distinct candidate day (a file spans a
        few), so a million rows cost a few Arrow passes."""
        local = pc.local_timestamp(ts.cast(pa.timestamp("us", tz=self.timezone.key)))
        roll = self.roll
        if roll is not None:
            # The wall clock moved by (24 h - roll) crosses midnight exactly when it is at or
            # after the roll: the local date then is the rolled day, in one pass.
            shift = pa.scalar(timedelta(seconds=_DAY - _seconds(roll)), pa.duration("us"))
            local = pc.add(local, shift)
        days = local.cast(pa.date32()).cast(pa.int32())
        candidates = pc.unique(days).to_pylist()
        epoch = date(1970, 1, 1)
        targets = [
            None
            if day is None
            else (self.trading_day_on_or_after(epoch + timedelta(day)) - epoch).days
            for day in candidates
        ]
        if targets == candidates:
            return days.cast(pa.date32())
        index = pc.index_in(days, value_set=pa.array(candidates, pa.int32()))
        return pa.array(targets, pa.int32()).take(index).cast(pa.date32())

    def trade_date_rule(self) -> TradeDateRule:
        """This venue's rule as lookup data (see TradeDateRule), derived from the same calendar."""
        skips = []
        for weekday in range(7):
            skip = 0
            while (weekday + skip) % 7 in self.weekend:
                skip += 1
            skips.append(skip)
        targets = tuple(
            (day, self.trading_day_on_or_after(day))
            for day in sorted(self.holidays)
            if day.weekday() not in self.weekend
        )
        roll = self.roll
        return TradeDateRule(None if roll is None else _seconds(roll), tuple(skips), targets)


# --- module-level pure functions (the reference data's API) --------------------------------------


def trade_date_of(venue: Venue, instant: datetime) -> date:
    return venue.trade_date_of(instant)


def is_trading_day(venue: Venue, day: date) -> bool:
    return venue.is_trading_day(day)


def sessions_of(venue: Venue, trade_date: date) -> list[tuple[datetime, datetime]]:
    return venue.sessions_of(trade_date)


def next_trading_day(venue: Venue, day: date) -> date:
    return venue.next_trading_day(day)


def trade_dates_of(
    venue_names: pa.Array | pa.ChunkedArray,
    ts: pa.Array | pa.ChunkedArray,
    venues: Mapping[str, Venue],
) -> pa.Array | pa.ChunkedArray:
    """The trade date of each print (venue name, UTC timestamp), by its venue's rule; null where
    the venue or ts is null. Every reader of the Python engine derives trade dates here."""
    names = [name for name in pc.unique(venue_names).to_pylist() if name is not None]
    if len(names) == 1 and venue_names.null_count == 0:
        return venues[names[0]].trade_dates(ts)
    if isinstance(venue_names, pa.ChunkedArray):
        venue_names = venue_names.combine_chunks()
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    # Each venue converts only its own rows, scattered back in place (replace_with_mask fills
    # the masked slots in order): a mixed batch costs one conversion per row, not per venue.
    derived = pa.nulls(len(ts), pa.date32())
    for name in names:
        mine = pc.fill_null(pc.equal(venue_names, name), False)
        derived = pc.replace_with_mask(derived, mine, venues[name].trade_dates(ts.filter(mine)))
    return derived


def trading_day_union(venues: Sequence[Venue], first: date, last: date) -> list[date]:
    """Days in [first, last] on which at least one of `venues` trades."""
    days, day = [], first
    while day <= last:
        if any(v.is_trading_day(day) for v in venues):
            days.append(day)
        day += timedelta(days=1)
    return days


# --- loading and validation ------------------------------------------------------------------

VENUE_KEYS = (
    "timezone",
    "session",
    "sessions",
    "weekend",
    "holidays",
    "early_closes",
    "trade_date_roll",
    "tick_sizes",
    "description",
)
SESSION_KEYS = ("open", "close", "previous_day")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class VenueFileError(ValueError):
    """Invalid venue reference data: which file, which venue, why."""

    def __init__(self, file: str, venue: str | None, reason: str) -> None:
        self.file, self.venue, self.reason = file, venue, reason
        where = f"venues file {file}" + (f", venue {venue!r}" if venue is not None else "")
        super().__init__(f"{where}: {reason}")


class _Invalid(ValueError):
    pass


def _clock(value: Any, what: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        raise _Invalid(
            f'{what}: {value!r} is not a time; quote it, e.g. "19:00" (YAML reads an unquoted '
            f"19:00 as the number 1140)"
        )
    match = _CLOCK.match(str(value)) if isinstance(value, str) else None
    hour, minute, second = (int(g or 0) for g in match.groups()) if match else (99, 0, 0)
    if hour > 23 or minute > 59 or second > 59:
        raise _Invalid(f"{what}: {value!r} is not a time HH:MM or HH:MM:SS (00:00 to 23:59:59)")
    return time(hour, minute, second)


def _day(value: Any, what: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _Invalid(f"{what}: {value!r} is not a date YYYY-MM-DD") from None


def _mapping(value: Any, what: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{what} must be a mapping, got {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise _Invalid(
            f"{what}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})"
        )
    return value


def _session(spec: Any, what: str) -> Session:
    spec = _mapping(spec, what, SESSION_KEYS)
    for key in ("open", "close"):
        if key not in spec:
            raise _Invalid(f"{what}: '{key}' is missing")
    opens, closes = _clock(spec["open"], f"{what}.open"), _clock(spec["close"], f"{what}.close")
    previous_day = spec.get("previous_day")
    if previous_day is not None and not isinstance(previous_day, bool):
        raise _Invalid(f"{what}.previous_day must be true or false, got {previous_day!r}")
    if closes <= opens and previous_day is False:
        raise _Invalid(
            f"{what}: closes at or before it opens, so it crosses midnight and opens the evening "
            f"before its trade date; previous_day: false contradicts that"
        )
    return Session.of(opens, closes, previous_day)


def _sessions(spec: dict[str, Any]) -> tuple[Session, ...]:
    if ("session" in spec) == ("sessions" in spec):
        raise _Invalid("give either 'session' (one) or 'sessions' (a list), exactly one of them")
    if "session" in spec:
        sessions = [_session(spec["session"], "session")]
    else:
        listed = spec["sessions"]
        if not isinstance(listed, list) or not listed:
            raise _Invalid("sessions must be a non-empty list of {open, close}")
        sessions = [_session(s, f"sessions[{i}]") for i, s in enumerate(listed)]
    for i, (before, after) in enumerate(pairwise(sessions), start=1):
        if after.open_offset <= before.close_offset:
            raise _Invalid(
                f"sessions[{i}] ({after.describe()}) must open after sessions[{i - 1}] "
                f"({before.describe()}) closes: list them in time order, without overlap"
            )
    if sessions[-1].close_offset - sessions[0].open_offset >= _DAY:
        raise _Invalid("the sessions of one trade date span 24 hours or more")
    return tuple(sessions)


def _check_roll(roll: time, sessions: tuple[Session, ...]) -> None:
    evening = [s for s in sessions if s.open_day < 0]
    if evening and _seconds(roll) > evening[0].open_offset + _DAY:
        raise _Invalid(
            f"trade_date_roll {roll:%H:%M:%S} is after the evening session's open "
            f"({evening[0].describe()}): its first prints would get the wrong trade date"
        )
    last_close = max((s.close_offset for s in sessions if s.close_day == 0), default=None)
    if last_close is not None and _seconds(roll) <= last_close:
        raise _Invalid(
            f"trade_date_roll {roll:%H:%M:%S} is not after the trade date's last close: "
            "prints of the closing auction would roll to the next day"
        )


def _weekend(value: Any) -> frozenset[int]:
    if not isinstance(value, list):
        raise _Invalid(f"weekend must be a list of day names (e.g. [Sat, Sun]), got {value!r}")
    days = set()
    for name in value:
        number = _WEEKDAY_OF.get(str(name).lower())
        if number is None:
            raise _Invalid(f"weekend: {name!r} is not a day name ({', '.join(WEEKDAY_NAMES)})")
        days.add(number)
    if len(days) == 7:
        raise _Invalid("weekend: every day of the week is a weekend day")
    return frozenset(days)


def _tick_sizes(value: Any) -> tuple[tuple[Decimal, Decimal], ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid("tick_sizes must be a non-empty list of [lower price bound, tick size]")
    bands: list[tuple[Decimal, Decimal]] = []
    for i, band in enumerate(value):
        try:
            lower, tick = (Decimal(str(v)) for v in band)
        except (TypeError, ValueError, InvalidOperation):
            raise _Invalid(f"tick_sizes[{i}]: {band!r} is not [lower, tick] numbers") from None
        if tick <= 0 or (bands and lower <= bands[-1][0]):
            raise _Invalid(f"tick_sizes[{i}]: ticks must be > 0, bounds ascending")
        bands.append((lower, tick))
    return tuple(bands)


def _venue(name: str, spec: Any) -> Venue:
    spec = _mapping(spec, "the entry", VENUE_KEYS)
    for key in ("timezone", "tick_sizes"):
        if key not in spec:
            raise _Invalid(f"'{key}' is missing")
    zone_name = spec["timezone"]
    try:
        zone = ZoneInfo(str(zone_name))
    except (KeyError, ValueError):
        raise _Invalid(f"timezone {zone_name!r} is not an IANA time zone name") from None
    sessions = _sessions(spec)
    roll = spec.get("trade_date_roll")
    roll = None if roll is None else _clock(roll, "trade_date_roll")
    if roll is not None:
        _check_roll(roll, sessions)
    holidays = spec.get("holidays") or []
    if not isinstance(holidays, list):
        raise _Invalid("holidays must be a list of dates YYYY-MM-DD")
    early = spec.get("early_closes") or {}
    if not isinstance(early, dict):
        raise _Invalid('early_closes must be a mapping of date: "HH:MM"')
    early_closes = tuple(
        sorted(
            (_day(day, "early_closes"), _clock(clock, f"early_closes[{day}]"))
            for day, clock in early.items()
        )
    )
    for day, clock in early_closes:
        offset = _seconds(clock)
        if not sessions[0].open_offset < offset <= sessions[-1].close_offset:
            raise _Invalid(f"early_closes[{day}]: {clock:%H:%M} is not within the sessions")
    return Venue(
        name=name,
        timezone=zone,
        sessions=sessions,
        tick_sizes=_tick_sizes(spec["tick_sizes"]),
        weekend=_weekend(spec["weekend"]) if "weekend" in spec else DEFAULT_WEEKEND,
        holidays=frozenset(_day(d, "holidays") for d in holidays),
        early_closes=early_closes,
        trade_date_roll=roll,
    )


class _Loader(SAFE_LOADER):  # type: ignore[misc]
    """The project's safe YAML loader (core.yaml_loader) with dates left as text, so a bad one
    (2026-13-01) is reported by this module with its venue rather than by the YAML reader
    without one."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_venues(text: str, file: str) -> dict[str, Venue]:
    """Venues of one YAML document; VenueFileError names the file, the venue and the reason."""
    try:
        specs = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise VenueFileError(file, None, f"not valid YAML: {exc}") from None
    if specs is None:
        return {}
    if not isinstance(specs, dict):
        raise VenueFileError(file, None, "must be a mapping of venue name to its reference data")
    venues = {}
    for name, spec in specs.items():
        try:
            venues[str(name)] = _venue(str(name), spec)
        except _Invalid as exc:
            raise VenueFileError(file, str(name), str(exc)) from None
    return venues


BUILT_IN_FILE = resources.files(__package__).joinpath("venues.yaml")


def load_venues(extra_file: str | Path | None = None) -> dict[str, Venue]:
    """Built-in venues, with entries of `extra_file` (the wiring layer passes
    TICKHOUSE_VENUES_FILE) replacing them."""
    venues = parse_venues(BUILT_IN_FILE.read_text(), str(BUILT_IN_FILE))
    if extra_file:
        try:
            text = Path(extra_file).read_text()
        except OSError as exc:
            raise VenueFileError(str(extra_file), None, f"cannot be read: {exc}") from None
        venues.update(parse_venues(text, str(extra_file)))
    return venues


@lru_cache(maxsize=1)
def default_venues() -> dict[str, Venue]:
    return load_venues()


def venue(name: str) -> Venue:
    venues = default_venues()
    if name not in venues:
        raise KeyError(
            f"unknown venue {name!r}: add it to the venues file ({VENUES_FILE_ENV}); "
            f"known: {', '.join(sorted(venues))}"
        )
    return venues[name]
