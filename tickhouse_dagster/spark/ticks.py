"""Landing XML → `market.ticks` on Spark: the same contract, rules and per-file replacement as the
Python path, executed by Spark's XML reader and Iceberg's Spark runtime.

How the Python semantics carry over:
- a profile's field paths become an explicit all-string XML schema (so no value is inferred as a
  float and every decimal stays exact) and column expressions; root attributes (`/@a`) are read
  once per file on the driver from its first bytes and joined in by file path;
- conversion is strict, like Arrow's casts: a value that does not convert, a missing required
  value, an unknown venue or side code, or a value the blocking `tick_values` check would reject
  makes the whole job fail with `file, trade, field: reason` (via `raise_error` inside the write,
  so the data is scanned once and nothing is committed);
- the XML reader runs in FAILFAST mode: malformed XML fails the job, no record is dropped;
- the file's rows are replaced in one Iceberg commit (overwrite by `source_file`), or by a
  copy-on-write MERGE when a data file holds rows of a replaced and a kept landing file.
Executors run only JVM code (no Python UDFs), so a cluster needs no Python on its workers.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from tickhouse_dagster.contract import TICKS_ARROW, TICKS_TABLE
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.parsing.profiles import FieldRule, Profile, ProfileError, select_profile
from tickhouse_dagster.parsing.ticks_xml import sniff_root
from tickhouse_dagster.spark.session import cached_jars, remember_jars

SNIFF_BYTES = 64 * 1024
ATTRIBUTE_PREFIX = "_"
VALUE_TAG = "_VALUE"
_ROOT_PREFIX = "_root_"

# What the Python path's Arrow casts accept, as patterns, so Spark's laxer casts (which round
# extra decimals, read a naive time in the session zone, …) cannot let a different value through.
_DECIMAL = r"^[+-]?([0-9]{1,12}(\.[0-9]{0,6}0*)?|\.[0-9]{1,6}0*)$"
_INTEGER = r"^[+-]?[0-9]{1,19}$"
_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_CONTRACT_TEXT = ("venue", "symbol", "trade_date", "ts", "trade_id", "price", "quantity", "side")
MAX_TRADE_DATE_SKEW_DAYS = 1  # as quality.tick_rules.MAX_TRADE_DATE_SKEW

TICKS_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    venue STRING NOT NULL,
    symbol STRING NOT NULL,
    trade_date DATE NOT NULL,
    ts TIMESTAMP NOT NULL,
    trade_id STRING NOT NULL,
    price DECIMAL(18, 6) NOT NULL,
    quantity BIGINT NOT NULL,
    side STRING,
    source_file STRING NOT NULL,
    ingested_at TIMESTAMP NOT NULL
) USING iceberg
PARTITIONED BY (trade_date)
TBLPROPERTIES (
    'format-version' = '2',
    'write.parquet.compression-codec' = 'zstd',
    'write.metadata.metrics.column.source_file' = 'full'
)
"""


class SparkIngestError(RuntimeError):
    """A Spark ingest that failed on its input; the message names the file and the reason."""

    def __init__(self, message: str, source_file: str | None = None) -> None:
        super().__init__(message)
        self.source_file = source_file


@dataclass(frozen=True)
class LandingInput:
    key: str  # landing key: the `source_file` value and the Dagster partition key
    path: str  # Hadoop URI Spark reads (s3a://…, file:/…)
    profile: str
    root_attributes: Mapping[str, str] = field(default_factory=dict)
    root: str | None = None  # local name of the root element


@dataclass(frozen=True)
class FileResult:
    key: str
    rows: int
    trade_dates: tuple[str, ...]
    symbols: int
    profile: str
    venues: tuple[str, ...] = ()  # the venues the file's rows name


@dataclass(frozen=True)
class IngestResult:
    table: str
    snapshot_id: int | None
    method: str  # "overwrite" or "merge"
    files: tuple[FileResult, ...]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def trade_dates(self) -> tuple[str, ...]:
        return tuple(sorted({d for f in self.files for d in f.trade_dates}))


# --- where the files are -------------------------------------------------------------------


