"""The sample generator, checked on real files parsed back with lxml: reproducibility, counts,
file layout and the market invariants the pipeline's checks rely on."""

from __future__ import annotations

import gzip
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from tickhouse_dagster.market.venues import Session, Venue, venue
from tickhouse_dagster.sample import SampleSpec, expected_tick_count, generate
from tickhouse_dagster.sample.layouts import DayContext, PriceTexts, TickhouseLayout
from tickhouse_dagster.sample.market import (
    KNOWN_SYMBOLS,
    PriceGrid,
    Quotes,
    day_session,
    instruments,
    iter_day_ticks,
)
from tickhouse_dagster.sample.spec import trade_dates

KRX = venue("KRX")
FIXML_NS = "{http://www.fixprotocol.org/FIXML-4-4}"
FIXML_SIDES = {"1": "B", "2": "S"}

# Friday, then Monday and Tuesday: the weekend in between is skipped.
SPEC = SampleSpec(
    days=3, symbols=24, ticks_per_day=3_000, files_per_day=7, start_date=date(2024, 1, 5)
)
TRADE_DATES = [date(2024, 1, 5), date(2024, 1, 8), date(2024, 1, 9)]
HOURLY = ["0900", "1000", "1100", "1200", "1300", "1400", "1500"]


@dataclass(frozen=True)
class ParsedTick:
    trade_date: date
    symbol: str
    trade_id: str
    ts: datetime  # aware
    price: Decimal
    quantity: int
    side: str | None


def read_ticks(path: Path) -> list[ParsedTick]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        root = etree.parse(stream).getroot()
    if root.tag == "tickhouse":
        assert root.get("venue") == "KRX"
        trade_date = date.fromisoformat(root.get("trade_date"))
        return [
            ParsedTick(
                trade_date=trade_date,
                symbol=trade.get("symbol"),
                trade_id=trade.get("id"),
                ts=datetime.fromisoformat(trade.get("ts")),
                price=Decimal(trade.get("price")),
                quantity=int(trade.get("qty")),
                side=trade.get("side"),
            )
            for trade in root.iterchildren("trade")
        ]
    assert root.tag == f"{FIXML_NS}FIXML"
    ticks = []
    for report in root.iter(f"{FIXML_NS}TrdCaptRpt"):
        instrument = report.find(f"{FIXML_NS}Instrmt")
        side = report.find(f"{FIXML_NS}RptSide")
        tick = ParsedTick(
            trade_date=date.fromisoformat(report.get("TrdDt")),
            symbol=instrument.get("Sym"),
            trade_id=report.get("TrdID"),
            ts=datetime.fromisoformat(report.get("TxnTm")),
            price=Decimal(report.get("LastPx")),
            quantity=int(report.get("LastQty")),
            side=None if side is None else FIXML_SIDES[side.get("Side")],
        )
        assert instrument.get("Exch") == "KRX"
        assert report.get("TransTyp") == "0"
        assert report.get("RptID") == f"KRX-{tick.trade_date:%Y%m%d}-{tick.symbol}-{tick.trade_id}"
        assert report.get("TxnTm").endswith("Z")
        ticks.append(tick)
    return ticks


def read_all(paths: list[Path]) -> list[ParsedTick]:
    return [tick for path in paths for tick in read_ticks(path)]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], list[Path]]:
    out = tmp_path_factory.mktemp("samples")
    return {
        (profile, packed): generate(replace(SPEC, profile=profile, gzip=packed), out)
        for profile in ("tickhouse", "fixml")
        for packed in (False, True)
    }


def relative_bytes(paths: list[Path], root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in paths}


# --- reproducibility -------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "packed"), [("tickhouse", True), ("fixml", False)])
def test_same_seed_writes_byte_identical_files(tmp_path: Path, profile: str, packed: bool) -> None:
    spec = replace(SPEC, profile=profile, gzip=packed)
    first = relative_bytes(generate(spec, tmp_path / "a"), tmp_path / "a")
    second = relative_bytes(generate(spec, tmp_path / "b"), tmp_path / "b")
    assert first == second


def test_another_seed_writes_other_ticks(tmp_path: Path) -> None:
    first = relative_bytes(generate(SPEC, tmp_path / "a"), tmp_path / "a")
    second = relative_bytes(generate(replace(SPEC, seed=7), tmp_path / "b"), tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)


# --- counts and files ------------------------------------------------------------------------


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("profile", ["tickhouse", "fixml"])
def test_every_tick_is_written_once(samples: dict, profile: str, packed: bool) -> None:
    ticks = read_all(samples[profile, packed])
    assert len(ticks) == expected_tick_count(SPEC) == 9_000
    per_day = Counter(tick.trade_date for tick in ticks)
    assert per_day == dict.fromkeys(TRADE_DATES, SPEC.ticks_per_day)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("profile", ["tickhouse", "fixml"])
