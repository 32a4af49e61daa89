"""Bulk backfill of local tick files without Dagster (benchmarks, scripts): the ingest engine's
`ingest_files` on a folder, every check included, then the bars of every trade date touched."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tickhouse_dagster.core.contract import bar_table_name
from tickhouse_dagster.engine.catch_up import FileOutcome, ingest_files
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import LandingAddress, Staging
from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.reference_lineage import record_bars_reference
from tickhouse_dagster.storage.staging import StagedTicks, stage_tick_file
from tickhouse_dagster.storage.trade_index import TradeIndex


@dataclass
class BatchResult:
    files: int = 0
    ticks: int = 0
    trade_dates: list[date] = field(default_factory=list)
    bars: dict[str, int] = field(default_factory=dict)
    refused: list[FileOutcome] = field(default_factory=list)


def parse_to_staging(
    path: str, key: str, staging_dir: str, feed: Feed | None = None
) -> StagedTicks:
    """Parse one file into a staged Arrow IPC file (no checks, no commit)."""
    feed = feed or Feed.load()
    with open(path, "rb") as stream:
        profile = feed.profile_of(key, stream)
    return stage_tick_file(
        lambda: open(path, "rb"),
        source_file=key,
        profile=profile,
        venues=feed.venues,
        uri=str(Path(staging_dir) / (key.replace("/", "__") + ".arrow")),
    )


def ingest_paths(
    paths: Sequence[Path],
    root: Path,
    lakehouse: Lakehouse,
    staging_dir: Path,
    workers: int | None = None,
    feed: Feed | None = None,
) -> BatchResult:
    """Ingest `paths` (keys relative to the landing folder `root`; refused files are quarantined
    there), then rebuild the bars of every trade date touched."""
    feed = feed or Feed.load()
    keys = [p.relative_to(root).as_posix() for p in paths]
    outcomes = ingest_files(
        keys,
        landing=LandingAddress(str(root)),
        lakehouse=lakehouse.address(),
        feed=feed,
        staging=Staging(str(staging_dir), uuid.uuid4().hex),
        workers=workers,
    )
    result = BatchResult(files=len(paths))
    days: set[date] = set()
    for outcome in outcomes:
        if not outcome.ok:
            result.refused.append(outcome)
            continue
        assert outcome.parsed.staged is not None
        result.ticks += outcome.rows
        days.update(outcome.parsed.staged.trade_date_values())
    result.trade_dates = sorted(days)
    for day in result.trade_dates:
        rebuild_day_bars(lakehouse, day, feed.venues, result.bars)
    return result


def rebuild_day_bars(
    lakehouse: Lakehouse, day: date, venues: Mapping[str, Venue], counts: dict[str, int]
) -> None:
    windows = TradeIndex(lakehouse).duplicate_windows(day)
    built = build_all_bars(lakehouse.ticks_dataset([day]), venues, duplicate_windows=windows)
    for interval, bars in built.items():
        lakehouse.replace_day_bars(interval, day, bars)
        counts[interval] = counts.get(interval, 0) + bars.num_rows
    record_bars_reference(
        lakehouse, day, {bar_table_name(i): bars for i, bars in built.items()}, venues
    )
