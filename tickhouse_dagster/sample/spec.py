"""What a sample is: which venue, days, names, prints and files (`SampleSpec`), and the trade
dates it covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

PROFILES: Final = ("tickhouse", "fixml")
FILE_SUFFIXES: Final = {"tickhouse": ".xml", "fixml": ".fixml.xml"}


@dataclass(frozen=True)
class SampleSpec:
    """What to generate: `days` trading days (weekends skipped) from `start_date`, each with
    exactly `ticks_per_day` prints over `symbols` names, split by time into `files_per_day`
    collection windows."""

    days: int = 1
    symbols: int = 5
    ticks_per_day: int = 50_000
    files_per_day: int = 7
    profile: str = "tickhouse"
    seed: int = 42
    gzip: bool = False
    start_date: date = date(2024, 1, 2)
    venue: str = "KRX"

    def __post_init__(self) -> None:
        problems = []
        if self.days < 1:
            problems.append(f"days must be >= 1, got {self.days}")
        if self.symbols < 1:
            problems.append(f"symbols must be >= 1, got {self.symbols}")
        if self.ticks_per_day < self.symbols:
            problems.append(
                f"ticks_per_day ({self.ticks_per_day}) must cover one closing print per symbol "
                f"({self.symbols})"
            )
        if self.files_per_day < 1:
            problems.append(f"files_per_day must be >= 1, got {self.files_per_day}")
        if self.profile not in PROFILES:
            problems.append(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if problems:
            raise ValueError("invalid sample spec: " + "; ".join(problems))


def expected_tick_count(spec: SampleSpec) -> int:
    return spec.days * spec.ticks_per_day


def trade_dates(start: date, days: int) -> list[date]:
    """The first `days` weekdays from `start` (holidays are not modelled)."""
    dates: list[date] = []
    day = start
    while len(dates) < days:
        if day.weekday() < 5:
            dates.append(day)
        day += timedelta(days=1)
    return dates
