"""SQL over Arrow tables with DuckDB, the tables registered by name, explicitly, per query."""

from __future__ import annotations

import os
import threading
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

ArrowSource: TypeAlias = pa.Table | ds.Dataset
"""Rows for a query: a table in memory, or a dataset DuckDB streams with only the columns it
needs (e.g. a trade date's data files in the lakehouse)."""


def arrow_connection(**tables: ArrowSource) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with `tables` registered by name (use it as a context
    manager), for work that runs several statements over the same data. A dataset of local
    Parquet files is read by DuckDB's own Parquet reader, which is faster than scanning it
    through Arrow; any other dataset streams through Arrow."""
    connection = _session()
    connection.execute("SET TimeZone = 'UTC'")  # timestamptz values come back in UTC
    for name, table in tables.items():
        if _local_parquet(table):
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in table.files)
            connection.execute(
                f'CREATE TEMP VIEW "{name}" AS SELECT * FROM read_parquet([{files}])'
            )
        else:
            connection.register(name, table)
    return connection


def relation(rows: ArrowSource) -> duckdb.DuckDBPyRelation:
    """A DuckDB relation over `rows` (nothing runs until it is queried), on a session of its
    own that lives as long as the relation does."""
    return arrow_connection(rows=rows).view("rows")


# DuckDB's own default is 80 % of the machine's memory, which it then keeps: a 2 GB file's key
# grouping would hold gigabytes after it ran. Bounded, larger work spills to its temp folder.
_CONFIG: dict[str, str | bool | int | float | list[str]] = {"memory_limit": "256MB"}
_database: tuple[int, duckdb.DuckDBPyConnection] | None = None
_database_lock = threading.Lock()


def _session() -> duckdb.DuckDBPyConnection:
    """A new session (its own temporary tables and registrations) on this process's in-memory
    DuckDB database. Opening a database costs ~16 ms, a session on an open one ~0.2 ms, and a
    file's ingest and bars take a dozen. Per process id: a forked worker opens its own."""
    global _database
    with _database_lock:
        if _database is None or _database[0] != os.getpid():
            _database = (os.getpid(), duckdb.connect(config=_CONFIG))
        return _database[1].cursor()


def _local_parquet(table: ArrowSource) -> bool:
    return (
        isinstance(table, ds.FileSystemDataset)
        and isinstance(table.format, ds.ParquetFileFormat)
        and isinstance(table.filesystem, pafs.LocalFileSystem)
        and bool(table.files)
    )


def query_rows(
    sql: str, params: dict[str, Any] | None = None, **tables: ArrowSource
) -> list[tuple[Any, ...]]:
    with arrow_connection(**tables) as connection:
        return connection.execute(sql, params or {}).fetchall()


def query_arrow(sql: str, params: dict[str, Any] | None = None, **tables: ArrowSource) -> pa.Table:
    with arrow_connection(**tables) as connection:
        return connection.sql(sql, params=params or None).to_arrow_table()
