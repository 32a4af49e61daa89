"""tickhouse quick look: `tickhouse view` (or `make view`) runs this with Streamlit.

Reads the bar tables straight from the configured Iceberg catalog with pyiceberg (the embedded
default or the stack's, whatever the environment says) and draws one symbol's candles and volume.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import streamlit as st

from tickhouse_dagster.core.contract import BAR_INTERVALS
from tickhouse_dagster.market.venues import load_venues
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.view.bars import (
    Instrument,
    candlestick_chart,
    catalogue,
    chart_frame,
    read_bars,
)

CACHE_SECONDS = 30  # new ingests show within this long without a page reload button


@st.cache_resource
def lakehouse() -> Lakehouse:
    from tickhouse_dagster.defs.resources import resolved_resources

    return resolved_resources()["lakehouse"].lakehouse()


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def cached_catalogue() -> dict[Instrument, list[date]]:
    return catalogue(lakehouse())


@st.cache_data(ttl=CACHE_SECONDS, show_spinner="Reading bars…")
def cached_bars(interval: str, instrument: Instrument, first: date, last: date) -> pa.Table:
    return read_bars(lakehouse(), interval, instrument, first, last)


st.set_page_config(page_title="tickhouse quick look", layout="wide")
st.title("tickhouse quick look")

instruments = cached_catalogue()
if not instruments:
    st.info("No bars yet: ingest some tick files first (`tickhouse ingest`, or `make dev`).")
    st.stop()

# A materialization's quick-look link (defs/links.py) names its interval and trade date, and may
# name a symbol; anything it names that is not there falls back to the defaults.
wanted = st.query_params
wanted_symbol = wanted.get("symbol")
wanted_day = wanted.get("trade_date")
listed = list(instruments)
symbol_index = next((i for i, x in enumerate(listed) if x.symbol == wanted_symbol), 0)
if wanted_day and wanted_symbol is None:  # the first symbol that traded that day
    symbol_index = next(
        (i for i, x in enumerate(listed) if wanted_day in {d.isoformat() for d in instruments[x]}),
        0,
    )
wanted_interval = wanted.get("interval")
interval_index = BAR_INTERVALS.index(wanted_interval if wanted_interval in BAR_INTERVALS else "5m")

with st.sidebar:
    instrument = st.selectbox("Symbol", listed, index=symbol_index, format_func=Instrument.label)
    interval = st.selectbox("Interval", BAR_INTERVALS, index=interval_index)
    days = instruments[instrument]
    if interval == "1d":  # one candle per day: a range of days makes a chart
        if len(days) > 1:
            first, last = st.select_slider("Trade dates", days, value=(days[0], days[-1]))
        else:
            first = last = days[0]
    else:
        day_index = next(
            (i for i, d in enumerate(days) if d.isoformat() == wanted_day), len(days) - 1
        )
        first = last = st.selectbox("Trade date", days, index=day_index)

venues = load_venues(current().venues_file)
timezone = venues[instrument.venue].timezone
bars = cached_bars(interval, instrument, first, last)
df = chart_frame(bars, interval, timezone)
span = first.isoformat() if first == last else f"{first} – {last}"
title = f"{instrument.label()} · {interval} · {span}"
time_title = f"{instrument.venue} local time ({timezone.key})"
candles, volume = candlestick_chart(df, interval, title, time_title)
st.altair_chart(candles, width="stretch")
st.altair_chart(volume, width="stretch")
if len(df):
    day_open, day_close = df["open"].iloc[0], df["close"].iloc[-1]
    cols = st.columns(5)
    cols[0].metric("bars", f"{len(df):,}")
    cols[1].metric("open → close", f"{day_close:,.2f}", f"{day_close - day_open:+,.2f}")
    cols[2].metric("high", f"{df['high'].max():,.2f}")
    cols[3].metric("low", f"{df['low'].min():,.2f}")
    cols[4].metric("volume", f"{int(df['volume'].sum()):,}")
with st.expander("Bars (exact values from the Iceberg table)"):
    st.dataframe(bars.to_pandas(), hide_index=True)
