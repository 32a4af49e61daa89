"""One function per measurement. Each runs in its own process, started by `bench.run`:

    python -m bench.measures NAME --root DIR --files FILE ... [--work DIR] [--day DATE] --json

Only the work itself is timed: imports, catalogs and tables are set up before the clock starts.
The process prints one JSON object: wall seconds, rows it produced (if it counts them) and its
peak RSS, the larger of its own and that of its largest child process (`getrusage`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import tempfile
import time
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

# Attributes of a <trade> record in the project's layout, and the contract column each becomes.
TRADE_ATTRIBUTES = {
    "id": "trade_id",
    "symbol": "symbol",
    "ts": "ts",
    "price": "price",
    "qty": "quantity",
    "side": "side",
}


@dataclass(frozen=True)
class Job:
    root: Path  # keys (source_file) are file paths relative to this folder
    files: list[Path]
    work: Path | None = None  # a folder for this measurement's catalog, warehouse and staging
    day: date | None = None

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


@dataclass(frozen=True)
class Timed:
    seconds: float
    rows: int | None = None
    detail: str = ""


def _lakehouse(work: Path) -> Any:
    """The project's lakehouse on an embedded catalog in `work` (created if missing)."""
    from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
    from tickhouse_dagster.storage.lakehouse import Lakehouse

    settings = CatalogSettings(
        "bench", warehouse=str(work / "warehouse"), embedded_db=str(work / "catalog.db")
    )
    lakehouse = Lakehouse(load_lakehouse_catalog(settings), "market")
    lakehouse.ensure_tables()
    return lakehouse


# --- the parse floor and the project ---------------------------------------------------------


def expat_floor(job: Job) -> Timed:
    """Python's expat with no callbacks over the same bytes: the cost of reading the XML."""
    start = time.perf_counter()
    for path in job.files:
        with path.open("rb") as stream:
            xml.parsers.expat.ParserCreate().ParseFile(stream)
    return Timed(time.perf_counter() - start)


def project_parse(job: Job) -> Timed:
    """XML → Arrow record batches in the contract's types, staged as the ingest step stages them
    (the compiled fast path, verified against the record tags; lxml where it declines), one
    process, every file."""
    from tickhouse_dagster.market.venues import load_venues
    from tickhouse_dagster.parsing.profiles import load_profiles
    from tickhouse_dagster.storage.staging import stage_tick_file

    profile, venues = load_profiles()["tickhouse"], load_venues()
    rows = 0
    parsers: set[str] = set()
    with tempfile.TemporaryDirectory() as staging:
        start = time.perf_counter()
        for number, path in enumerate(job.files):
            staged = stage_tick_file(
                lambda path=path: path.open("rb"),
                source_file=job.key(path),
                profile=profile,
                venues=venues,
                uri=f"{staging}/{number}.arrow",
            )
            rows += staged.rows
            parsers.add(staged.parser.split(" ")[0])
        seconds = time.perf_counter() - start
    return Timed(seconds, rows, f"parser: {', '.join(sorted(parsers))}")


def project_ingest(job: Job) -> Timed:
    """XML → `market.ticks` → the four bar tables, the way `tickhouse_dagster.engine.batch` does it
    (parallel parse workers, one commit per file, then the bars of every trade date)."""
    from tickhouse_dagster.engine.batch import ingest_paths

    assert job.work is not None, "project_ingest needs --work"
    lakehouse = _lakehouse(job.work)
    staging = job.work / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = ingest_paths(job.files, job.root, lakehouse, staging)
    seconds = time.perf_counter() - start
    bars = ", ".join(f"{interval}: {rows:,}" for interval, rows in sorted(result.bars.items()))
    return Timed(seconds, result.ticks, f"bars {bars}")


def project_bars(job: Job) -> Timed:
    """Rebuild the four bar tables of one trade date from the ticks already in `--work`
    (written by `project_ingest`)."""
    from tickhouse_dagster.engine.batch import rebuild_day_bars
    from tickhouse_dagster.market.venues import load_venues

    assert job.work is not None and job.day is not None, "project_bars needs --work and --day"
    lakehouse, venues = _lakehouse(job.work), load_venues()
    counts: dict[str, int] = {}
    start = time.perf_counter()
    rebuild_day_bars(lakehouse, job.day, venues, counts)
    seconds = time.perf_counter() - start
    return Timed(seconds, None, f"{sum(counts.values()):,} bars")


# --- peers ---------------------------------------------------------------------------------

