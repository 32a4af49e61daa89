"""Where copies of a trade can be, from trade_id ranges alone — so the exact copy check
(`tick_rules.group_trade_copies`) reads only rows that can be copies, not the whole day.

A file's trade_id range is kept per (venue, symbol, trade_date): exchanges number trades per
instrument and session (KRX, CME and FIXML TrdID restart for every instrument), so one range per
file over all its instruments would overlap every other file of the day, while per instrument
the ranges of successive collection windows do not overlap at all. Two rows can only carry the
same trade key if their files' ranges for that instrument overlap, so the intersection of two
overlapping ranges — a window — bounds every row either copy can be. Ranges compare trade_ids as
strings, as Iceberg's bounds do: exact for any ids (unpadded numbers only make windows wider).

Pure functions over Arrow; the ranges of committed files are kept by `storage.trade_index`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import pyarrow as pa

from tickhouse_dagster.core.arrow_sql import ArrowSource, arrow_connection
from tickhouse_dagster.core.contract import TRADE_ID_RANGES_ARROW

RANGE_KEY = ("venue", "symbol", "trade_date")
# A file's ranges (the trade index's rows without their file).
RANGES_ARROW = TRADE_ID_RANGES_ARROW.remove(TRADE_ID_RANGES_ARROW.get_field_index("source_file"))
DUPLICATE_WINDOWS_ARROW = pa.schema(
    [RANGES_ARROW.field(name) for name in (*RANGE_KEY, "low_id", "high_id")]
)
WINDOWS_ARROW = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),  # the file whose rows it bounds
        pa.field("venue", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("trade_date", pa.date32(), nullable=False),
        pa.field("low_id", pa.string(), nullable=False),
        pa.field("high_id", pa.string(), nullable=False),
    ]
)

# A new trade is a row that is not a cancel / replace (those name other rows' keys; the copy
# check leaves them out the same way).
_NEW_TRADES = "coalesce(trans_type, 'N') NOT IN ('C', 'R')"


def file_id_ranges(parsed: ArrowSource) -> tuple[pa.Table, pa.Table]:
    """(ranges, repeats) of one file's parsed rows: its lowest and highest trade_id, rows and
    repeated rows per (venue, symbol, trade_date), and the keys it carries more than once (as
    one-id ranges) — the copies inside the file, which no range comparison with other files
    can show."""
    with arrow_connection(parsed=parsed) as connection:
        connection.execute(f"CREATE TEMP VIEW rows AS SELECT * FROM parsed WHERE {_NEW_TRADES}")
        ranges, repeated = _ranges_and_repeats(connection, by=())
    repeats = repeated.select([*RANGE_KEY, "trade_id", "trade_id", "copies", "repeats"])
    repeats = repeats.rename_columns([*RANGE_KEY, "low_id", "high_id", "rows", "repeats"])
    return _as(ranges, RANGES_ARROW), _as(repeats, RANGES_ARROW)


def committed_id_ranges(ticks: ArrowSource) -> pa.Table:
    """The trade index's rows (TRADE_ID_RANGES_ARROW) of every file in `ticks` (table rows)."""
    with arrow_connection(ticks=ticks) as connection:
        connection.execute("CREATE TEMP VIEW rows AS SELECT * FROM ticks")
        ranges, _ = _ranges_and_repeats(connection, by=("source_file",))
    return _as(ranges, _INDEX)


def _ranges_and_repeats(
    connection: duckdb.DuckDBPyConnection, by: tuple[str, ...]
) -> tuple[pa.Table, pa.Table]:
    """(ranges, repeated keys with their copies) of the `rows` view, per RANGE_KEY and `by`.
    Keys are found repeated through their 64-bit hashes first — one number per row to group,
    not four strings, so a 2 GB file is grouped in a fraction of the memory — and only the rows
    of a hash seen twice are grouped by the key itself (a collision only adds a candidate)."""
    group = ", ".join((*RANGE_KEY, *by))
    connection.execute(
        f"""CREATE TEMP TABLE candidates AS
            SELECT key_hash FROM (SELECT hash({group}, trade_id) AS key_hash FROM rows)
            GROUP BY key_hash HAVING count(*) > 1"""
    )
    repeated = connection.sql(
        f"""SELECT {group}, trade_id, count(*)::BIGINT AS copies,
                   (count(*) - 1)::BIGINT AS repeats
            FROM rows WHERE hash({group}, trade_id) IN (SELECT key_hash FROM candidates)
            GROUP BY {group}, trade_id HAVING count(*) > 1 ORDER BY ALL"""
    ).to_arrow_table()
    connection.register("repeated_keys", repeated)
    ranges = connection.sql(
        f"""WITH spans AS (
                SELECT {group}, min(trade_id) AS low_id, max(trade_id) AS high_id,
                       count(*)::BIGINT AS rows
                FROM rows GROUP BY {group}
            ), per_range AS (
                SELECT {group}, sum(repeats)::BIGINT AS repeats FROM repeated_keys
                GROUP BY {group}
            )
            SELECT s.*, coalesce(r.repeats, 0)::BIGINT AS repeats
            FROM spans s LEFT JOIN per_range r USING ({group}) ORDER BY ALL"""
    ).to_arrow_table()
    return ranges, repeated


