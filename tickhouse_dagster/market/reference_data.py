"""What a venue's reference data is, as a record of what ticks and bars were built under, and
which of its changes make what stale (docs/decisions/1402-stale-reference-data.md).

`reference_of(venue)` is the venue's reference data as canonical JSON-able data and
`fingerprint` a stable hash of it; both are stored with the ticks and bars built under it
(`storage.reference_lineage`). `venue_from_reference` rebuilds the Venue a record names, so a
later change can be judged by the same rules that built the data:

- the bars of a trade date read the venue's time zone only (bar starts on the local clock, the
  1d bar at local midnight) — and the trade dates of their ticks;
- a tick's trade date, where the feed gives none, comes from the trade-date rule: time zone,
  roll time (set, or derived from an evening session), weekend and holidays;
- early closes, tick sizes and the session times themselves only feed the
  `session_and_tick_grid` check: a change there makes nothing stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from tickhouse_dagster.market.venues import WEEKDAY_NAMES, Session, Venue

REFERENCE_FIELDS = (
    "timezone",
    "sessions",
    "trade_date_roll",
    "weekend",
    "holidays",
    "early_closes",
    "tick_sizes",
)
# The fields the trade-date rule reads (through `Venue.roll`, the weekend and the holidays).
TRADE_DATE_FIELDS = ("timezone", "sessions", "trade_date_roll", "weekend", "holidays")
# What reading a record's field names tells a person about a change that makes nothing stale.
CHECK_ONLY_NOTE = "only the session_and_tick_grid check reads it; ticks and bars are unaffected"


def _clock(value: time | None) -> str | None:
    return None if value is None else value.isoformat()


def reference_of(venue: Venue) -> dict[str, Any]:
    """The venue's reference data as canonical JSON-able data (sorted, no defaults implied)."""
    return {
        "timezone": venue.timezone.key,
        "sessions": [
            [_clock(s.open), _clock(s.close), s.open_day, s.close_day] for s in venue.sessions
        ],
        "trade_date_roll": _clock(venue.trade_date_roll),
        "weekend": [WEEKDAY_NAMES[d] for d in sorted(venue.weekend)],
        "holidays": sorted(d.isoformat() for d in venue.holidays),
        "early_closes": {d.isoformat(): _clock(c) for d, c in sorted(venue.early_closes)},
        "tick_sizes": [[str(lower), str(tick)] for lower, tick in venue.tick_sizes],
    }


def reference_json(venue: Venue) -> str:
    return json.dumps(reference_of(venue), sort_keys=True, separators=(",", ":"))


def fingerprint(venue: Venue) -> str:
    """A stable hash of the venue's reference data: equal exactly when `reference_of` is."""
    return hashlib.sha256(reference_json(venue).encode()).hexdigest()[:16]


def venues_fingerprint(venues: Mapping[str, Venue]) -> str:
    """One fingerprint of every venue's reference data (bars built under another are not
    those these venues would give)."""
    joined = "\n".join(f"{name}={fingerprint(venues[name])}" for name in sorted(venues))
    return hashlib.sha256(joined.encode()).hexdigest()


def venue_from_reference(name: str, reference: str | Mapping[str, Any]) -> Venue:
    """The Venue a stored record describes (the inverse of `reference_of`)."""
    data = json.loads(reference) if isinstance(reference, str) else reference
    roll = data["trade_date_roll"]
    return Venue(
        name=name,
        timezone=ZoneInfo(data["timezone"]),
        sessions=tuple(
            Session(time.fromisoformat(o), time.fromisoformat(c), od, cd)
            for o, c, od, cd in data["sessions"]
        ),
        tick_sizes=tuple((Decimal(lower), Decimal(tick)) for lower, tick in data["tick_sizes"]),
        weekend=frozenset(WEEKDAY_NAMES.index(d) for d in data["weekend"]),
        holidays=frozenset(date.fromisoformat(d) for d in data["holidays"]),
        early_closes=tuple(
            (date.fromisoformat(d), time.fromisoformat(c)) for d, c in data["early_closes"].items()
        ),
        trade_date_roll=None if roll is None else time.fromisoformat(roll),
    )


