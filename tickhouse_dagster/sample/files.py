"""Writing a sample: one file per collection window and trading day, plain or gzip, each a
layout's header, its chunks of ticks and its footer. The same spec always yields byte-identical
files."""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.market.venues import venue as lookup_venue

# --- files -----------------------------------------------------------------------------------
from tickhouse_dagster.sample.layouts import LAYOUTS, DayContext, Layout, PriceTexts
from tickhouse_dagster.sample.market import (
    DaySession,
    PriceGrid,
    Quotes,
    Tick,
    day_session,
    instruments,
    iter_day_ticks,
    local_time,
)
from tickhouse_dagster.sample.spec import FILE_SUFFIXES, SampleSpec, trade_dates

TRADE_ID_WIDTH: Final = 6
GZIP_LEVEL: Final = 1  # level 6 compresses ~25% smaller but halves the write speed


class _WindowFile:
    """One collection window's file. Gzip members carry no name and a zero mtime, so a rerun
    writes byte-identical files."""

    def __init__(self, path: Path, layout: Layout, compress: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._layout = layout
        self._raw = path.open("wb")
        self._out = (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=GZIP_LEVEL
            )
            if compress
            else self._raw
        )
        self.write(layout.header())

    def write(self, text: str) -> None:
        self._out.write(text.encode())

    def close(self) -> None:
        self.write(self._layout.footer())
        self.release()

    def release(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()


def window_paths(spec: SampleSpec, venue: Venue, session: DaySession, out_dir: Path) -> list[Path]:
    day_dir = out_dir / spec.venue / f"{session.trade_date:%Y-%m-%d}"
    suffix = FILE_SUFFIXES[spec.profile] + (".gz" if spec.gzip else "")
    return [
        day_dir / f"trades_{local_time(session, start, venue):%H%M}{suffix}"
        for start in session.window_starts_us
    ]


def _write_day(
    spec: SampleSpec,
    day: DayContext,
    ticks: Iterator[tuple[int, list[Tick]]],
    paths: Sequence[Path],
) -> None:
    layout = LAYOUTS[spec.profile](day)
    current: _WindowFile | None = None
    opened = -1

    def advance_to(window: int) -> _WindowFile:
        nonlocal current, opened
        while opened < window:
            if current is not None:
                current.close()
            opened += 1
            current = _WindowFile(paths[opened], layout, spec.gzip)
        assert current is not None
        return current

    try:
        for window, chunk in ticks:
            advance_to(window).write(layout.body(chunk))
        # Windows after the last print still get their (empty) file: collection ran, nothing
        # traded.
        advance_to(len(paths) - 1).close()
    except BaseException:
        if current is not None:
            current.release()  # leave the partial file unterminated: it must not look complete
        raise


def generate(spec: SampleSpec, out_dir: Path) -> list[Path]:
    """Writes the files, returns their paths (sorted)."""
    market = lookup_venue(spec.venue)
    grid = PriceGrid.of(market)
    listed = instruments(spec.symbols, grid)
    quotes = Quotes.opening(listed, grid)
    rng = random.Random(spec.seed)
    id_width = max(TRADE_ID_WIDTH, len(str(spec.ticks_per_day)))
    codes = tuple(instrument.code for instrument in listed)
    prices = PriceTexts(grid)
    written: list[Path] = []
    for trade_date in trade_dates(spec.start_date, spec.days):
        session = day_session(market, trade_date, spec.files_per_day)
        paths = window_paths(spec, market, session, Path(out_dir))
        day = DayContext(market, session, codes, prices, id_width)
        ticks = iter_day_ticks(session, listed, grid, quotes, spec.ticks_per_day, rng)
        _write_day(spec, day, ticks, paths)
        written.extend(paths)
    return sorted(written)