def hadoop_path(landing_uri: str, key: str) -> str:
    """The URI Spark reads a landing key from: `s3://bucket/prefix` → `s3a://…`, a folder →
    `file:///abs/path/key`."""
    if landing_uri.startswith(("s3://", "s3a://")):
        rest = landing_uri.split("://", 1)[1].rstrip("/")
        return f"s3a://{rest}/{key}"
    root = Path(landing_uri.removeprefix("file://")).expanduser().resolve()
    return (root / key).as_uri()


def _jvm_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(conf), path


def _head(spark: SparkSession, uri: str, size: int = SNIFF_BYTES) -> bytes:
    fs, path = _jvm_path(spark, uri)
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(
            stream, min(size, fs.getFileStatus(path).getLen())
        )
        return bytes(data)
    finally:
        stream.close()


def _canonical(path: str) -> str:
    """One spelling of a local file URI (`file:/a`, `file:///a` → `file:/a`), as Spark's sources
    do not agree on it in `_metadata.file_path`."""
    return re.sub(r"^file:/+", "file:/", path)


def _canonical_column(column: Column) -> Column:
    return F.regexp_replace(column, r"^file:/+", "file:/")


def _qualified(spark: SparkSession, uri: str) -> str:
    """The path as Spark reports it in `_metadata.file_path` (canonical spelling)."""
    fs, path = _jvm_path(spark, uri)
    return _canonical(str(fs.makeQualified(path).toUri().toString()))


def plan_inputs(
    spark: SparkSession,
    landing_uri: str,
    keys: Sequence[str],
    profiles: Mapping[str, Profile],
    *,
    forced_profile: str | None = None,
    rules: tuple[tuple[str, str], ...] = (),
) -> list[LandingInput]:
    """Each key's profile (chosen exactly as the Python path does) and root attributes, from the
    file's first bytes read through Hadoop's file system on the driver."""
    inputs = []
    for key in keys:
        uri = hadoop_path(landing_uri, key)
        try:
            head = _head(spark, uri)
        except Exception as exc:  # py4j wraps the Java FileNotFoundException / S3 errors
            raise SparkIngestError(f"{key}: cannot read {uri}: {_java_message(exc)}", key) from exc
        root, attributes = sniff_root(head)
        profile = select_profile(key, root, profiles, forced=forced_profile, rules=rules)
        inputs.append(LandingInput(key, _qualified(spark, uri), profile.name, attributes, root))
    return inputs


# --- profile → schema and column expressions ------------------------------------------------


@dataclass
class _Node:
    attributes: set[str] = field(default_factory=set)
    children: dict[str, _Node] = field(default_factory=dict)
    text: bool = False


def _paths(profile: Profile) -> Iterable[str]:
    for column, rule in profile.fields.items():
        picks = any(s.position or s.where for p in rule.paths() for s in p.steps)
        if rule.is_template or picks:
            # Composed fields and picks are the Python readers' (parsing.fields); a Spark
            # column for them is not written yet: refuse rather than read something else.
            raise ProfileError(
                f"profile {profile.name!r}, field {column!r}: {rule.path!r} uses a template or "
                "a [n] / [@a='v'] pick, which the Spark engine does not read; ingest this feed "
                "with the Python engine (tickhouse ingest, the sensor)"
            )
        yield rule.path
        if rule.fallback:
            yield rule.fallback


def _tree(profile: Profile) -> _Node:
    record = _Node()
    for path in _paths(profile):
        if path.startswith("/"):
            continue  # root attributes are read by the driver
        parts = path.split("/")
        node = record
        elements = parts[:-1] if parts[-1].startswith("@") else parts
        for name in elements:
            node = node.children.setdefault(name, _Node())
        if parts[-1].startswith("@"):
            node.attributes.add(parts[-1][1:])
        else:
            node.text = True
    return record


def _struct(node: _Node) -> StructType:
    fields = [StructField(ATTRIBUTE_PREFIX + a, StringType()) for a in sorted(node.attributes)]
    for name, child in sorted(node.children.items()):
        fields.append(StructField(name, _child_type(child)))
    if node.text and (node.attributes or node.children):
        fields.append(StructField(VALUE_TAG, StringType()))
    return StructType(fields)


