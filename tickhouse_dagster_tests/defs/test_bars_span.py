"""The bars of a trade date that fills up file by file, built by each file's ingest run: after the
first build only the minutes whose ticks changed are rebuilt (a later file, a second delivery, a
changed file, a cancel), every time the stored bars equal a rebuild of the whole day from its
ticks, and a build from older ticks never replaces one from newer ticks."""

from __future__ import annotations

from datetime import date

from tickhouse_dagster.core.contract import BAR_INTERVALS
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster_tests.defs.helpers import definitions_with, materialized, rebuild_bars
from tickhouse_dagster_tests.defs.test_ingest_assets import trades
from tickhouse_dagster_tests.defs.test_ingest_batch import run_batch

DAY = date(2024, 1, 2)


def rebuilt_metadata(result) -> str:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "ohlcv_1m"
    ]
    return str(event.materialization.metadata["rebuilt"].value)


def assert_bars_equal_a_day_rebuild(house) -> None:
    rebuilt = build_all_bars(house.ticks_for_days([DAY]), Feed.load().venues)
    for interval in BAR_INTERVALS:
        order = [("symbol", "ascending"), ("bar_start", "ascending")]
        stored = house.bars_for_day(interval, DAY).sort_by(order)
        assert stored.equals(rebuilt[interval].sort_by(order)), interval


def test_bars_rebuild_only_the_changed_minutes_and_equal_a_full_rebuild(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    house = resources["lakehouse"].lakehouse()

    def step(keys: list[str]) -> str:
        # The ingest run builds the bars of the day its files touched.
        result = run_batch(definitions, instance, keys)
        assert result.success
        assert {k.path[-1] for k in materialized(result)} >= {"ohlcv_1m", "ohlcv_1d"}
        assert_bars_equal_a_day_rebuild(house)
        return rebuilt_metadata(result)

    store.write(
        "KRX/0900.xml", trades(("1", "09:00:10", "71000", 5), ("2", "09:00:50", "71100", 3))
    )
    assert step(["KRX/0900.xml"]) == "the whole day"

    # A later window: only its minutes (09:05, 09:06 KST = 00:05, 00:06 UTC) are rebuilt.
    store.write(
        "KRX/0905.xml", trades(("3", "09:05:10", "71200", 2), ("4", "09:06:59", "71000", 7))
    )
    assert step(["KRX/0905.xml"]) == "the minutes of 00:05:10–00:06:59 UTC"

    # A second delivery of the first file counts once; its minutes only.
    store.write("KRX/0900-again.xml", store.open("KRX/0900.xml").read())
    assert step(["KRX/0900-again.xml"]) == "the minutes of 00:00:10–00:00:50 UTC"

    # A file replaced by a new version: its old and its new trades' minutes.
    store.write(
        "KRX/0905.xml", trades(("3", "09:05:10", "71200", 2), ("5", "09:09:00", "71300", 1))
    )
    assert step(["KRX/0905.xml"]) == "the minutes of 00:05:10–00:09:00 UTC"

    # A cancel of trade 2 (09:00:50) in a file of its own: the rows it removes are in the
    # files it rewrote, whose trade times the span covers.
    cancel = (
        '<FIXML><TrdCaptRpt TrdID="2" TransTyp="1" LastPx="71100" LastQty="3" '
        'TrdDt="2024-01-02" TxnTm="2024-01-02T00:10:00Z"><Instrmt Sym="005930" Exch="KRX"/>'
        "</TrdCaptRpt></FIXML>"
    )
    store.write("KRX/cancel.fixml", cancel.encode())
    assert step(["KRX/cancel.fixml"]).startswith("the minutes of 00:00:10")

    # Nothing new: nothing rebuilt, the same bars.
    result = rebuild_bars(definitions, instance, DAY.isoformat())
    assert result.success and rebuilt_metadata(result) == "nothing (no tick changed)"
    assert_bars_equal_a_day_rebuild(house)
    assert house.bars_for_day("1d", DAY)["trade_count"].to_pylist() == [3]
