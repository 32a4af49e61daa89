"""SQL over Arrow tables with DuckDB, the tables registered by name, explicitly, per query."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

ArrowSource = pa.Table | ds.Dataset
"""Rows for a query: a table in memory, or a dataset DuckDB streams with only the columns it
needs (e.g. a trade date's data files in the lakehouse)."""


def arrow_connection(**tables: ArrowSource) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with `tables` registered by name (use it as a context
    manager), for work that runs several statements over the same data. A dataset of local
    Parquet files is read by DuckDB's own Parquet reader, which is faster than scanning it
    through Arrow; any other dataset streams through Arrow."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")  # timestamptz values come back in UTC
    for name, table in tables.items():
        if _local_parquet(table):
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in table.files)
            connection.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{files}])')
        else:
            connection.register(name, table)
    return connection


def _local_parquet(table: ArrowSource) -> bool:
    return (
        isinstance(table, ds.FileSystemDataset)
        and isinstance(table.format, ds.ParquetFileFormat)
        and isinstance(table.filesystem, pafs.LocalFileSystem)
        and bool(table.files)
    )


def query_rows(
    sql: str, params: dict[str, Any] | None = None, **tables: ArrowSource
) -> list[tuple]:
    with arrow_connection(**tables) as connection:
        return connection.execute(sql, params or {}).fetchall()