def _child_type(node: _Node) -> StructType | StringType:
    if node.attributes or node.children:
        return _struct(node)
    return StringType()


def profile_schema(profile: Profile) -> StructType:
    """An all-string XML schema holding exactly the attributes and elements the profile reads."""
    return _struct(_tree(profile))


def root_attributes(profile: Profile) -> list[str]:
    return sorted({p[2:] for p in _paths(profile) if p.startswith("/@")})


def _quoted(*names: str) -> str:
    return ".".join(f"`{n}`" for n in names)


def _path_column(path: str, tree: _Node) -> Column:
    if path.startswith("/"):
        return F.col(_ROOT_PREFIX + path[2:])
    parts = path.split("/")
    if parts[-1].startswith("@"):
        return F.col(_quoted(*parts[:-1], ATTRIBUTE_PREFIX + parts[-1][1:]))
    node = tree
    for name in parts:
        node = node.children[name]
    column = F.col(_quoted(*parts, VALUE_TAG)) if node.attributes or node.children else None
    column = column if column is not None else F.col(_quoted(*parts))
    # Element text is stripped, as the Python path does; attribute values are taken as written.
    return F.regexp_replace(column, r"^\s+|\s+$", "")


def _rule_column(rule: FieldRule, tree: _Node) -> Column:
    candidates = [_path_column(rule.path, tree)]
    if rule.fallback:
        candidates.append(_path_column(rule.fallback, tree))
    if rule.default is not None:
        candidates.append(F.lit(rule.default))
    return F.coalesce(*candidates) if len(candidates) > 1 else candidates[0]


# --- conversion with the Python path's strictness ------------------------------------------


def _problem(where: Column, column: str, reason: Column | str) -> Column:
    reason = F.lit(reason) if isinstance(reason, str) else reason
    return F.concat(where, F.lit(f", field {column}: "), reason)


def _quote(text: Column) -> Column:
    return F.concat(F.lit("'"), text, F.lit("'"))


def trade_date_column(venue: Column, ts: Column, venues: Mapping[str, Venue]) -> Column:
    """The trade date of each print by its venue's rule, `Venue.trade_date_rule()`: the rule of
    the Python readers (`market.venues.trade_dates_of`) handed over as data, so both engines
    book every print to the same day. Local date on the venue clock, plus one from the roll
    time on, moved past the weekend (a per-weekday skip), then a holiday to the first trading
    day after it (a map lookup). No Python UDF: it stays in Spark's generated code."""
    result: Column = F.lit(None).cast("date")
    for name in sorted(venues):
        rule = venues[name].trade_date_rule()
        local = F.from_utc_timestamp(ts, venues[name].timezone.key)
        day = F.to_date(local)
        if rule.roll_seconds is not None:
            clock = F.hour(local) * 3600 + F.minute(local) * 60 + F.second(local)
            day = F.when(clock >= rule.roll_seconds, F.date_add(day, 1)).otherwise(day)
        # Spark's dayofweek: 1 = Sunday ... 7 = Saturday; the rule's weekdays: Monday = 0.
        skips = F.array(*(F.lit(rule.days_to_weekday[(dow + 5) % 7]) for dow in range(1, 8)))
        weekday = F.date_add(day, F.element_at(skips, F.dayofweek(day)))
        if rule.holiday_targets:
            targets = F.create_map(*(F.lit(v) for pair in rule.holiday_targets for v in pair))
            weekday = F.coalesce(F.try_element_at(targets, weekday), weekday)
        result = F.when(venue == name, weekday).otherwise(result)
    return result


