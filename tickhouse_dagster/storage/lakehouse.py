"""The Iceberg side of the lakehouse: the `ticks` and `ohlcv_*` tables and the only two ways they
change — replace one landing file's ticks, replace one trade date's bars. Each is one Iceberg
commit (delete + append in a single transaction), retried on a concurrent writer's conflict.

`Lakehouse` is the one object callers use: it holds the catalog, loads the tables (and keeps the
last metadata of each, for reads as of a snapshot it holds), and hands everything else to a
module of one idea each, which it passes itself (as `commits.Tables`) or the table to read:

- storage.tables: creating the tables (partition spec, sort order, properties);
- storage.commits: the `Commit` record and the transaction, its retry and its summary;
- storage.corrections_plan: a landing file's rows planned against trade corrections;
- storage.ticks_writes: data files written in a worker, committed in the parent;
- storage.bar_writes: a trade date's bars, refused when built from older ticks;
- storage.readers: scans, datasets and data-file figures;
- storage.row_totals: each ticks data file's row totals, counted once (the reconciliation).

None of them imports this module."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import BooleanExpression
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from tickhouse_dagster.core.contract import (
    CORRECTIONS_TABLE,
    REFERENCE_ARROW,
    REFERENCE_TABLE,
    TICKS_TABLE,
    bar_table_name,
)
from tickhouse_dagster.storage import (
    bar_writes,
    commits,
    corrections_plan,
    readers,
    row_totals,
    tables,
    ticks_writes,
)
from tickhouse_dagster.storage.bar_builds import BarBuild
from tickhouse_dagster.storage.commits import Commit


@dataclass(frozen=True)
class LakehouseAddress:
    """What another process needs to open the same lakehouse (catalogs do not pickle)."""

    catalog_class: type[Catalog]
    catalog_name: str
    properties: dict[str, str]
    namespace: str
    row_totals_cache: Path | None = None

    def open(self) -> Lakehouse:
        catalog = self.catalog_class(self.catalog_name, **self.properties)
        return Lakehouse(catalog, self.namespace, self.row_totals_cache)


class Lakehouse:
    def __init__(
        self, catalog: Catalog, namespace: str = "market", row_totals_cache: Path | None = None
    ) -> None:
        self.catalog = catalog
        self.namespace = namespace
        # Where each ticks data file's row totals are kept once counted (storage.row_totals);
        # None: the reconciliation sums the day's rows on every build.
        self.row_totals_cache = row_totals_cache
        # The last metadata each table was loaded with (commits update it in place): a read as
        # of a snapshot it holds needs no new load (`table_at`).
        self._loaded: dict[str, Table] = {}

    def address(self) -> LakehouseAddress:
        return LakehouseAddress(
            type(self.catalog),
            self.catalog.name,
            dict(self.catalog.properties),
            self.namespace,
            self.row_totals_cache,
        )

    def identifier(self, table: str) -> str:
        return tables.identifier(self.namespace, table)

    def ensure_namespace(self) -> None:
        tables.ensure_namespace(self.catalog, self.namespace)

    def ensure_tables(self) -> None:
        tables.ensure_tables(self.catalog, self.namespace)

    def table(self, name: str) -> Table:
        """Table `name` as it is now (loaded afresh from the catalog)."""
        try:
            table = self.catalog.load_table(self.identifier(name))
        except NoSuchTableError:
            self.ensure_tables()
            table = self.catalog.load_table(self.identifier(name))
        self._loaded[name] = table
        return table

    def table_at(self, name: str, snapshot_id: int | None) -> Table:
        """Table `name` for a read as of `snapshot_id`: a snapshot never changes, so metadata
        this process already holds serves when it has that snapshot (a build's ticks, a commit's
        read-back), saving a catalog and object-store round trip; None (the current state) is
        always loaded afresh."""
        known = self._loaded.get(name)
        if snapshot_id is None or known is None or known.snapshot_by_id(snapshot_id) is None:
            return self.table(name)
        return known

    def replace_planned(
        self, name: str, plan: Callable[[], tuple[BooleanExpression, Iterable[pa.Table]]]
    ) -> Commit:
        """Delete and append in one atomic commit, where what to delete and append is planned
        again on every attempt, from the tables as they are then (corrections depend on what
        other files committed)."""
        return commits.replace_planned(self, name, plan)

    def replace_file_ticks(
        self,
        source_file: str,
        parsed_batches: Callable[[], Iterable[pa.RecordBatch]],
        ingested_at: datetime | None = None,
    ) -> Commit:
        """Make the ticks table hold exactly `parsed_batches` for `source_file`, with every
        trade correction (cancel / replace, see market.corrections) applied."""
        return corrections_plan.replace_file_ticks(
            self, source_file, parsed_batches, ingested_at or datetime.now(UTC)
        )

    def write_file_ticks(
        self,
        source_file: str,
        parsed_batches: Iterable[pa.RecordBatch],
        ingested_at: datetime | None = None,
    ) -> list[DataFile] | None:
        """Stage one of a two-stage replace, safe to run in a worker process: write the file's
        rows as the ticks table's Parquet data files (committing nothing) and return them for
        `commit_file_ticks`. None when the file carries corrections: those take
        `replace_file_ticks`, which has to see the corrections table as it commits. Files
        written before a correction or an error turns up are deleted again."""
        ingested_at = ingested_at or datetime.now(UTC)
        return ticks_writes.write_file_ticks(self.table(TICKS_TABLE), parsed_batches, ingested_at)

    def commit_file_ticks(self, source_file: str, data_files: Sequence[DataFile]) -> Commit:
        """Stage two: replace the file's rows with data files `write_file_ticks` wrote, in one
        atomic commit (delete + fast append), retried on a concurrent writer's conflict (the
        files are reused). Only while the lakehouse `has_corrections()` is false: new rows must
        otherwise be checked against them, which `replace_file_ticks` does."""
        return ticks_writes.commit_file_ticks(self, source_file, data_files)

    def replace_data_files(
        self, name: str, predicate: BooleanExpression, data_files: Sequence[DataFile]
    ) -> Commit:
        """Delete the rows of table `name` matching `predicate` and add already written data
        files, in one atomic commit (delete + fast append), retried on a concurrent writer's
        conflict (the files are reused)."""
        return ticks_writes.replace_data_files(self, name, predicate, data_files)

    def has_corrections(self) -> bool:
        return readers.has_rows(self.table(CORRECTIONS_TABLE))

    def corrections_for_days(self, days: Iterable[date]) -> pa.Table:
        """Every correction on record for these trade dates (one partition-pruned read)."""
        return corrections_plan.corrections_for_days(self, set(days))

    def file_totals(
        self, source_files: Sequence[str], trade_dates: Iterable[date], snapshot_id: int | None
    ) -> dict[str, tuple[int, int]]:
        """(rows, sum of quantity) of each landing file at a snapshot, in one scan. Data files
        carry full bounds of source_file and hold one landing file each, so only those files'
        data files are opened: the cost is theirs, not the day's."""
        table = self.table_at(TICKS_TABLE, snapshot_id)
        return readers.file_totals(table, source_files, trade_dates, snapshot_id)

    def commit_files_ticks(self, files: Mapping[str, Sequence[DataFile]]) -> Commit:
        """`commit_file_ticks` for several landing files at once: each file's rows replaced by
        its data files, all in one atomic commit (a burst pays one commit, and the table one
        snapshot, per group instead of per file)."""
        return ticks_writes.commit_files_ticks(self, files)

    def trades_in(self, windows: pa.Table) -> pa.Table:
        """Rows of committed landing files inside `windows` (quality.trade_ranges.WINDOWS_ARROW:
        a file, an instrument, a trade date and a trade_id range each). Only those files'
        data files are opened (each holds one file, with full source_file bounds)."""
        return readers.trades_in(self.table(TICKS_TABLE), windows)

    def day_row_counts(self, trade_dates: Iterable[date]) -> dict[date, int] | None:
        """Rows the ticks table holds per trade date, from its data files' record counts (no
        data read); None when delete files make those counts not the rows."""
        return readers.day_row_counts(self.table(TICKS_TABLE), trade_dates)

    def replace_day_bars(
        self, interval: str, trade_date: date, bars: pa.Table, build: BarBuild | None = None
    ) -> Commit:
        """Replace the day's bars of `interval` in one commit. With `build` (what they were
        built from) the commit records it and is skipped when the stored bars were built from
        newer ticks (storage.bar_builds): the Commit then says `superseded` and writes
        nothing."""
        return bar_writes.replace_day_bars(self, interval, trade_date, bars, build)

    def ticks_for_days(
        self,
        trade_dates: Iterable[date],
        columns: Sequence[str] | None = None,
        snapshot_id: int | None = None,
    ) -> pa.Table:
        """The ticks of these trade dates (partition-pruned), optionally only some columns, as
        of `snapshot_id` (default: the current snapshot)."""
        table = self.table_at(TICKS_TABLE, snapshot_id)
        return readers.ticks_for_days(table, trade_dates, columns, snapshot_id)

    def ticks_dataset(
        self,
        trade_dates: Iterable[date],
        between: tuple[datetime, datetime] | None = None,
        snapshot_id: int | None = None,
    ) -> pa.Table | ds.Dataset:
        """The ticks of these trade dates as a dataset over their data files, read lazily (a
        consumer such as DuckDB streams it with only the columns it needs, never holding the
        days whole). Falls back to the rows in memory when a file has row-level deletes, which
        only a full Iceberg read applies. `between`: only the data files whose trade times
        reach into that span (whole files: the consumer filters the rows). `snapshot_id`: as
        of that snapshot (default: the current one)."""
        return readers.ticks_dataset(self.table_at, trade_dates, between, snapshot_id)

    def day_row_totals(self, trade_date: date, snapshot_id: int | None = None) -> pa.Table | None:
        """The ticks' `row_totals` of `trade_date` as of `snapshot_id`, one part per data file,
        each file read once per cache (storage.row_totals); None without a cache, or when the
        day has row-level deletes."""
        if self.row_totals_cache is None:
            return None
        ticks = self.table_at(TICKS_TABLE, snapshot_id)
        return row_totals.day_row_totals(ticks, trade_date, snapshot_id, self.row_totals_cache)

    def replace_reference_records(self, predicate: BooleanExpression, rows: pa.Table) -> Commit:
        """Replace the `reference_data_used` rows matching `predicate` with `rows`, in one
        commit (storage.reference_lineage says what they are)."""
        return commits.replace(
            self, REFERENCE_TABLE, predicate, lambda: [rows.cast(REFERENCE_ARROW)]
        )

    def reference_records(
        self,
        columns: Sequence[str],
        row_filter: BooleanExpression | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        return readers.reference_records(self.table(REFERENCE_TABLE), columns, row_filter, limit)

    def bars_for_day(
        self, interval: str, trade_date: date, snapshot_id: int | None = None
    ) -> pa.Table:
        table = self.table_at(bar_table_name(interval), snapshot_id)
        return readers.bars_for_day(table, trade_date, snapshot_id)
