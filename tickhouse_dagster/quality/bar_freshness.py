"""Are the bars keeping up with the venues' sessions? Pure rules; Dagster reads the update times.

While a venue trades, landing files arrive every few minutes and each rebuilds the bars of the
venue's current trade date, so that partition's last materialization should never be older than
the threshold (TICKHOUSE_BARS_FRESHNESS_MINUTES). Per venue, the session judged is the latest
one that has been open for at least the threshold (the first minutes after an open, or after a
break, are a grace period): its trade date's bars must have been updated at or after
`min(now, its close) - threshold`. After the close that stays the requirement (the day's last
files must have made it into the bars) until the next session has been open long enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tickhouse_dagster.market.venues import Venue

_LOOKBACK_TRADING_DAYS = 10  # a session that short of the threshold would be a broken calendar


@dataclass(frozen=True)
class Expectation:
    venue: str
    trade_date: date
    session: tuple[datetime, datetime]  # UTC
    in_session: bool
    updated_since: datetime  # UTC: the bars of trade_date must have been updated at or after

    def stale(self, last_update: datetime | None) -> bool:
        return last_update is None or last_update < self.updated_since


def expectation(venue: Venue, now: datetime, threshold: timedelta) -> Expectation | None:
    """What `venue`'s sessions require of the bars at `now` (None: no session in reach)."""
    day = venue.trade_date_of(now)
    for _ in range(_LOOKBACK_TRADING_DAYS):
        for opens, closes in reversed(venue.sessions_of(day)):
            opens, closes = opens.astimezone(UTC), closes.astimezone(UTC)
            if opens + threshold <= now:
                return Expectation(
                    venue=venue.name,
                    trade_date=day,
                    session=(opens, closes),
                    in_session=opens <= now <= closes,
                    updated_since=min(now, closes) - threshold,
                )
        day = venue.previous_trading_day(day)
    return None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    expectations: tuple[tuple[Expectation, datetime | None], ...]  # (what, last update)

    def description(self, asset: str) -> str:
        if not self.expectations:
            return f"{asset}: no watched venue has a session in reach"
        parts = []
        for want, last in self.expectations:
            state = "STALE" if want.stale(last) else "fresh"
            seen = "never" if last is None else f"{last:%Y-%m-%d %H:%M:%S} UTC"
            when = "in session" if want.in_session else "session closed"
            parts.append(
                f"{want.venue} {want.trade_date} ({when}): {state}, last updated {seen}, "
                f"expected at or after {want.updated_since:%Y-%m-%d %H:%M:%S} UTC"
            )
        return f"{asset}: " + "; ".join(parts)


def judge(
    venues: Iterable[Venue],
    now: datetime,
    threshold: timedelta,
    last_update: Callable[[date], datetime | None],
) -> Verdict:
    """Fresh when, for every venue, its judged trade date's bars were updated recently enough."""
    judged = []
    for venue in venues:
        want = expectation(venue, now, threshold)
        if want is not None:
            judged.append((want, last_update(want.trade_date)))
    return Verdict(all(not want.stale(last) for want, last in judged), tuple(judged))


def watched(venues: Mapping[str, Venue], with_ticks: Iterable[str]) -> list[Venue]:
    """The venues the bars must keep up with: those the ticks table holds prints of (a built-in
    venue whose feed a deployment does not take is never stale)."""
    return [venues[name] for name in sorted(set(with_ticks)) if name in venues]
