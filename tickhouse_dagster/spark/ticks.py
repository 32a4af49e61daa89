"""Landing files → `market.ticks` on Spark, with the Python engine's own parser and rules running
inside Spark tasks (docs/decisions/1701-spark-runs-the-project-parser.md).

1. Parse (Spark tasks, a few per core, files packed by size): for each file a task runs
   `parse_landing_file`, the very function the Python engine's worker processes run (the
   compiled fast path or lxml, the blocking value rules with the trade-date rule, the session /
   tick-grid rule) and stages the parsed rows as an Arrow IPC file. The driver collects one
   small `ParsedFile` per file.
2. Decide (driver): a refused file fails the whole job with the Python engine's own refusal
   (file, record, line, field, reason) before anything is committed; the copies check
   (`engine.commit.group_copies_of`) runs on the group, as the Python committer runs it.
3. Write (Iceberg's Spark runtime): files without corrections are replaced in one Iceberg commit.
   Their parse task also wrote their `market.ticks` rows (the Python engine's `new_trades` +
   `ticks_from_parsed`) as Parquet; Spark's own reader feeds them to the write, so the write
   stage is JVM only — overwrite by `source_file`, or a copy-on-write MERGE when a data file also
   holds rows of a file that stays (a write task writes several landing files into one file).
4. Corrections (driver): a file carrying cancels / replaces, or one whose trade dates have
   corrections on record, is committed by the Python engine's `commit_parsed` (the corrections
   table and the same cancel / replace planning, `Lakehouse.replace_file_ticks`), after the bulk
   commit, in key order.
No rule is written here: every check is the Python engine's.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.sql.types import DateType as SparkDate

from tickhouse_dagster.core.contract import TICKS_ARROW, TICKS_TABLE
from tickhouse_dagster.engine.commit import commit_parsed, group_copies_of, id_ranges_of
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import (
    LandingAddress,
    ParsedFile,
    Refusal,
    Staging,
    new_trades,
    parse_landing_file,
)
from tickhouse_dagster.market.corrections import has_corrections
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_filters import is_in
from tickhouse_dagster.storage.staging import StagedTicks
from tickhouse_dagster.storage.ticks_writes import ticks_from_parsed
from tickhouse_dagster.storage.trade_index import TradeIndex


class SparkIngestError(RuntimeError):
    """A Spark ingest that failed on its input; the message names the file and the reason."""

    def __init__(
        self, message: str, source_file: str | None = None, refusal: Refusal | None = None
    ) -> None:
        super().__init__(message)
        self.source_file = source_file
        self.refusal = refusal


@dataclass(frozen=True)
class ParseTask:
    """What a Spark task needs to parse one landing file (pickled to the executors: addresses
    and resolved reference data, never a client or a secret)."""

    landing: LandingAddress
    feed: Feed
    staging: Staging
    forced_profile: str | None = None
    # Set: a file without corrections also gets its ticks rows (stamped with this ingestion
    # time) as a Parquet file beside its staging, which Spark's own reader feeds to the write.
    ingested_at: datetime | None = None


@dataclass
class TaskResult:
    """One parsed landing file as a task reports it to the driver."""

    parsed: ParsedFile
    corrections: bool  # the file carries cancels / replaces
    seconds: float
    executor: str
    ticks_parquet: str | None = None  # its ticks rows for the Spark write (`write_ticks_rows`)


@dataclass(frozen=True)
class FileResult:
    key: str
    rows: int  # the file's rows in the table after the job
    parsed_rows: int
    trade_dates: tuple[str, ...]
    symbols: int
    profile: str
    venues: tuple[str, ...] = ()  # the venues the file's rows name
    parser: str = ""
    write: str = ""  # spark-overwrite, spark-merge or corrections
    corrections: int = 0
    session_grid: str = ""  # the (non-blocking) session / tick-grid findings, if any
    sha256: str = ""
    parse_seconds: float = 0.0


@dataclass(frozen=True)
class IngestResult:
    table: str
    snapshot_id: int | None
    method: str  # how the bulk files were written: overwrite, merge, or none
    files: tuple[FileResult, ...]
    seconds: float
    parse_seconds: float = 0.0
    write_seconds: float = 0.0
    executors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def trade_dates(self) -> tuple[str, ...]:
        return tuple(sorted({d for f in self.files for d in f.trade_dates}))


# --- 1. parse: the Python engine's function in a Spark task ---------------------------------


def _executor() -> str:
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is not None:
            return context.getLocalProperty("spark.executor.id") or str(context.partitionId())
    except Exception:  # only a label
        pass
    return "?"


def parse_one(task: ParseTask, key: str) -> TaskResult:
    """Run inside a Spark task: `parse_landing_file` on one key, staged under the run's staging
    area (and, for a file without corrections, its ticks rows for the write). Bad input is the
    result's refusal; a storage error raises (Spark retries the task)."""
    import os
    import socket

    started = time.perf_counter()
    parsed = parse_landing_file(
        task.landing,
        key,
        feed=task.feed,
        staging_uri=task.staging.uri_for(key),
        forced_profile=task.forced_profile,
    )
    corrections, rows_uri = False, None
    if parsed.staged is not None:
        if parsed.ok:
            corrections = any(
                has_corrections(b.column("trans_type")) for b in parsed.staged.batches()
            )
            if not corrections and task.ingested_at is not None:
                rows_uri = write_ticks_rows(parsed.staged, task.ingested_at)
        else:
            parsed.staged.delete()
            parsed.staged = None
    where = f"{socket.gethostname()}:{os.getpid()}"
    return TaskResult(parsed, corrections, time.perf_counter() - started, where, rows_uri)


