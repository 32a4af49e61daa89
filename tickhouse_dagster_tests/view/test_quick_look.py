"""The quick look driven through Streamlit's app-testing API against a real embedded lakehouse
(SQLite catalog, local warehouse) holding ingested sample days: the chart has one candle per bar
of the chosen symbol, day and interval, and that is as many as the ticks' distinct intervals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tickhouse_dagster import cli, view
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.view.bars import Instrument

APP = Path(view.__file__).with_name("app.py")
TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))
SEOUL = ZoneInfo("Asia/Seoul")
LENGTH = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


def isolated_env(patch: pytest.MonkeyPatch, home: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("TICKHOUSE_", "PYICEBERG_CATALOG__")):
            patch.delenv(name)
    patch.setenv("TICKHOUSE_HOME", str(home))
    patch.setenv("DAGSTER_HOME", str(home / "dagster"))


@pytest.fixture(scope="module")
def lakehouse_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two KRX trading days (one file each), three symbols, ingested by the CLI's own commands."""
    home = tmp_path_factory.mktemp("quicklook") / "tickhouse"
    with pytest.MonkeyPatch.context() as patch:
        isolated_env(patch, home)
        args = "--days=2 --symbols=3 --ticks-per-day=4000 --files-per-day=1 --seed=11"
        assert cli.main(["generate", *args.split()]) == 0
        # The ingest in its own process: the code location's Definitions are built once per
        # process, from the environment of whoever imported them first.
        ingest = subprocess.run(
            [TICKHOUSE_CLI, "ingest"], capture_output=True, text=True, timeout=600
        )
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        yield home


def table(home: Path, name: str) -> pa.Table:
    catalog = load_lakehouse_catalog(
        CatalogSettings("tickhouse", str(home / "warehouse"), embedded_db=str(home / "catalog.db"))
    )
    return catalog.load_table(f"market.{name}").scan().to_arrow()


def run_app(home: Path, patch: pytest.MonkeyPatch) -> AppTest:
    isolated_env(patch, home)
    # Streamlit's caches live in the process: another test's lakehouse must not be reused.
    st.cache_data.clear()
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not app.exception, app.exception
    return app


def charts(app: AppTest) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each chart's Vega-Lite spec and the rows of the data it draws."""
    found = []
    for chart in [e for e in app.main if getattr(e, "type", None) == "vega_lite_chart"]:
        (dataset,) = chart.proto.datasets
        rows = pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()
        found.append((json.loads(chart.proto.spec), rows))
    return found


