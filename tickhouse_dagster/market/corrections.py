"""Trade corrections: a cancel removes the trade it names, a replace puts new values in its place.

A trade is named by (venue, symbol, trade_date, trade_id). Several corrections of one trade apply
in the order they were reported — by report time, then file, then record — and the last decides:
a cancel leaves no row, a replace leaves its own values. A correction beats every "new" report
of the trade, whichever file carried it and whenever that file is ingested, before or after.
Pure functions over Arrow tables; no storage.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tickhouse_dagster.core.contract import CORRECTIONS_ARROW, TICKS_ARROW, TRADE_KEY

CANCEL, REPLACE = "C", "R"
_ORDER = ["ts", "source_file", "record"]


def is_correction(trans_type: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.fill_null(pc.is_in(trans_type, value_set=pa.array([CANCEL, REPLACE])), False)


def has_corrections(trans_type: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any row is a cancel or replace. A trans_type column is not enough: FIXML feeds
    mark every new trade too (TransTyp 0 -> "N")."""
    return trans_type.null_count < len(trans_type) and bool(
        pc.any(is_correction(trans_type)).as_py()
    )


def corrections_from_parsed(parsed: pa.Table, ticks: pa.Table) -> pa.Table:
    """The correction rows of a file: its parsed rows' trans_type and record beside the rows as
    they would enter the ticks table (`ticks`, same row order)."""
    return pa.table(
        {
            **{name: ticks[name] for name in TICKS_ARROW.names},
            "trans_type": parsed["trans_type"],
            "record": parsed["record"],
        }
    ).cast(CORRECTIONS_ARROW)


def latest_corrections(corrections: pa.Table) -> pa.Table:
    """One row per corrected trade: the correction reported last."""
    if not corrections.num_rows:
        return corrections.cast(CORRECTIONS_ARROW)
    import polars as pl  # on first use: most runs never see a correction

    frame = pl.DataFrame(corrections).sort(_ORDER).group_by(list(TRADE_KEY)).last()
    return frame.to_arrow().select(CORRECTIONS_ARROW.names).cast(CORRECTIONS_ARROW)


def without_corrected(ticks: pa.Table, latest: pa.Table) -> pa.Table:
    """The ticks whose trade no correction names."""
    if not latest.num_rows or not ticks.num_rows:
        return ticks
    import polars as pl  # on first use: most runs never see a correction

    kept = pl.DataFrame(ticks).join(
        pl.DataFrame(latest.select(list(TRADE_KEY))), on=list(TRADE_KEY), how="anti"
    )
    return kept.to_arrow().select(TICKS_ARROW.names).cast(TICKS_ARROW)


def replacements(latest: pa.Table) -> pa.Table:
    """The rows replaced trades have now: the values of their last correction, if a replace."""
    replaced = latest.filter(pc.equal(latest["trans_type"], REPLACE))
    return replaced.select(TICKS_ARROW.names).cast(TICKS_ARROW)


def trade_keys(table: pa.Table) -> list[tuple[Any, ...]]:
    """The distinct trade keys of a table, as (venue, symbol, trade_date, trade_id) tuples."""
    import polars as pl  # on first use: most runs never see a correction

    frame = pl.DataFrame(table.select(list(TRADE_KEY))).unique()
    return [tuple(row) for row in frame.iter_rows()]