FIXML_NS = "http://www.fixprotocol.org/FIXML-4-4"
# FIXML trade capture report: attribute (of the report or of a child element) → contract column.
FIXML_ATTRIBUTES = {
    "TrdID": "trade_id",
    "Sym": "symbol",  # <Instrmt Sym=…>
    "TxnTm": "ts",
    "LastPx": "price",
    "LastQty": "quantity",
    "Side": "side",  # <RptSide Side=…>, optional
    "Exch": "venue",  # <Instrmt Exch=…>
    "TrdDt": "trade_date",
}


def root_element(path: Path) -> tuple[str, dict[str, str]]:
    """Tag (namespace stripped) and attributes of the root element, from the head of the file."""
    from lxml import etree

    parser = etree.XMLPullParser(events=("start",))
    with path.open("rb") as stream:
        parser.feed(stream.read(4096))
    for _event, element in parser.read_events():
        return etree.QName(element).localname, dict(element.attrib)
    raise ValueError(f"{path}: no root element in the first 4 KB")


def root_attributes(path: Path) -> dict[str, str]:
    """Attributes of the root element (venue, trade_date in the project's layout)."""
    return root_element(path)[1]


def is_fixml(path: Path) -> bool:
    return root_element(path)[0] == "FIXML"


def to_contract(
    columns: pa.Table, root: dict[str, str], source_file: str, ingested_at: datetime
) -> pa.Table:
    """Text columns of trade records (named as in the XML) → a table of the ticks contract:
    exact decimal prices, UTC microsecond timestamps, the root's venue and trade date."""
    n = columns.num_rows
    values = {TRADE_ATTRIBUTES[name]: columns[name] for name in TRADE_ATTRIBUTES}
    values["venue"] = pa.repeat(root["venue"], n) if n else pa.array([], pa.string())
    values["trade_date"] = pa.repeat(pa.scalar(date.fromisoformat(root["trade_date"])), n)
    return _cast_contract(values, n, source_file, ingested_at)


def fixml_to_contract(columns: pa.Table, source_file: str, ingested_at: datetime) -> pa.Table:
    """Text columns of FIXML trade capture reports → a table of the ticks contract (venue and
    trade date from each report, side 1/2 → B/S)."""
    import pyarrow.compute as pc

    values = {FIXML_ATTRIBUTES[name]: columns[name] for name in FIXML_ATTRIBUTES}
    side = values["side"]
    values["side"] = pc.if_else(
        pc.equal(side, "1"), "B", pc.if_else(pc.equal(side, "2"), "S", pa.scalar(None, pa.string()))
    )
    return _cast_contract(values, columns.num_rows, source_file, ingested_at)


def _cast_contract(
    values: dict[str, Any], n: int, source_file: str, ingested_at: datetime
) -> pa.Table:
    from tickhouse_dagster.core.contract import TICKS_ARROW

    values["source_file"] = pa.repeat(source_file, n) if n else pa.array([], pa.string())
    values["ingested_at"] = pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), n)
    arrays = [values[field.name].cast(field.type) for field in TICKS_ARROW]
    return pa.Table.from_arrays(arrays, schema=TICKS_ARROW)


def _peer(
    job: Job, read: Callable[[Path], pa.Table], read_fixml: Callable[[Path], pa.Table]
) -> Timed:
    """Read each file with `read` (the project's layout) or `read_fixml` (FIXML), convert it to
    the contract and append it to a fresh ticks table with pyiceberg (one append per file)."""
    from tickhouse_dagster.core.contract import TICKS_TABLE

    assert job.work is not None, "peers need --work"
    table = _lakehouse(job.work).table(TICKS_TABLE)
    layouts = {path: is_fixml(path) for path in job.files}  # read before the clock starts
    rows = 0
    start = time.perf_counter()
    ingested_at = datetime.now(UTC)
    for path in job.files:
        if layouts[path]:
            ticks = fixml_to_contract(read_fixml(path), job.key(path), ingested_at)
        else:
            ticks = to_contract(read(path), root_attributes(path), job.key(path), ingested_at)
        table.append(ticks)
        rows += ticks.num_rows
    layout = ", ".join(sorted({"fixml" if f else "tickhouse" for f in layouts.values()}))
    return Timed(time.perf_counter() - start, rows, f"layout: {layout}")


