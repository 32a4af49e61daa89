"""Which venue reference data the stored ticks and bars were built under, and what is stale now
(docs/decisions/1402-stale-reference-data.md).

The record is Iceberg's own table `reference_data_used`, so every writer that goes through
`Lakehouse` records it (the sensor's runs, `tickhouse ingest`, the bars job, the bulk backfill)
and any engine can read it:

- a landing file's ticks: one row per (file, venue its rows name), written right after the
  ticks commit — the trade-date rule the parser used for prints without a feed trade date;
- a trade date's bars: one row per (bar table, trade date, venue with bars that day), written
  right after the bar commits — the bar clock and the trade-date rule they were built under.

A record is written after the data it describes, never before, so a crash between the two
leaves an old record: the data is reported stale and rebuilt, never wrongly reported current.
The rules that decide what a change makes stale are `market.reference_data`'s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, And

from tickhouse_dagster.core.contract import (
    BAR_INTERVALS,
    REFERENCE_ARROW,
    REFERENCE_TABLE,
    TICKS_BUILT,
    bar_table_name,
)
from tickhouse_dagster.market.reference_data import (
    CHECK_ONLY_NOTE,
    bars_stale_fields,
    changed_fields,
    describe_change,
    fingerprint,
    reference_json,
    ticks_moved,
    trade_date_rule_changed,
    venue_from_reference,
)
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.row_filters import equal_to, is_in

DAILY_BARS = bar_table_name("1d")  # the bar table whose days tell which days have bars
BAR_TABLES = tuple(bar_table_name(i) for i in BAR_INTERVALS)
COMPACT_AT_FILES = 16  # data files of the record table that make a compaction worth it
TicksMode = Literal["check", "count", "skip"]


def _rows(
    built: str,
    venues: Iterable[Venue],
    *,
    trade_date: date | None = None,
    source_file: str | None = None,
    recorded_at: datetime,
) -> list[dict[str, Any]]:
    return [
        {
            "built": built,
            "venue": venue.name,
            "trade_date": trade_date,
            "source_file": source_file,
            "fingerprint": fingerprint(venue),
            "reference": reference_json(venue),
            "recorded_at": recorded_at,
        }
        for venue in venues
    ]


# What a record says (all but when it was written): a build whose rows say the same as the stored
# ones leaves them, so `recorded_at` is when that state of the reference data was first recorded.
_RECORD_VALUES = ("built", "venue", "trade_date", "source_file", "fingerprint", "reference")


def record_bars_reference(
    house: Lakehouse, day: date, bars: Mapping[str, pa.Table], venues: Mapping[str, Venue]
) -> Commit | None:
    """After the bars of `day` were replaced in the tables of `bars` (bar table name → the
    day's bars), record the reference data of each venue that has bars in each. None: the
    stored record already says exactly that (most rebuilds of a day: the same venues under the
    same reference data), and a commit — which rewrites the record table's files — is saved."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for table, day_bars in bars.items():
        names = sorted(n for n in pc.unique(day_bars["venue"]).to_pylist() if n is not None)
        rows += _rows(table, (venues[n] for n in names), trade_date=day, recorded_at=now)
    predicate = And(equal_to("trade_date", day.isoformat()), is_in("built", list(bars)))
    stored = house.reference_records(_RECORD_VALUES, predicate)
    if _said(stored.to_pylist()) == _said(rows):
        return None
    return house.replace_reference_records(
        predicate, pa.Table.from_pylist(rows, schema=REFERENCE_ARROW)
    )


def _said(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Records as what they say, in a fixed order; a row twice is not the same as once."""
    return sorted(tuple(str(row[n]) for n in _RECORD_VALUES) for row in rows)


def record_ticks_reference(
    house: Lakehouse, files: Mapping[str, Sequence[str]], venues: Mapping[str, Venue]
) -> Commit | None:
    """After landing files' ticks were committed, record the reference data they were parsed
    under: for each file (landing key → the venues its rows name), each of its venues' data."""
    if not files:
        return None
    now = datetime.now(UTC)
    rows = [
        row
        for key, names in files.items()
        # Every venue a committed row names is configured (the parsers refuse unknown ones).
        for row in _rows(
            TICKS_BUILT, (venues[n] for n in sorted(names)), source_file=key, recorded_at=now
        )
    ]
    predicate = And(equal_to("built", TICKS_BUILT), is_in("source_file", list(files)))
    return house.replace_reference_records(
        predicate, pa.Table.from_pylist(rows, schema=REFERENCE_ARROW)
    )


# --- what is stale ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleBars:
    """One venue's bars of one trade date, built under reference data that changed."""

    trade_date: date
    venue: str
    tables: tuple[str, ...]
    changes: tuple[str, ...]  # describe_change of each field that makes them stale


@dataclass(frozen=True)
class StaleTicks:
    """A landing file whose ticks of one venue the current trade-date rule books elsewhere: its
    trade dates came from the rule, so only re-ingesting the file corrects them."""

    source_file: str
    venue: str
    moves: tuple[tuple[date, date, int], ...]  # (stored trade date, new trade date, ticks)
    changes: tuple[str, ...]


@dataclass
class StaleReport:
    bars: list[StaleBars] = field(default_factory=list)
    ticks: list[StaleTicks] = field(default_factory=list)
    # Files recorded under a different trade-date rule, not checked row by row (check_ticks off)
    ticks_unchecked: dict[str, int] = field(default_factory=dict)  # venue → files
    no_effect: dict[str, tuple[str, ...]] = field(default_factory=dict)  # venue → changes
    removed: dict[str, list[date]] = field(default_factory=dict)  # venue gone → its bar days
    unrecorded: list[tuple[date, str]] = field(default_factory=list)  # bars without a record

    @property
    def stale(self) -> bool:
        return bool(self.bars or self.ticks or self.ticks_unchecked or self.removed)

    def days(self) -> list[date]:
        """The trade dates whose bars to rebuild."""
        return sorted({b.trade_date for b in self.bars})

    def files(self) -> list[str]:
        """The landing files to re-ingest."""
        return sorted({t.source_file for t in self.ticks})

    def render(self) -> str:
        lines: list[str] = []
        if self.bars:
            lines.append(
                f"bars built under changed reference data: {len(self.days())} trade date(s) "
                "(rebuild them: tickhouse rebuild-bars --stale)"
            )
            for b in self.bars:
                lines.append(
                    f"  {b.venue} {b.trade_date}  [{', '.join(b.tables)}]  {'; '.join(b.changes)}"
                )
        if self.ticks:
            lines.append(
                f"ticks whose trade dates the changed rule books elsewhere: {len(self.files())} "
                f"file(s) (re-ingest them: tickhouse ingest --all {' '.join(self.files())})"
            )
            for t in self.ticks:
                moves = ", ".join(f"{n} tick(s) {a} -> {b}" for a, b, n in t.moves)
                lines.append(f"  {t.source_file}  {t.venue}: {moves}  ({'; '.join(t.changes)})")
        for venue, files in sorted(self.ticks_unchecked.items()):
            lines.append(
                f"ticks of {files} file(s) were parsed under {venue}'s former trade-date rule "
                "(tickhouse stale names the files that need re-ingesting)"
            )
        for venue, days in sorted(self.removed.items()):
            lines.append(
                f"venue {venue} is no longer in the reference data; its bars of "
                f"{len(days)} trade date(s) ({days[0]} .. {days[-1]}) cannot be rebuilt"
            )
        for venue, changes in sorted(self.no_effect.items()):
            changed = "; ".join(changes)
            lines.append(f"{venue} reference data changed: {changed} ({CHECK_ONLY_NOTE})")
        if self.unrecorded:
            days = sorted({d for d, _ in self.unrecorded})
            lines.append(
                f"bars of {len(days)} trade date(s) have no reference record (built before it "
                f"was kept, {days[0]} .. {days[-1]}): staleness unknown; "
                "tickhouse rebuild-bars DAY ... records it"
            )
        lines.append("stale: see above" if self.stale else "nothing stale")
        return "\n".join(lines)


def _recorded_venue(house: Lakehouse, name: str, recorded: str) -> Venue:
    [reference] = house.reference_records(
        ["reference"], equal_to("fingerprint", recorded), limit=1
    )["reference"].to_pylist()
    return venue_from_reference(name, reference)


def _bar_days(house: Lakehouse) -> set[tuple[date, str]]:
    table = house.table(DAILY_BARS)
    if table.current_snapshot() is None:
        return set()
    found = table.scan(selected_fields=("trade_date", "venue")).to_arrow()
    distinct = found.group_by(["trade_date", "venue"]).aggregate([])
    return {(row["trade_date"], row["venue"]) for row in distinct.to_pylist()}


def find_stale(
    house: Lakehouse, venues: Mapping[str, Venue], *, ticks: TicksMode = "check"
) -> StaleReport:
    """What the stored records say is stale under `venues`. `ticks`: "check" reads the ticks
    of files parsed under a changed trade-date rule to name those whose trade dates move (exact,
    costs a read of those files' ts); "count" only counts such files; "skip" reads the bars'
    records only (a ticks commit's record file is pruned by its `built` bounds unopened) and
    leaves out the bars without a record — what a sensor needs every minute."""
    report = StaleReport()
    current = {name: fingerprint(v) for name, v in venues.items()}
    columns = ["built", "venue", "trade_date", "source_file", "fingerprint"]
    only_bars = is_in("built", list(BAR_TABLES)) if ticks == "skip" else None
    records = house.reference_records(columns, only_bars).to_pylist()
    old: dict[tuple[str, str], Venue] = {}

    def recorded(name: str, fp: str) -> Venue:
        if (name, fp) not in old:
            old[name, fp] = _recorded_venue(house, name, fp)
        return old[name, fp]

    bars: dict[tuple[date, str, str], list[str]] = defaultdict(list)
    files: dict[tuple[str, str], list[str]] = defaultdict(list)
    recorded_days: set[tuple[date, str]] = set()
    for row in records:
        if row["built"] == TICKS_BUILT:
            if row["fingerprint"] != current.get(row["venue"]):
                files[row["venue"], row["fingerprint"]].append(row["source_file"])
            continue
        if row["built"] == DAILY_BARS:
            recorded_days.add((row["trade_date"], row["venue"]))
        if row["fingerprint"] != current.get(row["venue"]):
            bars[row["trade_date"], row["venue"], row["fingerprint"]].append(row["built"])

    for (day, name, fp), tables in sorted(bars.items()):
        if name not in venues:
            report.removed.setdefault(name, []).append(day)
            continue
        before, now = recorded(name, fp), venues[name]
        stale = bars_stale_fields(before, now, day)
        if stale:
            changes = tuple(describe_change(f, before, now) for f in stale)
            report.bars.append(StaleBars(day, name, tuple(sorted(tables)), changes))
        else:
            changes = tuple(describe_change(f, before, now) for f in changed_fields(before, now))
            report.no_effect.setdefault(name, changes)
    for name in report.removed:
        report.removed[name] = sorted(set(report.removed[name]))

    for (name, fp), keys in sorted(files.items()):
        if name not in venues:
            continue  # its rows cannot be re-parsed either; `removed` already says so for bars
        before, now = recorded(name, fp), venues[name]
        rule = trade_date_rule_changed(before, now)
        if not rule:
            changes = tuple(describe_change(f, before, now) for f in changed_fields(before, now))
            report.no_effect.setdefault(name, changes)
        elif ticks == "check":
            changes = tuple(describe_change(f, before, now) for f in rule)
            report.ticks += _moved_ticks(house, before, now, keys, changes)
        else:
            report.ticks_unchecked[name] = report.ticks_unchecked.get(name, 0) + len(keys)
    report.ticks.sort(key=lambda t: (t.source_file, t.venue))
    if ticks != "skip":
        report.unrecorded = sorted(_bar_days(house) - recorded_days)
    return report


def _moved_ticks(
    house: Lakehouse, before: Venue, now: Venue, keys: Sequence[str], changes: tuple[str, ...]
) -> list[StaleTicks]:
    """The files among `keys` with ticks of the venue that the new rule books elsewhere. The
    ticks table keeps full source_file bounds, so only these files' data files are read."""
    table = house.table("ticks")
    if table.current_snapshot() is None:
        return []
    scan = table.scan(
        row_filter=And(equal_to("venue", before.name), is_in("source_file", list(keys))),
        selected_fields=("source_file", "ts", "trade_date"),
    )
    rows = scan.to_arrow()
    if not rows.num_rows:
        return []
    mask, old_dates, new_dates = ticks_moved(before, now, rows["ts"], rows["trade_date"])
    moved = pa.table(
        {"source_file": rows["source_file"], "stored": old_dates, "new": new_dates}
    ).filter(mask)
    counts = moved.group_by(["source_file", "stored", "new"]).aggregate([("new", "count")])
    by_file: dict[str, list[tuple[date, date, int]]] = defaultdict(list)
    for row in counts.to_pylist():
        by_file[row["source_file"]].append((row["stored"], row["new"], row["new_count"]))
    return [
        StaleTicks(key, before.name, tuple(sorted(moves)), changes)
        for key, moves in sorted(by_file.items())
    ]


def compact_reference_records(house: Lakehouse, min_files: int = COMPACT_AT_FILES) -> int | None:
    """Rewrite the record table into one data file once it has `min_files` or more (every ticks
    commit adds one small file; the nightly maintenance calls this). Returns the files there
    were, or None when left alone. Rows are read inside the commit's attempt, so a concurrent
    record makes the attempt fail and start again, never lost."""
    table = house.table(REFERENCE_TABLE)
    if table.current_snapshot() is None:
        return None
    files = sum(1 for _ in table.scan().plan_files())
    if files < min_files:
        return None
    columns = list(REFERENCE_ARROW.names)
    house.replace_planned(
        REFERENCE_TABLE,
        lambda: (AlwaysTrue(), [house.reference_records(columns).sort_by("built")]),
    )
    return files
