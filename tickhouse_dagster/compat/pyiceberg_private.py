"""pyiceberg's private names tickhouse relies on (pyiceberg 0.12):

- writing an Arrow table as a table's data files without committing them
  (`Lakehouse.write_data_files`; the public API only appends or overwrites);
- a transaction that reads its staged metadata once per staged state (`CachedTransaction`).

tickhouse_dagster_tests/compat/test_private_apis.py checks their signatures and behaviour."""

from __future__ import annotations

from pyiceberg.io.pyarrow import _dataframe_to_data_files, write_file
from pyiceberg.table import Transaction, WriteTask
from pyiceberg.table.metadata import TableMetadata

__all__ = ["CachedTransaction", "WriteTask", "dataframe_to_data_files", "write_file"]

dataframe_to_data_files = _dataframe_to_data_files


class CachedTransaction(Transaction):
    """`Transaction` whose `table_metadata` is computed once per staged state.

    pyiceberg 0.12 replays every staged update and deep-copies the whole metadata (every
    snapshot) on each read of `Transaction.table_metadata`, and one delete + append reads it 45
    times: a bar commit cost grew with the table's history (measured: 0.32 s at 120 snapshots,
    0.14 s with this cache; docs/decisions/1603-commit-cost-and-table-history.md). The cache is
    keyed on the identity of the two inputs, the table's loaded metadata and the staged-updates
    tuple: staging rebinds the tuple and a commit replaces the table's metadata, so either
    invalidates it. The same change was approved upstream (apache/iceberg-python #3302, #3784)
    and is not in a release yet."""

    _cached: tuple[object, object, TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        cached = self._cached
        if cached is not None and cached[0] is base and cached[1] is updates:
            return cached[2]
        metadata = super().table_metadata
        self._cached = (base, updates, metadata)
        return metadata