def peer_pandas(job: Job) -> Timed:
    """`pandas.read_xml` (lxml parser), one call per file, all columns read as text. The
    project's layout: `xpath="//trade"` (the record's attributes). FIXML: the Instrmt and
    RptSide children carry symbol, venue and side, which `xpath` mode cannot reach (it reads a
    record's own attributes and child texts), so pandas' documented `iterparse` mode reads them."""
    import pandas as pd

    def read(path: Path) -> pa.Table:
        frame = pd.read_xml(
            path, xpath="//trade", parser="lxml", dtype=dict.fromkeys(TRADE_ATTRIBUTES, str)
        )
        return pa.Table.from_pandas(frame[list(TRADE_ATTRIBUTES)], preserve_index=False)

    def read_fixml(path: Path) -> pa.Table:
        frame = pd.read_xml(
            path,
            iterparse={"TrdCaptRpt": list(FIXML_ATTRIBUTES)},
            parser="lxml",
            dtype=dict.fromkeys(FIXML_ATTRIBUTES, str),
        )
        for name in FIXML_ATTRIBUTES:  # a column no record carries is absent
            if name not in frame:
                frame[name] = None
        frame = frame[list(FIXML_ATTRIBUTES)]
        return pa.table(
            {
                name: pa.array(frame[name].where(frame[name].notna(), None), pa.string())
                for name in FIXML_ATTRIBUTES
            }
        )

    return _peer(job, read, read_fixml)


def peer_lxml(job: Job) -> Timed:
    """A plain `lxml.etree.iterparse` loop appending attribute values to Python lists, freeing
    each record once read (FIXML: the report's attributes plus its Instrmt and RptSide)."""
    from lxml import etree

    def free(element: Any) -> None:
        element.clear(keep_tail=True)
        while element.getprevious() is not None:
            del element.getparent()[0]

    def read(path: Path) -> pa.Table:
        lists: dict[str, list[str | None]] = {name: [] for name in TRADE_ATTRIBUTES}
        appends = [(name, lists[name].append) for name in TRADE_ATTRIBUTES]
        for _event, element in etree.iterparse(str(path), events=("end",), tag="trade"):
            get = element.get
            for name, append in appends:
                append(get(name))
            free(element)
        return pa.table({name: pa.array(values, pa.string()) for name, values in lists.items()})

    def read_fixml(path: Path) -> pa.Table:
        report, instrument, side = (
            f"{{{FIXML_NS}}}{t}" for t in ("TrdCaptRpt", "Instrmt", "RptSide")
        )
        own = ("TrdID", "TxnTm", "LastPx", "LastQty", "TrdDt")
        lists: dict[str, list[str | None]] = {name: [] for name in FIXML_ATTRIBUTES}
        appends = [(name, lists[name].append) for name in own]
        symbols, venues, sides = lists["Sym"].append, lists["Exch"].append, lists["Side"].append
        for _event, element in etree.iterparse(str(path), events=("end",), tag=report):
            get = element.get
            for name, append in appends:
                append(get(name))
            found = element.find(instrument)
            symbols(None if found is None else found.get("Sym"))
            venues(None if found is None else found.get("Exch"))
            found = element.find(side)
            sides(None if found is None else found.get("Side"))
            free(element)
        return pa.table({name: pa.array(values, pa.string()) for name, values in lists.items()})

    return _peer(job, read, read_fixml)


def _venue_and_day(root: dict[str, str]) -> tuple[str | None, str | None]:
    return root.get("venue"), root.get("trade_date")


