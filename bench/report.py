"""Results → the Markdown table, the targets (computed from the numbers) and `docs/benchmarks.md`.

The report file is written by the harness only: a fixed preamble, then one section per kind of
run (its data-set sizes), so `make bench-quick` does not overwrite what `make bench` wrote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Measurement ids in table order, with their row labels.
ROWS: dict[str, str] = {
    "expat": "parse floor: `xml.parsers.expat`, no callbacks",
    "parse": "project parse: XML → Arrow, contract types, staged (1 process)",
    "ingest": "project full ingest: XML → `market.ticks` → 4 bar tables",
    "bars": "project bar rebuild: one trade date, 4 bar tables",
    "pandas": "peer: `pandas.read_xml` → Arrow → pyiceberg append",
    "lxml": "peer: `lxml.etree.iterparse` loop → Arrow → pyiceberg append",
    "spark": "peer: Spark 4 XML reader → Iceberg (`local[2]`, session start included)",
}
HEADER = (
    "measurement",
    "input",
    "wall time",
    "ticks/s",
    "MB/s",
    "peak RSS, largest process",
    "peak RSS, all processes",
    "full ingest vs this",
)

TARGET_INGEST_TICKS_PER_S = 1_000_000
TARGET_PARSE_VS_EXPAT = 1.5
TARGET_VS_PANDAS = 20.0
TARGET_VS_SPARK = 5.0
TARGET_BARS_SECONDS = 3.0
TARGET_BARS_DAY_TICKS = 10_000_000
TARGET_LINEARITY = 3.3
LINEARITY_SIZES = (10_000_000, 30_000_000)


@dataclass
class Row:
    """One measurement of one data set. `ticks`/`bytes` are what was measured (a subset for some
    peers); `all_ticks` is the whole data set's, to extrapolate the time of a subset."""

    name: str
    status: str  # ok | timeout | failed | skipped | n/a
    ticks: int = 0
    bytes: int | None = None
    files: int = 0
    all_files: int = 0
    all_ticks: int = 0
    seconds: float | None = None
    peak_rss: int | None = None
    peak_rss_all: int | None = None
    note: str = ""  # why a row has no numbers, or what it produced
    warning: str = ""  # e.g. a row count other than the data set's, shown in the table

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.seconds is not None and self.seconds > 0

    @property
    def subset(self) -> bool:
        return self.files < self.all_files

    @property
    def ticks_per_s(self) -> float | None:
        return self.ticks / self.seconds if self.ok and self.ticks else None

    @property
    def mb_per_s(self) -> float | None:
        return self.bytes / 1e6 / self.seconds if self.ok and self.bytes else None


@dataclass
class SizeResult:
    ticks: int
    files: int
    description: str
    rows: dict[str, Row] = field(default_factory=dict)

    def seconds(self, name: str) -> float | None:
        row = self.rows.get(name)
        return row.seconds if row and row.ok else None

    def speed(self, name: str) -> float | None:
        row = self.rows.get(name)
        return row.ticks_per_s if row else None


@dataclass
class Report:
    key: str  # section id: the data-set sizes of the run
    title: str
    command: str
    exact_command: str
    date: str
    machine: list[str]
    sizes: list[SizeResult]
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    verdict: str  # "met", "missed" or "n/a"
    margin: str


# --- formatting ------------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def fmt_rate(value: float | None, digits: int = 0) -> str:
    """Thousands separated; small figures to three significant digits, never a false zero."""
    if value is None:
        return "—"
    if value and abs(value) < 10 ** max(digits, 1) * 10:
        return f"{value:.3g}"
    return f"{value:,.{digits}f}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio >= 10 else f"{ratio:.2f}×"


def files_text(n: int) -> str:
    return f"{n:,} file" if n == 1 else f"{n:,} files"


def _input(row: Row) -> str:
    mb = f"{row.bytes / 1e6:,.0f} MB" if row.bytes else ""
    if row.name == "bars":
        return f"1 trade date, {row.ticks:,} ticks"
    if row.subset:
        return f"measured on {mb} subset (first {row.files} of {files_text(row.all_files)})"
    return f"{'the only file' if row.files == 1 else f'all {row.files:,} files'}, {mb}"


def _wall(row: Row) -> str:
    if not row.ok:
        return row.note or row.status
    assert row.seconds is not None
    text = fmt_seconds(row.seconds)
    if row.subset and row.ticks:
        text += f" (≈ {fmt_seconds(row.seconds * row.all_ticks / row.ticks)} for all files)"
    return text + (f" ⚠ {row.warning}" if row.warning else "")


