"""pyiceberg's private names tickhouse relies on (pyiceberg 0.12):

- writing an Arrow table as a table's data files without committing them
  (`Lakehouse.write_data_files`; the public API only appends or overwrites);
- a transaction that reads its staged metadata once per staged state (`CachedTransaction`);
- a SQL catalog that keeps what it has read and made: parsed metadata by location, one FileIO
  per property set (`RememberingSqlCatalog`).

tickhouse_dagster_tests/compat/test_private_apis.py checks their signatures and behaviour."""

from __future__ import annotations

import threading
from collections import OrderedDict
from urllib.parse import urlparse

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.io import FileIO, load_file_io
from pyiceberg.io.pyarrow import _dataframe_to_data_files, write_file
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import CommitTableResponse, Table, Transaction, WriteTask
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableRequirement, TableUpdate
from pyiceberg.typedef import EMPTY_DICT, Properties

__all__ = [
    "CachedTransaction",
    "RememberingSqlCatalog",
    "WriteTask",
    "dataframe_to_data_files",
    "write_file",
]

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


class RememberingSqlCatalog(SqlCatalog):
    """`SqlCatalog` that keeps what it has read and made, so loading a table costs the catalog
    query and nothing else when its metadata has not changed.

    pyiceberg 0.12 reads and parses a table's metadata file on every `load_table` (and on every
    `commit_table`, which loads the table to check its requirements), and makes two new FileIOs
    per load, each starting a new S3 client on first use: together about a fifth of a bar
    commit's time, and more as the metadata's snapshot history grows (decision 1605). An Iceberg
    metadata file is never rewritten — each commit writes a new one and the catalog row points to
    it — and pyiceberg's metadata objects are frozen, so metadata parsed once is kept by its
    location (the last `METADATA_ENTRIES` used) and the one a commit wrote is kept as it is
    committed. One FileIO per property set serves every table: pyarrow's filesystems are
    thread-safe. The catalog row is still read on every load, so a commit by any other process
    is seen as before."""

    METADATA_ENTRIES = 64

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        self._lock = threading.Lock()
        self._file_ios: dict[tuple[tuple[tuple[str, str], ...], str], FileIO] = {}
        self._metadata: OrderedDict[str, TableMetadata] = OrderedDict()

    def _load_file_io(
        self, properties: Properties = EMPTY_DICT, location: str | None = None
    ) -> FileIO:
        merged = {**self.properties, **properties}
        key = (tuple(sorted(merged.items())), urlparse(location or "").scheme)
        with self._lock:
            io = self._file_ios.get(key)
            if io is None:
                io = self._file_ios[key] = load_file_io(merged, location)
            return io

    def _remember(self, location: str, metadata: TableMetadata) -> None:
        with self._lock:
            self._metadata[location] = metadata
            self._metadata.move_to_end(location)
            while len(self._metadata) > self.METADATA_ENTRIES:
                self._metadata.popitem(last=False)

    def _recalled(self, location: str) -> TableMetadata | None:
        with self._lock:
            metadata = self._metadata.get(location)
            if metadata is not None:
                self._metadata.move_to_end(location)
            return metadata

    def _convert_orm_to_iceberg(self, orm_table: IcebergTables) -> Table:
        location, namespace, name = (
            orm_table.metadata_location,
            orm_table.table_namespace,
            orm_table.table_name,
        )
        if not (location and namespace and name):
            # pyiceberg's own messages for a row without them.
            return super()._convert_orm_to_iceberg(orm_table)
        metadata = self._recalled(location)
        if metadata is None:
            metadata = FromInputFile.table_metadata(
                self._load_file_io(location=location).new_input(location)
            )
            self._remember(location, metadata)
        return Table(
            identifier=(*Catalog.identifier_to_tuple(namespace), name),
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(metadata.properties, location),
            catalog=self,
        )

    def commit_table(
        self,
        table: Table,
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> CommitTableResponse:
        response = super().commit_table(table, requirements, updates)
        self._remember(response.metadata_location, response.metadata)
        return response