def contract_frame(
    raw: DataFrame, profile: Profile, venues: Mapping[str, Venue], ingested_at: datetime
) -> DataFrame:
    """Rows of the XML reader (plus `source_file` and `_root_*` columns) → rows of the ticks table;
    the first row that breaks the contract stops the job with its file, trade and reason."""
    tree = _tree(profile)
    text: dict[str, Column] = {
        column: F.lit(None).cast("string") for column in (*_CONTRACT_TEXT, *profile.fields)
    }
    for column, rule in profile.fields.items():
        text[column] = _rule_column(rule, tree)
    frame = raw.select(F.col("source_file"), *(c.alias(f"t_{n}") for n, c in text.items()))
    t = {n: F.col(f"t_{n}") for n in text}
    where = F.concat(F.col("source_file"), F.lit(", trade "), F.coalesce(t["trade_id"], F.lit("?")))
    problems: list[Column] = []

    for column, rule in profile.fields.items():
        if not rule.optional:
            problems.append(
                F.when(
                    t[column].isNull(),
                    _problem(
                        where,
                        column,
                        f"required value missing (profile {profile.name!r} reads it from "
                        f"{rule.path!r})",
                    ),
                )
            )
    mapped = dict(t)
    for column, rule in profile.fields.items():
        if rule.map is None:
            continue
        value: Column = F.lit(None).cast("string")
        for code, target in rule.map.items():
            value = F.when(t[column] == code, F.lit(target).cast("string")).otherwise(value)
        known = ", ".join(sorted(rule.map))
        problems.append(
            F.when(
                t[column].isNotNull() & ~t[column].isin(list(rule.map)),
                _problem(
                    where, column, F.concat(_quote(t[column]), F.lit(f" is not one of {known}"))
                ),
            )
        )
        mapped[column] = value
    side = mapped["side"]
    if "trans_type" in mapped:
        # Cancels and replaces go to the corrections table on the Python path; the Spark engine
        # does not apply corrections, so a file carrying one is refused rather than mis-ingested.
        problems.append(
            F.when(
                mapped["trans_type"].isin("C", "R"),
                _problem(
                    where,
                    "trans_type",
                    "a trade correction (cancel/replace): the Spark engine ingests new trades "
                    "only; ingest this file with the Python path (ingest_landing_file)",
                ),
            )
        )
    known_venues = sorted(venues)
    problems.append(
        F.when(
            t["venue"].isNotNull() & ~t["venue"].isin(known_venues),
            _problem(
                where,
                "venue",
                F.concat(
                    F.lit("unknown venue "),
                    _quote(t["venue"]),
                    F.lit(f" (add it to the venues file; known: {', '.join(known_venues)})"),
                ),
            ),
        )
    )

    def checked(column: str, pattern: str, cast: str, expected: str) -> Column:
        value = t[column]
        ok = value.rlike(pattern) & F.expr(f"try_cast(t_{column} AS {cast})").isNotNull()
        problems.append(
            F.when(
                value.isNotNull() & ~ok,
                _problem(where, column, F.concat(_quote(value), F.lit(f" is not {expected}"))),
            )
        )
        return F.expr(f"try_cast(t_{column} AS {cast})")

    ts = checked("ts", _TIMESTAMP, "TIMESTAMP", "an ISO 8601 time with a zone offset")
    price = checked(
        "price", _DECIMAL, "DECIMAL(18, 6)", "a decimal number with at most 6 decimal places"
    )
    quantity = checked("quantity", _INTEGER, "BIGINT", "a whole number")
    given_date = checked("trade_date", _DATE, "DATE", "a date YYYY-MM-DD")

    local_date: Column = F.lit(None).cast("date")
    for name in known_venues:
        zone = venues[name].timezone.key
        local_date = F.when(
            t["venue"] == name, F.to_date(F.from_utc_timestamp(ts, zone))
        ).otherwise(local_date)
    rule_date = trade_date_column(t["venue"], ts, venues)
    trade_date = F.coalesce(given_date, rule_date)
    # As quality.tick_rules: the days a trade date lies outside [local date, the rule's date].
    skew = F.least(F.datediff(trade_date, local_date), F.lit(0)) + F.greatest(
        F.datediff(trade_date, rule_date), F.lit(0)
    )

    # The blocking `tick_values` rules of the Python path: such a file never reaches the table.
    rules = [
        ("price", price <= 0, "price must be > 0"),
        ("quantity", quantity <= 0, "quantity must be > 0"),
        ("side", side.isNotNull() & ~side.isin("B", "S"), "side must be B, S or absent"),
        ("symbol", F.length(t["symbol"]) == 0, "symbol is empty"),
        ("trade_id", F.length(t["trade_id"]) == 0, "trade id is empty"),
        (
            "trade_date",
            F.abs(skew) > MAX_TRADE_DATE_SKEW_DAYS,
            "trade date more than a day from the venue-local date of the print and from the "
            "venue's trade date for it",
        ),
    ]
    for column, broken, reason in rules:
        problems.append(F.when(F.coalesce(broken, F.lit(False)), _problem(where, column, reason)))

    problem = F.coalesce(*problems)
    columns = {
        # raise_error inside the written column: validation costs no extra pass over the data.
        "venue": F.when(problem.isNotNull(), F.raise_error(problem)).otherwise(t["venue"]),
        "symbol": t["symbol"],
        "trade_date": trade_date,
        "ts": ts,
        "trade_id": t["trade_id"],
        "price": price,
        "quantity": quantity,
        "side": side,
        "source_file": F.col("source_file"),
        "ingested_at": F.lit(ingested_at).cast("timestamp"),
    }
    return frame.select(*(columns[f.name].alias(f.name) for f in TICKS_ARROW))


