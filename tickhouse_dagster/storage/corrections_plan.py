"""Replacing a landing file's ticks when trade corrections are in play (cancels / replaces, see
market.corrections): the file's own corrections are recorded first, then its rows are planned
against every correction on record for its trade dates (corrected trades dropped, replacements
added, and the trades its corrections name rewritten too), planned again on every commit
attempt since other files' corrections may have committed meanwhile. Apart from ticks_writes,
whose data files are written ahead in a worker and so can only take files without corrections.

The planning itself is functions over Arrow; the lakehouse is reached as `commits.Tables`, so
this module never imports `storage.lakehouse`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime
from functools import reduce
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, BooleanExpression, Or

from tickhouse_dagster.core.contract import (
    CORRECTIONS_ARROW,
    CORRECTIONS_TABLE,
    TICKS_TABLE,
    TRADE_KEY,
)
from tickhouse_dagster.market.corrections import (
    corrections_from_parsed,
    has_corrections,
    is_correction,
    latest_corrections,
    replacements,
    trade_keys,
    without_corrected,
)
from tickhouse_dagster.storage import commits
from tickhouse_dagster.storage.commits import Commit, Tables
from tickhouse_dagster.storage.readers import has_rows
from tickhouse_dagster.storage.row_filters import equal_to, is_in
from tickhouse_dagster.storage.ticks_writes import ticks_from_parsed


def replace_file_ticks(
    tables: Tables,
    source_file: str,
    parsed_batches: Callable[[], Iterable[pa.RecordBatch]],
    ingested_at: datetime,
) -> Commit:
    """`Lakehouse.replace_file_ticks`: the ticks table made to hold exactly `parsed_batches`
    for `source_file`, every correction applied."""
    # Most lakehouses never see a correction: one catalog load tells, then nothing more.
    recorded = tables.table(CORRECTIONS_TABLE).current_snapshot() is not None
    own = _replace_file_corrections(tables, source_file, parsed_batches, ingested_at, recorded)
    recorded = recorded or own.num_rows > 0

    def new_rows() -> Iterable[pa.Table]:
        for batch in parsed_batches():
            parsed = pa.Table.from_batches([batch])
            if has_corrections(parsed["trans_type"]):
                parsed = parsed.filter(pc.invert(is_correction(parsed["trans_type"])))
            yield ticks_from_parsed(parsed, ingested_at)

    days = _trade_dates(parsed_batches) if recorded else set()
    if not own.num_rows and not corrections_for_days(tables, days).num_rows:
        commit = commits.replace(
            tables, TICKS_TABLE, equal_to("source_file", source_file), new_rows
        )
        return replace(commit, file_rows=commit.rows_written)

    file_rows = 0
    named = set(trade_keys(own))

    def plan() -> tuple[BooleanExpression, Iterable[pa.Table]]:
        nonlocal file_rows
        file_rows = 0
        latest = latest_corrections(corrections_for_days(tables, days))

        def rows() -> Iterable[pa.Table]:
            nonlocal file_rows
            for chunk in itertools.chain(
                (without_corrected(t, latest) for t in new_rows()),
                [replacements(latest.filter(_key_mask(latest, named)))],
            ):
                file_rows += pc.sum(pc.equal(chunk["source_file"], source_file)).as_py() or 0
                yield chunk

        return _file_or_trades(source_file, named), rows()

    commit = commits.replace_planned(tables, TICKS_TABLE, plan)
    return replace(commit, file_rows=file_rows, corrections=own.num_rows)


def _replace_file_corrections(
    tables: Tables,
    source_file: str,
    parsed_batches: Callable[[], Iterable[pa.RecordBatch]],
    ingested_at: datetime,
    recorded: bool,
) -> pa.Table:
    """Record the file's cancels / replaces (replacing those of an earlier version of it)
    before its ticks commit, so a crash in between is repaired by the retry. `recorded`:
    whether the corrections table holds anything at all."""
    own = []
    for batch in parsed_batches():
        parsed = pa.Table.from_batches([batch])
        if not has_corrections(parsed["trans_type"]):
            continue
        parsed = parsed.filter(is_correction(parsed["trans_type"]))
        own.append(corrections_from_parsed(parsed, ticks_from_parsed(parsed, ingested_at)))
    found = pa.concat_tables(own) if own else CORRECTIONS_ARROW.empty_table()
    stale = recorded and has_rows(
        tables.table(CORRECTIONS_TABLE), equal_to("source_file", source_file)
    )
    if found.num_rows or stale:
        commits.replace(
            tables, CORRECTIONS_TABLE, equal_to("source_file", source_file), lambda: [found]
        )
    return found


def corrections_for_days(tables: Tables, days: set[date]) -> pa.Table:
    """`Lakehouse.corrections_for_days` (no load at all for no days)."""
    if not days:
        return CORRECTIONS_ARROW.empty_table()
    table = tables.table(CORRECTIONS_TABLE)
    if table.current_snapshot() is None:
        return CORRECTIONS_ARROW.empty_table()
    scan = table.scan(row_filter=is_in("trade_date", [d.isoformat() for d in days]))
    return scan.to_arrow().cast(CORRECTIONS_ARROW)


def _key_mask(table: pa.Table, keys: set[tuple[Any, ...]]) -> pa.Array:
    return pa.array(
        [tuple(row.values()) in keys for row in table.select(list(TRADE_KEY)).to_pylist()],
        pa.bool_(),
    )


def _file_or_trades(source_file: str, keys: set[tuple[Any, ...]]) -> BooleanExpression:
    """The rows of a file, and every row of the trades its corrections name."""
    trades = [
        And(
            equal_to("venue", venue),
            equal_to("symbol", symbol),
            equal_to("trade_date", trade_date.isoformat()),
            equal_to("trade_id", trade_id),
        )
        for venue, symbol, trade_date, trade_id in sorted(keys)
    ]
    return reduce(Or, trades, equal_to("source_file", source_file))


def _trade_dates(parsed_batches: Callable[[], Iterable[pa.RecordBatch]]) -> set[date]:
    days: set[date] = set()
    for batch in parsed_batches():
        days.update(pc.unique(batch.column("trade_date")).to_pylist())
    return days
