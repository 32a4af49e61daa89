"""The pipeline figures computed directly on a real embedded lakehouse (SQLite catalog, local
warehouse and landing folder), and the exporter's collector around them."""

from __future__ import annotations

import logging
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tickhouse_dagster.core.contract import BARS_ARROW, PARSED_TICKS_ARROW
from tickhouse_dagster.market.venues import load_venues
from tickhouse_dagster.observability.metrics import PipelineCollector, registry_for
from tickhouse_dagster.quality.bar_freshness import expectation
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.landing import LocalLanding
from tickhouse_dagster.storage.pipeline_status import pipeline_status, quarantined_keys

NOW = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)


def parsed(source_file: str, venues: list[str]) -> pa.Table:
    n = len(venues)
    return pa.table(
        {
            "venue": venues,
            "symbol": ["005930"] * n,
            "trade_date": [date(2024, 1, 2)] * n,
            "ts": [datetime(2024, 1, 2, 1, 0, i, tzinfo=UTC) for i in range(n)],
            "trade_id": [f"{source_file}-{i}" for i in range(n)],
            "price": [Decimal("71000")] * n,
            "quantity": [10] * n,
            "side": ["B"] * n,
            "source_file": [source_file] * n,
            "record": list(range(1, n + 1)),
            "line": [None] * n,
            "trans_type": [None] * n,
        },
        schema=PARSED_TICKS_ARROW,
    )


def ingest(lakehouse: Lakehouse, key: str, venues: list[str], at: datetime) -> None:
    table = parsed(key, venues)
    lakehouse.replace_file_ticks(key, lambda: table.to_batches(), ingested_at=at)


def land(store: LocalLanding, key: str, modified: datetime) -> None:
    store.write(key, b"<tickhouse/>")
    path = store.root / key
    os.utime(path, (modified.timestamp(), modified.timestamp()))


@pytest.fixture
def lakehouse(resources: dict[str, object]) -> Lakehouse:
    return resources["lakehouse"].lakehouse()  # type: ignore[attr-defined]


@pytest.fixture
def store(home: Path) -> LocalLanding:
    return LocalLanding(home / "landing")


def test_empty_lakehouse_counts_every_landing_file_as_pending(
    lakehouse: Lakehouse, store: LocalLanding
) -> None:
    # ctime cannot be set back; a file's version time is max(mtime, ctime), so the oldest
    # pending file is the one landed first.
    land(store, "KRX/2024-01-02/a.xml", NOW - timedelta(hours=2))
    land(store, "KRX/2024-01-02/b.xml", NOW - timedelta(hours=1))
    status = pipeline_status(store, lakehouse, now=datetime.now(UTC) + timedelta(hours=1))
    assert status.ticks.venues == {}
    assert status.pending_files == 2
    assert status.quarantined_files == 0
    first = min(store.stat(k).modified_ns for k in status.pending_keys) / 1e9
    assert status.oldest_pending_modified == datetime.fromtimestamp(first, UTC)
    assert status.ingest_lag_seconds == pytest.approx(
        (status.computed_at - status.oldest_pending_modified).total_seconds()
    )
    assert status.ingest_lag_seconds > 3000


def test_figures_per_venue_from_table_metadata(lakehouse: Lakehouse, store: LocalLanding) -> None:
    t1, t2, t3 = (NOW - timedelta(minutes=m) for m in (30, 20, 10))
    for key in ("KRX/a.xml", "KRX/b.xml", "NYMEX/c.xml", "KRX/pending.xml"):
        land(store, key, NOW - timedelta(hours=1))
    ingest(lakehouse, "KRX/a.xml", ["KRX"] * 3, t1)
    ingest(lakehouse, "KRX/b.xml", ["KRX"] * 2, t2)
    ingest(lakehouse, "NYMEX/c.xml", ["NYMEX"] * 4, t3)
    ingest(lakehouse, "KRX/a.xml", ["KRX"] * 5, t3)  # re-ingested: replaces its 3 rows
    store.write("_quarantine/KRX/bad.xml", b"<broken")
    store.write("_quarantine/KRX/bad.xml.reason.json", b"{}")
    (store.root / "_quarantine/KRX/.bad2.xml.part").write_bytes(b"<in flight")  # not yet moved

    status = pipeline_status(store, lakehouse)
    assert status.ticks.method == "metadata"  # no Parquet read: manifests were enough
    krx, nymex = status.ticks.venues["KRX"], status.ticks.venues["NYMEX"]
    assert (krx.files, krx.rows, krx.last_ingested_at) == (2, 7, t3)
    assert (nymex.files, nymex.rows, nymex.last_ingested_at) == (1, 4, t3)
    assert status.ticks.source_files == {"KRX/a.xml", "KRX/b.xml", "NYMEX/c.xml"}
    assert status.pending_keys == ("KRX/pending.xml",)
    assert status.quarantined_files == 1
    assert list(quarantined_keys(store)) == ["_quarantine/KRX/bad.xml"]
    assert status.ingest_lag_seconds > 0


