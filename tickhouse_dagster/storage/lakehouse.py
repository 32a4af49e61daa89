"""The Iceberg side of the lakehouse: the `ticks` and `ohlcv_*` tables and the only two ways they
change — replace one landing file's ticks, replace one trade date's bars. Each is one Iceberg
commit (delete + append in a single transaction), retried on a concurrent writer's conflict."""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import And, BooleanExpression, Or
from pyiceberg.io.pyarrow import PyArrowFileIO, pyarrow_to_schema
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import (
    PartitionField,
    PartitionFieldValue,
    PartitionKey,
    PartitionSpec,
)
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import IdentityTransform

from tickhouse_dagster.compat.pyiceberg_private import (
    WriteTask,
    dataframe_to_data_files,
    write_file,
)
from tickhouse_dagster.core.arrow_sql import query_arrow
from tickhouse_dagster.core.contract import (
    BAR_INTERVALS,
    BARS_ARROW,
    BARS_SCHEMA,
    CORRECTIONS_ARROW,
    CORRECTIONS_SCHEMA,
    CORRECTIONS_TABLE,
    REFERENCE_ARROW,
    REFERENCE_SCHEMA,
    REFERENCE_TABLE,
    TICKS_ARROW,
    TICKS_SCHEMA,
    TICKS_TABLE,
    TRADE_ID_RANGES_SCHEMA,
    TRADE_ID_RANGES_TABLE,
    TRADE_KEY,
    bar_table_name,
)
from tickhouse_dagster.market.corrections import (
    corrections_from_parsed,
    has_corrections,
    is_correction,
    latest_corrections,
    replacements,
    trade_keys,
    without_corrected,
)
from tickhouse_dagster.storage.bar_builds import BarBuild, superseded
from tickhouse_dagster.storage.commit_retry import Backoff, retry_commit
from tickhouse_dagster.storage.row_filters import at_least, at_most, equal_to, is_in

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 10
COMMIT_BACKOFF = Backoff(COMMIT_ATTEMPTS, first_delay=0.1, max_delay=5.0)
WRITE_CHUNK_ROWS = 2_000_000  # rows encoded to Parquet at a time by `write_file_ticks`

TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
}
# Full bounds for source_file, so replacing a file's ticks drops its data files whole instead of
# rewriting them (bounds truncated to 16 characters cannot prove a data file holds one file only).
_EPOCH = date(1970, 1, 1)  # identity-partitioned dates are stored as days since it
_TICKS_PROPERTIES = {
    **TABLE_PROPERTIES,
    "write.metadata.metrics.column.source_file": "full",
    # A manifest per commit would make every later lookup and commit of the day read one more:
    # appends merge small manifests once 16 pile up, so their number stays bounded.
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "16",
}


def _trade_date_spec(schema: Schema) -> PartitionSpec:
    field_id = schema.find_field("trade_date").field_id
    return PartitionSpec(PartitionField(field_id, 1000, IdentityTransform(), "trade_date"))


def _sort_order(schema: Schema, *columns: str) -> SortOrder:
    return SortOrder(
        *(SortField(schema.find_field(c).field_id, IdentityTransform()) for c in columns)
    )


@dataclass(frozen=True)
class Commit:
    table: str
    snapshot_id: int | None
    rows_written: int
    rows_removed: int
    attempts: int
    file_rows: int | None = None  # rows the landing file holds in the table after this commit
    corrections: int = 0  # cancels / replaces the file carried
    table_rows: int | None = None  # rows the whole table holds after this commit
    # Not committed: the stored rows were built from this newer ticks snapshot (bar_builds).
    superseded_by: int | None = None


class _Superseded(Exception):
    """Stops a bar commit whose rows were built from older ticks than the stored ones."""

    def __init__(self, build: BarBuild, bars_snapshot_id: int | None) -> None:
        super().__init__(f"bars of {build.trade_date} already built from newer ticks")
        self.build, self.bars_snapshot_id = build, bars_snapshot_id


