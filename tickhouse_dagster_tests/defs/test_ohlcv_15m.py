"""The example of extending the graph: `market/ohlcv_15m` from the stored 1-minute bars, through
the Iceberg IO manager, compared with 15-minute bars computed here from the trades themselves
(stdlib decimals and zoneinfo, none of the project's bar code)."""

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import polars as pl
from dagster import (
    AssetIn,
    AssetKey,
    Definitions,
    asset,
    evaluate_automation_conditions,
    materialize,
)

from tickhouse_dagster.definitions import build_definitions
from tickhouse_dagster.defs.assets.bars import BAR_KEYS, ohlcv_bars
from tickhouse_dagster.defs.assets.ohlcv_15m import ohlcv_15m
from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import trade_dates
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster.storage.iceberg_io import IcebergTables
from tickhouse_dagster_tests.defs.helpers import ingest, rebuild_bars, step_error

SEOUL = ZoneInfo("Asia/Seoul")
DAY = date(2024, 1, 2)
OHLCV_15M = AssetKey(["market", "ohlcv_15m"])


def sample_trades(seed: int = 11, count: int = 400) -> list[tuple]:
    """(symbol, ts, trade_id, price, quantity): a KRX session's prints, strictly increasing
    times (so first / last is unambiguous), prices with cents."""
    rng = random.Random(seed)
    opening = datetime(2024, 1, 2, 9, 0, tzinfo=SEOUL)
    offsets = sorted(rng.sample(range(0, 6 * 3600 * 1000), count))  # ms into the session
    trades = []
    for n, offset in enumerate(offsets, 1):
        ts = opening + timedelta(milliseconds=offset)
        price = Decimal(rng.randint(7_000_000, 7_200_000)) / 100
        trades.append((rng.choice(["005930", "000660"]), ts, str(n), price, rng.randint(1, 900)))
    return trades


def as_xml(trades: list[tuple]) -> bytes:
    body = "".join(
        f'<trade id="{i}" symbol="{s}" ts="{ts.isoformat()}" price="{p}" qty="{q}"/>\n'
        for s, ts, i, p, q in trades
    )
    return f'<tickhouse venue="KRX" trade_date="2024-01-02">\n{body}</tickhouse>'.encode()


def independent_15m_bars(trades: list[tuple]) -> list[tuple]:
    groups = defaultdict(list)
    for symbol, ts, trade_id, price, qty in trades:
        local = ts.astimezone(SEOUL)
        start = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
        groups[(symbol, start.astimezone(UTC))].append((ts, trade_id, price, qty))
    bars = []
    for (symbol, start), group in sorted(groups.items()):
        group.sort()
        volume = sum(q for *_, q in group)
        turnover = sum(p * q for *_, p, q in group)
        vwap = (turnover / volume).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        prices = [p for _, _, p, _ in group]
        open_, close = group[0][2], group[-1][2]
        ohlc = (open_, max(prices), min(prices), close)
        bars.append(("KRX", symbol, DAY, start, *ohlc, volume, turnover, vwap, len(group)))
    return bars


def bars_of_the_day(resources, instance, trades: list[tuple]) -> Definitions:
    """The trades ingested as a landing file and the day's bars built, by the project's jobs."""
    definitions = build_definitions(resources)
    resources["landing"].store().write("KRX/session.xml", as_xml(trades))
    assert ingest(definitions, instance, "KRX/session.xml").success
    bars = rebuild_bars(definitions, instance, DAY.isoformat())
    assert bars.success, step_error(bars)
    return definitions


def test_15m_bars_from_the_stored_1m_bars_equal_an_independent_computation(resources, instance):
    trades = sample_trades()
    definitions = bars_of_the_day(resources, instance, trades)

    # A user's asset reading the same bars as polars, to compare with what the bars asset stored.
    @asset(
        ins={"ohlcv_1m": AssetIn(BAR_KEYS["1m"])},
        partitions_def=trade_dates,
        io_manager_key=IO_MANAGER_KEY,
    )
    def minute_bars_seen(ohlcv_1m: pl.DataFrame) -> pl.DataFrame:
        return ohlcv_1m

    result = materialize(
        [ohlcv_bars, ohlcv_15m, minute_bars_seen],
        selection=[ohlcv_15m, minute_bars_seen],
        partition_key=DAY.isoformat(),
        resources=definitions.resources,
        instance=instance,
    )
    assert result.success

    house = resources["lakehouse"].lakehouse()
    tables = IcebergTables(house)
    order = [("symbol", "ascending"), ("bar_start", "ascending")]
    stored = tables.read("ohlcv_15m", [DAY]).rows.sort_by(order)
    assert [tuple(r.values()) for r in stored.to_pylist()] == independent_15m_bars(trades)
    assert stored.schema == house.bars_for_day("1m", DAY).schema  # the bars' contract types
    # Through polars and back, the rows the user's asset got are the stored 1m bars exactly.
    seen = tables.read("minute_bars_seen", [DAY]).rows.sort_by(order)
    assert seen.to_pylist() == house.bars_for_day("1m", DAY).sort_by(order).to_pylist()
    assert seen.num_rows > stored.num_rows > 0

    metadata = (
        instance.fetch_materializations(OHLCV_15M, limit=1)
        .records[0]
        .asset_materialization.metadata
    )
    assert metadata["trade_dates"].value == "2024-01-02"
    assert metadata["dagster/partition_row_count"].value == len(independent_15m_bars(trades))
    columns = [c.name for c in metadata["dagster/column_schema"].value.columns]
    assert columns[:4] == ["venue", "symbol", "trade_date", "bar_start"] and len(columns) == 12


def test_15m_bars_follow_the_1m_bars_of_any_day(resources, instance):
    """The automation condition asks for a trade date's 15m bars whenever that day's 1m bars are
    rebuilt, also for a day that is not the latest."""
    definitions = build_definitions(resources)
    resources["landing"].store().write("KRX/session.xml", as_xml(sample_trades(count=20)))
    assert ingest(definitions, instance, "KRX/session.xml").success
    first = evaluate_automation_conditions(defs=definitions, instance=instance)
    assert first.total_requested == 0  # the first evaluation only starts the cursor
    assert rebuild_bars(definitions, instance, DAY.isoformat()).success
    after = evaluate_automation_conditions(defs=definitions, instance=instance, cursor=first.cursor)
    assert after.total_requested == 1
    assert after.get_requested_partitions(OHLCV_15M) == {DAY.isoformat()}


def test_the_readme_example_asset_runs(resources, instance):
    """The "Add your own asset" example of the README, as printed there."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Add your own asset", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    daily_range = namespace["daily_range"]

    definitions = bars_of_the_day(resources, instance, sample_trades(count=50))
    result = materialize(
        [ohlcv_bars, daily_range],
        selection=[daily_range],
        partition_key=DAY.isoformat(),
        resources=definitions.resources,
        instance=instance,
    )
    assert result.success
    house = resources["lakehouse"].lakehouse()
    ranges = IcebergTables(house).read("daily_range", [DAY]).rows.to_pylist()
    expected = house.bars_for_day("1d", DAY).to_pylist()
    assert sorted((r["symbol"], r["range"]) for r in ranges) == sorted(
        (b["symbol"], b["high"] - b["low"]) for b in expected
    )
