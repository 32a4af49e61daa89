"""Writing ticks as data files apart from committing them, so the writing can run in a worker
process: parsed ticks become rows of the ticks table (`ticks_from_parsed`), are encoded to the
table's Parquet data files (`write_file_ticks`, `write_data_files`, committing nothing), and those
files then replace a landing file's rows in one commit in the parent (`commit_file_ticks`,
`commit_files_ticks`, `replace_data_files`: a delete + fast append of files already written).
Apart from corrections_plan, which plans rows against the corrections table inside the commit
and so cannot be written ahead; this path only takes files that carry no correction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import BooleanExpression
from pyiceberg.io.pyarrow import pyarrow_to_schema
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.table import Table, Transaction
from pyiceberg.transforms import IdentityTransform

from tickhouse_dagster.compat.pyiceberg_private import (
    WriteTask,
    dataframe_to_data_files,
    write_file,
)
from tickhouse_dagster.core.contract import TICKS_ARROW, TICKS_TABLE
from tickhouse_dagster.market.corrections import has_corrections
from tickhouse_dagster.storage import commits
from tickhouse_dagster.storage.commits import Commit, Tables
from tickhouse_dagster.storage.row_filters import equal_to, is_in

WRITE_CHUNK_ROWS = 2_000_000  # rows encoded to Parquet at a time by `write_file_ticks`


def write_file_ticks(
    table: Table, parsed_batches: Iterable[pa.RecordBatch], ingested_at: datetime
) -> list[DataFile] | None:
    """`Lakehouse.write_file_ticks` on the ticks table `table`: the file's rows as its Parquet
    data files, None when the file carries corrections (files already written are deleted)."""
    data_files: list[DataFile] = []
    pending: list[pa.Table] = []

    def flush() -> None:
        # Bounded pieces: a 2 GB file never sits in memory whole.
        if pending:
            data_files.extend(write_data_files(table, pa.concat_tables(pending)))
            pending.clear()

    def discard() -> None:
        for data_file in data_files:
            table.io.delete(data_file.file_path)

    try:
        for batch in parsed_batches:
            if has_corrections(batch.column("trans_type")):
                discard()
                return None
            pending.append(ticks_from_parsed(pa.Table.from_batches([batch]), ingested_at))
            if sum(t.num_rows for t in pending) >= WRITE_CHUNK_ROWS:
                flush()
        flush()
    except BaseException:
        discard()
        raise
    return data_files


def commit_file_ticks(tables: Tables, source_file: str, data_files: Sequence[DataFile]) -> Commit:
    commit = replace_data_files(
        tables, TICKS_TABLE, equal_to("source_file", source_file), data_files
    )
    return replace(commit, file_rows=commit.rows_written)


def commit_files_ticks(tables: Tables, files: Mapping[str, Sequence[DataFile]]) -> Commit:
    if len(files) == 1:
        [(source_file, data_files)] = files.items()
        return commit_file_ticks(tables, source_file, data_files)
    every = [data_file for data_files in files.values() for data_file in data_files]
    return replace_data_files(tables, TICKS_TABLE, is_in("source_file", list(files)), every)


def replace_data_files(
    tables: Tables, name: str, predicate: BooleanExpression, data_files: Sequence[DataFile]
) -> Commit:
    """`Lakehouse.replace_data_files`: one transaction that deletes and fast-appends."""

    def apply(tx: Transaction) -> int:
        tx.delete(predicate)
        snapshot = tx.update_snapshot()
        merging = tx.table_metadata.properties.get("commit.manifest-merge.enabled") == "true"
        with snapshot.merge_append() if merging else snapshot.fast_append() as append:
            for data_file in data_files:
                append.append_data_file(data_file)
        return sum(f.record_count for f in data_files)

    return commits.commit(tables, name, apply)


def ticks_from_parsed(parsed: pa.Table, ingested_at: datetime) -> pa.Table:
    """Parsed ticks as rows of the ticks table: contract columns plus the ingestion time."""
    stamp = pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), parsed.num_rows)
    columns = {name: parsed[name] for name in parsed.column_names}
    columns["ingested_at"] = stamp
    return pa.table([columns[f.name] for f in TICKS_ARROW], schema=TICKS_ARROW)


def write_data_files(table: Table, rows: pa.Table) -> list[DataFile]:
    """`rows` written as the table's Parquet data files. Rows of one trade date (a landing file's
    usual content) go straight to one partition: pyiceberg's general path would split the rows
    by partition first, a filtered copy of all of them."""
    spec, schema = table.metadata.spec(), table.metadata.schema()
    by_trade_date = (
        len(spec.fields) == 1
        and isinstance(spec.fields[0].transform, IdentityTransform)
        and schema.find_column_name(spec.fields[0].source_id) == "trade_date"
    )
    days = pc.unique(rows["trade_date"]) if by_trade_date else []
    if not by_trade_date or len(days) != 1:
        return list(dataframe_to_data_files(table.metadata, rows, table.io))
    task = WriteTask(
        write_uuid=uuid.uuid4(),
        task_id=0,
        schema=pyarrow_to_schema(rows.schema, name_mapping=schema.name_mapping),
        record_batches=rows.to_batches(),
        partition_key=PartitionKey(
            field_values=[PartitionFieldValue(spec.fields[0], days[0].as_py())],
            partition_spec=spec,
            schema=schema,
        ),
    )
    return list(write_file(table.io, table.metadata, iter([task])))