def _versus(size: SizeResult, row: Row) -> str:
    ingest = size.speed("ingest")
    if row.name in ("ingest", "bars") or ingest is None or row.ticks_per_s is None:
        return "—"
    return fmt_ratio(ingest / row.ticks_per_s)


def table(size: SizeResult) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for name, label in ROWS.items():
        row = size.rows.get(name)
        if row is None:
            continue
        if row.status == "n/a":
            cells = [label, "—", row.note, "—", "—", "—", "—", "—"]
        else:
            cells = [
                label,
                _input(row),
                _wall(row),
                fmt_rate(row.ticks_per_s),
                fmt_rate(row.mb_per_s, 1),
                fmt_bytes(row.peak_rss),
                fmt_bytes(row.peak_rss_all),
                _versus(size, row),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- targets ---------------------------------------------------------------------------------


def _at_least(what: str, measured: float | None, target: float, shown: str) -> Target:
    """A "measured ≥ target" target; `shown` is the measured value as text."""
    if measured is None:
        return Target(what, shown, "n/a", "")
    if measured >= target:
        return Target(what, shown, "met", f"{measured / target:.2f}× the target")
    short = 1 - measured / target
    needs = target / measured
    return Target(what, shown, "missed", f"short by {short:.0%}: needs {needs:.2f}× more")


def _at_most(what: str, measured: float | None, target: float, shown: str) -> Target:
    """A "measured ≤ target" target."""
    if measured is None:
        return Target(what, shown, "n/a", "")
    if measured <= target:
        return Target(what, shown, "met", f"{target / measured:.2f}× headroom")
    over = measured / target
    return Target(what, shown, "missed", f"over by {over - 1:.0%}: needs {over:.2f}× less")


def _missing(size: SizeResult, *names: str) -> str:
    """Why a target has no value: which measurement it needs did not run or did not finish."""
    for name in names:
        row = size.rows.get(name)
        if row is None:
            return f"not measured ({name} was not run)"
        if not row.ok:
            return f"not measured ({name}: {row.note or row.status})"
    return "not measured"


def size_targets(size: SizeResult) -> list[Target]:
    suffix = f" ({size.ticks:,} ticks)"
    ingest = size.speed("ingest")
    targets = [
        _at_least(
            f"full ingest ≥ {TARGET_INGEST_TICKS_PER_S:,} ticks/s" + suffix,
            ingest,
            TARGET_INGEST_TICKS_PER_S,
            f"{ingest:,.0f} ticks/s" if ingest else _missing(size, "ingest"),
        )
    ]
    parse, expat = size.seconds("parse"), size.seconds("expat")
    parse_ratio = parse / expat if parse and expat else None
    targets.append(
        _at_most(
            f"project parse within {TARGET_PARSE_VS_EXPAT}× of the expat floor" + suffix,
            parse_ratio,
            TARGET_PARSE_VS_EXPAT,
            f"parse takes {parse_ratio:.2f}× the floor's time"
            if parse_ratio
            else _missing(size, "parse", "expat"),
        )
    )
    pandas = size.speed("pandas")
    versus = ingest / pandas if ingest and pandas else None
    targets.append(
        _at_least(
            f"full ingest ≥ {TARGET_VS_PANDAS:.0f}× faster than the `pandas.read_xml` path"
            + suffix,
            versus,
            TARGET_VS_PANDAS,
            f"full ingest at {fmt_ratio(versus)} the pandas path's ticks/s"
            if versus
            else _missing(size, "ingest", "pandas"),
        )
    )
    spark = size.speed("spark")
    versus_spark = ingest / spark if ingest and spark else None
    targets.append(
        _at_least(
            f"full ingest ≥ {TARGET_VS_SPARK:.0f}× faster than Spark local" + suffix,
            versus_spark,
            TARGET_VS_SPARK,
            f"full ingest at {fmt_ratio(versus_spark)} Spark local's ticks/s"
            if versus_spark
            else _missing(size, "ingest", "spark"),
        )
    )
    bars = size.seconds("bars")
    what = f"bar rebuild of one day of {TARGET_BARS_DAY_TICKS:,} ticks ≤ {TARGET_BARS_SECONDS:g} s"
    if size.ticks == TARGET_BARS_DAY_TICKS:
        targets.append(
            _at_most(
                what,
                bars,
                TARGET_BARS_SECONDS,
                fmt_seconds(bars) if bars else _missing(size, "bars"),
            )
        )
    elif "bars" in size.rows:
        if bars:
            measured = f"{fmt_seconds(bars)} for a day of {size.ticks:,} ticks"
        else:
            measured = _missing(size, "bars")
        targets.append(
            Target(what + suffix, measured, "n/a", "the target is for a day of 10,000,000 ticks")
        )
    return targets


def linearity_target(sizes: Sequence[SizeResult]) -> Target:
    small, large = LINEARITY_SIZES
    what = f"{large:,} ticks take ≤ {TARGET_LINEARITY}× the full-ingest time of {small:,}"
    by_ticks = {s.ticks: s for s in sizes}
    if small not in by_ticks or large not in by_ticks:
        how = f'run both sizes: `make bench BENCH_TICKS="{small} {large}"`'
        return Target(what, "—", "n/a", how)
    a, b = by_ticks[small].seconds("ingest"), by_ticks[large].seconds("ingest")
    ratio = b / a if a and b else None
    if ratio and a and b:
        shown = f"{ratio:.2f}× ({fmt_seconds(b)} vs {fmt_seconds(a)})"
    else:
        shown = _missing(by_ticks[small], "ingest") + ", " + _missing(by_ticks[large], "ingest")
    return _at_most(what, ratio, TARGET_LINEARITY, shown)


def targets_markdown(sizes: Sequence[SizeResult]) -> str:
    targets = [t for s in sizes for t in size_targets(s)] + [linearity_target(sizes)]
    lines = ["| target | measured | verdict | margin |", "| --- | --- | --- | --- |"]
    for t in targets:
        verdict = {"met": "**met**", "missed": "**missed**"}.get(t.verdict, t.verdict)
        lines.append(f"| {t.what} | {t.measured or '—'} | {verdict} | {t.margin or '—'} |")
    return "\n".join(lines)


# --- the report ------------------------------------------------------------------------------

NOTES = """\
- Wall time covers the work only (imports, catalog and table creation are set up before the
  clock starts). Each measurement runs in its own process; the files are read once beforehand,
  so every measurement reads them from the page cache.
- ticks/s and MB/s are per wall-clock second, MB = 10^6 bytes of XML. A peer measured on a
  subset shows its subset's throughput and, in brackets, the time extrapolated to all files.
- Peak RSS, largest process: `getrusage` maximum of the measurement process and its largest
  child (the full ingest's parse workers). All processes: the sum over the process tree, sampled
  every 0.2 s by the harness (may miss a short spike).
- full ingest vs this: the project's full-ingest ticks/s divided by the row's ticks/s
  (above 1 = the project's full ingest moves ticks that many times faster).
- The full ingest parses in worker processes, one per core (`tickhouse_dagster.engine.batch`); the
  parse row is one process. The bar rebuild reads the day's ticks written by the full ingest
  and replaces the day's bars in all four bar tables.
- Peers read every attribute as text and convert it with Arrow's casts to the contract's types
  (price decimal128(18,6), ts timestamp[us, UTC]; venue and trade date from the root element),
  then append each file with pyiceberg to a fresh ticks table of the project's schema.
- Peak RSS includes the interpreter and the libraries each process imports. Other load on the
  machine slows every row; the load average at the start of the run is recorded with it.
"""


def section(report: Report) -> str:
    parts = [
        f"## {report.title}",
        "",
        f"- Command: `{report.command}`"
        + ("" if report.command == report.exact_command else f" (ran `{report.exact_command}`)"),
        f"- Date: {report.date}; whole run {fmt_seconds(report.elapsed_s)}",
        *(f"- {fact}" for fact in report.machine),
    ]
    for size in report.sizes:
        parts += [
            "",
            f"### {size.ticks:,} ticks",
            "",
            f"Data set: {size.description}.",
            "",
            table(size),
        ]
    parts += ["", "### Targets", "", "Computed from the tables above.", ""]
    parts += [targets_markdown(report.sizes), ""]
    return "\n".join(parts)


PREAMBLE = """\
# Benchmarks

Written by the harness in `bench/` — do not edit by hand; rerun instead.

| command | data set |
| --- | --- |
| `make bench` | user paths, then components (below), one trading day of 10,000,000 ticks |
| `make bench-user` / `make bench-components` | either half of `make bench` |
| `make bench BENCH_TICKS=30000000` | components at 1,000,000, 10,000,000 or 30,000,000 ticks |
| `make bench BENCH_TICKS="10000000 30000000"` | both sizes in one run, plus the linearity target |
| `make bench-quick` | 1,000,000 ticks, user paths in 10 files, peers on a smaller subset |
| `make bench-bigfile` | one file of 18,000,000 ticks (~2 GB): parse and full-ingest memory |

`make bench`: the user paths for both profiles (`tickhouse`, `fixml`) in 10 and in 390 files
plus one 2 GB file through `tickhouse ingest`, then the component tables in 10 files.

Data sets are generated with `tickhouse generate` (fixed seed) and cached under
`~/.cache/tickhouse/bench-data/<ticks>-<files>[-fixml]/`. Every measurement is time-bound
(`BENCH_TIMEOUT`, seconds); one that runs over shows `timeout`.

"""

USER_PREAMBLE = """\
## User paths

What a user waits for, on the same files for every row (`bench/user_paths.py`):

- `tickhouse ingest`: the command as a process, in a fresh `TICKHOUSE_HOME` / `DAGSTER_HOME`
  whose landing folder holds hard links of the data set; from the process start until it exits
  0 — imports, the one `ingest_landing_batch` run with every check, the bar rebuild of the
  touched day. ticks/s = the day's ticks / that wall time.
- sensor path: a real `dagster dev` (webserver + daemon, sensors on, a short sensor interval)
  in a fresh home with an empty landing folder. Once both sensors have ticked, the whole day
  appears at once (hard links made beside the landing folder, then one rename into it); timed
  from that rename until the day's `market.ohlcv_1d` bars are committed and count every trade
  (pyiceberg, polled every 0.5 s).
- Peers on the same data set: the expat floor (no callbacks) on all files; the hand-written
  lxml `iterparse` loop and `pandas.read_xml` (each converting to the contract's types with
  Arrow and appending each file with pyiceberg) and Spark on the first files holding at least
  the stated MB, their throughput on that subset (the time in brackets is extrapolated to the
  day). FIXML: the lxml loop also reads each report's `Instrmt` and `RptSide`; pandas uses its
  `iterparse` mode, the one that reads attributes of a record's children.
- vs lxml loop / vs pandas: the user path's ticks/s ÷ the peer's (above 1 = the user path is
  faster). vs expat floor: the user path's wall time ÷ the floor's on all files.
- Peak RSS: the largest process and the sum over the process tree (every 0.2 s; for the
  sensor path the whole `dagster dev` tree — webserver, daemon, code server, runs — from the
  drop on). Several runs: the median wall time, the range in brackets.
- The 390-file layout is the most the generator cuts a KRX session into (one file a minute of
  09:00–15:30), noted "≈400".

"""

COMPONENTS_PREAMBLE = """\
## Components and peers

The project's parse, bulk ingest (`tickhouse_dagster.engine.batch`, no Dagster) and bar rebuild
next to the expat floor and the peers (`bench/run.py`). How to read the tables:

"""

_SECTION = re.compile(r"<!-- bench:(\S+) -->\n(.*?)<!-- /bench:\1 -->\n", re.S)


USER_KEY = "user-paths-"


def _order(key: str) -> tuple[int, str]:
    first = re.match(r"\d+", key)
    return (int(first.group()) if first else 0, key)


def _user_order(key: str) -> tuple[int, str]:
    """User-path sections: the largest day first (the recorded `make bench`), the hand-written
    analysis (`user-paths-notes`) last."""
    size = key[len(USER_KEY) :]
    return (-int(size) if size.isdigit() else 1, key)


def write_report(path: Path, report: Report) -> None:
    """Replace this run's section of the report file (or add it), keeping the other sections."""
    write_section(path, report.key, section(report))


def write_section(path: Path, key: str, text: str) -> None:
    """Replace (or add) the section `key` of the report file, keeping the others."""
    sections: dict[str, str] = {}
    if path.exists():
        for match in _SECTION.finditer(path.read_text()):
            sections[match[1]] = match[2]
    sections[key] = text

    def blocks(keys: list[str]) -> str:
        return "".join(
            f"<!-- bench:{key} -->\n{sections[key].rstrip()}\n<!-- /bench:{key} -->\n\n"
            for key in keys
        )

    users = sorted((k for k in sections if k.startswith(USER_KEY)), key=_user_order)
    others = sorted((k for k in sections if not k.startswith(USER_KEY)), key=_order)
    text = PREAMBLE
    if users:
        text += USER_PREAMBLE + blocks(users)
    text += COMPONENTS_PREAMBLE + NOTES + "\n" + blocks(others)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
