"""Rules for ticks: contract values (pandera), venue session and price grid, duplicate trades."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, timedelta
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tickhouse_dagster.core.arrow_sql import ArrowSource, query_rows
from tickhouse_dagster.core.contract import TRADE_KEY
from tickhouse_dagster.market.venues import Venue, trade_dates_of
from tickhouse_dagster.quality.findings import MAX_EXAMPLES, Findings

# How far a feed's trade date may sit outside [the venue-local date of the print, the trade date
# the venue's rule gives it]: the rule already books evening prints to the next trading day.
MAX_TRADE_DATE_SKEW = timedelta(days=1)
# How far a print's trade date may sit from the file's trading day (the date most of its prints
# carry): files are collection windows of a session, so a date years away is a feed error.
MAX_DAYS_FROM_FILE_DAY = timedelta(days=3)

# Identifiers longer than any exchange uses are feed errors (or an attack on memory downstream).
MAX_ID_LENGTH = {"venue": 32, "symbol": 64, "trade_id": 128}


@cache
def parsed_ticks_values() -> Any:
    """The contract's value rules as a pandera schema. pandera (and the polars and pyspark
    modules it pulls in, ≈0.4 s) is imported when ticks are first checked, not when the code
    location loads: every run process and sensor would pay for it otherwise."""
    import pandera.polars as pdp
    import polars as pl

    return pdp.DataFrameSchema(
        {
            **{
                name: pdp.Column(pl.Utf8, pdp.Check.str_length(min_value=1, max_value=longest))
                for name, longest in MAX_ID_LENGTH.items()
            },
            "price": pdp.Column(pl.Decimal(18, 6), pdp.Check.gt(0)),
            "quantity": pdp.Column(pl.Int64, pdp.Check.gt(0)),
            "side": pdp.Column(pl.Utf8, pdp.Check.isin(["B", "S"]), nullable=True),
            "trade_date_skew_days": pdp.Column(
                pl.Int64,
                pdp.Check.in_range(-MAX_TRADE_DATE_SKEW.days, MAX_TRADE_DATE_SKEW.days),
            ),
            "days_from_file_day": pdp.Column(
                pl.Int64,
                pdp.Check.in_range(-MAX_DAYS_FROM_FILE_DAY.days, MAX_DAYS_FROM_FILE_DAY.days),
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


def _trade_date_skew(ticks: pa.Table, venues: Mapping[str, Venue]) -> pa.Array:
    """Days by which a print's trade date lies outside [its local date, the trade date the
    venue's rule gives it] (0 inside): an evening print may carry either, a feed that books it
    a day further either way is tolerated, anything beyond is a feed error."""
    given = ticks["trade_date"].cast(pa.int32())
    local = _local_dates(ticks, venues).cast(pa.int32())
    derived = trade_dates_of(ticks["venue"], ticks["ts"], venues).cast(pa.int32())
    below = pc.min_element_wise(pc.subtract(given, local), 0)
    above = pc.max_element_wise(pc.subtract(given, derived), 0)
    return pc.add(below, above).cast(pa.int64())


def file_trading_day(batches: Iterable[pa.RecordBatch]) -> date | None:
    """The trade date most prints of a file carry (the earliest on a tie)."""
    counts: Counter[date] = Counter()
    for batch in batches:
        for row in pc.value_counts(batch.column("trade_date")).to_pylist():
            counts[row["values"]] += row["counts"]
    if not counts:
        return None
    return min(counts, key=lambda day: (-counts[day], day))


def _days_from(table: pa.Table, day: date | None) -> pa.Array:
    if day is None:
        return pa.nulls(table.num_rows, pa.int64())
    offset = pa.scalar(day, pa.date32()).cast(pa.int32())
    return pc.subtract(table["trade_date"].cast(pa.int32()), offset).cast(pa.int64())


def _value_reason(
    column: str, row: dict[str, Any], case: dict[str, Any], file_day: date | None
) -> tuple[str, str]:
    """(field, reason) of one pandera failure, in the words of the contract."""
    if column == "trade_date_skew_days":
        return "trade_date", (
            f"trade date {row['trade_date']} is more than {MAX_TRADE_DATE_SKEW.days} day "
            f"from the print's local date and from the venue's trade date for it"
        )
    if column == "days_from_file_day":
        return "trade_date", (
            f"trade date {row['trade_date']} is more than {MAX_DAYS_FROM_FILE_DAY.days} days "
            f"from the file's trading day {file_day}"
        )
    value = repr(case["failure_case"])
    shown = value if len(value) <= 80 else f"{value[:60]}… ({len(value):,} characters)"
    return column, f"{shown} fails {case['check']}"


# Rows validated together: pandera runs a polars query per check and column, whose setup cost
# more than the work on a 64K-row batch; a bounded chunk keeps a 2 GB file's memory flat.
VALUES_CHUNK_ROWS = 1 << 18


def _chunks(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield pa.Table.from_batches(pending)
            pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def check_tick_values(
    batches: Iterable[pa.RecordBatch], venues: Mapping[str, Venue], file_day: date | None = None
) -> Findings:
    """Contract values of parsed ticks; each finding names the file, record, line and field.
    `file_day` (see `file_trading_day`) enables the distance-from-the-file's-day rule."""
    findings = Findings("tick values")
    for table in _chunks(batches, VALUES_CHUNK_ROWS):
        skew = _trade_date_skew(table, venues)
        checked = table.append_column("trade_date_skew_days", skew).append_column(
            "days_from_file_day", _days_from(table, file_day).fill_null(0)
        )
        schema = parsed_ticks_values()
        import pandera.errors
        import polars as pl

        frame = pl.DataFrame(checked)
        findings.rows_checked += table.num_rows
        try:
            schema.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as errors:
            cases = errors.failure_cases
            for case in cases.iter_rows(named=True):
                if case["index"] is None:
                    findings.add(f"{case['column']}: {case['check']} ({case['failure_case']})")
                    continue
                row = table.slice(case["index"], 1).to_pylist()[0]
                field, reason = _value_reason(case["column"], row, case, file_day)
                findings.add(
                    f"{row['source_file']}, record {row['record']}, "
                    + (f"line {row['line']}, " if row["line"] is not None else "")
                    + f"field {field}: {reason}"
                )
    return findings


