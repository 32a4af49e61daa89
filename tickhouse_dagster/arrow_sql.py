"""SQL over Arrow tables with DuckDB, the tables registered by name, explicitly, per query."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa


def arrow_connection(**tables: pa.Table) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with `tables` registered by name (use it as a context
    manager), for work that runs several statements over the same data."""
    return _connection(tables)


def _connection(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")  # timestamptz values come back in UTC
    for name, table in tables.items():
        connection.register(name, table)
    return connection


def query_rows(sql: str, params: dict[str, Any] | None = None, **tables: pa.Table) -> list[tuple]:
    with _connection(tables) as connection:
        return connection.execute(sql, params or {}).fetchall()


def query_arrow(sql: str, params: dict[str, Any] | None = None, **tables: pa.Table) -> pa.Table:
    with _connection(tables) as connection:
        return connection.sql(sql, params=params or {}).to_arrow_table()
