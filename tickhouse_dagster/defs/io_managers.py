"""The Iceberg IO manager: assets hand it rows, it replaces their partition of an Iceberg table;
downstream assets get the partitions they depend on as the type their input is annotated with.

An asset's table is `<namespace>.<last part of the asset key>` (`market/ohlcv_15m` →
`market.ohlcv_15m`), in the lakehouse the `lakehouse` resource configures (any catalog, any
warehouse). The storage work is `storage.iceberg_io`; this module is only the Dagster side.

Outputs: `pyarrow.Table`, `pyarrow.RecordBatchReader` (streamed), `polars.DataFrame` /
`LazyFrame`, a DuckDB relation, or anything with the Arrow C stream interface. Inputs:
`pyarrow.Table` (also when not annotated), `pyarrow.RecordBatchReader`, `polars.DataFrame`,
`polars.LazyFrame`, `duckdb.DuckDBPyRelation`. Input metadata (`AssetIn(metadata=...)`):
`snapshot_id` or `as_of` (ISO 8601 time with a zone) to read an earlier state of the table,
`columns` to read only some columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    DagsterLogManager,
    DynamicPartitionsDefinition,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)
from pydantic import Field, PrivateAttr
from pyiceberg.schema import Schema

from tickhouse_dagster.core.arrow_sql import relation
from tickhouse_dagster.defs.links import table_links
from tickhouse_dagster.defs.resources import LakehouseResource
from tickhouse_dagster.defs.retries import retry_transient
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.iceberg_io import IcebergTables, TableRead, TableWrite

IO_MANAGER_KEY = "iceberg_io_manager"


@cache
def _input_types() -> dict[Any, Any]:
    """What an input can be annotated with, and how the Arrow rows become it. polars is
    imported when an asset reads or writes through the IO manager, not when the code location
    loads: every run process would pay for it, most never use it."""
    import polars as pl

    return {
        pa.Table: lambda rows: rows,
        pl.DataFrame: pl.from_arrow,
        pl.LazyFrame: lambda rows: pl.DataFrame(rows).lazy(),
        duckdb.DuckDBPyRelation: relation,
    }


_SUPPORTED_INPUTS = (
    "pyarrow.Table, pyarrow.RecordBatchReader, polars.DataFrame, polars.LazyFrame, "
    "duckdb.DuckDBPyRelation"
)


class IcebergIOManager(ConfigurableIOManager):
    """Stores each asset in an Iceberg table named after its key, one commit per
    materialization: a daily-partitioned asset replaces exactly its trade date(s), an
    unpartitioned one the whole table. Inputs read only the partitions they depend on."""

    lakehouse: LakehouseResource
    as_of: str | None = Field(
        default=None,
        description=(
            "Read every input as the tables were at this time (ISO 8601 with a zone), e.g. to "
            "rerun a downstream asset on the data of then; an input's own `snapshot_id` / "
            "`as_of` metadata wins."
        ),
    )
    _tables: IcebergTables | None = PrivateAttr(default=None)

    def tables(self) -> IcebergTables:
        if self._tables is None:
            self._tables = IcebergTables(self.lakehouse.lakehouse())
        return self._tables

    def handle_output(self, context: OutputContext, obj: object) -> None:
        name = _table_name(context)
        rows = to_arrow(obj, context)
        days = files = None
        if context.has_asset_partitions and _per_file(context.asset_partitions_def):
            files = list(context.asset_partition_keys)
        elif context.has_asset_partitions:
            days = _trade_dates(context)
        with _retrying(context):
            written = self.tables().write(name, rows, days, source_files=files)
        context.add_output_metadata(write_metadata(written))

    def load_input(self, context: InputContext) -> object:
        kind = context.dagster_type.typing_type
        if kind in (Any, object):
            kind = pa.Table
        if kind is not pa.RecordBatchReader and kind not in _input_types():
            raise TypeError(
                f"input {context.name!r} is annotated {getattr(kind, '__name__', kind)}; the "
                f"Iceberg IO manager gives {_SUPPORTED_INPUTS}"
            )
        options = context.definition_metadata or {}
        snapshot_id = options.get("snapshot_id")
        as_of = options.get("as_of", None if snapshot_id is not None else self.as_of)
        days, files = _partitions_to_read(context)
        with _retrying(context):
            read = self.tables().read(
                _table_name(context),
                days,
                snapshot_id=int(snapshot_id) if snapshot_id is not None else None,
                as_of=_instant(as_of),
                columns=options.get("columns"),
                stream=kind is pa.RecordBatchReader,
                source_files=files,
            )
        # Logged, not added as input metadata: that would record an observation of the upstream
        # asset on every read (and Dagster refuses it for a range of partitions).
        context.log.info(describe_read(read, days, files))
        if kind is pa.RecordBatchReader:
            return read.rows
        return _input_types()[kind](read.rows)


def _per_file(partitions_def: object) -> bool:
    """Per-file partitions (the landing files, or any dynamic partitions) map onto the
    `source_file` column; every other partitions definition's keys are trade dates."""
    return isinstance(partitions_def, DynamicPartitionsDefinition)


