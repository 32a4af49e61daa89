"""How far the pipeline has got, as figures a monitor can scrape: what the ticks table holds per
venue, what still waits in the landing area, what was quarantined, and whether the bars keep up with
the venues' sessions (the rule of the `fresh_in_session` check, judged on the bar table's commit
times instead of Dagster's materialization times, so the exporter needs no Dagster instance).

Pure reads, no Dagster: the ticks table's own metadata when it can answer (manifests carry each
data file's row count and column bounds, so no Parquet is read), a scan of three columns when it
cannot; a listing of the landing store.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath

import pyarrow as pa

from tickhouse_dagster.core.contract import TICKS_TABLE, bar_table_name
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.quality.bar_freshness import Verdict, judge, watched
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.landing import QUARANTINE_PREFIX, LandingStore

REASON_SUFFIX = ".reason.json"
_STATUS_COLUMNS = ("venue", "source_file", "ingested_at")


@dataclass(frozen=True)
class VenueIngest:
    venue: str
    files: int  # distinct source files with rows of this venue
    rows: int
    last_ingested_at: datetime


@dataclass(frozen=True)
class TicksFigures:
    venues: dict[str, VenueIngest]
    source_files: frozenset[str]
    method: str  # "metadata" (manifests only) or "scan" (three columns read)


@dataclass(frozen=True)
class PipelineStatus:
    ticks: TicksFigures
    pending_files: int  # tick files in the landing area whose key has no rows in ticks
    oldest_pending_modified: datetime | None
    quarantined_files: int
    computed_at: datetime
    seconds: float  # how long computing these figures took
    pending_keys: tuple[str, ...] = field(default=(), repr=False)
    bars: Verdict | None = None  # the bars' freshness; None when not judged (no venues given)

    @property
    def ingest_lag_seconds(self) -> float:
        """Age of the oldest landing file not yet in the ticks table; 0 when none waits."""
        if self.oldest_pending_modified is None:
            return 0.0
        return max(0.0, (self.computed_at - self.oldest_pending_modified).total_seconds())


def ticks_figures(lakehouse: Lakehouse) -> TicksFigures:
    table = lakehouse.table(TICKS_TABLE)
    if table.current_snapshot() is None:
        return TicksFigures({}, frozenset(), "metadata")
    files = table.inspect.files()
    from_metadata = _from_file_metadata(files)
    if from_metadata is not None:
        return from_metadata
    rows = table.scan(selected_fields=_STATUS_COLUMNS).to_arrow()
    return _from_rows(rows)


def _from_file_metadata(files: pa.Table) -> TicksFigures | None:
    """Figures from the manifests alone, or None when they cannot prove them: delete files, or
    a data file whose bounds span several venues or source files (bounds are per data file).
    The ingest writes one source file per data file and full source_file bounds, so normally
    this answers."""
    if files.num_rows and any(c != 0 for c in files["content"].to_pylist()):
        return None
    metrics = files["readable_metrics"]
    venue = metrics.combine_chunks().field("venue")
    source = metrics.combine_chunks().field("source_file")
    ingested = metrics.combine_chunks().field("ingested_at")
    venue_lo, venue_hi = venue.field("lower_bound"), venue.field("upper_bound")
    source_lo, source_hi = source.field("lower_bound"), source.field("upper_bound")
    stamps = ingested.field("upper_bound").to_pylist()
    counts = files["record_count"].to_pylist()
    rows: dict[str, int] = defaultdict(int)
    latest: dict[str, datetime] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    for i, count in enumerate(counts):
        if not count:
            continue
        v_lo, v_hi = venue_lo[i].as_py(), venue_hi[i].as_py()
        s_lo, s_hi = source_lo[i].as_py(), source_hi[i].as_py()
        if v_lo is None or v_lo != v_hi or s_lo is None or s_lo != s_hi or stamps[i] is None:
            return None
        rows[v_lo] += count
        sources[v_lo].add(s_lo)
        latest[v_lo] = max(latest.get(v_lo, stamps[i]), stamps[i])
    venues = {v: VenueIngest(v, len(sources[v]), rows[v], latest[v].astimezone(UTC)) for v in rows}
    all_sources = frozenset(s for per_venue in sources.values() for s in per_venue)
    return TicksFigures(venues, all_sources, "metadata")


def _from_rows(rows: pa.Table) -> TicksFigures:
    if rows.num_rows == 0:
        return TicksFigures({}, frozenset(), "scan")
    grouped = rows.group_by("venue").aggregate(
        [("source_file", "count_distinct"), ("source_file", "count"), ("ingested_at", "max")]
    )
    venues = {}
    for row in grouped.to_pylist():
        venue = row["venue"]
        venues[venue] = VenueIngest(
            venue,
            row["source_file_count_distinct"],
            row["source_file_count"],
            row["ingested_at_max"].astimezone(UTC),
        )
    sources = frozenset(rows["source_file"].unique().to_pylist())
    return TicksFigures(venues, sources, "scan")


def quarantined_keys(store: LandingStore) -> Iterator[str]:
    """Keys of the quarantined landing files (under `_quarantine/`), without their
    `.reason.json` companions or a partial write in flight (a dot file)."""
    for key in store.list_keys(QUARANTINE_PREFIX):
        if not key.endswith(REASON_SUFFIX) and not PurePosixPath(key).name.startswith("."):
            yield key


def bars_updated_at(lakehouse: Lakehouse, interval: str = "1m") -> dict[date, datetime]:
    """When each trade date's bars were last committed: the snapshot that added the newest data
    file of the date's partition (Iceberg's partitions metadata, no data read). A rebuild always
    replaces the day's files, so this is the last rebuild; a day without bars has no entry."""
    table = lakehouse.table(bar_table_name(interval))
    if table.current_snapshot() is None:
        return {}
    rows = table.inspect.partitions().select(["partition", "last_updated_at"]).to_pylist()
    return {
        row["partition"]["trade_date"]: row["last_updated_at"].replace(tzinfo=UTC)
        for row in rows
        if row["last_updated_at"] is not None
    }


def bars_freshness(
    lakehouse: Lakehouse,
    venues: Mapping[str, Venue],
    ticks: TicksFigures,
    now: datetime,
    threshold: timedelta,
) -> Verdict:
    updated = bars_updated_at(lakehouse)
    return judge(watched(venues, ticks.venues), now, threshold, updated.get)


def pipeline_status(
    store: LandingStore,
    lakehouse: Lakehouse,
    now: datetime | None = None,
    venues: Mapping[str, Venue] | None = None,
    freshness_threshold: timedelta | None = None,
) -> PipelineStatus:
    started = time.monotonic()
    now = now or datetime.now(UTC)
    ticks = ticks_figures(lakehouse)
    bars = None
    if venues is not None and freshness_threshold is not None:
        bars = bars_freshness(lakehouse, venues, ticks, now, freshness_threshold)
    pending = [f for f in store.iter_files() if f.key not in ticks.source_files]
    oldest = min((f.modified_ns for f in pending), default=None)
    quarantined = sum(1 for _ in quarantined_keys(store))
    return PipelineStatus(
        ticks=ticks,
        pending_files=len(pending),
        oldest_pending_modified=(
            datetime.fromtimestamp(oldest / 1e9, UTC) if oldest is not None else None
        ),
        quarantined_files=quarantined,
        computed_at=now,
        seconds=time.monotonic() - started,
        pending_keys=tuple(f.key for f in pending),
        bars=bars,
    )