def test_mixed_venue_files_fall_back_to_a_column_scan(
    lakehouse: Lakehouse, store: LocalLanding
) -> None:
    """A FIXML batch may carry several venues in one file: the data file's venue bounds then
    differ, the manifests cannot say rows per venue, and three columns are scanned instead."""
    t1, t2 = NOW - timedelta(minutes=5), NOW
    ingest(lakehouse, "mixed.xml", ["KRX", "NYMEX", "NYMEX"], t1)
    ingest(lakehouse, "krx.xml", ["KRX"], t2)
    status = pipeline_status(store, lakehouse)
    assert status.ticks.method == "scan"
    krx, nymex = status.ticks.venues["KRX"], status.ticks.venues["NYMEX"]
    assert (krx.files, krx.rows, krx.last_ingested_at) == (2, 2, t2)
    assert (nymex.files, nymex.rows, nymex.last_ingested_at) == (1, 2, t1)
    assert status.ticks.source_files == {"mixed.xml", "krx.xml"}
    assert status.pending_files == 0
    assert status.ingest_lag_seconds == 0


def samples(collector: PipelineCollector) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry_for(collector)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_serves_cached_figures_and_survives_failures(
    lakehouse: Lakehouse,
    store: LocalLanding,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-value-never-logged"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    ingest(lakehouse, "KRX/a.xml", ["KRX"] * 3, NOW)
    land(store, "KRX/a.xml", NOW)
    store.write("_quarantine/x.xml", b"x")
    now = [100.0]
    fail = [False]

    def compute():  # the real computation, or a failure that names the secret
        if fail[0]:
            raise RuntimeError(f"connection to postgresql://u:{secret}@db refused ({secret})")
        return pipeline_status(store, lakehouse)

    collector = PipelineCollector(compute, cache_seconds=10, clock=lambda: now[0])
    first = samples(collector)
    assert first[("tickhouse_status_up", ())] == 1
    assert first[("tickhouse_ticks_rows", (("venue", "KRX"),))] == 3
    assert first[("tickhouse_venue_ingested_files", (("venue", "KRX"),))] == 1
    assert first[("tickhouse_last_ingest_timestamp_seconds", (("venue", "KRX"),))] == (
        NOW.timestamp()
    )
    assert first[("tickhouse_ingested_files", ())] == 1
    assert first[("tickhouse_pending_files", ())] == 0
    assert first[("tickhouse_quarantined_files", ())] == 1
    assert first[("tickhouse_ingest_lag_seconds", ())] == 0

    store.write("KRX/new.xml", b"<tickhouse/>")
    now[0] += 5  # within the cache time: the same figures, no new computation
    assert samples(collector)[("tickhouse_pending_files", ())] == 0
    assert collector.computations == 1
    now[0] += 10
    assert samples(collector)[("tickhouse_pending_files", ())] == 1
    assert collector.computations == 2

    fail[0] = True
    now[0] += 10
    with caplog.at_level(logging.ERROR):
        failed = samples(collector)
    assert failed[("tickhouse_status_up", ())] == 0
    assert failed[("tickhouse_status_errors_total", ())] == 1
    assert failed[("tickhouse_pending_files", ())] == 1  # the last good figures stay
    assert "pipeline status failed: RuntimeError" in caplog.text
    assert secret not in caplog.text


def one_bar(day: date) -> pa.Table:
    price = Decimal("71000")
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "venue": "KRX",
                "symbol": "005930",
                "trade_date": day,
                "bar_start": start,
                "open": price,
                "high": price,
                "low": price,
                "close": price,
                "volume": 10,
                "turnover": price * 10,
                "vwap": price,
                "trade_count": 1,
            }
        ],
        schema=BARS_ARROW,
    )


def test_the_exporter_shows_bars_going_stale_when_they_stop_arriving(
    lakehouse: Lakehouse, store: LocalLanding
) -> None:
    """The fresh_in_session rule in the exporter, judged on the bar table's commit times: stale
    with no bars for the trade date the venue's session requires, fresh once they are rebuilt,
    stale again when the next session runs past the threshold without a rebuild."""
    krx = load_venues()["KRX"]
    venues, threshold = {"KRX": krx}, timedelta(minutes=30)
    stale_key = ("tickhouse_bars_stale", (("venue", "KRX"),))
    updated_key = ("tickhouse_bars_last_update_timestamp_seconds", (("venue", "KRX"),))
    ingest(lakehouse, "KRX/a.xml", ["KRX"], datetime.now(UTC))  # KRX has ticks: it is watched

    def exported(now: datetime) -> dict[tuple[str, tuple], float]:
        status = pipeline_status(
            store, lakehouse, now=now, venues=venues, freshness_threshold=threshold
        )
        return samples(PipelineCollector(lambda: status))

    now = datetime.now(UTC)
    wanted = expectation(krx, now, threshold)
    assert wanted is not None
    before = exported(now)
    assert before[stale_key] == 1.0 and updated_key not in before

    commit = lakehouse.replace_day_bars("1m", wanted.trade_date, one_bar(wanted.trade_date))
    now = datetime.now(UTC)
    assert expectation(krx, now, threshold).trade_date == wanted.trade_date
    rebuilt = exported(now)
    assert rebuilt[stale_key] == 0.0
    snapshot = lakehouse.table("ohlcv_1m").snapshot_by_id(commit.snapshot_id)
    assert rebuilt[updated_key] == snapshot.timestamp_ms / 1000

    # The bars stop: the next trading day's session has been open past the threshold, and its
    # trade date has no bars.
    next_day = krx.next_trading_day(wanted.trade_date)
    opens, _ = krx.sessions_of(next_day)[0]
    later = exported(opens.astimezone(UTC) + threshold + timedelta(minutes=5))
    assert later[stale_key] == 1.0 and updated_key not in later
