"""The pipeline exporter: `tickhouse metrics` serves the figures of
`storage.pipeline_status` at /metrics in Prometheus's text format.

The figures are computed on a scrape, at most once per `cache_seconds` (several Prometheus
servers, or Grafana's query inspector, must not each cost a table and bucket listing). When a
computation fails, the last good figures stay served and `tickhouse_status_up` drops to 0, so a
dashboard shows the failure instead of going blank. Labels carry venue names only; errors are
logged with secrets masked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.settings import current, mask
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.landing import LandingStore
from tickhouse_dagster.storage.pipeline_status import PipelineStatus, pipeline_status

log = logging.getLogger(__name__)

DEFAULT_PORT = 19464  # the local stack's PIPELINE_METRICS_PORT (infra/local/lib/common.sh)
DEFAULT_CACHE_SECONDS = 10.0


def redact(text: str) -> str:
    """`text` with every configured secret value and URL password replaced."""
    for value in current().secret_values():
        if len(value) >= 4:
            text = text.replace(value, "****")
    return mask(text)


class PipelineCollector(Collector):
    def __init__(
        self,
        compute: Callable[[], PipelineStatus],
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._status: PipelineStatus | None = None
        self._fetched = float("-inf")
        self._ok = False
        self._errors = 0
        self.computations = 0

    def status(self) -> tuple[PipelineStatus | None, bool]:
        with self._lock:  # concurrent scrapes wait for one computation instead of each running one
            if self._clock() - self._fetched >= self._cache_seconds:
                self._fetched = self._clock()
                self.computations += 1
                try:
                    self._status = self._compute()
                    self._ok = True
                except Exception as exc:
                    self._ok = False
                    self._errors += 1
                    log.error(
                        "pipeline status failed: %s: %s", type(exc).__name__, redact(str(exc))
                    )
            return self._status, self._ok

    def collect(self) -> Iterable[Metric]:
        status, ok = self.status()
        yield GaugeMetricFamily(
            "tickhouse_status_up",
            "1 when the last computation of the pipeline figures succeeded",
            value=1 if ok else 0,
        )
        yield CounterMetricFamily(
            "tickhouse_status_errors",
            "Failed computations of the pipeline figures since the exporter started",
            value=self._errors,
        )
        if status is None:
            return
        yield from _status_metrics(status)


def _status_metrics(status: PipelineStatus) -> Iterable[Metric]:
    last = GaugeMetricFamily(
        "tickhouse_last_ingest_timestamp_seconds",
        "Latest ingested_at in market.ticks, per venue (Unix time)",
        labels=["venue"],
    )
    files = GaugeMetricFamily(
        "tickhouse_venue_ingested_files",
        "Distinct source files with rows in market.ticks, per venue",
        labels=["venue"],
    )
    rows = GaugeMetricFamily(
        "tickhouse_ticks_rows", "Rows of market.ticks, per venue", labels=["venue"]
    )
    for venue in sorted(status.ticks.venues.values(), key=lambda v: v.venue):
        last.add_metric([venue.venue], venue.last_ingested_at.timestamp())
        files.add_metric([venue.venue], venue.files)
        rows.add_metric([venue.venue], venue.rows)
    yield from (last, files, rows)
    if status.bars is not None:
        # The fresh_in_session rule per venue (docs/decisions/0801): 1 while the trade date its
        # latest session requires has bars older than TICKHOUSE_BARS_FRESHNESS_MINUTES allows.
        stale = GaugeMetricFamily(
            "tickhouse_bars_stale",
            "1 when the venue's judged trade date has no bars rebuilt recently enough for its "
            "session (TICKHOUSE_BARS_FRESHNESS_MINUTES), else 0",
            labels=["venue"],
        )
        updated = GaugeMetricFamily(
            "tickhouse_bars_last_update_timestamp_seconds",
            "Last commit of the 1m bars of the venue's judged trade date (Unix time)",
            labels=["venue"],
        )
        for want, last_commit in status.bars.expectations:
            stale.add_metric([want.venue], 1.0 if want.stale(last_commit) else 0.0)
            if last_commit is not None:
                updated.add_metric([want.venue], last_commit.timestamp())
        yield from (stale, updated)
    simple = (
        (
            "tickhouse_ingested_files",
            "Distinct landing files with rows in market.ticks",
            len(status.ticks.source_files),
        ),
        (
            "tickhouse_pending_files",
            "Tick files in the landing area whose key has no rows in market.ticks yet",
            status.pending_files,
        ),
        (
            "tickhouse_quarantined_files",
            "Landing files moved under _quarantine/ (reason files not counted)",
            status.quarantined_files,
        ),
        (
            "tickhouse_ingest_lag_seconds",
            "Age of the oldest landing file not yet in market.ticks; 0 when none waits",
            status.ingest_lag_seconds,
        ),
        (
            "tickhouse_status_computed_timestamp_seconds",
            "When the served figures were computed (Unix time)",
            status.computed_at.timestamp(),
        ),
        (
            "tickhouse_status_compute_seconds",
            "How long computing the served figures took",
            status.seconds,
        ),
    )
    for name, help_text, value in simple:
        yield GaugeMetricFamily(name, help_text, value=value)


def status_from_env() -> Callable[[], PipelineStatus]:
    """The figures of the configured landing store and lakehouse (environment, as the CLI).
    Resolved once: a scrape then costs the listing and the table metadata only (every
    computation loads the table's current metadata, so new commits show)."""
    from tickhouse_dagster.defs.resources import resolved_resources

    # The HTTP server answers each scrape in a new thread, and an embedded (SQLite) catalog's
    # connections may only be used by the thread that opened them: every computation runs in
    # one worker thread of its own, which opens the store and the lakehouse once.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tickhouse-metrics")
    opened: list[tuple[LandingStore, Lakehouse]] = []
    venues: dict[str, Venue] = {}

    def compute_in_worker() -> PipelineStatus:
        if not opened:
            resources = resolved_resources()
            opened.append((resources["landing"].store(), resources["lakehouse"].lakehouse()))
            venues.update(resources["feed"].venues())
        return pipeline_status(
            *opened[0], venues=venues, freshness_threshold=current().bars_freshness_threshold
        )

    return lambda: worker.submit(compute_in_worker).result()


def registry_for(collector: PipelineCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    compute: Callable[[], PipelineStatus] | None = None,
) -> tuple[WSGIServer, PipelineCollector]:
    """Start serving /metrics in a background thread; returns the server (shut it down with
    `server.shutdown()`) and the collector."""
    collector = PipelineCollector(compute or status_from_env(), cache_seconds)
    server, _ = start_http_server(port, addr=host, registry=registry_for(collector))
    return server, collector