def _partitions_to_read(context: InputContext) -> tuple[list[date] | None, list[str] | None]:
    """(trade dates, landing files) of the upstream table the input needs; None = all. A
    per-file upstream (market.ticks) read by a daily asset gives that asset's trade date from
    every file — Dagster maps the day to all file partitions, which is every row of the table
    —, read by a per-file asset its own files, by an unpartitioned one everything."""
    if not context.has_asset_partitions:
        return None, None
    if not _per_file(context.asset_partitions_def):
        return _trade_dates(context), None
    if not context.has_partition_key:  # an unpartitioned (or range) downstream
        return None, None
    key = context.partition_key
    try:
        return [date.fromisoformat(key)], None
    except ValueError:
        return None, list(context.asset_partition_keys)


def iceberg_io_managers(lakehouse: LakehouseResource) -> dict[str, IcebergIOManager]:
    """The IO manager resources, on the same lakehouse configuration as `lakehouse`."""
    return {IO_MANAGER_KEY: IcebergIOManager(lakehouse=lakehouse)}


def to_arrow(obj: object, context: OutputContext) -> pa.Table | pa.RecordBatchReader:
    if isinstance(obj, pa.Table | pa.RecordBatchReader):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if type(obj).__module__.partition(".")[0] == "polars":
        import polars as pl

        if isinstance(obj, pl.DataFrame):
            return obj.to_arrow()
        if isinstance(obj, pl.LazyFrame):
            return obj.collect().to_arrow()
    if isinstance(obj, duckdb.DuckDBPyRelation):
        return obj.to_arrow_reader()
    if hasattr(obj, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(obj)
    raise TypeError(
        f"{_describe(context)} returned {type(obj).__name__}; the Iceberg IO manager stores a "
        "pyarrow Table or RecordBatchReader, a polars DataFrame or LazyFrame, a DuckDB relation "
        "or any object with the Arrow C stream interface"
    )


def write_metadata(written: TableWrite) -> dict[str, Any]:
    commit = written.commit
    partitioned = written.trade_dates is not None or written.source_files is not None
    return {
        **table_metadata(
            commit,
            written.schema,
            written.trade_dates,
            partition_rows=commit.rows_written if partitioned else None,
        ),
        "rows_written": MetadataValue.int(commit.rows_written),
        "rows_removed": MetadataValue.int(commit.rows_removed),
        "commit_attempts": MetadataValue.int(commit.attempts),
        **({"source_files": ", ".join(written.source_files)} if written.source_files else {}),
    }


def table_metadata(
    commit: Commit,
    schema: Schema,
    trade_dates: Sequence[date] | None,
    *,
    partition_rows: int | None = None,
    bar_interval: str | None = None,
) -> dict[str, Any]:
    return written_table_metadata(
        commit.table,
        commit.snapshot_id,
        schema,
        trade_dates,
        table_rows=commit.table_rows,
        partition_rows=partition_rows,
        bar_interval=bar_interval,
    )


def written_table_metadata(
    table: str,
    snapshot_id: int | str | None,
    schema: Schema,
    trade_dates: Sequence[date] | None,
    *,
    table_rows: int | None = None,
    partition_rows: int | None = None,
    bar_interval: str | None = None,
) -> dict[str, Any]:
    """What every write to an Iceberg table shows in the UI — the IO manager's, the ticks' and
    the bars' alike: Dagster's table metadata (the table's name and columns, its rows after the
    commit and the partition's rows), the snapshot, the trade dates written, and links to the
    tools that read the table (`defs/links.py`, where configured)."""
    metadata: dict[str, Any] = {
        "dagster/table_name": table,
        "dagster/column_schema": MetadataValue.table_schema(column_schema(schema)),
        "dagster/row_count": _int_or_none(table_rows),
        "dagster/partition_row_count": _int_or_none(partition_rows),
        "snapshot_id": str(snapshot_id),
    }
    if trade_dates is not None:
        metadata["trade_dates"] = ",".join(d.isoformat() for d in sorted(trade_dates))
    metadata.update(table_links(table, trade_dates, bar_interval=bar_interval))
    return {k: v for k, v in metadata.items() if v is not None}


def _int_or_none(value: int | None) -> MetadataValue | None:
    return None if value is None else MetadataValue.int(value)


def describe_read(
    read: TableRead, days: Sequence[date] | None, files: Sequence[str] | None = None
) -> str:
    what = f"{read.table} trade dates {_describe_days(days)}" if days is not None else read.table
    if files is not None:
        what += f" files {', '.join(files[:3])}" + (
            f" (+{len(files) - 3})" if len(files) > 3 else ""
        )
    size = f", {read.rows.num_rows} rows" if isinstance(read.rows, pa.Table) else ""
    return f"read {what} at snapshot {read.snapshot_id}{size}"


def column_schema(schema: Schema) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(
                name=field.name,
                type=str(field.field_type),
                description=field.doc,
                constraints=TableColumnConstraints(nullable=not field.required),
            )
            for field in schema.fields
        ]
    )