ROW_GROUP_ROWS = 128 * 1024  # so Spark can split a big file's rows over several write tasks


def ticks_rows_uri(staged: StagedTicks) -> str:
    return staged.uri + ".ticks.parquet"


def write_ticks_rows(staged: StagedTicks, ingested_at: datetime) -> str:
    """The file's new trades as `market.ticks` rows (the Python engine's `new_trades` and
    `ticks_from_parsed`), as one Parquet file beside its staging; returns its URI."""
    uri = ticks_rows_uri(staged)
    filesystem, path = pafs.FileSystem.from_uri(uri)
    try:
        with pq.ParquetWriter(
            path, TICKS_ARROW, filesystem=filesystem, compression="snappy"
        ) as writer:
            for table in new_trades(staged):
                writer.write_table(ticks_from_parsed(table, ingested_at), ROW_GROUP_ROWS)
    except BaseException:
        delete_uri(uri)
        raise
    return uri


def delete_uri(uri: str) -> None:
    filesystem, path = pafs.FileSystem.from_uri(uri)
    with contextlib.suppress(FileNotFoundError):
        filesystem.delete_file(path)


def task_groups(sizes: Mapping[str, int], tasks: int) -> list[list[str]]:
    """Keys packed into at most `tasks` groups of about equal bytes (largest first, each to the
    lightest group), every group in key order. A Python task costs a fixed few hundred ms on top
    of its files (worker hand-over, function and result transfer): packing a backfill's files
    into a few tasks per core instead of one task per file saves that many times over."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(tasks, len(sizes))))]
    loads = [0] * len(groups)
    for key in sorted(sizes, key=lambda k: (-sizes[k], k)):
        lightest = loads.index(min(loads))
        groups[lightest].append(key)
        loads[lightest] += sizes[key]
    return [sorted(g) for g in groups if g]


def tasks_for(spark: SparkSession) -> int:
    """Tasks per stage: two per core the job has, so one slow file leaves little idle."""
    return 2 * max(1, spark.sparkContext.defaultParallelism)


def parse_files(
    spark: SparkSession,
    task: ParseTask,
    keys: Sequence[str],
    sizes: Mapping[str, int] | None = None,
) -> list[TaskResult]:
    """Parse every key in Spark tasks (files packed by size, `task_groups`), in key order.
    Nothing is written to the table; refused files come back with their refusal."""
    sizes = dict(sizes) if sizes else {key: 1 for key in keys}
    groups = task_groups({k: sizes.get(k, 1) for k in keys}, tasks_for(spark))
    rdd = spark.sparkContext.parallelize(groups, len(groups))
    results = rdd.flatMap(lambda group: [parse_one(task, key) for key in group]).collect()
    return sorted(results, key=lambda r: r.parsed.key)


def absolute(uri: str) -> str:
    """A staging folder as an absolute path (tasks run in their executor's work directory)."""
    return uri if "://" in uri else str(Path(uri).expanduser().resolve())


def refusal_message(key: str, refusal: Refusal) -> str:
    """The Python engine's refusal, always starting with the file."""
    reason = refusal.reason
    return reason if reason.startswith(key) else f"{key}: {reason}"


# --- 3. write: staged files → Iceberg through Spark -----------------------------------------


def _spark_type(arrow_type: pa.DataType) -> DataType:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return StringType()
    if pa.types.is_int64(arrow_type):
        return LongType()
    if pa.types.is_decimal(arrow_type):
        return DecimalType(arrow_type.precision, arrow_type.scale)
    if pa.types.is_timestamp(arrow_type):
        return TimestampType()
    if pa.types.is_date32(arrow_type):
        return SparkDate()
    raise TypeError(f"no Spark type for {arrow_type}")


TICKS_SPARK = StructType(
    [StructField(f.name, _spark_type(f.type), f.nullable) for f in TICKS_ARROW]
)


def hadoop_uri(uri: str) -> str:
    """The URI Spark's file sources read: `s3://…` → `s3a://…`, a local path → `file:/…`."""
    if uri.startswith("s3://"):
        return "s3a://" + uri.removeprefix("s3://")
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def ticks_frame(spark: SparkSession, uris: Sequence[str]) -> DataFrame:
    """The ticks rows the parse tasks wrote (`write_ticks_rows`), read by Spark's own Parquet
    reader: the write stage is JVM only (no Python task, no Arrow hand-over per row)."""
    return spark.read.schema(TICKS_SPARK).parquet(*(hadoop_uri(u) for u in uris))


def _split_conf(spark: SparkSession, uris: Sequence[str]) -> dict[str, str]:
    """File-source settings that cut the rows into about `tasks_for` write tasks (Spark would
    pack a backfill's small files into one 128 MB partition: one writing core)."""
    total = 0
    for uri in uris:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        total += filesystem.get_file_info(path).size or 0
    per_task = max(1 << 20, total // tasks_for(spark) + 1)
    return {
        "spark.sql.files.maxPartitionBytes": str(per_task),
        "spark.sql.files.openCostInBytes": str(min(per_task, 1 << 20)),
    }


def needs_merge(house: Lakehouse, keys: Sequence[str]) -> bool:
    """Whether some data file holds rows of a replaced key and of another file (then an overwrite
    by filter cannot drop whole files and a copy-on-write MERGE is needed). Asked of the driver's
    own catalog client (pyiceberg): the scan planning prunes by the full `source_file` bounds, so
    only the keys' data files are looked at and no Spark job reads manifests."""
    table = house.table(TICKS_TABLE)
    if table.current_snapshot() is None or not keys:
        return False
    field = table.schema().find_field("source_file").field_id
    for task in table.scan(row_filter=is_in("source_file", keys)).plan_files():
        low = (task.file.lower_bounds or {}).get(field)
        high = (task.file.upper_bounds or {}).get(field)
        if low is None or high is None or low != high:
            return True
    return False


def spark_snapshot(house: Lakehouse, application_id: str) -> int | None:
    """The ticks snapshot this Spark application committed last (Iceberg records `spark.app.id`
    in the snapshot summary), found from the current one backwards."""
    table = house.table(TICKS_TABLE)
    snapshot = table.current_snapshot()
    for _ in range(100):
        if snapshot is None:
            return None
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get("spark.app.id") == application_id:
            return snapshot.snapshot_id
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return None


# A write task's rows go out as they are (no shuffle, no sort), partitioned by trade date inside
# the task (fanout writer). The rows come from Parquet, which Spark reads as nullable: the
# required columns are guaranteed by the parse tasks' rules (and enforced by the Parquet writer).
WRITE_OPTIONS = {
    "use-table-distribution-and-ordering": "false",
    "fanout-enabled": "true",
    "check-nullability": "false",
}


def replace_file_ticks(
    spark: SparkSession,
    table: str,
    rows: DataFrame,
    keys: Sequence[str],
    house: Lakehouse,
    conf: Mapping[str, str] | None = None,
) -> tuple[str, int | None]:
    """Make `table` (`house`'s ticks table, as Spark names it) hold exactly `rows` for the
    landing `keys`, in one Iceberg commit; (method, the commit's snapshot id). `conf`: session
    settings for the write only."""
    previous = {name: spark.conf.get(name, None) for name in conf or {}}
    for name, value in (conf or {}).items():
        spark.conf.set(name, value)
    try:
        return _replace_file_ticks(spark, table, rows, keys, house)
    finally:
        for name, before in previous.items():
            if before is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, before)


def _replace_file_ticks(
    spark: SparkSession,
    table: str,
    rows: DataFrame,
    keys: Sequence[str],
    house: Lakehouse,
) -> tuple[str, int | None]:
    spark.catalog.refreshTable(table)
    if not needs_merge(house, keys):
        writer = rows.writeTo(table)
        for name, value in WRITE_OPTIONS.items():
            writer = writer.option(name, value)
        writer.overwrite(F.col("source_file").isin(list(keys)))
        method = "overwrite"
    else:
        view = f"tickhouse_replace_{uuid.uuid4().hex[:12]}"
        tombstones = spark.createDataFrame([(k,) for k in keys], "source_file STRING")
        tomb = tombstones.select(
            *(
                (
                    F.col("source_file")
                    if f.name == "source_file"
                    else F.lit(None).cast(f.dataType)
                ).alias(f.name)
                for f in rows.schema.fields
            ),
            F.lit(True).alias("_tombstone"),
        )
        source = rows.withColumn("_tombstone", F.lit(False)).unionByName(tomb)
        source.createOrReplaceTempView(view)
        columns = ", ".join(f.name for f in rows.schema.fields)
        values = ", ".join(f"s.{f.name}" for f in rows.schema.fields)
        try:
            spark.sql(
                f"""
                MERGE INTO {table} t USING {view} s
                ON t.source_file = s.source_file AND s._tombstone
                WHEN MATCHED THEN DELETE
                WHEN NOT MATCHED AND NOT s._tombstone THEN INSERT ({columns}) VALUES ({values})
                """
            )
        finally:
            spark.catalog.dropTempView(view)
        method = "merge"
    return method, spark_snapshot(house, spark.sparkContext.applicationId)


# --- the job ----------------------------------------------------------------------------------


def _load_table(spark: SparkSession, table: str) -> None:
    with contextlib.suppress(Exception):  # only a warm-up: the write reports real errors
        spark.table(table).schema  # noqa: B018


def _step(log: Any, started: float, what: str) -> None:
    if log:
        log(f"spark ingest: {what} at {time.perf_counter() - started:.1f} s")


def _discard(results: Sequence[TaskResult]) -> None:
    for result in results:
        if result.parsed.staged is not None:
            result.parsed.staged.delete()
        if result.ticks_parquet:
            delete_uri(result.ticks_parquet)


def ingest_files(
    spark: SparkSession,
    *,
    catalog: str,
    house: Lakehouse,
    landing: LandingAddress,
    feed: Feed,
    staging_uri: str,
    keys: Sequence[str],
    forced_profile: str | None = None,
    ingested_at: datetime | None = None,
    log: Any = None,
) -> IngestResult:
    """Replace the rows of the landing `keys` in `<catalog>.<namespace>.ticks` (see the module
    docstring). Any refused file fails the job before anything is committed."""
    started = time.perf_counter()
    if not keys:
        raise SparkIngestError("no landing keys given")
    keys = sorted(set(keys))
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    ingested_at = ingested_at or datetime.now(UTC)
    table = f"{catalog}.{house.namespace}.{TICKS_TABLE}"
    house.ensure_tables()  # the tables exactly as the Python engine creates them
    staging = Staging(absolute(staging_uri), uuid.uuid4().hex)
    task = ParseTask(landing, feed, staging, forced_profile, ingested_at)

    store = landing.open()
    # The driver's first use of the Iceberg catalog (JDBC, S3 client, table metadata) costs a
    # few seconds in a fresh JVM: paid while the parse tasks run instead of after them.
    warm = threading.Thread(target=_load_table, args=(spark, table), daemon=True)
    warm.start()
    results = parse_files(spark, task, keys, {key: store.stat(key).size for key in keys})
    warm.join()
    parse_seconds = time.perf_counter() - started
    try:
        refused = [r.parsed for r in results if not r.parsed.ok]
        if refused:
            first = refused[0]
            assert first.refusal is not None
            more = f" (and {len(refused) - 1} more refused file(s))" if len(refused) > 1 else ""
            raise SparkIngestError(
                refusal_message(first.key, first.refusal) + more, first.key, first.refusal
            )
        parsed = [r.parsed for r in results]
        _step(log, started, "parsed")
        index = TradeIndex(house)
        copies = group_copies_of(house, index, parsed)
        for item in parsed:
            if not copies[item.key].conflicts.passed:
                refusal = Refusal.of_findings(copies[item.key].conflicts, "conflicts")
                raise SparkIngestError(refusal_message(item.key, refusal), item.key, refusal)

        _step(log, started, "copies checked")
        corrected_days = house.corrections_for_days(
            {d for p in parsed if p.staged is not None for d in p.staged.trade_date_values()}
        )
        recorded = {str(d) for d in corrected_days["trade_date"].to_pylist()}
        by_key = {r.parsed.key: r for r in results}

        def bulk_file(result: TaskResult) -> bool:
            staged = result.parsed.staged
            assert staged is not None
            return not result.corrections and not (set(staged.trade_dates) & recorded)

        bulk = [r.parsed for r in results if bulk_file(r)]
        later = [r.parsed for r in results if not bulk_file(r)]

        method, snapshot_id = "none", None
        write_started = time.perf_counter()
        if bulk:
            index.record({p.key: id_ranges_of(p.staged)[0] for p in bulk if p.staged})
            _step(log, started, "trade index recorded")
            uris = [by_key[p.key].ticks_parquet or "" for p in bulk]
            assert all(uris), "a file without corrections has its ticks rows"
            rows = ticks_frame(spark, uris)
            split = _split_conf(spark, uris)
            method, snapshot_id = replace_file_ticks(
                spark, table, rows, [p.key for p in bulk], house, split
            )
            _step(log, started, f"Spark write committed ({method})")
            if log:
                log(f"{table}: {len(bulk)} files written by Spark ({method})")
        commits = {}
        for item in later:  # the Python engine's corrections path, file by file
            commit = commit_parsed(house, index, item)
            commits[item.key] = commit
            snapshot_id = commit.snapshot_id
            if log:
                log(f"{item.key}: committed with {commit.corrections} cancels / replaces")
        write_seconds = time.perf_counter() - write_started
        _step(log, started, "written")

        days = {d for p in parsed if p.staged is not None for d in p.staged.trade_date_values()}
        stored = house.file_totals(keys, days, snapshot_id) if snapshot_id is not None else {}
        _step(log, started, "read back")
    finally:
        _discard(results)

    files = []
    for key in keys:
        result = by_key[key]
        item = result.parsed
        staged = item.staged
        assert staged is not None
        grid = item.session_grid
        files.append(
            FileResult(
                key=key,
                rows=stored.get(key, (0, 0))[0],
                parsed_rows=staged.rows,
                trade_dates=tuple(staged.trade_dates),
                symbols=staged.symbols,
                profile=item.profile,
                venues=tuple(staged.venues),
                parser=staged.parser,
                write=f"corrections ({commits[key].corrections})"
                if key in commits
                else f"spark-{method}",
                corrections=commits[key].corrections if key in commits else 0,
                session_grid="" if grid is None or grid.passed else "; ".join(grid.examples[:3]),
                sha256=staged.sha256,
                parse_seconds=round(result.seconds, 3),
            )
        )
    return IngestResult(
        table=table,
        snapshot_id=snapshot_id,
        method=method,
        files=tuple(files),
        seconds=time.perf_counter() - started,
        parse_seconds=parse_seconds,
        write_seconds=write_seconds,
        executors=tuple(sorted({r.executor for r in results})),
    )


def result_message(result: IngestResult) -> dict[str, Any]:
    """The JSON-able result (one entry per landing file): sent back through Dagster Pipes by the
    spark-submit job, returned as is by the in-process engine."""
    return {
        "table": result.table,
        "snapshot_id": None if result.snapshot_id is None else str(result.snapshot_id),
        "method": result.method,
        "seconds": round(result.seconds, 3),
        "parse_seconds": round(result.parse_seconds, 3),
        "write_seconds": round(result.write_seconds, 3),
        "executors": list(result.executors),
        "files": [
            {
                "key": f.key,
                "rows": f.rows,
                "parsed_rows": f.parsed_rows,
                "trade_dates": list(f.trade_dates),
                "symbols": f.symbols,
                "profile": f.profile,
                "venues": list(f.venues),
                "parser": f.parser,
                "write": f.write,
                "corrections": f.corrections,
                "session_grid": f.session_grid,
                "sha256": f.sha256,
                "parse_seconds": f.parse_seconds,
            }
            for f in result.files
        ],
    }


__all__ = [
    "FileResult",
    "IngestResult",
    "ParseTask",
    "SparkIngestError",
    "ingest_files",
    "parse_files",
    "result_message",
]