def candles(app: AppTest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The candlestick chart (wicks and bodies), after checking the volume chart below it draws
    one bar per candle from the same rows."""
    (candle_spec, rows), (volume_spec, volume_rows) = charts(app)
    assert [layer["mark"]["type"] for layer in candle_spec["layer"]] == ["rule", "bar"]
    assert volume_spec["mark"]["type"] == "bar"
    assert volume_spec["encoding"]["y"]["field"] == "volume"
    assert volume_rows == rows
    return candle_spec, rows


def select(app: AppTest, label: str, value: object) -> AppTest:
    (box,) = [b for b in app.sidebar.selectbox if b.label == label]
    box.set_value(value)
    app.run()
    assert not app.exception, app.exception
    return app


def tick_intervals(home: Path, instrument: Instrument, day: date, interval: str) -> int:
    """Distinct bar intervals of the symbol's ticks on that day, on the venue's clock: computed
    from the ticks table, independently of the bar builder."""
    ticks = table(home, "ticks").to_pylist()
    length = LENGTH[interval]
    starts = set()
    for t in ticks:
        if (t["venue"], t["symbol"], t["trade_date"]) != (instrument.venue, instrument.symbol, day):
            continue
        local = t["ts"].astimezone(SEOUL).replace(tzinfo=None)
        midnight = datetime.combine(local.date(), datetime.min.time())
        starts.add(midnight + ((local - midnight) // length) * length)
    return len(starts)


def bars_of(home: Path, interval: str, instrument: Instrument, days: set[date]) -> list[dict]:
    rows = table(home, f"ohlcv_{interval}").to_pylist()
    chosen = [
        r
        for r in rows
        if (r["venue"], r["symbol"]) == (instrument.venue, instrument.symbol)
        and r["trade_date"] in days
    ]
    return sorted(chosen, key=lambda r: r["bar_start"])


def test_candles_match_the_bars_of_the_chosen_symbol_day_and_interval(
    lakehouse_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = run_app(lakehouse_home, monkeypatch)
    symbol_box, interval_box, day_box = app.sidebar.selectbox
    assert (symbol_box.label, interval_box.label, day_box.label) == (
        "Symbol",
        "Interval",
        "Trade date",
    )
    assert len(symbol_box.options) == 3
    assert interval_box.options == ["1m", "5m", "1h", "1d"]
    assert interval_box.value == "5m"
    assert len(day_box.options) == 2

    instrument, day = symbol_box.value, day_box.value
    spec, rows = candles(app)
    expected = bars_of(lakehouse_home, "5m", instrument, {day})
    assert len(rows) == len(expected) == tick_intervals(lakehouse_home, instrument, day, "5m")
    assert len(rows) > 20
    assert spec["layer"][1]["encoding"]["y"]["field"] == "open"  # bodies from open to close
    assert spec["layer"][1]["encoding"]["y2"]["field"] == "close"
    first, last = rows[0], rows[-1]
    for drawn, bar in ((first, expected[0]), (last, expected[-1])):
        for column in ("open", "high", "low", "close"):
            assert drawn[column] == pytest.approx(float(bar[column]))
        assert drawn["volume"] == bar["volume"]
        # Drawn on the venue's clock: 09:00 KST is the first bar of the KRX session.
        assert drawn["bar_start"] == bar["bar_start"].astimezone(SEOUL).replace(tzinfo=None)
    assert first["bar_start"].time() == datetime.strptime("09:00", "%H:%M").time()

    # Another symbol, the other day, 1-minute bars: the chart follows every picker.
    # (The test API lists a selectbox's options as their labels.)
    label = next(o for o in symbol_box.options if o != instrument.label())
    symbol, venue = label.removesuffix(")").split(" (")
    other = Instrument(venue, symbol)
    other_day = date(2024, 1, 2) if day == date(2024, 1, 3) else date(2024, 1, 3)
    app = select(app, "Symbol", other)
    app = select(app, "Interval", "1m")
    app = select(app, "Trade date", other_day)
    assert [b.value for b in app.sidebar.selectbox] == [other, "1m", other_day]
    _, rows = candles(app)
    minute_bars = bars_of(lakehouse_home, "1m", other, {other_day})
    assert len(rows) == len(minute_bars) == tick_intervals(lakehouse_home, other, other_day, "1m")
    assert len(rows) > len(expected)


def test_daily_candles_cover_the_chosen_range_of_days(
    lakehouse_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = run_app(lakehouse_home, monkeypatch)
    app = select(app, "Interval", "1d")
    assert [b.label for b in app.sidebar.selectbox] == ["Symbol", "Interval"]
    (days,) = app.sidebar.select_slider
    instrument = app.sidebar.selectbox[0].value
    _, rows = candles(app)
    daily = bars_of(lakehouse_home, "1d", instrument, {date(2024, 1, 2), date(2024, 1, 3)})
    assert len(rows) == len(daily) == 2
    days.set_range(days.options[1], days.options[1]).run()
    _, rows = candles(app)
    assert len(rows) == 1


def test_an_empty_lakehouse_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = run_app(tmp_path / "empty", monkeypatch)
    assert "No bars yet" in app.info[0].value
    assert not charts(app)


def test_a_materialization_link_opens_its_interval_and_day(
    lakehouse_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The link a 1-minute bars materialization of the first day carries (defs/links.py).
    isolated_env(monkeypatch, lakehouse_home)
    st.cache_data.clear()
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.query_params["interval"] = "1m"
    app.query_params["trade_date"] = "2024-01-02"
    app.run()
    assert not app.exception, app.exception
    symbol_box, interval_box, day_box = app.sidebar.selectbox
    assert (interval_box.value, day_box.value) == ("1m", date(2024, 1, 2))
    _, rows = candles(app)
    assert len(rows) == len(bars_of(lakehouse_home, "1m", symbol_box.value, {date(2024, 1, 2)}))

    # A symbol named too; a day or interval the store does not have falls back to the defaults.
    other = next(o for o in symbol_box.options if o != symbol_box.value.label())
    symbol = other.removesuffix(")").split(" (")[0]
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.query_params.update({"symbol": symbol, "interval": "7m", "trade_date": "2023-06-01"})
    app.run()
    assert not app.exception, app.exception
    symbol_box, interval_box, day_box = app.sidebar.selectbox
    assert symbol_box.value.symbol == symbol
    assert (interval_box.value, day_box.value) == ("5m", date(2024, 1, 3))