def _table_name(context: InputContext | OutputContext) -> str:
    if not context.has_asset_key:
        raise DagsterInvariantViolationError(
            f"{_describe(context)}: the Iceberg IO manager stores assets only (an op output has "
            "no table)"
        )
    return context.asset_key.path[-1]


def _trade_dates(context: InputContext | OutputContext) -> list[date]:
    days = []
    for key in context.asset_partition_keys:
        try:
            days.append(date.fromisoformat(key))
        except ValueError:
            raise ValueError(
                f"{_describe(context)}: partition {key!r} is not a trade date; the Iceberg IO "
                "manager maps daily partitions (YYYY-MM-DD) onto the trade_date column"
            ) from None
    return days


def _instant(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _describe(context: InputContext | OutputContext) -> str:
    if context.has_asset_key:
        return context.asset_key.to_user_string()
    return f"output {context.name!r}"


def _describe_days(days: Sequence[date]) -> str:
    ordered = sorted(days)
    if len(ordered) > 3:
        return f"{ordered[0].isoformat()}..{ordered[-1].isoformat()} ({len(ordered)} days)"
    return ",".join(d.isoformat() for d in ordered)


@dataclass(frozen=True)
class _Attempt:
    """What `retry_transient` needs of a step: which attempt this is and where to log."""

    retry_number: int
    log: DagsterLogManager


@contextmanager
def _retrying(context: InputContext | OutputContext) -> Iterator[None]:
    """Transient storage errors (the object store or catalog unreachable or busy) ask Dagster to
    retry the step, as the project's own assets do; outside a run they are raised as they are."""
    try:
        step = context.step_context
    except DagsterInvariantViolationError:
        step = None
    if step is None:
        yield
        return
    with retry_transient(_Attempt(step.previous_attempt_count, context.log)):  # type: ignore[arg-type]
        yield
