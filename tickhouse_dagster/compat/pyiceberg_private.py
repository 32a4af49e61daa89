"""pyiceberg's private names tickhouse relies on (pyiceberg 0.12): writing an Arrow table as a
table's data files without committing them (`Lakehouse.write_data_files`; the public API only
appends or overwrites). tickhouse_dagster_tests/compat/test_private_apis.py checks their
signatures and that they still write what a commit can add."""

from __future__ import annotations

from pyiceberg.io.pyarrow import _dataframe_to_data_files, write_file
from pyiceberg.table import WriteTask

__all__ = ["WriteTask", "dataframe_to_data_files", "write_file"]

dataframe_to_data_files = _dataframe_to_data_files
