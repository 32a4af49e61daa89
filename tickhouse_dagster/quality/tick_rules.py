"""Rules for ticks: contract values (pandera), venue session and price grid, duplicate trades."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

import pandera.errors
import pandera.polars as pdp
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tickhouse_dagster.arrow_sql import query_rows
from tickhouse_dagster.contract import TRADE_KEY
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.quality.findings import Findings

# How far a feed's trade date may sit from the venue-local date of the print: overnight
# sessions (e.g. NYMEX evening) book the next day's trade date.
MAX_TRADE_DATE_SKEW = timedelta(days=1)

PARSED_TICKS_VALUES = pdp.DataFrameSchema(
    {
        "venue": pdp.Column(pl.Utf8, pdp.Check.str_length(min_value=1)),
        "symbol": pdp.Column(pl.Utf8, pdp.Check.str_length(min_value=1)),
        "trade_id": pdp.Column(pl.Utf8, pdp.Check.str_length(min_value=1)),
        "price": pdp.Column(pl.Decimal(18, 6), pdp.Check.gt(0)),
        "quantity": pdp.Column(pl.Int64, pdp.Check.gt(0)),
        "side": pdp.Column(pl.Utf8, pdp.Check.isin(["B", "S"]), nullable=True),
        "trade_date_skew_days": pdp.Column(
            pl.Int64,
            pdp.Check.in_range(-MAX_TRADE_DATE_SKEW.days, MAX_TRADE_DATE_SKEW.days),
        ),
    },
    name="parsed ticks",
)


def _local_dates(ticks: pa.Table, venues: Mapping[str, Venue]) -> pa.Array:
    dates = pa.nulls(ticks.num_rows, pa.date32())
    for name in pc.unique(ticks["venue"]).to_pylist():
        zone = venues[name].timezone.key
        local = pc.local_timestamp(ticks["ts"].cast(pa.timestamp("us", tz=zone)))
        dates = pc.if_else(pc.equal(ticks["venue"], name), local.cast(pa.date32()), dates)
    return dates


def check_tick_values(batches: Iterable[pa.RecordBatch], venues: Mapping[str, Venue]) -> Findings:
    """Contract values of parsed ticks; each finding names the file, record, line and field."""
    findings = Findings("tick values")
    for batch in batches:
        table = pa.Table.from_batches([batch])
        skew = pc.subtract(
            table["trade_date"].cast(pa.int32()), _local_dates(table, venues).cast(pa.int32())
        ).cast(pa.int64())
        frame = pl.from_arrow(table.append_column("trade_date_skew_days", skew))
        findings.rows_checked += table.num_rows
        try:
            PARSED_TICKS_VALUES.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as errors:
            cases = errors.failure_cases
            for case in cases.iter_rows(named=True):
                if case["index"] is None:
                    findings.add(f"{case['column']}: {case['check']} ({case['failure_case']})")
                    continue
                row = table.slice(case["index"], 1).to_pylist()[0]
                reason = (
                    f"trade date {row['trade_date']} is more than {MAX_TRADE_DATE_SKEW.days} day "
                    f"from the print's local date"
                    if case["column"] == "trade_date_skew_days"
                    else f"{case['failure_case']!r} fails {case['check']}"
                )
                field = "trade_date" if case["column"] == "trade_date_skew_days" else case["column"]
                findings.add(
                    f"{row['source_file']}, record {row['record']}, line {row['line']}, "
                    f"field {field}: {reason}"
                )
    return findings


def check_session_and_grid(
    batches: Iterable[pa.RecordBatch], venues: Mapping[str, Venue]
) -> Findings:
    """Prints outside the venue's session for their trade date, or off its tick-size grid."""
    findings = Findings("session and tick grid")
    for batch in batches:
        findings.rows_checked += batch.num_rows
        for row in (
            pa.Table.from_batches([batch])
            .select(
                [
                    "venue",
                    "symbol",
                    "trade_date",
                    "ts",
                    "trade_id",
                    "price",
                    "record",
                    "source_file",
                ]
            )
            .to_pylist()
        ):
            venue = venues[row["venue"]]
            opens, closes = venue.session_bounds(row["trade_date"])
            where = (
                f"{row['source_file']}, record {row['record']} ({row['symbol']} {row['trade_id']})"
            )
            if not opens <= row["ts"] <= closes:
                local = row["ts"].astimezone(venue.timezone).time()
                findings.add(f"{where}: {local} is outside the {venue.name} session")
            if not venue.on_grid(row["price"]):
                findings.add(
                    f"{where}: price {row['price']} is off the {venue.tick_size(row['price'])} grid"
                )
    return findings


def find_duplicate_trades(ticks: pa.Table, involving: str | None = None) -> Findings:
    """Trades (venue, symbol, trade_date, trade_id) carried by more than one row; with
    `involving`, only those of which that source file carries a copy."""
    findings = Findings("duplicate trades", rows_checked=ticks.num_rows)
    if not ticks.num_rows:
        return findings
    key = ", ".join(TRADE_KEY)
    rows = query_rows(
        f"""SELECT {key}, count(*) AS copies,
                   string_agg(DISTINCT source_file, ', ' ORDER BY source_file) AS files,
                   count(DISTINCT (price, quantity, ts)) > 1 AS conflicting
            FROM ticks GROUP BY {key}
            HAVING count(*) > 1 AND ($file IS NULL OR bool_or(source_file = $file))
            ORDER BY {key}""",
        {"file": involving},
        ticks=ticks,
    )
    for venue, symbol, trade_date, trade_id, copies, files, conflicting in rows:
        note = " with DIFFERENT values" if conflicting else ""
        findings.add(
            f"{venue} {symbol} {trade_date} trade {trade_id}: {copies} copies{note} in {files}",
            count=copies - 1,
        )
    return findings
