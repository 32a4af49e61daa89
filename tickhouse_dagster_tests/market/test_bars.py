"""Bar math against bars computed by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from tickhouse_dagster.core.contract import BARS_ARROW, TICKS_ARROW
from tickhouse_dagster_tests.tables import build_bars

UTC = UTC
SEOUL = ZoneInfo("Asia/Seoul")
INGESTED = datetime(2024, 1, 3, tzinfo=UTC)


def tick(
    local: str,
    trade_id: str,
    price: str,
    qty: int,
    *,
    symbol="005930",
    day=date(2024, 1, 2),
    source="a.xml",
    ingested=INGESTED,
    venue="KRX",
    zone=SEOUL,
) -> dict:
    ts = datetime.fromisoformat(f"{day.isoformat()}T{local}").replace(tzinfo=zone).astimezone(UTC)
    return {
        "venue": venue,
        "symbol": symbol,
        "trade_date": day,
        "ts": ts,
        "trade_id": trade_id,
        "price": Decimal(price),
        "quantity": qty,
        "side": None,
        "source_file": source,
        "ingested_at": ingested,
    }


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=TICKS_ARROW)


def seoul(day: date, clock: str) -> datetime:
    return (
        datetime.fromisoformat(f"{day.isoformat()}T{clock}").replace(tzinfo=SEOUL).astimezone(UTC)
    )


def test_one_minute_bars_open_close_by_ts_then_trade_id(venues):
    rows = [
        tick("09:00:10", "000003", "71100", 5),
        tick("09:00:00", "000002", "71000", 10),  # same ts as 000001: trade id breaks the tie
        tick("09:00:00", "000001", "70900", 1),
        tick("09:00:59.999999", "000004", "71200", 2),
        tick("09:01:00", "000005", "71300", 7),  # next bar: the interval is left-closed
    ]
    bars = build_bars(table(rows), "1m", venues)
    assert bars.schema == BARS_ARROW
    first, second = bars.to_pylist()
    assert first["bar_start"] == seoul(date(2024, 1, 2), "09:00:00")
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        Decimal("70900"),
        Decimal("71200"),
        Decimal("70900"),
        Decimal("71200"),
    )
    assert first["volume"] == 18 and first["trade_count"] == 4
    # turnover 70900*1 + 71000*10 + 71100*5 + 71200*2 = 1,278,800 ; vwap 1278800 / 18 = 71044.444444…
    assert first["turnover"] == Decimal("1278800")
    assert first["vwap"] == Decimal("71044.444444")
    assert second["bar_start"] == seoul(date(2024, 1, 2), "09:01:00")
    assert (second["open"], second["close"], second["volume"]) == (
        Decimal("71300"),
        Decimal("71300"),
        7,
    )


def test_vwap_rounds_half_even_and_decimals_stay_exact(venues):
    # turnover 0.000001*1 + 0.000002*1 = 0.000003 ; /2 = 0.0000015 -> half-even -> 0.000002
    rows = [tick("09:00:00", "1", "0.000001", 1), tick("09:00:01", "2", "0.000002", 1)]
    assert build_bars(table(rows), "1m", venues)["vwap"].to_pylist() == [Decimal("0.000002")]
    # 0.000001*1 + 0.000004*1 = 0.000005 ; /2 = 0.0000025 -> half-even -> 0.000002 (not 0.000003)
    rows = [tick("09:00:00", "1", "0.000001", 1), tick("09:00:01", "2", "0.000004", 1)]
    assert build_bars(table(rows), "1m", venues)["vwap"].to_pylist() == [Decimal("0.000002")]
    # 0.1 + 0.2 is exactly 0.3 here, unlike binary floats
    rows = [tick("09:00:00", "1", "0.1", 1), tick("09:00:01", "2", "0.2", 1)]
    assert build_bars(table(rows), "1m", venues)["turnover"].to_pylist() == [Decimal("0.3")]


def test_closing_auction_print_makes_its_own_bar(venues):
    rows = [tick("15:19:59", "1", "71000", 3), tick("15:30:00", "2", "71100", 35000)]
    five = build_bars(table(rows), "5m", venues).to_pylist()
    assert [b["bar_start"] for b in five] == [
        seoul(date(2024, 1, 2), "15:15:00"),
        seoul(date(2024, 1, 2), "15:30:00"),
    ]
    hour = build_bars(table(rows), "1h", venues).to_pylist()
    assert [b["bar_start"] for b in hour] == [seoul(date(2024, 1, 2), "15:00:00")]
    assert hour[0]["close"] == Decimal("71100") and hour[0]["volume"] == 35003


def test_day_crossing_utc_midnight_stays_one_trade_date(venues):
    # 08:30 Seoul is 23:30 UTC the day before; 09:10 Seoul is 00:10 UTC.
    rows = [tick("08:30:00", "1", "100", 1), tick("09:10:00", "2", "110", 1)]
    daily = build_bars(table(rows), "1d", venues).to_pylist()
    assert len(daily) == 1
    assert daily[0]["bar_start"] == datetime(2024, 1, 1, 15, 0, tzinfo=UTC)  # 00:00 Seoul
    assert daily[0]["trade_date"] == date(2024, 1, 2)
    hourly = build_bars(table(rows), "1h", venues).to_pylist()
    assert [b["bar_start"] for b in hourly] == [
        datetime(2024, 1, 1, 23, 0, tzinfo=UTC),
        datetime(2024, 1, 2, 0, 0, tzinfo=UTC),
    ]


def test_hour_bars_follow_the_venue_clock_not_utc(venues):
    krx = venues["KRX"]
    india = {**venues, "NSE": replace(krx, name="NSE", timezone=ZoneInfo("Asia/Kolkata"))}
    rows = [
        tick("09:15:00", "1", "100", 1, venue="NSE", zone=ZoneInfo("Asia/Kolkata")),
        tick("09:59:00", "2", "101", 1, venue="NSE", zone=ZoneInfo("Asia/Kolkata")),
    ]
    hourly = build_bars(table(rows), "1h", india).to_pylist()
    # 09:00 in Kolkata (+05:30) is 03:30 UTC: a UTC-aligned hour would split these two trades.
    assert [b["bar_start"] for b in hourly] == [datetime(2024, 1, 2, 3, 30, tzinfo=UTC)]


def test_duplicates_across_files_count_once_first_ingested_copy_wins(venues):
    later = INGESTED + timedelta(hours=1)
    rows = [
        tick("09:00:00", "1", "100", 5, source="a.xml"),
        tick("09:00:01", "2", "101", 5, source="a.xml"),
        tick("09:00:01", "2", "999", 7, source="b.xml", ingested=later),  # same trade, later file
        tick("09:00:02", "3", "102", 5, source="b.xml", ingested=later),
    ]
    bar = build_bars(table(rows), "1m", venues).to_pylist()[0]
    assert bar["trade_count"] == 3 and bar["volume"] == 15
    assert bar["high"] == Decimal("102")  # the 999 copy from the later file does not count


def test_no_empty_bars_and_one_row_per_symbol(venues):
    rows = [
        tick("09:00:00", "1", "100", 1),
        tick("11:00:00", "2", "100", 1),
        tick("09:00:00", "1", "50", 1, symbol="000660"),
    ]
    bars = build_bars(table(rows), "1m", venues)
    assert sorted((b["symbol"], b["bar_start"]) for b in bars.to_pylist()) == sorted(
        [
            ("005930", seoul(date(2024, 1, 2), "09:00:00")),
            ("005930", seoul(date(2024, 1, 2), "11:00:00")),
            ("000660", seoul(date(2024, 1, 2), "09:00:00")),
        ]
    )
    assert build_bars(table([]), "1d", venues).num_rows == 0


def test_unknown_interval_is_refused(venues):
    with pytest.raises(ValueError, match="unknown bar interval '2m'"):
        build_bars(table([]), "2m", venues)


def test_minute_bars_on_a_clock_whose_offset_has_seconds(venues):
    """Monrovia ran at UTC-00:44:30 until 1972: a local minute is not a UTC minute, so the
    builder's UTC-minute shortcut must give way to the venue's own clock."""
    monrovia = ZoneInfo("Africa/Monrovia")
    liberia = {**venues, "LBX": replace(venues["KRX"], name="LBX", timezone=monrovia)}
    day = date(1970, 6, 1)
    rows = [
        tick("09:00:10", "1", "100", 1, venue="LBX", zone=monrovia, day=day),
        tick("09:00:50", "2", "101", 1, venue="LBX", zone=monrovia, day=day),  # 09:45:20 UTC
        tick("09:01:10", "3", "102", 1, venue="LBX", zone=monrovia, day=day),
    ]
    minutes = build_bars(table(rows), "1m", liberia).to_pylist()
    nine = datetime(1970, 6, 1, 9, 0, tzinfo=monrovia)
    assert [(b["bar_start"], b["trade_count"]) for b in minutes] == [
        (nine, 2),
        (nine + timedelta(minutes=1), 1),
    ]
    assert [b["close"] for b in minutes] == [Decimal("101"), Decimal("102")]


def test_hour_bars_where_the_offset_changed_by_half_an_hour(venues):
    """Pyongyang moved from +09:00 to +08:30 in 2015: its hour bars still start on its local
    hour (DuckDB's zoned time_bucket would align them to the offset of its 2000 origin)."""
    pyongyang = ZoneInfo("Asia/Pyongyang")
    korea = {**venues, "PYX": replace(venues["KRX"], name="PYX", timezone=pyongyang)}
    day = date(2016, 3, 2)
    rows = [
        tick("09:10:00", "1", "100", 1, venue="PYX", zone=pyongyang, day=day),
        tick("09:50:00", "2", "101", 1, venue="PYX", zone=pyongyang, day=day),
    ]
    for interval in ("5m", "1h"):
        bars = build_bars(table(rows), interval, korea).to_pylist()
        assert all(b["bar_start"].astimezone(pyongyang).minute % 5 == 0 for b in bars), interval
    hourly = build_bars(table(rows), "1h", korea).to_pylist()
    assert [(b["bar_start"], b["trade_count"]) for b in hourly] == [
        (datetime(2016, 3, 2, 9, 0, tzinfo=pyongyang), 2)
    ]


def test_a_repeated_dst_hour_gives_two_bars(venues):
    """When London's clocks go back, 01:00-02:00 happens twice: trades in each run keep their
    own bar (left-closed intervals of real time), labelled with their own offset."""
    london = ZoneInfo("Europe/London")
    lse = {**venues, "LSE": replace(venues["KRX"], name="LSE", timezone=london)}
    day = date(2024, 10, 27)
    first = datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 01:30 BST
    second = datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 01:30 GMT
    rows = [
        {**tick("00:00:00", "1", "100", 1, venue="LSE", day=day), "ts": first},
        {**tick("00:00:00", "2", "101", 1, venue="LSE", day=day), "ts": second},
    ]
    hourly = build_bars(table(rows), "1h", lse).to_pylist()
    assert [(b["bar_start"], b["trade_count"]) for b in hourly] == [
        (datetime(2024, 10, 27, 0, 0, tzinfo=UTC), 1),
        (datetime(2024, 10, 27, 1, 0, tzinfo=UTC), 1),
    ]


def test_rolling_up_stored_minute_bars_gives_the_builders_own_bars(venues):
    """`roll_up_bars` over minute bars as stored (vwap column and all) is exactly what the
    builder rolls up itself, for every coarser interval and both venues' clocks."""
    import random

    from tickhouse_dagster.market.bars import build_all_bars, roll_up_bars

    rng = random.Random(7)
    rows = []
    for n in range(400):
        local = f"{rng.randint(9, 15):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        price = f"{rng.randint(70000, 72000)}.{rng.randint(0, 99):02d}"
        venue, zone = rng.choice([("KRX", SEOUL), ("NYMEX", ZoneInfo("America/New_York"))])
        symbol = rng.choice(["A", "B"])
        rows.append(
            tick(local, str(n), price, rng.randint(1, 500), symbol=symbol, venue=venue, zone=zone)
        )
    intervals = ("1m", "5m", "15m", "1h", "1d")
    built = build_all_bars(table(rows), venues, intervals)
    for interval in intervals[1:]:
        assert roll_up_bars(built["1m"], interval, venues).equals(built[interval]), interval
    assert built["15m"].num_rows > built["1h"].num_rows


def test_fifteen_minute_bars_start_on_the_local_quarter_hour(venues):
    from tickhouse_dagster.market.bars import roll_up_bars

    monrovia = ZoneInfo("Africa/Monrovia")
    liberia = {**venues, "LBX": replace(venues["KRX"], name="LBX", timezone=monrovia)}
    day = date(1970, 6, 1)
    rows = [
        tick("09:14:10", "1", "100", 1, venue="LBX", zone=monrovia, day=day),
        tick("09:14:50", "2", "103", 3, venue="LBX", zone=monrovia, day=day),
        tick("09:15:10", "3", "102", 1, venue="LBX", zone=monrovia, day=day),
    ]
    bars = roll_up_bars(build_bars(table(rows), "1m", liberia), "15m", liberia).to_pylist()
    nine = datetime(1970, 6, 1, 9, 0, tzinfo=monrovia)
    assert [(b["bar_start"], b["open"], b["close"], b["volume"], b["vwap"]) for b in bars] == [
        (nine, Decimal("100"), Decimal("103"), 4, Decimal("102.250000")),
        (nine + timedelta(minutes=15), Decimal("102"), Decimal("102"), 1, Decimal("102")),
    ]
