"""Ingest local tick files without Dagster: the same parse → ticks commit → bars path the assets
take, for benchmarks and bulk backfills. Worker processes (one per core) parse each file and
write its Parquet data files; this process commits them, one Iceberg commit per file (delete the
file's rows + append its files), then builds the bars of every trade date touched."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile

from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.market.venues import Venue, load_venues
from tickhouse_dagster.parsing.profiles import Profile, load_profiles, select_profile
from tickhouse_dagster.parsing.readers import consume_tick_file
from tickhouse_dagster.parsing.ticks_xml import sniff_root_element
from tickhouse_dagster.storage.lakehouse import Lakehouse, LakehouseAddress
from tickhouse_dagster.storage.staging import StagedTicks, stage_tick_file


@dataclass
class BatchResult:
    files: int = 0
    ticks: int = 0
    trade_dates: list[date] = field(default_factory=list)
    bars: dict[str, int] = field(default_factory=dict)


@dataclass
class FileTicks:
    """What a worker made of one landing file: its ticks either written as data files, ready
    to commit, or staged for the per-file replace (a file with corrections)."""

    rows: int = 0
    trade_dates: set[date] = field(default_factory=set)
    data_files: list[DataFile] | None = None
    staged: StagedTicks | None = None

    def count(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        self.rows, self.trade_dates = 0, set()  # a reader that declined starts over
        for batch in batches:
            self.rows += batch.num_rows
            self.trade_dates.update(pc.unique(batch.column("trade_date")).to_pylist())
            yield batch


def _profile_of(path: str, key: str) -> Profile:
    with open(path, "rb") as stream:
        return select_profile(key, sniff_root_element(stream.read(65536)), load_profiles())


def parse_to_staging(path: str, key: str, staging_dir: str) -> StagedTicks:
    """Parse one file into a staged Arrow IPC file (runs in a worker process)."""
    target = Path(staging_dir) / (key.replace("/", "__") + ".arrow")
    return stage_tick_file(
        partial(open, path, "rb"),
        source_file=key,
        profile=_profile_of(path, key),
        venues=load_venues(),
        uri=str(target),
    )


def parse_and_write(
    path: str, key: str, staging_dir: str, lakehouse: LakehouseAddress | None
) -> FileTicks:
    """Parse one file and, given the lakehouse's address, write its ticks' data files as the
    batches come (runs in a worker process, so Parquet encoding uses every core; the commit
    stays with the caller). Staged instead without an address or when the file carries
    corrections."""
    if lakehouse is not None:
        house, ticks = lakehouse.open(), FileTicks()
        ticks.data_files, _parser = consume_tick_file(
            partial(open, path, "rb"),
            lambda batches: house.write_file_ticks(key, ticks.count(batches)),
            source_file=key,
            profile=_profile_of(path, key),
            venues=load_venues(),
        )
        if ticks.data_files is not None:
            return ticks
    staged = parse_to_staging(path, key, staging_dir)
    return FileTicks(staged.rows, set(staged.trade_date_values()), staged=staged)


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
        for key, ticks in zip(keys, done, strict=True):
            if ticks.data_files is not None:
                lakehouse.commit_file_ticks(key, ticks.data_files)
            else:
                assert ticks.staged is not None
                lakehouse.replace_file_ticks(key, ticks.staged.batches)
            result.ticks += ticks.rows
            days.update(ticks.trade_dates)
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
