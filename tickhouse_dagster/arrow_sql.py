"""SQL over Arrow tables with DuckDB, the tables registered by name, explicitly, per query."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa


def arrow_connection(**tables: pa.Table) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with `tables` registered by name (use it as a context
    manager), for work that runs several statements over the same data."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")  # timestamptz values come back in UTC
    for name, table in tables.items():
        connection.register(name, table)
    return connection


def query_rows(sql: str, params: dict[str, Any] | None = None, **tables: pa.Table) -> list[tuple]:
    with arrow_connection(**tables) as connection:
        return connection.execute(sql, params or {}).fetchall()
