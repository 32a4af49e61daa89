"""The sample's market model: prices on the venue's tick grid (a random walk of the quote with a
bid/ask bounce), a U-shaped intraday arrival rate, one closing-auction print per symbol at the
close, trade ids unique per (venue, symbol, trade date) and timestamps in time order.

Ticks are produced in chunks, so a day is bounded by disk, not memory, and the same spec always
yields the same ticks (one seeded `random.Random`, no wall-clock values).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import pairwise
from statistics import NormalDist
from typing import Final

from tickhouse_dagster.market.venues import Venue

# Liquid KOSPI names at rough 2024 price levels (KRW). Listed busiest first: the order sets each
# name's share of the day's prints. The levels span the 5 .. 1,000 KRW tick-size bands.
KNOWN_SYMBOLS: Final[tuple[tuple[str, int], ...]] = (
    ("005930", 71_000),
    ("000660", 130_000),
    ("035420", 200_000),
    ("035720", 50_000),
    ("068270", 180_000),
    ("005380", 190_000),
    ("051910", 450_000),
    ("006400", 400_000),
    ("003550", 80_000),
    ("000270", 90_000),
    ("015760", 19_000),
    ("034020", 15_000),
    ("010950", 75_000),
    ("032830", 60_000),
    ("086790", 45_000),
    ("011200", 17_000),
    ("096770", 120_000),
    ("009150", 140_000),
    ("066570", 95_000),
    ("017670", 50_000),
    ("207940", 800_000),
    ("010140", 8_000),
    ("001440", 4_500),
)
# Further symbols are synthesized from this fixed seed, so a universe does not change with the
# spec's seed: `symbols=30` always lists the same 30 codes.
SYNTHETIC_UNIVERSE_SEED: Final = 20240102
SYNTHETIC_PRICE_RANGE: Final = (1_500, 900_000)

# Share of prints by activity rank ~ 1 / rank**ACTIVITY_SKEW: a few names dominate, as on KRX.
ACTIVITY_SKEW: Final = 0.8
# KRX 15:20-15:30 is the closing call: no continuous trading, then one print per name at 15:30.
CLOSING_CALL: Final = timedelta(minutes=10)
# The quote's walk is calibrated per symbol and day to about this standard deviation of the
# day's return, whatever the number of prints.
DAILY_VOLATILITY: Final = 0.015
MAX_MOVE_PROBABILITY: Final = 0.5
# Trade sizes: lognormal around a median trade value, clipped to 1..MAX_QUANTITY shares.
MEDIAN_TRADE_VALUE: Final = 3_000_000
QUANTITY_SIGMA: Final = 1.1
MAX_QUANTITY: Final = 5_000
QUANTITY_QUANTILES: Final = 1024
# The closing call typically clears this share of a name's daily volume in its single print.
CLOSING_VOLUME_SHARE: Final = (0.05, 0.12)

CHUNK_TICKS: Final = 8192
ARRIVAL_STEPS: Final = 4096

SIDE_NONE: Final = 0  # closing auction: no aggressor
SIDE_BUY: Final = 1
SIDE_SELL: Final = 2

# A tick is a plain tuple, not a named one, because building millions of them is the hot path:
# (second since the session open, microsecond, symbol index, trade sequence, price in grid
#  units, quantity, side code).
Tick = tuple[int, int, int, int, int, int, int]


# --- price grid ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceGrid:
    """A venue's tick-size table in integer grid units (its finest price increment), so the walk
    is exact integer arithmetic and cannot drift off the grid."""

    decimals: int
    lowers: tuple[int, ...]  # band lower bounds, ascending
    ticks: tuple[int, ...]  # tick size of each band

    @classmethod
    def of(cls, venue: Venue) -> PriceGrid:
        values = [value for band in venue.tick_sizes for value in band]
        decimals = max(0, *(-int(value.as_tuple().exponent) for value in values))
        scale = 10**decimals
        return cls(
            decimals=decimals,
            lowers=tuple(int(lower * scale) for lower, _ in venue.tick_sizes),
            ticks=tuple(int(tick * scale) for _, tick in venue.tick_sizes),
        )

    def units(self, price: Decimal | int) -> int:
        return int(Decimal(price).scaleb(self.decimals))

    def tick_at(self, units: int) -> int:
        return self.ticks[max(bisect_right(self.lowers, units) - 1, 0)]

    def on_grid(self, units: int) -> bool:
        return units > 0 and units % self.tick_at(units) == 0

    def floor(self, units: int) -> int:
        """The grid price at or below `units`, but at least the lowest positive one."""
        tick = self.tick_at(units)
        return max(units // tick * tick, self.ticks[0])

    def step_up(self, units: int) -> int:
        # Crossing into a coarser band lands on that band's grid, not the old band's.
        higher = units + self.tick_at(units)
        tick = self.tick_at(higher)
        return -(-higher // tick) * tick

    def step_down(self, units: int) -> int:
        """The next grid price below, or `units` itself when there is none above zero."""
        # The step below a band's lower bound is the finer tick of the band underneath.
        lower = units - self.tick_at(units - 1)
        tick = self.tick_at(lower)
        lower = lower // tick * tick
        return lower if lower > 0 else units

    def text(self, units: int) -> str:
        """Plain decimal text, never an exponent: '71000', '71000.5'."""
        if self.decimals == 0:
            return str(units)
        return format(Decimal(units).scaleb(-self.decimals).normalize(), "f")


# --- symbols ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instrument:
    code: str
    start_price: int  # grid units
    weight: float  # share of the day's continuous prints
    quantities: tuple[int, ...] = field(repr=False)  # quantile table of continuous trade sizes

    @property
    def mean_quantity(self) -> float:
        return sum(self.quantities) / len(self.quantities)


def _quantity_table(price: float) -> tuple[int, ...]:
    # Quantiles of a lognormal, so a uniform index draws a lognormal size with one lookup.
    median = max(MEDIAN_TRADE_VALUE / price, 1.0)
    scores = (
        NormalDist().inv_cdf((i + 0.5) / QUANTITY_QUANTILES) for i in range(QUANTITY_QUANTILES)
    )
    return tuple(
        min(max(round(median * math.exp(QUANTITY_SIGMA * z)), 1), MAX_QUANTITY) for z in scores
    )


def _symbol_universe(count: int) -> list[tuple[str, int]]:
    universe = list(KNOWN_SYMBOLS[:count])
    taken = {code for code, _ in universe}
    synth = random.Random(SYNTHETIC_UNIVERSE_SEED)
    low, high = SYNTHETIC_PRICE_RANGE
    while len(universe) < count:
        # Ordinary KRX shares carry codes ending in 0.
        code = f"{synth.randrange(1, 100_000) * 10:06d}"
        price = round(math.exp(synth.uniform(math.log(low), math.log(high))))
        if code not in taken:
            taken.add(code)
            universe.append((code, price))
    return universe


def instruments(count: int, grid: PriceGrid) -> tuple[Instrument, ...]:
    """The first `count` names of the universe, with deterministic, uneven activity shares."""
    universe = _symbol_universe(count)
    raw = [1.0 / (rank + 1) ** ACTIVITY_SKEW for rank in range(count)]
    total = sum(raw)
    return tuple(
        Instrument(
            code=code,
            start_price=grid.floor(grid.units(price)),
            weight=share / total,
            quantities=_quantity_table(price),
        )
        for (code, price), share in zip(universe, raw, strict=True)
    )


@dataclass
class Quotes:
    """Best bid and ask per symbol, carried from one trade date to the next."""

    bids: list[int]
    asks: list[int]

    @classmethod
    def opening(cls, listed: Sequence[Instrument], grid: PriceGrid) -> Quotes:
        bids = [instrument.start_price for instrument in listed]
        return cls(bids=bids, asks=[grid.step_up(bid) for bid in bids])


# --- session and windows ---------------------------------------------------------------------


@dataclass(frozen=True)
class DaySession:
    """One trade date's session as offsets in microseconds from the open (an instant in UTC)."""

    trade_date: date
    open_utc: datetime
    length_us: int  # open .. close, where the closing-auction prints are stamped
    continuous_us: int  # open .. end of continuous trading
    window_starts_us: tuple[int, ...]