def duplicate_windows(ranges: pa.Table) -> pa.Table:
    """Where a trade date's rows can repeat a key (DUPLICATE_WINDOWS_ARROW), from its files'
    ranges (the trade index): the ids two files' ranges share, and the whole range of a file
    that repeats a key itself. Ranges sorted by their lowest id: a range meets an earlier one
    exactly where its ids lie below the highest id seen so far — one pass, not all pairs."""
    if not ranges.num_rows:
        return DUPLICATE_WINDOWS_ARROW.empty_table()
    with arrow_connection(ranges=ranges) as connection:
        rows = connection.sql(
            """WITH swept AS (
                   SELECT *, max(high_id) OVER (
                       PARTITION BY venue, symbol, trade_date ORDER BY low_id, high_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
                   FROM ranges
               )
               SELECT venue, symbol, trade_date, low_id, least(high_id, reached) AS high_id
               FROM swept WHERE low_id <= reached
               UNION ALL
               SELECT venue, symbol, trade_date, low_id, high_id FROM ranges WHERE repeats > 0
               ORDER BY ALL"""
        ).to_arrow_table()
    return _as(rows, DUPLICATE_WINDOWS_ARROW)


def copy_windows(
    group: Sequence[tuple[str, pa.Table, pa.Table]], committed: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """Where a group of files about to commit, in order, can hold copies. `group`: (file,
    ranges, repeats) each; `committed`: ranges of files already in the table (RANGES_ARROW plus
    source_file). A file's trade can be copied by a committed file, an earlier file of the
    group or another of its own rows. Returns (own, committed) windows (WINDOWS_ARROW): the
    group files' rows to compare, and the committed files' rows to compare them with. Both are
    empty when no two ranges meet — the common case, in which there is nothing to read."""
    own: list[pa.Table] = []
    theirs: list[pa.Table] = []
    earlier: list[pa.Table] = []
    for name, ranges, repeats in group:
        if repeats.num_rows:
            own.append(_windows(repeats, name))
        if ranges.num_rows:
            mine = ranges.append_column("source_file", pa.array([name] * ranges.num_rows))
            if committed.num_rows:
                met = _overlaps(mine, committed)
                own.append(_side(met, "mine"))
                theirs.append(_side(met, "theirs"))
            if earlier:
                met = _overlaps(mine, pa.concat_tables(earlier))
                own.extend([_side(met, "mine"), _side(met, "theirs")])
            earlier.append(mine)
    return _concat(own), _concat(theirs)


def _overlaps(mine: pa.Table, theirs: pa.Table) -> pa.Table:
    """Pairs of ranges of one instrument and trade date that share at least one id, with the
    shared part: the only ids either side can hold a copy of the other at."""
    with arrow_connection(mine=mine, theirs=theirs) as connection:
        return connection.sql(
            """SELECT m.source_file AS mine, t.source_file AS theirs,
                      m.venue, m.symbol, m.trade_date,
                      greatest(m.low_id, t.low_id) AS low_id,
                      least(m.high_id, t.high_id) AS high_id
               FROM mine m JOIN theirs t USING (venue, symbol, trade_date)
               WHERE m.low_id <= t.high_id AND t.low_id <= m.high_id"""
        ).to_arrow_table()


def _side(met: pa.Table, side: str) -> pa.Table:
    return _as(
        pa.table(
            {
                "source_file": met[side],
                **{name: met[name] for name in (*RANGE_KEY, "low_id", "high_id")},
            }
        ),
        WINDOWS_ARROW,
    )


def _windows(ranges: pa.Table, name: str) -> pa.Table:
    return _as(
        ranges.select([*RANGE_KEY, "low_id", "high_id"]).append_column(
            "source_file", pa.array([name] * ranges.num_rows, pa.string())
        ),
        WINDOWS_ARROW,
    )


def ranges_by_file(ranges: Mapping[str, pa.Table]) -> pa.Table:
    """Per-file ranges in one table, with their file: the trade index's rows."""
    tables = [
        _as(t.append_column("source_file", pa.array([n] * t.num_rows, pa.string())), _INDEX)
        for n, t in ranges.items()
    ]
    return pa.concat_tables(tables) if tables else _INDEX.empty_table()


_INDEX = TRADE_ID_RANGES_ARROW


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else WINDOWS_ARROW.empty_table()


def _as(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema)
