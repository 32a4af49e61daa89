"""Ingest local tick files without Dagster: the same parse → ticks commit → bars path the assets
take, for benchmarks and bulk backfills. Worker processes (one per core) parse each file and
write its Parquet data files; this process commits them, one Iceberg commit per file (delete the
file's rows + append its files), then builds the bars of every trade date touched."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pyiceberg.manifest import DataFile

from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.market.venues import Venue, load_venues
from tickhouse_dagster.parsing.profiles import load_profiles, select_profile
from tickhouse_dagster.parsing.ticks_xml import sniff_root_element
from tickhouse_dagster.storage.lakehouse import Lakehouse, LakehouseAddress
from tickhouse_dagster.storage.staging import StagedTicks, stage_tick_file


@dataclass
class BatchResult:
    files: int = 0
    ticks: int = 0
    trade_dates: list[date] = field(default_factory=list)
    bars: dict[str, int] = field(default_factory=dict)


def parse_to_staging(path: str, key: str, staging_dir: str) -> StagedTicks:
    """Parse one file into a staged Arrow IPC file (runs in a worker process)."""
    profiles, venues = load_profiles(), load_venues()
    with open(path, "rb") as stream:
        profile = select_profile(key, sniff_root_element(stream.read(65536)), profiles)
    target = Path(staging_dir) / (key.replace("/", "__") + ".arrow")
    return stage_tick_file(
        lambda: open(path, "rb"), source_file=key, profile=profile, venues=venues, uri=str(target)
    )


def parse_and_write(
    path: str, key: str, staging_dir: str, lakehouse: LakehouseAddress | None
) -> tuple[StagedTicks, list[DataFile] | None]:
    """Parse one file and, given the lakehouse's address, write its ticks' data files (runs in
    a worker process, so Parquet encoding uses every core; the commit stays with the caller)."""
    staged = parse_to_staging(path, key, staging_dir)
    if lakehouse is None:
        return staged, None
    return staged, lakehouse.open().write_file_ticks(key, staged.batches)


def ingest_paths(
    paths: Sequence[Path],
    root: Path,
    lakehouse: Lakehouse,
    staging_dir: Path,
    workers: int | None = None,
) -> BatchResult:
    """Parse `paths` (keys relative to `root`) in parallel, commit each file's ticks, then rebuild
    the bars of every trade date touched."""
    workers = workers or os.cpu_count() or 1
    keys = [p.relative_to(root).as_posix() for p in paths]
    result = BatchResult(files=len(paths))
    days: set[date] = set()
    lakehouse.ensure_tables()
    # With corrections on record, new rows must be checked against them as they commit.
    address = None if lakehouse.has_corrections() else lakehouse.address()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = pool.map(
            parse_and_write,
            map(str, paths),
            keys,
            [str(staging_dir)] * len(keys),
            [address] * len(keys),
        )
        for key, (ticks, data_files) in zip(keys, done, strict=True):
            if data_files is None:
                lakehouse.replace_file_ticks(key, ticks.batches)
            else:
                lakehouse.commit_file_ticks(key, data_files)
            result.ticks += ticks.rows
            days.update(ticks.trade_date_values())
    result.trade_dates = sorted(days)
    venues = load_venues()
    for day in result.trade_dates:
        rebuild_day_bars(lakehouse, day, venues, result.bars)
    return result


def rebuild_day_bars(
    lakehouse: Lakehouse, day: date, venues: Mapping[str, Venue], counts: dict[str, int]
) -> None:
    for interval, bars in build_all_bars(lakehouse.ticks_dataset([day]), venues).items():
        lakehouse.replace_day_bars(interval, day, bars)
        counts[interval] = counts.get(interval, 0) + bars.num_rows
