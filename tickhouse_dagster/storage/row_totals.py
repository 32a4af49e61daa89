"""A trade date's ticks summed per data file, each data file summed once: the part of the bars'
reconciliation (quality.bar_rules.distinct_trade_totals) that would otherwise read every tick of
the day on every build, so that a build late in a day of many files read the whole day again.

An Iceberg data file never changes once written (a rewrite writes new files), so its
`row_totals`, kept in a local cache under its path, size and row count, stay its totals for as
long as the table holds it; a file the table no longer holds is simply not asked for again. A
file's totals come from reading that file, never from what the writer meant to write, and the
rows read must be as many as the manifest says. A day with row-level deletes (which only a
full Iceberg read applies) gets None: the caller sums the day's rows itself.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from tickhouse_dagster.quality.bar_rules import ROW_TOTALS_ARROW, ROW_TOTALS_COLUMNS, row_totals
from tickhouse_dagster.storage.row_filters import equal_to


class RowTotalsMismatch(RuntimeError):
    """A data file read back with another number of rows than its manifest entry gives."""


def day_row_totals(
    ticks: Table, trade_date: date, snapshot_id: int | None, cache: Path
) -> pa.Table | None:
    """The `row_totals` of each data file of `trade_date` in `ticks` as of `snapshot_id`
    (default: current), one part per file in plan order, reading only the files not yet in
    `cache`; None when a file of the day has row-level deletes."""
    if ticks.current_snapshot() is None:
        return ROW_TOTALS_ARROW.empty_table()
    day = equal_to("trade_date", trade_date.isoformat())
    tasks = list(ticks.scan(row_filter=day, snapshot_id=snapshot_id).plan_files())
    if not isinstance(ticks.io, PyArrowFileIO) or any(t.delete_files for t in tasks):
        return None
    parts = [file_row_totals(ticks.io, task.file, cache) for task in tasks]
    if not parts:
        return ROW_TOTALS_ARROW.empty_table()
    totals = pa.concat_tables(parts)
    # The table is partitioned by trade date, so this keeps every row; it says what is meant.
    return totals.filter(pc.equal(totals["trade_date"], pa.scalar(trade_date, pa.date32())))


def file_row_totals(io: PyArrowFileIO, data_file: DataFile, cache: Path) -> pa.Table:
    """One data file's `row_totals`: from `cache` when it holds them, else read and kept."""
    entry = cache_entry(cache, data_file)
    try:
        with ipc.open_file(entry) as reader:
            return reader.read_all()
    except FileNotFoundError:
        pass
    except (OSError, pa.ArrowInvalid):  # unreadable (a torn write, say): count it again
        entry.unlink(missing_ok=True)
    scheme, netloc, path = io.parse_location(data_file.file_path, io.properties)
    rows = pq.read_table(
        path, columns=list(ROW_TOTALS_COLUMNS), filesystem=io.fs_by_scheme(scheme, netloc)
    )
    if rows.num_rows != data_file.record_count:
        raise RowTotalsMismatch(
            f"{data_file.file_path}: read {rows.num_rows} rows, its manifest entry says "
            f"{data_file.record_count}"
        )
    totals = row_totals(rows)
    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    with ipc.new_file(partial, ROW_TOTALS_ARROW) as writer:
        writer.write_table(totals)
    os.replace(partial, entry)  # whole or absent: another process may be writing it too
    return totals


def cache_entry(cache: Path, data_file: DataFile) -> Path:
    """Where `data_file`'s totals are kept: named by its path, size and rows together, so a
    file at a reused path (a warehouse wiped and written again) is never taken for another."""
    identity = f"{data_file.file_path}|{data_file.file_size_in_bytes}|{data_file.record_count}"
    name = hashlib.sha256(identity.encode()).hexdigest()
    return cache / name[:2] / f"{name}.arrow"