_SESSION_AND_GRID_SQL = """
WITH judged AS (
    SELECT source_file, record, symbol, trade_id, ts, price, trade_date,
           NOT EXISTS (
               SELECT 1 FROM sessions s
               WHERE s.trade_date = t.trade_date AND t.ts BETWEEN s.opens AND s.closes
           ) AS outside,
           CASE {tick_case} END AS tick
    FROM ticks t WHERE venue = $venue
), graded AS (
    -- In micro-units: a DECIMAL(18, 6) price is below 10^12, so 10^6 times it fits a BIGINT
    -- (whose modulo is ~7x cheaper than HUGEINT's).
    SELECT *, CAST(price * 1000000 AS BIGINT) % CAST(tick * 1000000 AS BIGINT) <> 0 AS off_grid
    FROM judged
)
SELECT count(*) FILTER (WHERE outside), count(*) FILTER (WHERE off_grid),
       list(struct_pack(source_file, record, symbol, trade_id, ts, price, trade_date, tick,
                        outside, off_grid)
            ORDER BY record) FILTER (WHERE outside OR off_grid)[1:{examples}]
FROM graded
"""

_SESSIONS_SCHEMA = pa.schema(
    [
        ("trade_date", pa.date32()),
        ("opens", pa.timestamp("us", tz="UTC")),
        ("closes", pa.timestamp("us", tz="UTC")),
    ]
)


def _sessions_table(venue: Venue, trade_dates: Iterable[date]) -> pa.Table:
    """The sessions (UTC instants) of each trade date: none on a day the venue does not trade."""
    rows = [
        # In UTC explicitly: Arrow would read an aware datetime's wall clock as UTC.
        {"trade_date": day, "opens": opens.astimezone(UTC), "closes": closes.astimezone(UTC)}
        for day in trade_dates
        for opens, closes in venue.sessions_of(day)
    ]
    return pa.Table.from_pylist(rows, schema=_SESSIONS_SCHEMA)