@dataclass(frozen=True)
class LakehouseAddress:
    """What another process needs to open the same lakehouse (catalogs do not pickle)."""

    catalog_class: type[Catalog]
    catalog_name: str
    properties: dict[str, str]
    namespace: str

    def open(self) -> Lakehouse:
        catalog = self.catalog_class(self.catalog_name, **self.properties)
        return Lakehouse(catalog, self.namespace)


class Lakehouse:
    def __init__(self, catalog: Catalog, namespace: str = "market") -> None:
        self.catalog = catalog
        self.namespace = namespace
        # The last metadata each table was loaded with (commits update it in place): a read as
        # of a snapshot it holds needs no new load (`table_at`).
        self._loaded: dict[str, Table] = {}

    def address(self) -> LakehouseAddress:
        return LakehouseAddress(
            type(self.catalog), self.catalog.name, dict(self.catalog.properties), self.namespace
        )

    def identifier(self, table: str) -> str:
        return f"{self.namespace}.{table}"

    def ensure_namespace(self) -> None:
        try:
            self.catalog.create_namespace(self.namespace)
        except NamespaceAlreadyExistsError:
            pass
        except Exception:
            # A SQL catalog reports a namespace another writer created a moment before as an
            # integrity error, not as NamespaceAlreadyExistsError.
            if not self.catalog.namespace_exists(self.namespace):
                raise

    def ensure_tables(self) -> None:
        self.ensure_namespace()
        self._ensure(TICKS_TABLE, TICKS_SCHEMA, ("symbol", "ts"), _TICKS_PROPERTIES)
        self._ensure(CORRECTIONS_TABLE, CORRECTIONS_SCHEMA, ("symbol", "ts"), _TICKS_PROPERTIES)
        self._ensure(
            TRADE_ID_RANGES_TABLE, TRADE_ID_RANGES_SCHEMA, ("symbol", "low_id"), TABLE_PROPERTIES
        )
        for interval in BAR_INTERVALS:
            self._ensure(
                bar_table_name(interval), BARS_SCHEMA, ("symbol", "bar_start"), TABLE_PROPERTIES
            )
        # A few rows per file and per day: unpartitioned (a file's record has no trade date).
        self._ensure(REFERENCE_TABLE, REFERENCE_SCHEMA, ("built", "venue"), TABLE_PROPERTIES, False)

    def _ensure(
        self,
        name: str,
        schema: Schema,
        sort: tuple[str, ...],
        properties: dict[str, str],
        by_trade_date: bool = True,
    ) -> None:
        if self.catalog.table_exists(self.identifier(name)):
            return
        with contextlib.suppress(TableAlreadyExistsError):  # another run created it first
            self.catalog.create_table(
                self.identifier(name),
                schema=schema,
                partition_spec=_trade_date_spec(schema) if by_trade_date else PartitionSpec(),
                sort_order=_sort_order(schema, *sort),
                properties=properties,
            )

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

    def _replace(
        self,
        name: str,
        predicate: BooleanExpression,
        chunks: Callable[[], Iterable[pa.Table]],
    ) -> Commit:
        """Delete the rows matching `predicate` and append `chunks` in one atomic commit."""
        return self.replace_planned(name, lambda: (predicate, chunks()))

    def replace_planned(
        self, name: str, plan: Callable[[], tuple[BooleanExpression, Iterable[pa.Table]]]
    ) -> Commit:
        """`_replace` where what to delete and append is planned again on every attempt, from
        the tables as they are then (corrections depend on what other files committed)."""

        def apply(tx: Transaction) -> int:
            rows = 0
            predicate, chunks = plan()
            tx.delete(predicate)
            for chunk in chunks:
                if chunk.num_rows:
                    tx.append(chunk)
                    rows += chunk.num_rows
            return rows

        return self._commit(name, apply)

    def _commit(self, name: str, apply: Callable[[Transaction], int]) -> Commit:
        """One transaction on table `name` (`apply` stages its changes and returns the rows it
        appends), retried from a fresh table on a concurrent writer's conflict."""

        def attempt_once(attempt: int) -> Commit:
            table = self.table(name)
            before = table.current_snapshot()
            # A first ingest deletes nothing; that is expected, not worth a warning (also not
            # when pyiceberg replays the delete on its own retry, as the commit ends).
            with warnings.catch_warnings(), table.transaction() as tx:
                warnings.filterwarnings("ignore", message="Delete operation did not match")
                rows = apply(tx)
            return self._commit_summary(name, table, before, rows, attempt)

        return retry_commit(name, attempt_once, COMMIT_BACKOFF)

    def _commit_summary(
        self, name: str, table: Table, before: object, rows: int, attempts: int
    ) -> Commit:
        before_id = getattr(before, "snapshot_id", None)
        removed = 0
        snapshot = table.current_snapshot()
        current = snapshot
        while current is not None and current.snapshot_id != before_id:
            summary = current.summary
            if summary is not None:
                removed += int(summary.additional_properties.get("deleted-records", 0))
            parent = current.parent_snapshot_id
            current = table.snapshot_by_id(parent) if parent is not None else None
        summary = snapshot.summary if snapshot else None
        total = summary.additional_properties.get("total-records") if summary else None
        return Commit(
            self.identifier(name),
            snapshot.snapshot_id if snapshot else None,
            rows,
            removed,
            attempts,
            table_rows=int(total) if total is not None else None,
        )

    def replace_file_ticks(
        self,
        source_file: str,
        parsed_batches: Callable[[], Iterable[pa.RecordBatch]],
        ingested_at: datetime | None = None,
    ) -> Commit:
        """Make the ticks table hold exactly `parsed_batches` for `source_file`, with every
        trade correction (cancel / replace, see market.corrections) applied."""
        ingested_at = ingested_at or datetime.now(UTC)
        # Most lakehouses never see a correction: one catalog load tells, then nothing more.
        recorded = self.table(CORRECTIONS_TABLE).current_snapshot() is not None
        own = self._replace_file_corrections(source_file, parsed_batches, ingested_at, recorded)
        recorded = recorded or own.num_rows > 0

        def new_rows() -> Iterable[pa.Table]:
            for batch in parsed_batches():
                parsed = pa.Table.from_batches([batch])
                if has_corrections(parsed["trans_type"]):
                    parsed = parsed.filter(pc.invert(is_correction(parsed["trans_type"])))
                yield ticks_from_parsed(parsed, ingested_at)

        days = _trade_dates(parsed_batches) if recorded else set()
        if not own.num_rows and not self._corrections_for_days(days).num_rows:
            commit = self._replace(TICKS_TABLE, equal_to("source_file", source_file), new_rows)
            return replace(commit, file_rows=commit.rows_written)

        file_rows = 0
        named = set(trade_keys(own))

        def plan() -> tuple[BooleanExpression, Iterable[pa.Table]]:
            nonlocal file_rows
            file_rows = 0
            latest = latest_corrections(self._corrections_for_days(days))

            def rows() -> Iterable[pa.Table]:
                nonlocal file_rows
                for chunk in itertools.chain(
                    (without_corrected(t, latest) for t in new_rows()),
                    [replacements(latest.filter(_key_mask(latest, named)))],
                ):
                    file_rows += pc.sum(pc.equal(chunk["source_file"], source_file)).as_py() or 0
                    yield chunk

            return _file_or_trades(source_file, named), rows()

        commit = self.replace_planned(TICKS_TABLE, plan)
        return replace(commit, file_rows=file_rows, corrections=own.num_rows)

    def _replace_file_corrections(
        self,
        source_file: str,
        parsed_batches: Callable[[], Iterable[pa.RecordBatch]],
        ingested_at: datetime,
        recorded: bool,
    ) -> pa.Table:
        """Record the file's cancels / replaces (replacing those of an earlier version of it)
        before its ticks commit, so a crash in between is repaired by the retry. `recorded`:
        whether the corrections table holds anything at all."""
        own = []
        for batch in parsed_batches():
            parsed = pa.Table.from_batches([batch])
            if not has_corrections(parsed["trans_type"]):
                continue
            parsed = parsed.filter(is_correction(parsed["trans_type"]))
            own.append(corrections_from_parsed(parsed, ticks_from_parsed(parsed, ingested_at)))
        found = pa.concat_tables(own) if own else CORRECTIONS_ARROW.empty_table()
        stale = recorded and self._has_rows(CORRECTIONS_TABLE, equal_to("source_file", source_file))
        if found.num_rows or stale:
            self._replace(CORRECTIONS_TABLE, equal_to("source_file", source_file), lambda: [found])
        return found

    def _has_rows(self, name: str, row_filter: BooleanExpression | None = None) -> bool:
        table = self.table(name)
        if table.current_snapshot() is None:
            return False
        if row_filter is None:
            return True
        return any(True for _ in table.scan(row_filter=row_filter).plan_files())

    def _corrections_for_days(self, days: set[date]) -> pa.Table:
        if not days:
            return CORRECTIONS_ARROW.empty_table()
        table = self.table(CORRECTIONS_TABLE)
        if table.current_snapshot() is None:
            return CORRECTIONS_ARROW.empty_table()
        scan = table.scan(row_filter=is_in("trade_date", [d.isoformat() for d in days]))
        return scan.to_arrow().cast(CORRECTIONS_ARROW)

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
        table = self.table(TICKS_TABLE)
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

    def commit_file_ticks(self, source_file: str, data_files: Sequence[DataFile]) -> Commit:
        """Stage two: replace the file's rows with data files `write_file_ticks` wrote, in one
        atomic commit (delete + fast append), retried on a concurrent writer's conflict (the
        files are reused). Only while the lakehouse `has_corrections()` is false: new rows must
        otherwise be checked against them, which `replace_file_ticks` does."""

        commit = self.replace_data_files(
            TICKS_TABLE, equal_to("source_file", source_file), data_files
        )
        return replace(commit, file_rows=commit.rows_written)

    def replace_data_files(
        self, name: str, predicate: BooleanExpression, data_files: Sequence[DataFile]
    ) -> Commit:
        """Delete the rows of table `name` matching `predicate` and add already written data
        files, in one atomic commit (delete + fast append), retried on a concurrent writer's
        conflict (the files are reused)."""

        def apply(tx: Transaction) -> int:
            tx.delete(predicate)
            snapshot = tx.update_snapshot()
            merging = tx.table_metadata.properties.get("commit.manifest-merge.enabled") == "true"
            with snapshot.merge_append() if merging else snapshot.fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
            return sum(f.record_count for f in data_files)

        return self._commit(name, apply)

    def has_corrections(self) -> bool:
        return self._has_rows(CORRECTIONS_TABLE)

    def corrections_for_days(self, days: Iterable[date]) -> pa.Table:
        """Every correction on record for these trade dates (one partition-pruned read)."""
        return self._corrections_for_days(set(days))

    def file_totals(
        self, source_files: Sequence[str], trade_dates: Iterable[date], snapshot_id: int | None
    ) -> dict[str, tuple[int, int]]:
        """(rows, sum of quantity) of each landing file at a snapshot, in one scan. Data files
        carry full bounds of source_file and hold one landing file each, so only those files'
        data files are opened: the cost is theirs, not the day's."""
        totals = dict.fromkeys(source_files, (0, 0))
        table = self.table_at(TICKS_TABLE, snapshot_id)
        if table.current_snapshot() is None or not source_files:
            return totals
        days = sorted({d.isoformat() for d in trade_dates})
        row_filter = And(is_in("trade_date", days), is_in("source_file", list(source_files)))
        scan = table.scan(
            row_filter=row_filter,
            selected_fields=("source_file", "quantity"),
            snapshot_id=snapshot_id,
        )
        # Batch by batch: a 2 GB file's source_file column alone would be half a gigabyte.
        counts = {key: [0, 0] for key in source_files}
        for batch in scan.to_arrow_batch_reader():
            grouped = (
                pa.Table.from_batches([batch])
                .group_by("source_file")
                .aggregate([("quantity", "count"), ("quantity", "sum")])
            )
            for row in grouped.to_pylist():
                count = counts.setdefault(row["source_file"], [0, 0])
                count[0] += row["quantity_count"]
                count[1] += row["quantity_sum"] or 0
        totals.update({key: (rows, volume) for key, (rows, volume) in counts.items()})
        return totals

    def commit_files_ticks(self, files: Mapping[str, Sequence[DataFile]]) -> Commit:
        """`commit_file_ticks` for several landing files at once: each file's rows replaced by
        its data files, all in one atomic commit (a burst pays one commit, and the table one
        snapshot, per group instead of per file)."""
        if len(files) == 1:
            [(source_file, data_files)] = files.items()
            return self.commit_file_ticks(source_file, data_files)
        every = [data_file for data_files in files.values() for data_file in data_files]
        return self.replace_data_files(TICKS_TABLE, is_in("source_file", list(files)), every)

    def trades_in(self, windows: pa.Table) -> pa.Table:
        """Rows of committed landing files inside `windows` (quality.trade_ranges.WINDOWS_ARROW:
        a file, an instrument, a trade date and a trade_id range each). Only those files'
        data files are opened (each holds one file, with full source_file bounds)."""
        columns = ("venue", "symbol", "trade_date", "trade_id", "ts", "price", "quantity", "side")
        schema = pa.schema([TICKS_ARROW.field(n) for n in (*columns, "source_file")])
        table = self.table(TICKS_TABLE)
        if table.current_snapshot() is None or not windows.num_rows:
            return schema.empty_table()
        days = sorted({d.isoformat() for d in windows["trade_date"].to_pylist()})
        files = sorted(set(windows["source_file"].to_pylist()))
        row_filter = And(is_in("trade_date", days), is_in("source_file", files))
        scan = table.scan(row_filter=row_filter, selected_fields=(*columns, "source_file"))
        rows = scan.to_arrow().select(schema.names).cast(schema)
        inside = query_arrow(
            """SELECT r.* FROM rows r WHERE EXISTS (
                   SELECT 1 FROM windows w
                   WHERE w.source_file = r.source_file AND w.venue = r.venue
                     AND w.symbol = r.symbol AND w.trade_date = r.trade_date
                     AND r.trade_id BETWEEN w.low_id AND w.high_id)""",
            rows=rows,
            windows=windows,
        )
        return inside.select(schema.names).cast(schema)

    def day_row_counts(self, trade_dates: Iterable[date]) -> dict[date, int] | None:
        """Rows the ticks table holds per trade date, from its data files' record counts (no
        data read); None when delete files make those counts not the rows."""
        table = self.table(TICKS_TABLE)
        if table.current_snapshot() is None:
            return {}
        days = [d.isoformat() for d in trade_dates]
        counts: dict[date, int] = {}
        position = [f.name for f in table.spec().fields].index("trade_date")
        for task in table.scan(row_filter=is_in("trade_date", days)).plan_files():
            if task.delete_files:
                return None
            day = _EPOCH + timedelta(days=task.file.partition[position])
            counts[day] = counts.get(day, 0) + task.file.record_count
        return counts

    def replace_day_bars(
        self, interval: str, trade_date: date, bars: pa.Table, build: BarBuild | None = None
    ) -> Commit:
        """Replace the day's bars of `interval` in one commit. With `build` (what they were
        built from) the commit records it and is skipped when the stored bars were built from
        newer ticks (storage.bar_builds): the Commit then says `superseded` and writes
        nothing."""
        if build is None:
            return self._replace(
                bar_table_name(interval),
                equal_to("trade_date", trade_date.isoformat()),
                lambda: [bars.cast(BARS_ARROW)],
            )
        properties = build.properties()
        rows = bars.cast(BARS_ARROW)

        def apply(tx: Transaction) -> int:
            newer = superseded(tx.table_metadata, build)
            if newer is not None:
                raise _Superseded(newer, tx.table_metadata.current_snapshot_id)
            tx.delete(
                equal_to("trade_date", trade_date.isoformat()), snapshot_properties=properties
            )
            tx.append(rows, snapshot_properties=properties)
            return int(rows.num_rows)

        name = bar_table_name(interval)
        try:
            return self._commit(name, apply)
        except _Superseded as stop:
            return Commit(
                self.identifier(name),
                stop.bars_snapshot_id,
                0,
                0,
                1,
                superseded_by=stop.build.ticks_snapshot_id,
            )

    def ticks_for_days(
        self,
        trade_dates: Iterable[date],
        columns: Sequence[str] | None = None,
        snapshot_id: int | None = None,
    ) -> pa.Table:
        """The ticks of these trade dates (partition-pruned), optionally only some columns, as
        of `snapshot_id` (default: the current snapshot)."""
        days = [d.isoformat() for d in trade_dates]
        names = list(columns or TICKS_ARROW.names)
        schema = pa.schema([TICKS_ARROW.field(n) for n in names])
        table = self.table_at(TICKS_TABLE, snapshot_id)
        if table.current_snapshot() is None:
            return schema.empty_table()
        scan = table.scan(
            row_filter=is_in("trade_date", days),
            selected_fields=tuple(names),
            snapshot_id=snapshot_id,
        )
        return scan.to_arrow().select(names).cast(schema)

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
        days = [d.isoformat() for d in trade_dates]
        table = self.table_at(TICKS_TABLE, snapshot_id)
        if table.current_snapshot() is None:
            return TICKS_ARROW.empty_table()
        row_filter: BooleanExpression = is_in("trade_date", days)
        if between is not None:
            low, high = (t.isoformat() for t in between)
            row_filter = And(row_filter, And(at_least("ts", low), at_most("ts", high)))
        tasks = list(table.scan(row_filter=row_filter, snapshot_id=snapshot_id).plan_files())
        if not isinstance(table.io, PyArrowFileIO) or any(t.delete_files for t in tasks):
            return self.ticks_for_days(trade_dates, snapshot_id=snapshot_id)
        locations = [table.io.parse_location(t.file.file_path, table.io.properties) for t in tasks]
        if not locations:
            return TICKS_ARROW.empty_table()
        scheme, netloc, _ = locations[0]
        return ds.dataset(
            [path for _, _, path in locations],
            schema=TICKS_ARROW,
            format="parquet",
            filesystem=table.io.fs_by_scheme(scheme, netloc),
        )

    def replace_reference_records(self, predicate: BooleanExpression, rows: pa.Table) -> Commit:
        """Replace the `reference_data_used` rows matching `predicate` with `rows`, in one
        commit (storage.reference_lineage says what they are)."""
        return self._replace(REFERENCE_TABLE, predicate, lambda: [rows.cast(REFERENCE_ARROW)])

    def reference_records(
        self,
        columns: Sequence[str],
        row_filter: BooleanExpression | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        schema = pa.schema([REFERENCE_ARROW.field(n) for n in columns])
        table = self.table(REFERENCE_TABLE)
        if table.current_snapshot() is None:
            return schema.empty_table()
        scan = table.scan(selected_fields=tuple(columns), limit=limit)
        if row_filter is not None:
            scan = scan.filter(row_filter)
        return scan.to_arrow().select(list(columns)).cast(schema)

    def bars_for_day(
        self, interval: str, trade_date: date, snapshot_id: int | None = None
    ) -> pa.Table:
        table = self.table_at(bar_table_name(interval), snapshot_id)
        if table.current_snapshot() is None:
            return BARS_ARROW.empty_table()
        scan = table.scan(
            row_filter=equal_to("trade_date", trade_date.isoformat()), snapshot_id=snapshot_id
        )
        return scan.to_arrow().cast(BARS_ARROW)


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


def _key_mask(table: pa.Table, keys: set[tuple[Any, ...]]) -> pa.Array:
    return pa.array(
        [tuple(row.values()) in keys for row in table.select(list(TRADE_KEY)).to_pylist()],
        pa.bool_(),
    )


def _file_or_trades(source_file: str, keys: set[tuple[Any, ...]]) -> BooleanExpression:
    """The rows of a file, and every row of the trades its corrections name."""
    trades = [
        And(
            equal_to("venue", venue),
            equal_to("symbol", symbol),
            equal_to("trade_date", trade_date.isoformat()),
            equal_to("trade_id", trade_id),
        )
        for venue, symbol, trade_date, trade_id in sorted(keys)
    ]
    return reduce(Or, trades, equal_to("source_file", source_file))


def _trade_dates(parsed_batches: Callable[[], Iterable[pa.RecordBatch]]) -> set[date]:
    days: set[date] = set()
    for batch in parsed_batches():
        days.update(pc.unique(batch.column("trade_date")).to_pylist())
    return days
