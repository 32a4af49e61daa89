"""User-path results → the "User paths" section of `docs/benchmarks.md`: the table, where the time
goes, the per-file cost growth and the issue's targets, each met or missed and by how much."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.report import Target, _at_least, _at_most, files_text, fmt_bytes, fmt_rate, fmt_ratio
from bench.report import fmt_seconds as _fmt_seconds

USER_PATHS = ("ingest", "sensor")
PEERS = ("expat", "lxml", "pandas", "spark")
ROWS: dict[str, str] = {
    "ingest": "`tickhouse ingest`",
    "sensor": "sensor path (`dagster dev`)",
    "expat": "floor: expat, no callbacks",
    "lxml": "peer: hand-written lxml loop + pyiceberg",
    "pandas": "peer: `pandas.read_xml` + pyiceberg",
    "spark": "peer: Spark 4 XML → Iceberg, `local[2]`",
}
HEADER = (
    "path",
    "profile",
    "layout",
    "input",
    "wall time",
    "ticks/s",
    "vs lxml loop (speed)",
    "vs pandas (speed)",
    "vs expat floor (time)",
    "peak RSS, largest process",
    "peak RSS, process tree",
)

TARGET_10_FILES = 1_000_000
TARGET_MANY_FILES = 700_000
TARGET_FIXML_VS_TICKHOUSE = 1.3
TARGET_VS_LXML = 10.0
TARGET_VS_PANDAS = 20.0
TARGET_VS_EXPAT = 3.0
TARGET_SENSOR_VS_INGEST = 2.0
TARGET_BIGFILE_RSS = 1.5e9  # bytes: "1.5 GB"
TARGET_GROWTH = 1.2


def fmt_seconds(seconds: float) -> str:
    """As bench.report's, with three significant digits below 1 s (never a false 0.00 s)."""
    return f"{seconds:.3g} s" if 0 < seconds < 1 else _fmt_seconds(seconds)


@dataclass
class Growth:
    files: int
    first: float  # median gap, first 10 % of the files
    last: float  # median gap, last 10 %
    deciles: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.last / self.first if self.first > 0 else None


@dataclass
class Sample:
    seconds: float | None
    rows: int | None = None
    peak_rss: int | None = None
    peak_rss_all: int | None = None
    detail: dict[str, float] = field(default_factory=dict)
    growth: Growth | None = None
    status: str = "ok"
    note: str = ""
    warning: str = ""

    @classmethod
    def failed(cls, status: str, note: str) -> Sample:
        return cls(None, status=status, note=note)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.seconds is not None and self.seconds > 0


@dataclass
class Cell:
    """One row (a user path or a peer) of one profile × layout, over its repeated samples."""

    name: str
    ticks: int
    bytes: int
    files: int
    all_files: int
    all_ticks: int
    samples: list[Sample] = field(default_factory=list)
    note: str = ""  # why it has no figures

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def ok(self) -> bool:
        return bool(self.samples) and len(self.good) == len(self.samples)

    @property
    def seconds(self) -> float | None:
        return statistics.median(s.seconds for s in self.good) if self.ok else None  # type: ignore[misc]

    @property
    def ticks_per_s(self) -> float | None:
        seconds = self.seconds
        return self.ticks / seconds if seconds else None

    @property
    def subset(self) -> bool:
        return self.files < self.all_files

    def peak(self, attribute: str) -> int | None:
        values = [getattr(s, attribute) for s in self.good if getattr(s, attribute)]
        return max(values) if values else None

    def why(self) -> str:
        if self.note:
            return self.note
        bad = [s for s in self.samples if not s.ok]
        if bad:
            return bad[0].status + (f": {bad[0].note.splitlines()[-1]}" if bad[0].note else "")
        return "not run"

    def detail(self) -> dict[str, float]:
        """Median of each breakdown figure over the samples."""
        keys = [k for s in self.good for k in s.detail]
        return {
            k: statistics.median(s.detail[k] for s in self.good if k in s.detail)
            for k in dict.fromkeys(keys)
        }