def test_files_per_day_named_by_window_start(
    samples: dict, tmp_path_factory: pytest.TempPathFactory, profile: str, packed: bool
) -> None:
    paths = samples[profile, packed]
    assert paths == sorted(paths)
    suffix = {"tickhouse": ".xml", "fixml": ".fixml.xml"}[profile] + (".gz" if packed else "")
    names = defaultdict(list)
    for path in paths:
        assert path.parent.parent.name == "KRX"
        assert path.name.endswith(suffix)
        names[date.fromisoformat(path.parent.name)].append(path.name)
    # 7 windows of the 09:00-15:30 session are the hourly files a collector would write.
    expected = [f"trades_{hhmm}{suffix}" for hhmm in HOURLY]
    assert names == dict.fromkeys(TRADE_DATES, expected)


def test_weekends_are_skipped() -> None:
    assert trade_dates(date(2024, 1, 5), 3) == TRADE_DATES
    assert trade_dates(date(2024, 1, 6), 1) == [date(2024, 1, 8)]  # a Saturday start


def test_only_closing_prints_when_ticks_equal_symbols(tmp_path: Path) -> None:
    spec = SampleSpec(symbols=3, ticks_per_day=3, files_per_day=2)
    paths = generate(spec, tmp_path)
    assert [path.name for path in paths] == ["trades_0900.xml", "trades_1300.xml"]
    assert read_ticks(paths[0]) == []  # a window without prints is still a well-formed file
    closing = read_ticks(paths[1])
    assert [(tick.trade_id, tick.side) for tick in closing] == [("000001", None)] * 3


def test_trade_ids_count_up_per_symbol_and_day(tmp_path: Path) -> None:
    spec = SampleSpec(days=2, symbols=2, ticks_per_day=200, files_per_day=3)
    ids: dict[tuple[date, str], list[str]] = defaultdict(list)
    for tick in read_all(generate(spec, tmp_path)):
        ids[tick.trade_date, tick.symbol].append(tick.trade_id)
    assert len(ids) == 4
    for sequence in ids.values():
        assert sequence == [f"{n:06d}" for n in range(1, len(sequence) + 1)]


# --- market realism --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["tickhouse", "fixml"])
def test_ticks_look_like_krx_prints(samples: dict, profile: str) -> None:
    ticks = read_all(samples[profile, False])
    open_at, close_at = time(9, 0), time(15, 30)
    closing: dict[tuple[date, str], list[ParsedTick]] = defaultdict(list)
    last_seen: dict[tuple[date, str], datetime] = {}
    ids: set[tuple[date, str, str]] = set()
    for tick in ticks:
        local = tick.ts.astimezone(KRX.timezone)
        assert KRX.on_grid(tick.price), tick
        assert tick.price > 0 and tick.quantity > 0
        assert open_at <= local.time() <= close_at, tick
        assert local.date() == tick.trade_date, tick
        key = (tick.trade_date, tick.symbol)
        assert key not in last_seen or last_seen[key] <= tick.ts, tick
        last_seen[key] = tick.ts
        assert (*key, tick.trade_id) not in ids, tick
        ids.add((*key, tick.trade_id))
        if local.time() == close_at:
            closing[key].append(tick)
        else:
            # Continuous trading stops at 15:20 for the closing call.
            assert local.time() < time(15, 20), tick
            assert tick.side in ("B", "S"), tick
            assert 1 <= tick.quantity <= 5_000, tick
    symbols = {symbol for _, symbol in last_seen}
    assert len(symbols) == SPEC.symbols
    assert all(re.fullmatch(r"\d{6}", symbol) for symbol in symbols)
    assert set(closing) == {(day, symbol) for day in TRADE_DATES for symbol in symbols}
    for prints in closing.values():
        assert len(prints) == 1
        assert prints[0].side is None
        assert prints[0].ts.astimezone(KRX.timezone).microsecond == 0


def test_files_hold_their_window_in_time_order(samples: dict) -> None:
    for path in samples["tickhouse", False]:
        stamps = [tick.ts for tick in read_ticks(path)]
        assert stamps == sorted(stamps), path
        trade_date = date.fromisoformat(path.parent.name)
        hhmm = path.name.removeprefix("trades_").removesuffix(".xml")
        start = datetime.combine(trade_date, time(int(hhmm[:2]), int(hhmm[2:])), KRX.timezone)
        end = start + timedelta(hours=1)
        assert all(start <= stamp < end for stamp in stamps), path


