"""FIXML corrections end to end: TransTyp cancel removes the trade it names, replace puts new
values in its place — in market.ticks and in the bars — whichever order the files arrive in and
however often they are re-ingested."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tickhouse_dagster_tests.defs.helpers import (
    check_results,
    definitions_with,
    ingest,
    rebuild_bars,
    step_error,
)
from tickhouse_dagster_tests.reliability.tally import record

DAY = "2024-01-02"


def report(trade_id: int, px: str, qty: int, tm: str, trans: str | None = None) -> str:
    typ = f' TransTyp="{trans}"' if trans is not None else ""
    return (
        f'<TrdCaptRpt TrdID="{trade_id}"{typ} LastPx="{px}" LastQty="{qty}" TrdDt="{DAY}" '
        f'TxnTm="{DAY}T{tm}Z"><Instrmt Sym="005930" Exch="KRX"/><RptSide Side="1"/></TrdCaptRpt>\n'
    )


def fixml(*reports: str) -> bytes:
    return (
        '<FIXML xmlns="http://www.fixprotocol.org/FIXML-4-4" v="4.4"><Batch>\n'
        + "".join(reports)
        + "</Batch></FIXML>"
    ).encode()


# The morning's prints (00:00Z = 09:00 in Seoul), and a later file correcting two of them.
ORIGINAL = fixml(
    report(1, "71000", 10, "00:00:01"),
    report(2, "71100", 10, "00:00:02"),
    report(3, "71200", 10, "00:00:03", trans="0"),
    report(4, "71300", 10, "00:01:04"),
)
CORRECTION = fixml(
    report(2, "71100", 10, "00:00:02", trans="1"),  # cancel trade 2
    report(3, "71400", 30, "00:00:03", trans="2"),  # replace trade 3: new price and quantity
)
# (trade_id, price, quantity, source_file) after both files, in either order.
EXPECTED_TICKS = [
    ("1", Decimal("71000"), 10, "KRX/0900.fixml"),
    ("3", Decimal("71400"), 30, "KRX/1000-corrections.fixml"),
    ("4", Decimal("71300"), 10, "KRX/0900.fixml"),
]
# 1m bars: 09:00 has trades 1 and 3 (replaced), 09:01 has trade 4.
EXPECTED_1M = [
    ("2024-01-02 00:00:00+00:00", "71000", "71400", "71000", "71400", 40, 2),
    ("2024-01-02 00:01:00+00:00", "71300", "71300", "71300", "71300", 10, 1),
]
EXPECTED_1D = [("2024-01-02", "71000", "71300", 50, 3)]


def ticks_rows(resources) -> list[tuple]:
    rows = resources["lakehouse"].lakehouse().ticks_for_days([date(2024, 1, 2)]).to_pylist()
    return sorted(
        (r["trade_id"], r["price"].normalize(), r["quantity"], r["source_file"]) for r in rows
    )


def bars(resources, instance, definitions) -> tuple[list[tuple], list[tuple]]:
    result = rebuild_bars(definitions, instance, DAY)
    assert result.success, step_error(result)
    house = resources["lakehouse"].lakehouse()
    one_minute = sorted(
        (
            str(b["bar_start"]),
            *(f"{b[c].normalize():f}" for c in ("open", "high", "low", "close")),
            b["volume"],
            b["trade_count"],
        )
        for b in house.bars_for_day("1m", date(2024, 1, 2)).to_pylist()
    )
    one_day = [
        (
            str(b["trade_date"]),
            f"{b['open'].normalize():f}",
            f"{b['close'].normalize():f}",
            b["volume"],
            b["trade_count"],
        )
        for b in house.bars_for_day("1d", date(2024, 1, 2)).to_pylist()
    ]
    return one_minute, one_day


def normalized(expected: list[tuple]) -> list[tuple]:
    return [(t, p.normalize(), q, f) for t, p, q, f in expected]


@pytest.mark.parametrize("order", ["original-first", "correction-first"])
def test_cancel_and_replace_apply_to_ticks_and_bars(resources, instance, order):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    files = {"KRX/0900.fixml": ORIGINAL, "KRX/1000-corrections.fixml": CORRECTION}
    keys = list(files) if order == "original-first" else list(reversed(files))
    for key in keys:
        store.write(key, files[key])
        result = ingest(definitions, instance, key)
        assert result.success, step_error(result)
        assert all(check_results(result).values()), check_results(result)
    assert ticks_rows(resources) == normalized(EXPECTED_TICKS)
    assert bars(resources, instance, definitions) == (EXPECTED_1M, EXPECTED_1D)

    # Re-ingesting the original (e.g. a re-delivery) must not bring the cancelled trade back.
    store.write("KRX/0900.fixml", ORIGINAL + b"\n")
    assert ingest(definitions, instance, "KRX/0900.fixml").success
    store.write("KRX/1000-corrections.fixml", CORRECTION + b"\n")
    assert ingest(definitions, instance, "KRX/1000-corrections.fixml").success
    found = ticks_rows(resources)
    assert found == normalized(EXPECTED_TICKS)
    assert bars(resources, instance, definitions) == (EXPECTED_1M, EXPECTED_1D)
    record(
        "correction",
        f"cancel + replace, {order}, then both re-ingested",
        expected_rows=len(EXPECTED_TICKS),
        found_rows=len(found),
        duplicated_rows=len(found) - len({r[0] for r in found}),
        outcome="ticks and bars equal the corrected trades",
    )


def test_corrections_within_one_file_and_repeated(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write(
        "KRX/one.fixml",
        fixml(
            report(1, "100", 1, "00:00:01"),
            report(2, "101", 1, "00:00:02"),
            report(2, "102", 5, "00:00:02", trans="2"),  # replaced…
            report(2, "103", 7, "00:00:02", trans="2"),  # …twice: the last report wins
            report(1, "100", 1, "00:00:01", trans="4"),  # reversed (a cancel)
        ),
    )
    result = ingest(definitions, instance, "KRX/one.fixml")
    assert result.success, step_error(result)
    assert ticks_rows(resources) == [("2", Decimal("103"), 7, "KRX/one.fixml")]
    ticks_event = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "ticks"
    )
    assert ticks_event.step_materialization_data.materialization.metadata["corrections"].value == 3
    one_minute, one_day = bars(resources, instance, definitions)
    assert one_minute == [("2024-01-02 00:00:00+00:00", "103", "103", "103", "103", 7, 1)]
    assert one_day == [("2024-01-02", "103", "103", 7, 1)]


def test_unknown_trans_type_is_refused(resources, instance):
    store = resources["landing"].store()
    store.write("KRX/odd.fixml", fixml(report(1, "100", 1, "00:00:01", trans="3")))
    result = ingest(definitions_with(resources), instance, "KRX/odd.fixml")
    assert not result.success
    assert "KRX/odd.fixml, record 1, line 2, field trans_type: '3' is not one of" in step_error(
        result
    )