def read_profile_files(
    spark: SparkSession, profile: Profile, inputs: Sequence[LandingInput]
) -> DataFrame:
    """One XML scan over all files of a profile, each row tagged with its landing key."""
    attributes = root_attributes(profile)
    lookup_schema = StructType(
        [StructField("_path", StringType(), False), StructField("source_file", StringType(), False)]
        + [StructField(_ROOT_PREFIX + a, StringType()) for a in attributes]
    )
    lookup = spark.createDataFrame(
        [(i.path, i.key, *(i.root_attributes.get(a) for a in attributes)) for i in inputs],
        lookup_schema,
    )
    raw = (
        spark.read.format("xml")
        .option("rowTag", profile.record)
        .option("mode", "FAILFAST")  # malformed XML fails the job; nothing is dropped
        .option("attributePrefix", ATTRIBUTE_PREFIX)
        .option("valueTag", VALUE_TAG)
        .option("ignoreSurroundingSpaces", "false")
        .option("ignoreNamespace", "true")
        .schema(profile_schema(profile))
        .load([i.path for i in inputs])
        .withColumn("_path", _canonical_column(F.col("_metadata.file_path")))
    )
    joined = raw.join(F.broadcast(lookup), on="_path", how="left")
    # A row whose file path does not map back to a key would lose its source: refuse it.
    return joined.withColumn(
        "source_file",
        F.when(
            F.col("source_file").isNull(),
            F.raise_error(F.concat(F.lit("internal: unmapped file path "), F.col("_path"))),
        ).otherwise(F.col("source_file")),
    )


# --- the Iceberg write ----------------------------------------------------------------------


def ensure_ticks_table(spark: SparkSession, table: str) -> None:
    namespace = table.rsplit(".", 1)[0]
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {namespace}")
    if not spark.catalog.tableExists(table):
        spark.sql(TICKS_DDL.format(table=table))
        spark.sql(f"ALTER TABLE {table} WRITE ORDERED BY symbol, ts")


def _needs_merge(spark: SparkSession, table: str, keys: Sequence[str]) -> bool:
    """Whether some data file holds rows of a replaced key and of another file (then an overwrite
    by filter cannot drop whole files and a copy-on-write MERGE is needed). Reads only metadata:
    the `source_file` bounds of the data files that hold more than one landing file."""
    mixed = (
        spark.table(f"{table}.files")
        .select(
            F.col("readable_metrics.source_file.lower_bound").alias("lo"),
            F.col("readable_metrics.source_file.upper_bound").alias("hi"),
        )
        .where("lo IS NULL OR hi IS NULL OR lo <> hi")
        .collect()
    )
    if not mixed:
        return False
    wanted = sorted(keys)
    for lo, hi in mixed:
        if lo is None or hi is None:
            return True
        first = bisect.bisect_left(wanted, lo)
        if first < len(wanted) and wanted[first] <= hi:
            return True
    return False


