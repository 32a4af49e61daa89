"""Venue reference data: time zone, trading session and tick-size grid per exchange."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

VENUES_FILE_ENV = "TICKHOUSE_VENUES_FILE"
DEFAULT_VENUE = "KRX"


@dataclass(frozen=True)
class Venue:
    name: str
    timezone: ZoneInfo
    session_open: time
    session_close: time
    tick_sizes: tuple[tuple[Decimal, Decimal], ...]  # (lower bound inclusive, tick) ascending

    def tick_size(self, price: Decimal) -> Decimal:
        size = self.tick_sizes[0][1]
        for lower, tick in self.tick_sizes:
            if price >= lower:
                size = tick
        return size

    def on_grid(self, price: Decimal) -> bool:
        return price % self.tick_size(price) == 0

    def crosses_midnight(self) -> bool:
        return self.session_close <= self.session_open

    def session_bounds(self, trade_date: date) -> tuple[datetime, datetime]:
        """The session of `trade_date` as aware local datetimes [open, close] (close inclusive:
        the closing auction prints exactly at the close)."""
        close = datetime.combine(trade_date, self.session_close, self.timezone)
        open_day = trade_date - timedelta(days=1) if self.crosses_midnight() else trade_date
        return datetime.combine(open_day, self.session_open, self.timezone), close

    def local_midnight(self, trade_date: date) -> datetime:
        return datetime.combine(trade_date, time(0), self.timezone)


def _parse_clock(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def _venue_from_mapping(name: str, spec: dict) -> Venue:
    try:
        session = spec["session"]
        return Venue(
            name=name,
            timezone=ZoneInfo(spec["timezone"]),
            session_open=_parse_clock(str(session["open"])),
            session_close=_parse_clock(str(session["close"])),
            tick_sizes=tuple(
                (Decimal(str(lower)), Decimal(str(tick))) for lower, tick in spec["tick_sizes"]
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"venue {name!r}: invalid reference data ({exc!r})") from exc


def load_venues(extra_file: str | Path | None = None) -> dict[str, Venue]:
    """Built-in venues, with entries of `extra_file` (or $TICKHOUSE_VENUES_FILE) replacing them."""
    text = resources.files(__package__).joinpath("venues.yaml").read_text()
    specs: dict = yaml.safe_load(text)
    extra_file = extra_file or os.environ.get(VENUES_FILE_ENV)
    if extra_file:
        specs.update(yaml.safe_load(Path(extra_file).read_text()) or {})
    return {name: _venue_from_mapping(name, spec) for name, spec in specs.items()}


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