def day_session(venue: Venue, trade_date: date, windows: int) -> DaySession:
    open_local, close_local = venue.session_bounds(trade_date)
    # Subtract in UTC: aware datetimes sharing a tzinfo subtract by wall clock, wrong across DST.
    open_utc = open_local.astimezone(UTC)
    length_us = (close_local.astimezone(UTC) - open_utc) // timedelta(microseconds=1)
    continuous_us = length_us - CLOSING_CALL // timedelta(microseconds=1)
    minutes = length_us // 60_000_000
    if continuous_us <= 0:
        raise ValueError(f"venue {venue.name}: session shorter than the closing call")
    if windows > minutes:
        raise ValueError(
            f"files_per_day ({windows}) exceeds the {minutes} minutes of the {venue.name} session"
        )
    length = _window_minutes(minutes, windows)
    offsets = [i * length for i in range(windows)] if length else _even_split(minutes, windows)
    starts = tuple(offset * 60_000_000 for offset in offsets)
    return DaySession(trade_date, open_utc, length_us, continuous_us, starts)


def _window_minutes(minutes: int, windows: int) -> int | None:
    """The roundest window length that cuts the session into exactly `windows` windows, as a
    collector would (7 windows of 09:00-15:30 are hourly), or None when no length does."""
    fitting = [length for length in range(1, minutes + 1) if -(-minutes // length) == windows]
    if not fitting:
        return None

    def roundness(length: int) -> int:
        if 60 % length == 0 or length % 60 == 0:
            return 0
        return 1 if length % 5 == 0 else 2

    return min(fitting, key=lambda length: (roundness(length), length))


def _even_split(minutes: int, windows: int) -> list[int]:
    # Whole minutes keep the HHMM file names distinct and in time order.
    return [i * minutes // windows for i in range(windows)]


def local_time(session: DaySession, offset_us: int, venue: Venue) -> datetime:
    return (session.open_utc + timedelta(microseconds=offset_us)).astimezone(venue.timezone)


def _arrival_rate(x: float) -> float:
    """Relative arrival rate at fraction `x` of the continuous session: a rush after the open,
    a lunch lull, and a pickup into the close."""
    opening = 4.0 * math.exp(-x / 0.04)
    closing = 2.0 * math.exp(-(1.0 - x) / 0.06)
    lunch = 0.35 * math.exp(-(((x - 0.55) / 0.1) ** 2))
    return 1.0 + opening + closing - lunch


@lru_cache(maxsize=1)
def _arrival_quantiles(steps: int = ARRIVAL_STEPS) -> tuple[float, ...]:
    """Session fractions x(u) at u = j/steps of the arrival rate's cumulative distribution:
    mapping sorted uniforms through them gives sorted arrival times with the U-shape."""
    fine = steps * 16
    cumulative = [0.0]
    previous = _arrival_rate(0.0)
    for i in range(1, fine + 1):
        current = _arrival_rate(i / fine)
        cumulative.append(cumulative[-1] + (previous + current) / 2)
        previous = current
    total = cumulative[-1]
    quantiles = [0.0]
    for j in range(1, steps):
        target = total * j / steps
        k = bisect_left(cumulative, target)
        below, above = cumulative[k - 1], cumulative[k]
        quantiles.append((k - 1 + (target - below) / (above - below)) / fine)
    quantiles.append(1.0)
    return tuple(quantiles)


@lru_cache(maxsize=4)
def _arrival_interpolation(continuous_us: int) -> tuple[list[float], list[float]]:
    """Bases and slopes of the piecewise-linear inverse arrival distribution, in microseconds.
    A sentinel entry at u = 1 keeps the hot loop free of a bounds check."""
    last = continuous_us - 1
    bases = [q * last for q in _arrival_quantiles()]
    slopes = [upper - lower for lower, upper in pairwise(bases)]
    slopes.append(0.0)
    return bases, slopes


# --- ticks -----------------------------------------------------------------------------------


def _move_probabilities(
    listed: Sequence[Instrument], quotes: Quotes, grid: PriceGrid, continuous: int
) -> list[float]:
    """Per symbol, the chance that a print moves the quote, so that the day's walk has about
    DAILY_VOLATILITY: a random walk of n steps of probability p has a variance of n*p ticks²."""
    chances = []
    for index, instrument in enumerate(listed):
        bid = quotes.bids[index]
        sigma_ticks = DAILY_VOLATILITY * bid / grid.tick_at(bid)
        prints = max(continuous * instrument.weight, 1.0)
        chances.append(min(sigma_ticks**2 / prints, MAX_MOVE_PROBABILITY))
    return chances


def _closing_quantity(instrument: Instrument, prints: float, rng: random.Random) -> int:
    volume = prints * instrument.mean_quantity * rng.uniform(*CLOSING_VOLUME_SHARE)
    # Never smaller than the largest continuous size, so the auction print stands out.
    return max(round(volume), instrument.quantities[-1])


def iter_day_ticks(
    session: DaySession,
    listed: Sequence[Instrument],
    grid: PriceGrid,
    quotes: Quotes,
    ticks: int,
    rng: random.Random,
    chunk_ticks: int = CHUNK_TICKS,
) -> Iterator[tuple[int, list[Tick]]]:
    """One trade date's `ticks` prints in time order, as (window index, chunk) pairs.

    Continuous prints arrive as `ticks - len(listed)` sorted uniform times drawn one at a time
    (each the minimum of the ones still to come), mapped through the U-shaped arrival curve; the
    symbol of each print is drawn by activity share. A buy prints at the ask, a sell at the bid,
    and now and then the aggressor moves the quote one tick its way. Then every symbol prints
    once at the close with no side. `quotes` is updated in place for the next day.
    """
    continuous = ticks - len(listed)
    bases, slopes = _arrival_interpolation(session.continuous_us)
    steps = float(len(bases) - 1)
    next_starts = (*session.window_starts_us[1:], session.length_us + 1)
    window, next_start = 0, next_starts[0]

    cumulative = []
    running = 0.0
    for instrument in listed:
        running += instrument.weight
        cumulative.append(running)
    cumulative[-1] = 1.0  # rounding must not leave a gap that bisect could fall into
    moves = _move_probabilities(listed, quotes, grid, continuous)
    lift_below = [chance / 2 for chance in moves]
    hit_above = [1.0 - chance / 2 for chance in moves]
    sizes = [instrument.quantities for instrument in listed]
    size_steps = len(sizes[0])
    bids, asks = quotes.bids, quotes.asks
    sequences = [0] * len(listed)
    step_up, step_down, draw = grid.step_up, grid.step_down, rng.random

    chunk: list[Tick] = []
    survival = 1.0
    for remaining in range(continuous, 0, -1):
        survival *= draw() ** (1.0 / remaining)
        x = steps - survival * steps
        i = int(x)
        at = int(bases[i] + (x - i) * slopes[i])
        if at >= next_start:
            if chunk:
                yield window, chunk
                chunk = []
            while at >= next_start:
                window += 1
                next_start = next_starts[window]
        symbol = bisect_right(cumulative, draw())
        r = draw()
        if r < 0.5:
            side = SIDE_BUY
            price = asks[symbol]
            if r < lift_below[symbol]:
                bids[symbol] = price
                asks[symbol] = step_up(price)
        else:
            side = SIDE_SELL
            price = bids[symbol]
            if r > hit_above[symbol]:
                lower = step_down(price)
                if lower != price:
                    asks[symbol] = price
                    bids[symbol] = lower
        sequence = sequences[symbol] + 1
        sequences[symbol] = sequence
        size = sizes[symbol][int(draw() * size_steps)]
        chunk.append((at // 1_000_000, at % 1_000_000, symbol, sequence, price, size, side))
        if len(chunk) >= chunk_ticks:
            yield window, chunk
            chunk = []

    close = session.length_us
    if close >= next_start:
        if chunk:
            yield window, chunk
            chunk = []
        while close >= next_start:
            window += 1
            next_start = next_starts[window]
    second, micro = divmod(close, 1_000_000)
    for symbol, instrument in enumerate(listed):
        price = bids[symbol] if draw() < 0.5 else asks[symbol]
        sequences[symbol] += 1
        size = _closing_quantity(instrument, max(continuous * instrument.weight, 1.0), rng)
        chunk.append((second, micro, symbol, sequences[symbol], price, size, SIDE_NONE))
        # The next day's quote opens around the closing price.
        bids[symbol] = price
        asks[symbol] = step_up(price)
    yield window, chunk