def replace_file_ticks(
    spark: SparkSession, table: str, rows: DataFrame, keys: Sequence[str]
) -> tuple[str, int | None]:
    """Make `table` hold exactly `rows` for the landing `keys`, in one Iceberg commit."""
    ensure_ticks_table(spark, table)
    if not _needs_merge(spark, table, keys):
        rows.writeTo(table).overwrite(F.col("source_file").isin(list(keys)))
        method = "overwrite"
    else:
        view = f"tickhouse_replace_{int(time.time() * 1000)}"
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
    snapshot = spark.sql(
        f"SELECT snapshot_id FROM {table}.history WHERE is_current_ancestor "
        "ORDER BY made_current_at DESC LIMIT 1"
    ).collect()
    return method, (snapshot[0][0] if snapshot else None)


def _summaries(
    spark: SparkSession, table: str, snapshot_id: int | None, inputs: Sequence[LandingInput]
) -> tuple[FileResult, ...]:
    """Per landing file, what the commit holds (read back at its snapshot)."""
    keys = [i.key for i in inputs]
    counts: dict[str, tuple[int, tuple[str, ...], int, tuple[str, ...]]] = {}
    if snapshot_id is not None:
        rows = (
            spark.read.option("versionAsOf", snapshot_id)
            .table(table)
            .where(F.col("source_file").isin(keys))
            .groupBy("source_file")
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.array_sort(F.collect_set(F.date_format("trade_date", "yyyy-MM-dd"))).alias("d"),
                F.countDistinct("symbol").alias("symbols"),
                F.array_sort(F.collect_set("venue")).alias("v"),
            )
            .collect()
        )
        counts = {
            r["source_file"]: (r["rows"], tuple(r["d"]), r["symbols"], tuple(r["v"])) for r in rows
        }
    results = []
    for i in inputs:
        rows_, days, symbols, venues = counts.get(i.key, (0, (), 0, ()))
        results.append(FileResult(i.key, rows_, days, symbols, i.profile, venues))
    return tuple(results)


def _java_message(exc: BaseException) -> str:
    """The innermost useful message of a (py4j-wrapped) Spark/Java failure."""
    text = str(getattr(exc, "desc", None) or exc)
    raised = re.search(r"\[USER_RAISED_EXCEPTION\]\s*(.*?)(?:\s+SQLSTATE|\n|$)", text)
    if raised:
        return raised.group(1).strip()
    # py4j puts the Java stack trace in the text: its root cause says what actually broke.
    causes = re.findall(r"Caused by: ([\w.$]+(?:Exception|Error)[^\n]*)", text)
    if causes:
        return causes[-1].strip()
    thrown = re.search(r"^([\w.$]+(?:Exception|Error): [^\n]*)", text, re.MULTILINE)
    if thrown:
        return thrown.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check_complete(spark: SparkSession, inputs: Sequence[LandingInput]) -> None:
    """Refuse a truncated file. Spark's XML reader only sees records: a file cut inside its last
    record loses that record silently and a missing end of document goes unnoticed, where the
    Python parser fails. So every file must close its root element; a plain-text scan (JVM only,
    much cheaper than the XML parse) checks that before anything is written."""
    by_root: dict[str, list[LandingInput]] = {}
    for item in inputs:
        by_root.setdefault(item.root or "", []).append(item)
    for root, group in by_root.items():
        if not root:
            raise SparkIngestError(
                f"{group[0].key}: malformed XML: no root element in the first bytes", group[0].key
            )
        pattern = rf"</([A-Za-z_][-.\w]*:)?{re.escape(root)}\s*>"
        try:
            closed = {
                row[0]
                for row in spark.read.text([i.path for i in group])
                .where(F.col("value").rlike(pattern))
                .select(_canonical_column(F.col("_metadata.file_path")))
                .distinct()
                .collect()
            }
        except Exception as exc:
            culprit = _unreadable_file(spark, group)
            raise SparkIngestError(
                f"{culprit}: unreadable or corrupt file: {_java_message(exc)}", culprit
            ) from None
        for item in group:
            if item.path not in closed:
                raise SparkIngestError(
                    f"{item.key}: malformed XML: the root element <{root}> is never closed "
                    "(a truncated file?)",
                    item.key,
                )