def changed_fields(old: Venue, new: Venue) -> list[str]:
    """The reference fields that differ, in `REFERENCE_FIELDS` order."""
    before, after = reference_of(old), reference_of(new)
    return [f for f in REFERENCE_FIELDS if before[f] != after[f]]


def describe_change(field: str, old: Venue, new: Venue) -> str:
    """One field's change for a person: values for short fields, what was added / removed for
    the calendars."""
    before, after = reference_of(old)[field], reference_of(new)[field]
    if field == "timezone":
        return f"timezone {before} -> {after}"
    if field == "sessions":
        return (
            f"sessions {', '.join(s.describe() for s in old.sessions)} -> "
            f"{', '.join(s.describe() for s in new.sessions)}"
        )
    if field in ("holidays", "early_closes"):
        added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
        parts = [f"+{d}" for d in added] + [f"-{d}" for d in removed]
        if field == "early_closes":  # a date kept with another close time
            kept = sorted(d for d in set(after) & set(before) if before[d] != after[d])
            parts += [f"{d} {before[d]}->{after[d]}" for d in kept]
        return f"{field} {' '.join(parts)}"
    return f"{field} {before} -> {after}"


def _rule_fields(old: Venue, new: Venue) -> list[str]:
    return [f for f in changed_fields(old, new) if f in TRADE_DATE_FIELDS]


def trade_date_rule_changed(old: Venue, new: Venue) -> list[str]:
    """The changed fields behind a change of the trade-date rule anywhere, [] when the rule is
    the same (a session moved without moving the roll time changes no trade date)."""
    same = (
        old.timezone.key == new.timezone.key
        and old.roll == new.roll
        and old.trade_date_rule() == new.trade_date_rule()
    )
    return [] if same else _rule_fields(old, new)


def _books_differently(old: Venue, new: Venue, day: date) -> bool:
    """Whether some calendar day is booked to trade date `day` by one calendar and not by the
    other (same clock and roll): the days that can be booked to `day` lie after the previous
    trading day, under either calendar."""
    first = min(old.previous_trading_day(day), new.previous_trading_day(day)) + timedelta(days=1)
    candidate = first
    while candidate <= day:
        if (old.trading_day_on_or_after(candidate) == day) != (
            new.trading_day_on_or_after(candidate) == day
        ):
            return True
        candidate += timedelta(days=1)
    return False


def bars_stale_fields(old: Venue, new: Venue, day: date) -> list[str]:
    """Why bars of `day` built under `old` differ from bars built under `new` (the changed
    fields), or [] when they cannot: the bar clock (time zone) changed, or the trade-date rule
    books other prints to `day` (roll time anywhere; weekend or holidays near `day`). The bars
    are rebuilt from the ticks as stored; ticks whose trade dates the rule derived need their
    files re-ingested as well (`ticks_moved`)."""
    if old.timezone.key != new.timezone.key or old.roll != new.roll:
        return _rule_fields(old, new)
    if _books_differently(old, new, day):
        return [f for f in _rule_fields(old, new) if f in ("weekend", "holidays")]
    return []


def ticks_moved(
    old: Venue, new: Venue, ts: pa.Array | pa.ChunkedArray, stored: pa.Array | pa.ChunkedArray
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(mask, old dates, new dates) of the prints whose stored trade date is the one `old`'s
    rule gives and `new`'s rule gives another: the rule derived it (or a feed's date agrees
    with it — re-ingesting such a file is harmless), and it is now wrong."""
    before, after = old.trade_dates(ts), new.trade_dates(ts)
    mask = pc.and_(pc.equal(stored, before), pc.not_equal(before, after))
    return pc.fill_null(mask, False), before, after
