"""The pure correction rules: the last report of a trade decides; corrections beat new reports."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa

from tickhouse_dagster.core.contract import CORRECTIONS_ARROW, TICKS_ARROW
from tickhouse_dagster.market.corrections import (
    has_corrections,
    latest_corrections,
    replacements,
    without_corrected,
)

DAY = date(2024, 1, 2)
STAMP = datetime(2024, 1, 2, 0, 0, 1, tzinfo=UTC)


def row(trade_id: str, price: str, file: str, **extra) -> dict:
    return {
        "venue": "KRX",
        "symbol": "A",
        "trade_date": DAY,
        "ts": STAMP,
        "trade_id": trade_id,
        "price": Decimal(price),
        "quantity": 1,
        "side": None,
        "source_file": file,
        "ingested_at": STAMP,
        **extra,
    }


def test_last_correction_decides_and_beats_new_reports():
    corrections = pa.Table.from_pylist(
        [
            row("1", "10", "b.xml", trans_type="R", record=1),
            row("1", "11", "c.xml", trans_type="C", record=1),  # later file: cancel wins
            row("2", "20", "b.xml", trans_type="C", record=2),
            row("2", "21", "b.xml", trans_type="R", record=3),  # later record: replace wins
        ],
        schema=CORRECTIONS_ARROW,
    )
    latest = latest_corrections(corrections)
    assert sorted(
        zip(latest["trade_id"].to_pylist(), latest["trans_type"].to_pylist(), strict=True)
    ) == [
        ("1", "C"),
        ("2", "R"),
    ]
    new = pa.Table.from_pylist(
        [row("1", "9", "a.xml"), row("2", "19", "a.xml"), row("3", "30", "a.xml")],
        schema=TICKS_ARROW,
    )
    assert without_corrected(new, latest)["trade_id"].to_pylist() == ["3"]
    replaced = replacements(latest).to_pylist()
    assert [(r["trade_id"], r["price"], r["source_file"]) for r in replaced] == [
        ("2", Decimal("21.000000"), "b.xml")
    ]


def test_a_file_of_new_trades_has_no_corrections_even_when_it_marks_them():
    # FIXML marks every new trade (TransTyp 0 -> "N"): such a file takes the fast commit path.
    assert not has_corrections(pa.array([None, None], pa.string()))
    assert not has_corrections(pa.array(["N", "N", None]))
    assert has_corrections(pa.array(["N", "C"]))
    assert has_corrections(pa.chunked_array([["N"], [None, "R"]]))