def _describe_sessions(venue: Venue, trade_date: date) -> str:
    sessions = venue.sessions_of(trade_date)
    if not sessions:
        return f"{trade_date} is not a {venue.name} trading day"
    spans = ", ".join(
        (f"{opens:%a} " if opens.date() != trade_date else "") + f"{opens:%H:%M}–{closes:%H:%M}"
        for opens, closes in sessions
    )
    return f"{trade_date}: {spans}"


def _session_and_grid_examples(row: dict[str, Any], venue: Venue) -> list[str]:
    where = f"{row['source_file']}, record {row['record']} ({row['symbol']} {row['trade_id']})"
    examples = []
    if row["outside"]:
        local = row["ts"].astimezone(venue.timezone).time()
        examples.append(
            f"{where}: {local} is outside the {venue.name} session "
            f"({_describe_sessions(venue, row['trade_date'])})"
        )
    if row["off_grid"]:
        tick = row["tick"].normalize()
        examples.append(f"{where}: price {row['price']} is off the {tick:f} grid")
    return examples


def check_session_and_grid(
    batches: Iterable[pa.RecordBatch], venues: Mapping[str, Venue]
) -> Findings:
    """Prints outside every session of the venue for their trade date (in a break, on a day the
    venue does not trade, after an early close; the close is inclusive: the closing auction
    prints at it), or off its tick-size grid. One query per venue and chunk of 1M rows: per
    64K batch, setting a query up cost more than running it; over a whole 2 GB file, the
    session join held every row at once."""
    findings = Findings("session and tick grid")
    for table in _chunks(batches, VALUES_CHUNK_ROWS):
        findings.rows_checked += table.num_rows
        for name in pc.unique(table["venue"]).to_pylist():
            venue = venues[name]
            mine = table.filter(pc.equal(table["venue"], name))
            sessions = _sessions_table(venue, pc.unique(mine["trade_date"]).to_pylist())
            tick_case = " ".join(
                f"WHEN price >= {lower} THEN CAST({tick} AS DECIMAL(18, 6))"
                for lower, tick in reversed(venue.tick_sizes)
            )
            sql = _SESSION_AND_GRID_SQL.format(tick_case=tick_case, examples=MAX_EXAMPLES)
            [(outside, off_grid, examples)] = query_rows(
                sql, {"venue": name}, ticks=mine, sessions=sessions
            )
            findings.count += outside + off_grid
            for row in examples or []:
                for example in _session_and_grid_examples(row, venue):
                    findings.add(example, count=0)  # counted above, in SQL
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


_COPIES_SQL = """
WITH mine AS (
    SELECT o.venue, o.symbol, o.trade_date, o.trade_id, o.ts, o.price, o.quantity, o.side,
           o.source_file, o.record, f.file_order
    FROM own o JOIN files f ON o.source_file = f.source_file
    WHERE coalesce(o.trans_type, 'N') NOT IN ('C', 'R') AND EXISTS (
        SELECT 1 FROM windows w
        WHERE w.source_file = o.source_file AND w.venue = o.venue AND w.symbol = o.symbol
          AND w.trade_date = o.trade_date AND o.trade_id BETWEEN w.low_id AND w.high_id
    )
), explained AS (  -- keys a correction names, on record or in the files themselves
    SELECT venue, symbol, trade_date, trade_id FROM corrected
    UNION ALL
    SELECT venue, symbol, trade_date, trade_id FROM own WHERE trans_type IN ('C', 'R')
), theirs AS (
    SELECT venue, symbol, trade_date, trade_id, ts, price, quantity, side, source_file,
           NULL::BIGINT AS record, -1 AS file_order
    FROM others
    UNION ALL  -- a copy in an earlier file of the group, or a second one inside the file
    SELECT * FROM mine
), pairs AS (
    SELECT m.venue, m.symbol, m.trade_date, m.trade_id, m.source_file, m.record,
           m.ts AS my_ts, m.price AS my_price, m.quantity AS my_quantity, m.side AS my_side,
           t.source_file AS other_file, t.record AS other_record,
           t.ts, t.price, t.quantity, t.side,
           (m.ts, m.price, m.quantity, m.side) IS DISTINCT FROM (t.ts, t.price, t.quantity, t.side)
               AS differs,
           m.file_order
    FROM mine m JOIN theirs t USING (venue, symbol, trade_date, trade_id)
    WHERE t.file_order < m.file_order OR (t.file_order = m.file_order AND t.record > m.record)
)
SELECT p.* EXCLUDE (file_order) FROM pairs p
WHERE NOT EXISTS (
    SELECT 1 FROM explained c
    WHERE c.venue = p.venue AND c.symbol = p.symbol AND c.trade_date = p.trade_date
      AND c.trade_id = p.trade_id
)
ORDER BY file_order, venue, symbol, trade_date, trade_id, record, other_file
"""
_COPY_COLUMNS = [
    "venue", "symbol", "trade_date", "trade_id", "source_file", "record", "my_ts", "my_price",
    "my_quantity", "my_side", "other_file", "other_record", "ts", "price", "quantity", "side",
    "differs",
]  # fmt: skip