def peer_spark(job: Job) -> Timed:
    """Peer (DESIGN.md): Spark 4's built-in XML reader writing Iceberg, in `local[2]` on the same
    files — a plain job as a Spark user writes it, with no validation: `rowTag` over each
    layout's files (all-string schema), casts to the contract, the root's venue and trade date
    joined in per file, one Iceberg append into a Hadoop catalog in the work folder (local disk,
    like the project's). The Spark engine itself (the project's parser in Spark tasks) is
    measured on a standalone cluster by `make bench-spark`. The session start is in the wall
    time (a user waits for it too) and is also reported on its own."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    from tickhouse_dagster.settings import current
    from tickhouse_dagster.spark.session import local_conf
    from tickhouse_dagster.spark.ticks import TICKS_SPARK

    assert job.work is not None, "peer_spark needs --work"
    catalog = "bench"
    conf = {
        **local_conf(current().cache, driver_memory="4g"),
        f"spark.sql.catalog.{catalog}": "org.apache.iceberg.spark.SparkCatalog",
        f"spark.sql.catalog.{catalog}.type": "hadoop",
        f"spark.sql.catalog.{catalog}.warehouse": (job.work / "warehouse").as_uri(),
    }
    layouts = {path: is_fixml(path) for path in job.files}  # read before the clock starts
    roots = {path: root_attributes(path) for path in job.files}
    start = time.perf_counter()
    builder = SparkSession.builder.appName("tickhouse-bench-spark-xml")
    for name, value in conf.items():
        builder = builder.config(name, value)
    spark = builder.getOrCreate()
    session_start = time.perf_counter() - start
    table = f"{catalog}.market.ticks"
    text = StringType()

    def files(frame, paths: list[Path]):
        lookup = spark.createDataFrame(
            [
                (
                    p.resolve().as_uri(),
                    job.key(p),
                    roots[p].get("venue"),
                    roots[p].get("trade_date"),
                )
                for p in paths
            ],
            "path string, source_file string, root_venue string, root_date string",
        )
        path = F.regexp_replace(F.col("_metadata.file_path"), "^file:/+", "file:///")
        return frame.withColumn("path", path).join(F.broadcast(lookup), "path")

    try:
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.market")
        spark.createDataFrame([], TICKS_SPARK).writeTo(table).partitionedBy(
            F.col("trade_date")
        ).createOrReplace()
        now = F.current_timestamp()
        frames = []
        plain = [p for p, fixml in layouts.items() if not fixml]
        if plain:
            schema = StructType([StructField(f"_{a}", text) for a in TRADE_ATTRIBUTES])
            raw = spark.read.format("xml").option("rowTag", "trade").schema(schema)
            rows = files(raw.load([str(p) for p in plain]), plain)
            frames.append(
                rows.select(
                    F.col("root_venue").alias("venue"),
                    F.col("_symbol").alias("symbol"),
                    F.to_date("root_date").alias("trade_date"),
                    F.to_timestamp("_ts").alias("ts"),
                    F.col("_id").alias("trade_id"),
                    F.col("_price").cast("decimal(18,6)").alias("price"),
                    F.col("_qty").cast("bigint").alias("quantity"),
                    F.col("_side").alias("side"),
                    "source_file",
                    now.alias("ingested_at"),
                )
            )
        fixml = [p for p, is_f in layouts.items() if is_f]
        if fixml:
            own = ("TrdID", "TxnTm", "LastPx", "LastQty", "TrdDt")
            schema = StructType(
                [StructField(f"_{a}", text) for a in own]
                + [
                    StructField(
                        "Instrmt",
                        StructType([StructField("_Sym", text), StructField("_Exch", text)]),
                    ),
                    StructField("RptSide", StructType([StructField("_Side", text)])),
                ]
            )
            raw = spark.read.format("xml").option("rowTag", "TrdCaptRpt").schema(schema)
            rows = files(raw.load([str(p) for p in fixml]), fixml)
            side = F.col("RptSide._Side")
            frames.append(
                rows.select(
                    F.col("Instrmt._Exch").alias("venue"),
                    F.col("Instrmt._Sym").alias("symbol"),
                    F.to_date("_TrdDt").alias("trade_date"),
                    F.to_timestamp("_TxnTm").alias("ts"),
                    F.col("_TrdID").alias("trade_id"),
                    F.col("_LastPx").cast("decimal(18,6)").alias("price"),
                    F.col("_LastQty").cast("bigint").alias("quantity"),
                    F.when(side == "1", "B").when(side == "2", "S").alias("side"),
                    "source_file",
                    now.alias("ingested_at"),
                )
            )
        rows = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
        rows.writeTo(table).option("check-nullability", "false").append()
        written = spark.table(table).count()
    finally:
        spark.stop()
    seconds = time.perf_counter() - start
    return Timed(seconds, written, f"local[2]; session start {session_start:.1f} s")


MEASURES: dict[str, Callable[[Job], Timed]] = {
    "expat": expat_floor,
    "parse": project_parse,
    "ingest": project_ingest,
    "bars": project_bars,
    "pandas": peer_pandas,
    "lxml": peer_lxml,
    "spark": peer_spark,
}


def peak_rss_bytes() -> int:
    """Peak resident set of this process or its largest child (Linux reports KiB). This
    process's own is its memory's high-water mark (`VmHWM`): `ru_maxrss` would carry over the
    resident set of the process that forked it (Linux keeps it across `exec`), so a harness that
    has imported Dagster would inflate every row."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.measures", description=__doc__)
    parser.add_argument("name", choices=sorted(MEASURES))
    parser.add_argument("--root", type=Path, required=True, help="folder the file keys are under")
    parser.add_argument("--files", type=Path, nargs="+", required=True)
    parser.add_argument("--work", type=Path, help="folder for catalog, warehouse and staging")
    parser.add_argument("--day", type=date.fromisoformat, help="trade date (for 'bars')")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    job = Job(args.root.resolve(), [f.resolve() for f in args.files], args.work, args.day)
    timed = MEASURES[args.name](job)
    result = {
        "name": args.name,
        "seconds": timed.seconds,
        "rows": timed.rows,
        "detail": timed.detail,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(", ".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
