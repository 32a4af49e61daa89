"""Reads of the lakehouse's tables: scans and datasets of ticks, bars and reference records, and
the figures read from data-file metadata alone (row counts per day, a landing file's totals).
Apart from the writes: nothing here commits. Each reader is given the table it reads, loaded by
`Lakehouse` (afresh, or as of a snapshot it already holds: `Lakehouse.table_at`), so this module
never imports `storage.lakehouse`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
from pyiceberg.expressions import And, BooleanExpression
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table

from tickhouse_dagster.core.arrow_sql import query_arrow
from tickhouse_dagster.core.contract import BARS_ARROW, REFERENCE_ARROW, TICKS_ARROW, TICKS_TABLE
from tickhouse_dagster.storage.row_filters import at_least, at_most, equal_to, is_in

_EPOCH = date(1970, 1, 1)  # identity-partitioned dates are stored as days since it


def has_rows(table: Table, row_filter: BooleanExpression | None = None) -> bool:
    if table.current_snapshot() is None:
        return False
    if row_filter is None:
        return True
    return any(True for _ in table.scan(row_filter=row_filter).plan_files())


def file_totals(
    table: Table,
    source_files: Sequence[str],
    trade_dates: Iterable[date],
    snapshot_id: int | None,
) -> dict[str, tuple[int, int]]:
    """`Lakehouse.file_totals` of `table`, the ticks table as of `snapshot_id`."""
    totals = dict.fromkeys(source_files, (0, 0))
    if table.current_snapshot() is None or not source_files:
        return totals
    days = sorted({d.isoformat() for d in trade_dates})
    row_filter = And(is_in("trade_date", days), is_in("source_file", list(source_files)))
    scan = table.scan(
        row_filter=row_filter,
        selected_fields=("source_file", "quantity"),
        snapshot_id=snapshot_id,
    )
    # Batch by batch: a 2 GB file's source_file column alone would be half a gigabyte.
    counts = {key: [0, 0] for key in source_files}
    for batch in scan.to_arrow_batch_reader():
        grouped = (
            pa.Table.from_batches([batch])
            .group_by("source_file")
            .aggregate([("quantity", "count"), ("quantity", "sum")])
        )
        for row in grouped.to_pylist():
            count = counts.setdefault(row["source_file"], [0, 0])
            count[0] += row["quantity_count"]
            count[1] += row["quantity_sum"] or 0
    totals.update({key: (rows, volume) for key, (rows, volume) in counts.items()})
    return totals


def trades_in(table: Table, windows: pa.Table) -> pa.Table:
    """`Lakehouse.trades_in` of `table`, the ticks table."""
    columns = ("venue", "symbol", "trade_date", "trade_id", "ts", "price", "quantity", "side")
    schema = pa.schema([TICKS_ARROW.field(n) for n in (*columns, "source_file")])
    if table.current_snapshot() is None or not windows.num_rows:
        return schema.empty_table()
    days = sorted({d.isoformat() for d in windows["trade_date"].to_pylist()})
    files = sorted(set(windows["source_file"].to_pylist()))
    row_filter = And(is_in("trade_date", days), is_in("source_file", files))
    scan = table.scan(row_filter=row_filter, selected_fields=(*columns, "source_file"))
    rows = scan.to_arrow().select(schema.names).cast(schema)
    inside = query_arrow(
        """SELECT r.* FROM rows r WHERE EXISTS (
               SELECT 1 FROM windows w
               WHERE w.source_file = r.source_file AND w.venue = r.venue
                 AND w.symbol = r.symbol AND w.trade_date = r.trade_date
                 AND r.trade_id BETWEEN w.low_id AND w.high_id)""",
        rows=rows,
        windows=windows,
    )
    return inside.select(schema.names).cast(schema)


def day_row_counts(table: Table, trade_dates: Iterable[date]) -> dict[date, int] | None:
    """`Lakehouse.day_row_counts` of `table`, the ticks table."""
    if table.current_snapshot() is None:
        return {}
    days = [d.isoformat() for d in trade_dates]
    counts: dict[date, int] = {}
    position = [f.name for f in table.spec().fields].index("trade_date")
    for task in table.scan(row_filter=is_in("trade_date", days)).plan_files():
        if task.delete_files:
            return None
        day = _EPOCH + timedelta(days=task.file.partition[position])
        counts[day] = counts.get(day, 0) + task.file.record_count
    return counts


def ticks_for_days(
    table: Table,
    trade_dates: Iterable[date],
    columns: Sequence[str] | None = None,
    snapshot_id: int | None = None,
) -> pa.Table:
    """`Lakehouse.ticks_for_days` of `table`, the ticks table as of `snapshot_id`."""
    days = [d.isoformat() for d in trade_dates]
    names = list(columns or TICKS_ARROW.names)
    schema = pa.schema([TICKS_ARROW.field(n) for n in names])
    if table.current_snapshot() is None:
        return schema.empty_table()
    scan = table.scan(
        row_filter=is_in("trade_date", days),
        selected_fields=tuple(names),
        snapshot_id=snapshot_id,
    )
    return scan.to_arrow().select(names).cast(schema)


def ticks_dataset(
    table_at: Callable[[str, int | None], Table],
    trade_dates: Iterable[date],
    between: tuple[datetime, datetime] | None = None,
    snapshot_id: int | None = None,
) -> pa.Table | ds.Dataset:
    """`Lakehouse.ticks_dataset`: `table_at` (`Lakehouse.table_at`) loads the ticks table for
    the read, and again for the rows in memory where a data file has row-level deletes."""
    days = [d.isoformat() for d in trade_dates]
    table = table_at(TICKS_TABLE, snapshot_id)
    if table.current_snapshot() is None:
        return TICKS_ARROW.empty_table()
    row_filter: BooleanExpression = is_in("trade_date", days)
    if between is not None:
        low, high = (t.isoformat() for t in between)
        row_filter = And(row_filter, And(at_least("ts", low), at_most("ts", high)))
    tasks = list(table.scan(row_filter=row_filter, snapshot_id=snapshot_id).plan_files())
    if not isinstance(table.io, PyArrowFileIO) or any(t.delete_files for t in tasks):
        return ticks_for_days(
            table_at(TICKS_TABLE, snapshot_id), trade_dates, snapshot_id=snapshot_id
        )
    locations = [table.io.parse_location(t.file.file_path, table.io.properties) for t in tasks]
    if not locations:
        return TICKS_ARROW.empty_table()
    scheme, netloc, _ = locations[0]
    return ds.dataset(
        [path for _, _, path in locations],
        schema=TICKS_ARROW,
        format="parquet",
        filesystem=table.io.fs_by_scheme(scheme, netloc),
    )


def reference_records(
    table: Table,
    columns: Sequence[str],
    row_filter: BooleanExpression | None = None,
    limit: int | None = None,
) -> pa.Table:
    schema = pa.schema([REFERENCE_ARROW.field(n) for n in columns])
    if table.current_snapshot() is None:
        return schema.empty_table()
    scan = table.scan(selected_fields=tuple(columns), limit=limit)
    if row_filter is not None:
        scan = scan.filter(row_filter)
    return scan.to_arrow().select(list(columns)).cast(schema)


def bars_for_day(table: Table, trade_date: date, snapshot_id: int | None = None) -> pa.Table:
    if table.current_snapshot() is None:
        return BARS_ARROW.empty_table()
    scan = table.scan(
        row_filter=equal_to("trade_date", trade_date.isoformat()), snapshot_id=snapshot_id
    )
    return scan.to_arrow().cast(BARS_ARROW)
