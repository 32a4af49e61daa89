"""The XML layouts sample ticks are written in: the project's own `tickhouse` layout and FIXML
4.4 trade capture reports (`fixml`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol
from xml.sax.saxutils import escape

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.sample.market import DaySession, PriceGrid, Tick

FIXML_NAMESPACE: Final = "http://www.fixprotocol.org/FIXML-4-4"


# --- layouts ---------------------------------------------------------------------------------


class _TextBySecond(dict[int, str]):
    """Text per second since the session open, built on first use: formatting a datetime per
    tick would cost more than everything else the generator does for it."""

    def __init__(self, render: Callable[[int], str]) -> None:
        super().__init__()
        self._render = render

    def __missing__(self, second: int) -> str:
        text = self[second] = self._render(second)
        return text


class PriceTexts(dict[int, str]):
    """Price text per grid price, built on first use (a day revisits the same few hundred)."""

    def __init__(self, grid: PriceGrid) -> None:
        super().__init__()
        self._grid = grid

    def __missing__(self, units: int) -> str:
        text = self[units] = self._grid.text(units)
        return text


@dataclass(frozen=True)
class DayContext:
    """What a layout needs besides the ticks: the trade date's session and the text tables."""

    venue: Venue
    session: DaySession
    codes: tuple[str, ...]
    prices: PriceTexts
    id_width: int

    def moment(self, second: int) -> datetime:
        return self.session.open_utc + timedelta(seconds=second)


class Layout(Protocol):
    def header(self) -> str: ...

    def body(self, ticks: list[Tick]) -> str: ...

    def footer(self) -> str: ...


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


class TickhouseLayout:
    """The project's own layout: one <trade/> per line, ts in the venue's local time."""

    def __init__(self, day: DayContext) -> None:
        self._day = day
        tz = day.venue.timezone
        # ISO text split around the microseconds: '2024-01-02T09:00:00.' and '+09:00'.
        self._before_us = _TextBySecond(
            lambda s: day.moment(s).astimezone(tz).isoformat(timespec="seconds")[:19] + "."
        )
        self._offsets = _TextBySecond(
            lambda s: day.moment(s).astimezone(tz).isoformat(timespec="seconds")[19:]
        )
        self._sides = ("", ' side="B"', ' side="S"')
        self._id_format = f"0{day.id_width}d"

    def header(self) -> str:
        day = self._day
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<tickhouse version="1" venue="{_attr(day.venue.name)}" '
            f'trade_date="{day.session.trade_date.isoformat()}">\n'
        )

    def body(self, ticks: list[Tick]) -> str:
        offsets = self._offsets
        offset = offsets[ticks[0][0]]
        if offsets[ticks[-1][0]] == offset:
            return self._render(ticks, offset)
        # The UTC offset changes inside this chunk (a DST switch in session): tick by tick.
        return "".join(self._render([tick], offsets[tick[0]]) for tick in ticks)

    def _render(self, ticks: list[Tick], offset: str) -> str:
        codes, prices, id_format = self._day.codes, self._day.prices, self._id_format
        before, sides = self._before_us, self._sides
        return "".join(
            [
                f'  <trade id="{seq:{id_format}}" symbol="{codes[sym]}" '
                f'ts="{before[sec]}{us:06d}{offset}" price="{prices[px]}" '
                f'qty="{qty}"{sides[side]}/>\n'
                for sec, us, sym, seq, px, qty, side in ticks
            ]
        )

    def footer(self) -> str:
        return "</tickhouse>\n"


class FixmlLayout:
    """FIXML 4.4 trade capture reports in one <Batch>, TxnTm in UTC."""

    def __init__(self, day: DayContext) -> None:
        self._day = day
        venue = _attr(day.venue.name)
        trade_date = day.session.trade_date
        self._report_prefixes = tuple(f"{venue}-{trade_date:%Y%m%d}-{code}-" for code in day.codes)
        self._instruments = tuple(
            f'      <Instrmt Sym="{code}" Exch="{venue}"/>\n' for code in day.codes
        )
        self._before_us = _TextBySecond(lambda s: day.moment(s).strftime("%Y-%m-%dT%H:%M:%S."))
        self._sides = ("", '      <RptSide Side="1"/>\n', '      <RptSide Side="2"/>\n')
        self._id_format = f"0{day.id_width}d"

    def header(self) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<FIXML xmlns="{FIXML_NAMESPACE}" v="4.4">\n'
            "  <Batch>\n"
        )

    def body(self, ticks: list[Tick]) -> str:
        prices, id_format = self._day.prices, self._id_format
        prefixes, instruments = self._report_prefixes, self._instruments
        before, sides = self._before_us, self._sides
        trade_date = self._day.session.trade_date.isoformat()
        return "".join(
            [
                f'    <TrdCaptRpt RptID="{prefixes[sym]}{trade_id}" TrdID="{trade_id}" '
                f'TransTyp="0" LastQty="{qty}" LastPx="{prices[px]}" TrdDt="{trade_date}" '
                f'TxnTm="{before[sec]}{us:06d}Z">\n'
                f"{instruments[sym]}{sides[side]}    </TrdCaptRpt>\n"
                for sec, us, sym, seq, px, qty, side in ticks
                for trade_id in [f"{seq:{id_format}}"]
            ]
        )

    def footer(self) -> str:
        return "  </Batch>\n</FIXML>\n"


LAYOUTS: Final[dict[str, Callable[[DayContext], Layout]]] = {
    "tickhouse": TickhouseLayout,
    "fixml": FixmlLayout,
}