@dataclass
class LayoutResult:
    profile: str
    files: int
    ticks: int
    bytes: int
    description: str
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, name: str) -> Cell | None:
        cell = self.cells.get(name)
        return cell if cell is not None and cell.ok else None

    def speed(self, name: str) -> float | None:
        cell = self.cell(name)
        return cell.ticks_per_s if cell else None

    def seconds(self, name: str) -> float | None:
        cell = self.cell(name)
        return cell.seconds if cell else None

    @property
    def growth(self) -> Growth | None:
        cell = self.cell("ingest")
        found = [s.growth for s in cell.good if s.growth] if cell else []
        return found[0] if found else None


@dataclass
class UserReport:
    key: str
    ticks: int
    ticks_many: int | None
    command: str
    exact_command: str
    date: str
    machine: list[str]
    layouts: list[LayoutResult]
    bigfile: LayoutResult | None
    sensor_interval: int
    peer_mb: float
    elapsed_s: float = 0.0


def section_key(ticks: int) -> str:
    return f"user-paths-{ticks}"


def layout_text(files: int) -> str:
    return f"{files:,} files (≈400)" if files == 390 else files_text(files)


# --- the table -------------------------------------------------------------------------------


def _input(cell: Cell) -> str:
    mb = f"{cell.bytes / 1e6:,.0f} MB"
    if cell.subset:
        return f"first {cell.files} of {cell.all_files} files, {mb}, {cell.ticks:,} ticks"
    return f"{'the only file' if cell.files == 1 else f'all {cell.files:,} files'}, {mb}"


def _wall(cell: Cell) -> str:
    if not cell.ok:
        return cell.why()
    seconds = [s.seconds for s in cell.good]
    text = fmt_seconds(cell.seconds or 0.0)
    if len(seconds) > 1:
        text += f" ({fmt_seconds(min(seconds))} – {fmt_seconds(max(seconds))}, {len(seconds)} runs)"
    if cell.subset:
        whole = (cell.seconds or 0.0) * cell.all_ticks / cell.ticks
        text += f" (≈ {fmt_seconds(whole)} for all files)"
    warnings = {s.warning for s in cell.good if s.warning}
    return text + "".join(f" ⚠ {w}" for w in sorted(warnings))


def _versus(layout: LayoutResult, cell: Cell) -> list[str]:
    if cell.name not in USER_PATHS or not cell.ok:
        return ["—", "—", "—"]
    speed, seconds = cell.ticks_per_s, cell.seconds
    out = []
    for peer in ("lxml", "pandas"):
        other = layout.speed(peer)
        out.append(fmt_ratio(speed / other) if speed and other else "—")
    expat = layout.seconds("expat")
    out.append(fmt_ratio(seconds / expat) if seconds and expat else "—")
    return out


