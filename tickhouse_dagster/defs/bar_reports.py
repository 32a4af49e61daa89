"""What the Dagster UI shows of one trade date's bar build — each bar table's materialization
metadata and its two checks — built in one place for the bars asset's runs and for the ingest
runs that build the bars of the days they touched."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    MetadataValue,
)

from tickhouse_dagster.core.contract import BAR_INTERVALS, BARS_SCHEMA, bar_table_name
from tickhouse_dagster.defs.file_reports import CheckOutcome, findings_outcome
from tickhouse_dagster.defs.io_managers import table_metadata
from tickhouse_dagster.engine.day_bars import (
    DayBars,
    build_day_bars,
    record_day_reference,
    store_day_bars,
)
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.quality.bar_rules import (
    check_bar_invariants,
    distinct_trade_totals,
    reconcile_bars_with_ticks,
)
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.trade_index import TradeIndex

PREVIEW_ROWS = 10
BAR_KEYS = {interval: AssetKey(["market", bar_table_name(interval)]) for interval in BAR_INTERVALS}
RECONCILES = "reconciles_with_ticks"


@dataclass(frozen=True)
class BarReport:
    """One bar table's build of one trade date, as the UI shows it."""

    interval: str
    trade_date: date
    metadata: Mapping[str, Any]
    checks: Sequence[CheckOutcome]

    @property
    def asset_key(self) -> AssetKey:
        return BAR_KEYS[self.interval]

    def materialization(self) -> AssetMaterialization:
        """As an event of a run that is not the bars asset's own (an ingest run)."""
        return AssetMaterialization(
            self.asset_key, partition=self.trade_date.isoformat(), metadata=dict(self.metadata)
        )

    def events(self) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
        yield self.materialization()
        for check in self.checks:
            yield check.evaluation(self.trade_date.isoformat())

    @property
    def blocked(self) -> list[CheckOutcome]:
        return [c for c in self.checks if c.blocking and not c.passed]


def _preview(bars: pa.Table) -> MetadataValue:
    head = bars.slice(0, PREVIEW_ROWS).to_pylist()
    if not head:
        return MetadataValue.md("no trades on this day")
    columns = ["symbol", "bar_start", "open", "high", "low", "close", "volume", "vwap"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in head]
    return MetadataValue.md("\n".join(lines))


def build_and_report(
    house: Lakehouse,
    venues: Mapping[str, Venue],
    day: date,
    intervals: Sequence[str] = BAR_INTERVALS,
    index: TradeIndex | None = None,
    on_stored: Callable[[], object] | None = None,
) -> list[BarReport]:
    """Build, commit and check the day's bars of `intervals` (engine.day_bars), reported per
    bar table in interval order. `index`: the trade index the caller holds, if any.
    `on_stored`: called once the bars are committed, before they are checked (an ingest run
    starts work there that must not compete with the bar build for the CPU)."""
    day_bars = build_day_bars(house, venues, day, intervals, index)
    totals: dict[int | None, Future[pa.Table]] = {}

    def trade_totals(ticks_snapshot_id: int | None) -> Future[pa.Table]:
        # The ticks the stored bars were built from: those of this build, or of the newer one
        # that made this build's commit pointless.
        if ticks_snapshot_id not in totals:
            totals[ticks_snapshot_id] = pool.submit(
                lambda: distinct_trade_totals(
                    house.ticks_dataset([day], snapshot_id=ticks_snapshot_id),
                    day_bars.duplicate_windows,
                    # Summed per data file, each counted once: not the whole day every build.
                    house.day_row_totals(day, ticks_snapshot_id),
                )
            )
        return totals[ticks_snapshot_id]

    # The commits mostly wait on the catalog and the object store, the checks on DuckDB (which
    # lets go of the GIL): the expected totals are counted while the bars commit, and the
    # reference record is committed while the bars are checked.
    with ThreadPoolExecutor(max_workers=2) as pool:
        trade_totals(day_bars.build.ticks_snapshot_id)
        stored = store_day_bars(house, day, day_bars)
        if on_stored is not None:
            on_stored()
        recorded = pool.submit(record_day_reference, house, venues, day, stored)
        reports = []
        for interval in intervals:
            commit = stored[interval].commit
            source = commit.superseded_by or day_bars.build.ticks_snapshot_id
            expected = trade_totals(source).result()
            reports.append(
                _report(day, interval, day_bars, commit, stored[interval].stored, expected)
            )
        recorded.result()
    return reports


def _report(
    day: date,
    interval: str,
    day_bars: DayBars,
    commit: Commit,
    stored: pa.Table,
    trade_totals: pa.Table,
) -> BarReport:
    asset = list(BAR_KEYS[interval].path)
    rebuilt = day_bars.rebuilt
    if commit.superseded_by is not None:
        rebuilt = f"not stored: bars built from newer ticks (snapshot {commit.superseded_by})"
    metadata = {
        # The tables are created from BARS_SCHEMA (Lakehouse.ensure_tables), so it is their
        # Iceberg schema without loading each table once more.
        **table_metadata(
            commit, BARS_SCHEMA, [day], partition_rows=stored.num_rows, bar_interval=interval
        ),
        "trade_date": day.isoformat(),
        "bars": MetadataValue.int(stored.num_rows),
        "symbols": MetadataValue.int(len(set(stored["symbol"].to_pylist()))),
        "rebuilt": rebuilt,
        "ticks_snapshot_id": str(day_bars.build.ticks_snapshot_id),
        "reference_data": day_bars.build.reference,
        "table": commit.table,
        "snapshot_id": str(commit.snapshot_id),
        "preview": _preview(stored),
    }
    checks = [
        findings_outcome(
            check_bar_invariants(stored), asset, "ohlc_invariants", AssetCheckSeverity.ERROR
        ),
        findings_outcome(
            reconcile_bars_with_ticks(stored, trade_totals, interval),
            asset,
            RECONCILES,
            AssetCheckSeverity.ERROR,
            blocking=True,
        ),
    ]
    return BarReport(interval, day, metadata, checks)