def _unreadable_file(spark: SparkSession, inputs: Sequence[LandingInput]) -> str:
    for item in inputs:
        try:
            spark.read.text(item.path).count()
        except Exception:
            return item.key
    return inputs[0].key


def _malformed_file(
    spark: SparkSession, profile: Profile, inputs: Sequence[LandingInput]
) -> str | None:
    """Which file of a failed scan is malformed: each is read alone (only on the failure path)."""
    for item in inputs:
        try:
            read_profile_files(spark, profile, [item]).select("source_file").count()
        except Exception:
            return item.key
    return None


def ingest_files(
    spark: SparkSession,
    *,
    catalog: str,
    namespace: str,
    landing_uri: str,
    keys: Sequence[str],
    profiles: Mapping[str, Profile],
    venues: Mapping[str, Venue],
    forced_profile: str | None = None,
    rules: tuple[tuple[str, str], ...] = (),
    ingested_at: datetime | None = None,
) -> IngestResult:
    """Replace the rows of the landing `keys` in `<catalog>.<namespace>.ticks`, in one commit."""
    started = time.perf_counter()
    if not keys:
        raise SparkIngestError("no landing keys given")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    if cached_jars() is None:
        remember_jars(spark)
    ingested_at = ingested_at or datetime.now(UTC)
    table = f"{catalog}.{namespace}.{TICKS_TABLE}"
    inputs = plan_inputs(
        spark, landing_uri, keys, profiles, forced_profile=forced_profile, rules=rules
    )
    check_complete(spark, inputs)
    by_profile: dict[str, list[LandingInput]] = {}
    for item in inputs:
        by_profile.setdefault(item.profile, []).append(item)
    frames = [
        contract_frame(
            read_profile_files(spark, profiles[name], group), profiles[name], venues, ingested_at
        )
        for name, group in sorted(by_profile.items())
    ]
    rows = frames[0]
    for frame in frames[1:]:
        rows = rows.unionByName(frame)
    try:
        method, snapshot_id = replace_file_ticks(spark, table, rows, [i.key for i in inputs])
    except Exception as exc:
        message = _java_message(exc)
        if "USER_RAISED_EXCEPTION" in str(exc):
            raise SparkIngestError(message, message.split(",", 1)[0]) from None
        if "FAILFAST" in str(exc) or "Malformed" in str(exc):
            for name, group in by_profile.items():
                culprit = _malformed_file(spark, profiles[name], group)
                if culprit:
                    raise SparkIngestError(
                        f"{culprit}: malformed XML (Spark XML reader, mode FAILFAST, rowTag "
                        f"<{profiles[name].record}>): {message}",
                        culprit,
                    ) from None
        raise
    return IngestResult(
        table=table,
        snapshot_id=snapshot_id,
        method=method,
        files=_summaries(spark, table, snapshot_id, inputs),
        seconds=time.perf_counter() - started,
    )


def result_message(result: IngestResult) -> dict[str, Any]:
    """The JSON-able result (one entry per landing file): sent back through Dagster Pipes by the
    spark-submit job, returned as is by the in-process engine."""
    return {
        "table": result.table,
        "snapshot_id": None if result.snapshot_id is None else str(result.snapshot_id),
        "method": result.method,
        "seconds": round(result.seconds, 3),
        "files": [
            {
                "key": f.key,
                "rows": f.rows,
                "trade_dates": list(f.trade_dates),
                "symbols": f.symbols,
                "profile": f.profile,
                "venues": list(f.venues),
            }
            for f in result.files
        ],
    }


__all__ = [
    "FileResult",
    "IngestResult",
    "LandingInput",
    "SparkIngestError",
    "ingest_files",
    "result_message",
]