def table(layouts: Iterable[LayoutResult]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for layout in layouts:
        for name, label in ROWS.items():
            cell = layout.cells.get(name)
            if cell is None:
                continue
            lines.append(
                "| "
                + " | ".join(
                    [
                        label,
                        f"`{layout.profile}`",
                        layout_text(layout.files),
                        _input(cell),
                        _wall(cell),
                        fmt_rate(cell.ticks_per_s),
                        *_versus(layout, cell),
                        fmt_bytes(cell.peak("peak_rss")),
                        fmt_bytes(cell.peak("peak_rss_all")),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def breakdown(layouts: Iterable[LayoutResult]) -> str:
    lines = [
        "| path | profile | layout | wall time | where the time goes (medians) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layout in layouts:
        for name in USER_PATHS:
            cell = layout.cell(name)
            if cell is None or not cell.detail():
                continue
            parts = []
            for key, value in cell.detail().items():
                if key.endswith(("runs", "batch")) and name == "sensor":
                    parts.append(f"{key}: {value:.0f}")
                else:
                    parts.append(f"{key} {fmt_seconds(value)}")
            lines.append(
                f"| {ROWS[name]} | `{layout.profile}` | {layout_text(layout.files)} "
                f"| {fmt_seconds(cell.seconds or 0.0)} | {'; '.join(parts)} |"
            )
    return "\n".join(lines)


def growth_table(layouts: Iterable[LayoutResult]) -> str:
    lines = [
        "| profile | layout | ticks | per-file cost, first 10 % of files (median) "
        "| last 10 % (median) | last / first | medians by tenth of the files, in order |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for layout in layouts:
        growth = layout.growth
        if growth is None:
            continue
        lines.append(
            f"| `{layout.profile}` | {layout_text(layout.files)} | {layout.ticks:,} "
            f"| {fmt_seconds(growth.first)} | {fmt_seconds(growth.last)} "
            f"| {fmt_ratio(growth.ratio) if growth.ratio else '—'} "
            f"| {', '.join(f'{d:.2f}' for d in growth.deciles)} s |"
        )
    return "\n".join(lines)


# --- targets ---------------------------------------------------------------------------------


def _missing(layout: LayoutResult | None, *names: str) -> str:
    if layout is None:
        return "not measured (layout not run)"
    for name in names:
        cell = layout.cells.get(name)
        if cell is None:
            return f"not measured ({name} was not run)"
        if not cell.ok:
            return f"not measured ({name}: {cell.why()})"
    return "not measured"


def targets(report: UserReport) -> list[Target]:
    found: list[Target] = []
    by = {(lay.profile, lay.files): lay for lay in report.layouts}
    for lay in report.layouts:
        where = f" (`{lay.profile}`, {layout_text(lay.files)}, {lay.ticks:,} ticks)"
        speed = lay.speed("ingest")
        goal = TARGET_10_FILES if lay.files <= 10 else TARGET_MANY_FILES
        found.append(
            _at_least(
                f"`tickhouse ingest` ≥ {goal:,} ticks/s" + where,
                speed,
                goal,
                f"{speed:,.0f} ticks/s" if speed else _missing(lay, "ingest"),
            )
        )
        for peer, goal in (("lxml", TARGET_VS_LXML), ("pandas", TARGET_VS_PANDAS)):
            other = lay.speed(peer)
            ratio = speed / other if speed and other else None
            found.append(
                _at_least(
                    f"`tickhouse ingest` ≥ {goal:g}× the {ROWS[peer].split(': ')[1]} (speed)"
                    + where,
                    ratio,
                    goal,
                    f"{fmt_ratio(ratio)}" if ratio else _missing(lay, "ingest", peer),
                )
            )
        seconds, expat = lay.seconds("ingest"), lay.seconds("expat")
        ratio = seconds / expat if seconds and expat else None
        found.append(
            _at_most(
                f"`tickhouse ingest` within {TARGET_VS_EXPAT:g}× of the expat floor (time)" + where,
                ratio,
                TARGET_VS_EXPAT,
                f"{fmt_ratio(ratio)} the floor's time"
                if ratio
                else _missing(lay, "ingest", "expat"),
            )
        )
        sensor = lay.seconds("sensor")
        ratio = sensor / seconds if sensor and seconds else None
        found.append(
            _at_most(
                f"sensor path ≤ {TARGET_SENSOR_VS_INGEST:g}× `tickhouse ingest` (time)" + where,
                ratio,
                TARGET_SENSOR_VS_INGEST,
                f"{fmt_ratio(ratio)} ({fmt_seconds(sensor)} vs {fmt_seconds(seconds)})"
                if ratio and sensor and seconds
                else _missing(lay, "sensor", "ingest"),
            )
        )
        if lay.files > 10:  # the target is about a day of many files
            growth = lay.growth
            ratio = growth.ratio if growth else None
            found.append(
                _at_most(
                    f"per-file cost, last 10 % of files ≤ {TARGET_GROWTH:g}× the first 10 %"
                    + where,
                    ratio,
                    TARGET_GROWTH,
                    f"{fmt_ratio(ratio)} ({fmt_seconds(growth.last)} vs "
                    f"{fmt_seconds(growth.first)} per file)"
                    if ratio and growth
                    else _missing(lay, "ingest"),
                )
            )
    for files in sorted({lay.files for lay in report.layouts}):
        tick, fix = by.get(("tickhouse", files)), by.get(("fixml", files))
        if tick is None or fix is None:
            continue
        a, b = tick.seconds("ingest"), fix.seconds("ingest")
        ratio = b / a if a and b else None
        found.append(
            _at_most(
                f"FIXML within {TARGET_FIXML_VS_TICKHOUSE:g}× of the tickhouse layout, "
                f"`tickhouse ingest` (time; {layout_text(files)}, {tick.ticks:,} ticks)",
                ratio,
                TARGET_FIXML_VS_TICKHOUSE,
                f"{fmt_ratio(ratio)} ({fmt_seconds(b)} vs {fmt_seconds(a)})"
                if ratio and a and b
                else _missing(fix, "ingest"),
            )
        )
    big = report.bigfile
    what = "peak RSS ≤ 1.5 GB, one 2 GB file through `tickhouse ingest` (process tree)"
    if big is None:
        found.append(Target(what, "not measured", "n/a", "run with `--bigfile-ticks 18000000`"))
    else:
        cell = big.cell("ingest")
        peak = cell.peak("peak_rss_all") if cell else None
        size = f"{big.bytes / 1e6:,.0f} MB file, {big.ticks:,} ticks"
        if big.bytes < 1.5e9:
            found.append(
                Target(
                    what,
                    f"{fmt_bytes(peak)} for a {size}" if peak else _missing(big, "ingest"),
                    "n/a",
                    "the target is for a 2 GB file",
                )
            )
        else:
            found.append(
                _at_most(
                    what + f" ({size})",
                    peak,
                    TARGET_BIGFILE_RSS,
                    f"{fmt_bytes(peak)} ({peak / 1e9:.2f} GB)" if peak else _missing(big, "ingest"),
                )
            )
    return found


def targets_markdown(report: UserReport) -> str:
    lines = ["| target | measured | verdict | margin |", "| --- | --- | --- | --- |"]
    for t in targets(report):
        verdict = {"met": "**met**", "missed": "**missed**"}.get(t.verdict, t.verdict)
        lines.append(f"| {t.what} | {t.measured or '—'} | {verdict} | {t.margin or '—'} |")
    return "\n".join(lines)


# --- the section -----------------------------------------------------------------------------


def section(report: UserReport) -> str:
    sizes = f"{report.ticks:,} ticks"
    if report.ticks_many and report.ticks_many != report.ticks:
        sizes += f" ({report.ticks_many:,} ticks in the layouts of more than 50 files)"
    layouts = ", ".join(sorted({layout_text(lay.files) for lay in report.layouts}, key=len))
    profiles = ", ".join(sorted({f"`{lay.profile}`" for lay in report.layouts}, reverse=True))
    parts = [
        f"### User paths: one trading day of {sizes}",
        "",
        f"- Command: `{report.command}`"
        + ("" if report.command == report.exact_command else f" (ran `{report.exact_command}`)"),
        f"- Date: {report.date}; whole run {fmt_seconds(report.elapsed_s)}",
        f"- Profiles {profiles}; layouts: {layouts}; sensor interval "
        f"{report.sensor_interval} s; peers lxml / pandas / Spark on the first files holding "
        f"≥ {report.peer_mb:g} MB, the expat floor on all files",
        *(f"- {fact}" for fact in report.machine),
        "",
        "Data sets: "
        + "; ".join(f"{lay.description}" for lay in report.layouts)
        + (f"; big file: {report.bigfile.description}" if report.bigfile else "")
        + ".",
        "",
        table(report.layouts + ([report.bigfile] if report.bigfile else [])),
        "",
        "#### Where the time goes",
        "",
        breakdown(report.layouts + ([report.bigfile] if report.bigfile else [])),
        "",
        "#### Per-file cost growth",
        "",
        "The gap between consecutive `market/ticks` materializations of the `tickhouse ingest` "
        "batch run (its Dagster event log): one file settled — conflict check, Iceberg commit, "
        "read-back, the file's events written — while the workers parse ahead.",
        "",
        growth_table(report.layouts),
        "",
        "#### Targets",
        "",
        targets_markdown(report),
        "",
    ]
    return "\n".join(parts)