def test_activity_is_uneven_and_busiest_at_the_open(samples: dict) -> None:
    ticks = read_all(samples["tickhouse", False])
    per_symbol = Counter(tick.symbol for tick in ticks).most_common()
    assert per_symbol[0][0] == "005930"
    assert per_symbol[0][1] > 3 * per_symbol[-1][1]
    per_hour = Counter(tick.ts.astimezone(KRX.timezone).hour for tick in ticks)
    assert per_hour[9] > per_hour[12] and per_hour[14] > per_hour[12]


def test_both_profiles_carry_the_same_ticks(samples: dict) -> None:
    def normalized(ticks: list[ParsedTick]) -> list[tuple]:
        return [
            (t.trade_date, t.symbol, t.trade_id, t.ts.astimezone(UTC), t.price, t.quantity, t.side)
            for t in ticks
        ]

    own = normalized(read_all(samples["tickhouse", False]))
    assert own == normalized(read_all(samples["fixml", True]))
    assert own == normalized(read_all(samples["tickhouse", True]))


# --- building blocks -------------------------------------------------------------------------


def test_price_grid_steps_across_krx_bands() -> None:
    grid = PriceGrid.of(KRX)
    assert grid.step_up(49_950) == 50_000
    assert grid.step_up(50_000) == 50_100
    assert grid.step_down(50_000) == 49_950
    assert grid.step_down(2_000) == 1_999
    assert grid.step_up(199_900) == 200_000
    assert grid.step_down(1) == 1  # never to zero
    assert grid.floor(71_234) == 71_200
    assert all(
        KRX.on_grid(Decimal(grid.text(price)))
        for price in range(1, 600_000, 997)
        if grid.on_grid(price)
    )


def test_price_text_is_plain_decimal() -> None:
    nymex = PriceGrid.of(venue("NYMEX"))
    assert nymex.decimals == 2
    assert nymex.text(7_100_050) == "71000.5"
    assert nymex.text(7_100_000) == "71000"
    assert nymex.text(7) == "0.07"


def test_symbols_beyond_the_known_list_are_synthesized_deterministically() -> None:
    grid = PriceGrid.of(KRX)
    listed = instruments(60, grid)
    codes = [instrument.code for instrument in listed]
    assert codes[: len(KNOWN_SYMBOLS)] == [code for code, _ in KNOWN_SYMBOLS]
    assert len(set(codes)) == 60 and all(re.fullmatch(r"\d{6}", code) for code in codes)
    assert codes == [instrument.code for instrument in instruments(60, grid)]
    assert all(grid.on_grid(instrument.start_price) for instrument in listed)
    assert sum(instrument.weight for instrument in listed) == pytest.approx(1.0)


def test_offset_follows_a_dst_switch_inside_the_session() -> None:
    # 2024-03-31 02:00 CET -> 03:00 CEST, inside a 01:00-05:00 session.
    berlin = Venue(
        name="XTEST",
        timezone=ZoneInfo("Europe/Berlin"),
        sessions=(Session.of(time(1, 0), time(5, 0)),),
        tick_sizes=((Decimal(0), Decimal("0.01")),),
    )
    grid = PriceGrid.of(berlin)
    listed = instruments(2, grid)
    session = day_session(berlin, date(2024, 3, 31), 1)
    assert session.length_us == 3 * 3_600_000_000  # three real hours, not four on the wall clock
    day = DayContext(berlin, session, tuple(i.code for i in listed), PriceTexts(grid), 6)
    layout = TickhouseLayout(day)
    chunks = iter_day_ticks(
        session, listed, grid, Quotes.opening(listed, grid), 500, random.Random(1), 64
    )
    text = "".join(layout.body(chunk) for _, chunk in chunks)
    stamps = [datetime.fromisoformat(ts) for ts in re.findall(r'ts="([^"]+)"', text)]
    assert len(stamps) == 500
    assert {stamp.utcoffset() for stamp in stamps} == {timedelta(hours=1), timedelta(hours=2)}
    assert stamps == sorted(stamps)
    assert all(
        stamp.astimezone(berlin.timezone).utcoffset() == stamp.utcoffset() for stamp in stamps
    )


def test_invalid_specs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="closing print per symbol"):
        SampleSpec(symbols=5, ticks_per_day=4)
    with pytest.raises(ValueError, match="profile"):
        SampleSpec(profile="csv")
    with pytest.raises(ValueError, match="files_per_day"):
        SampleSpec(files_per_day=0)
    with pytest.raises(ValueError, match="files_per_day"):
        generate(SampleSpec(files_per_day=391, ticks_per_day=10), tmp_path)
