"""What the quick look reads and draws: bars of one symbol straight from the Iceberg tables
(pyiceberg, no query engine) and an Altair candlestick + volume chart of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And

from tickhouse_dagster.core.contract import BAR_INTERVALS, bar_table_name
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_filters import at_least, at_most, equal_to

INTERVAL_LENGTH = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
assert set(INTERVAL_LENGTH) == set(BAR_INTERVALS)
UP, DOWN = "#26a69a", "#ef5350"
_PRICES = ("open", "high", "low", "close", "vwap")


@dataclass(frozen=True, order=True)
class Instrument:
    venue: str
    symbol: str

    def label(self) -> str:
        return f"{self.symbol} ({self.venue})"


def catalogue(lakehouse: Lakehouse) -> dict[Instrument, list[date]]:
    """Every (venue, symbol) with its trade dates, from the daily bars (one row per symbol and
    day, so this stays small however many ticks there are)."""
    table = lakehouse.table(bar_table_name("1d"))
    if table.current_snapshot() is None:
        return {}
    rows = table.scan(selected_fields=("venue", "symbol", "trade_date")).to_arrow()
    found: dict[Instrument, set[date]] = {}
    for row in rows.to_pylist():
        found.setdefault(Instrument(row["venue"], row["symbol"]), set()).add(row["trade_date"])
    return {i: sorted(found[i]) for i in sorted(found)}


def read_bars(
    lakehouse: Lakehouse, interval: str, instrument: Instrument, first: date, last: date
) -> pa.Table:
    """The bars of one instrument over trade dates [first, last], ordered by bar_start;
    partition-pruned on trade_date."""
    table = lakehouse.table(bar_table_name(interval))
    if table.current_snapshot() is None:
        return pa.table({})
    row_filter = And(
        equal_to("venue", instrument.venue),
        equal_to("symbol", instrument.symbol),
        at_least("trade_date", first.isoformat()),
        at_most("trade_date", last.isoformat()),
    )
    bars = table.scan(row_filter=row_filter).to_arrow()
    return bars.sort_by("bar_start")


def chart_frame(bars: pa.Table, interval: str, timezone: ZoneInfo) -> pd.DataFrame:
    """One row per candle: prices as floats (charting only; the table keeps exact decimals),
    times on the venue's clock, and the body's horizontal extent inside its interval."""
    if bars.num_rows == 0:
        return pd.DataFrame(columns=["bar_start", "bar_mid", "body_from", "body_to", "volume"])
    columns = {c: pc.cast(bars[c], pa.float64()) for c in _PRICES}
    frame = pa.table({**columns, "volume": bars["volume"], "trade_count": bars["trade_count"]})
    df = frame.to_pandas()
    start = bars["bar_start"].to_pandas().dt.tz_convert(timezone).dt.tz_localize(None)
    length = INTERVAL_LENGTH[interval]
    df.insert(0, "bar_start", start)
    df["bar_mid"] = start + length / 2
    df["body_from"] = start + length * 0.1
    df["body_to"] = start + length * 0.9
    return df


def candlestick_chart(
    df: pd.DataFrame, interval: str, title: str, time_title: str
) -> tuple[alt.LayerChart | alt.FacetChart, alt.Chart]:
    """Candles (a rule from low to high, a bar from open to close, green when the close is not
    below the open) and the volume bars below them. Two charts rather than a Vega-Lite concat:
    a concat does not fit the page width; equal y-axis widths keep the two time axes aligned."""
    base = alt.Chart(df)
    color = alt.condition("datum.open <= datum.close", alt.value(UP), alt.value(DOWN))
    tooltip = [
        alt.Tooltip("bar_start:T", title="bar start", format="%Y-%m-%d %H:%M"),
        *(alt.Tooltip(f"{c}:Q", format=",.2f") for c in ("open", "high", "low", "close", "vwap")),
        alt.Tooltip("volume:Q", format=","),
        alt.Tooltip("trade_count:Q", title="trades", format=","),
    ]
    y_axis = alt.Axis(minExtent=70, maxExtent=70)
    time_axis = alt.Axis(format="%Y-%m-%d" if interval == "1d" else "%H:%M")
    wick = base.mark_rule().encode(
        x=alt.X("bar_mid:T", title=None, axis=time_axis),
        y=alt.Y("low:Q", title="price", scale=alt.Scale(zero=False), axis=y_axis),
        y2="high:Q",
        color=color,
        tooltip=tooltip,
    )
    # The stroke keeps a body visible when open == close (a single print, e.g. the closing
    # auction): a rectangle of zero height still draws its outline.
    body = base.mark_bar(strokeWidth=1).encode(
        x="body_from:T",
        x2="body_to:T",
        y="open:Q",
        y2="close:Q",
        color=color,
        stroke=color,
        tooltip=tooltip,
    )
    candles = alt.layer(wick, body).properties(height=380, title=title)
    volume = (
        base.mark_bar()
        .encode(
            x=alt.X("body_from:T", title=time_title, axis=time_axis),
            x2="body_to:T",
            y=alt.Y("volume:Q", title="volume", axis=y_axis),
            y2=alt.datum(0),
            color=color,
            tooltip=tooltip,
        )
        .properties(height=140)
    )
    return candles, volume