def no_copies(rows: int) -> tuple[Findings, Findings]:
    """(duplicates, conflicts) of a file of `rows` rows in which none were found."""
    return (
        Findings("duplicate trades", rows_checked=rows),
        Findings("conflicting trades", rows_checked=rows),
    )


def group_trade_copies(
    own: ArrowSource,
    rows: Mapping[str, int],
    others: pa.Table,
    corrected: pa.Table,
    windows: pa.Table,
) -> dict[str, tuple[Findings, Findings]]:
    """Trades of a group of files carried by another row too. `own`: the files' parsed rows (a
    table or a dataset streamed from staging); `rows`: each file's row count, in the group's
    order; `others`: rows of files outside the group (e.g. `Lakehouse.trades_in`); `windows`:
    where the group's rows can have copies (`trade_ranges.copy_windows`): only those rows are
    compared, and none when there is no window. A file's row is compared with `others`, with
    the files before it in the group and with its own other rows. Returns per file
    (duplicates, conflicts): identical copies, which the bars count once (a warning), and
    copies whose ts, price, quantity or side differ, which no correction in `corrected`
    (columns of TRADE_KEY) or in the files explains — a conflict: which copy is right cannot
    be told, so the (later) file must not go in. Each example names the key and both files.
    One query for the whole group."""
    found = {name: no_copies(count) for name, count in rows.items()}
    if not windows.num_rows:
        return found
    files = pa.table(
        {"source_file": list(rows), "file_order": pa.array(range(len(rows)), pa.int64())}
    )
    columns = [*TRADE_KEY, "ts", "price", "quantity", "side"]
    result = query_rows(
        _COPIES_SQL,
        own=own,
        files=files,
        others=others.select([*columns, "source_file"]),
        corrected=corrected.select(list(TRADE_KEY)),
        windows=windows,
    )
    for values in result:
        row = dict(zip(_COPY_COLUMNS, values, strict=True))
        duplicates, conflicts = found[row["source_file"]]
        trade = f"{row['venue']} {row['symbol']} {row['trade_date']} trade {row['trade_id']}"
        mine = f"{row['source_file']} record {row['record']}"
        other = row["other_file"] + (
            f" record {row['other_record']}" if row["other_record"] is not None else ""
        )
        if not row["differs"]:
            duplicates.add(f"{trade}: {mine} and {other}")
            continue
        said = _copy_text(row["my_price"], row["my_quantity"], row["my_ts"], row["my_side"])
        theirs = _copy_text(row["price"], row["quantity"], row["ts"], row["side"])
        conflicts.add(
            f"{trade}: {mine} has {said}, {other} has {theirs}"
            " (not a correction: neither copy can be chosen)"
        )
    return found


def _copy_text(price: object, quantity: object, ts: object, side: object) -> str:
    return f"{quantity} @ {price} at {ts}" + (f" side {side}" if side else "")
