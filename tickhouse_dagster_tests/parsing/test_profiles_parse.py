"""Both built-in profiles parse to hand-written expected rows."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from tickhouse_dagster.core.contract import PARSED_TICKS_ARROW
from tickhouse_dagster.parsing import read_tick_file
from tickhouse_dagster_tests.conftest import xml_stream

UTC = UTC

TICKHOUSE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<tickhouse version="1" venue="KRX" trade_date="2024-01-02">
  <trade id="000001" symbol="005930" ts="2024-01-02T09:00:00.123456+09:00" price="71000" qty="12" side="B"/>
  <trade id="000002" symbol="000660" ts="2024-01-02T09:00:01+09:00" price="130500.5" qty="3" side="S"/>
  <trade id="000003" symbol="005930" ts="2024-01-02T15:30:00.000000+09:00" price="71100" qty="35000"/>
</tickhouse>
"""

EXPECTED = [
    (
        "KRX",
        "005930",
        date(2024, 1, 2),
        datetime(2024, 1, 2, 0, 0, 0, 123456, UTC),
        "000001",
        Decimal("71000"),
        12,
        "B",
        1,
        3,
    ),
    (
        "KRX",
        "000660",
        date(2024, 1, 2),
        datetime(2024, 1, 2, 0, 0, 1, tzinfo=UTC),
        "000002",
        Decimal("130500.5"),
        3,
        "S",
        2,
        4,
    ),
    (
        "KRX",
        "005930",
        date(2024, 1, 2),
        datetime(2024, 1, 2, 6, 30, tzinfo=UTC),
        "000003",
        Decimal("71100"),
        35000,
        None,
        3,
        5,
    ),
]


def rows(table, source_file="f.xml"):
    assert table.schema == PARSED_TICKS_ARROW
    assert set(table["source_file"].to_pylist()) <= {source_file}
    return [
        (
            r["venue"],
            r["symbol"],
            r["trade_date"],
            r["ts"],
            r["trade_id"],
            r["price"],
            r["quantity"],
            r["side"],
            r["record"],
            r["line"],
        )
        for r in table.to_pylist()
    ]


def test_tickhouse_profile_rows(profiles, venues):
    table = read_tick_file(
        xml_stream(TICKHOUSE_XML), source_file="f.xml", profile=profiles["tickhouse"], venues=venues
    )
    assert rows(table) == EXPECTED
    assert table["price"].type.precision == 18 and table["price"].type.scale == 6


FIXML_BODY = """
<TrdCaptRpt RptID="r1" TrdID="000001" TransTyp="0" LastQty="12" LastPx="71000" TrdDt="2024-01-02"
            TxnTm="2024-01-02T00:00:00.123456Z">
  <Instrmt Sym="005930" Exch="KRX"/><RptSide Side="1"/>
</TrdCaptRpt>
<TrdCaptRpt RptID="r2" TrdID="000002" LastQty="3" LastPx="130500.5" TrdDt="2024-01-02"
            TxnTm="2024-01-02T00:00:01Z">
  <Instrmt Sym="000660" Exch="KRX"/><RptSide Side="2"/>
</TrdCaptRpt>
<TrdCaptRpt RptID="r3" TrdID="000003" LastQty="35000" LastPx="71100" TrdDt="2024-01-02"
            TxnTm="2024-01-02T15:30:00+09:00">
  <Instrmt Sym="005930" Exch="KRX"/>
</TrdCaptRpt>
"""


@pytest.mark.parametrize(
    "document",
    [
        f'<FIXML xmlns="http://www.fixprotocol.org/FIXML-4-4" v="4.4"><Batch>{FIXML_BODY}</Batch></FIXML>',
        f'<FIXML xmlns="http://www.fixprotocol.org/FIXML-4-4" v="4.4">{FIXML_BODY}</FIXML>',
        f"<FIXML><Batch>{FIXML_BODY}</Batch></FIXML>",
        f'<fx:FIXML xmlns:fx="http://www.fixprotocol.org/FIXML-4-4"><fx:Batch>'
        f"{FIXML_BODY.replace('<TrdCaptRpt', '<fx:TrdCaptRpt').replace('</TrdCaptRpt', '</fx:TrdCaptRpt').replace('<Instrmt', '<fx:Instrmt').replace('<RptSide', '<fx:RptSide')}"
        "</fx:Batch></fx:FIXML>",
    ],
    ids=["namespace+batch", "namespace", "no-namespace+batch", "prefixed-namespace"],
)
def test_fixml_profile_rows(document, profiles, venues):
    table = read_tick_file(
        xml_stream(document), source_file="f.xml", profile=profiles["fixml"], venues=venues
    )
    assert [r[:8] for r in rows(table)] == [r[:8] for r in EXPECTED]
    assert table["record"].to_pylist() == [1, 2, 3]


def test_gzip_is_recognised_by_content(profiles, venues):
    packed = io.BytesIO(gzip.compress(TICKHOUSE_XML.encode()))
    table = read_tick_file(
        packed, source_file="f.xml", profile=profiles["tickhouse"], venues=venues
    )
    assert rows(table) == EXPECTED


def test_trade_date_derived_in_venue_time_when_feed_has_none(profiles, venues):
    # 23:59:59.5 UTC on Jan 1 is 08:59:59.5 on Jan 2 in Seoul: the trade date is Jan 2.
    document = """<FIXML><TrdCaptRpt TrdID="9" LastQty="1" LastPx="100" TxnTm="2024-01-01T23:59:59.5Z">
      <Instrmt Sym="005930" Exch="KRX"/></TrdCaptRpt></FIXML>"""
    table = read_tick_file(
        xml_stream(document), source_file="f", profile=profiles["fixml"], venues=venues
    )
    assert table["trade_date"].to_pylist() == [date(2024, 1, 2)]
    assert table["ts"].to_pylist() == [datetime(2024, 1, 1, 23, 59, 59, 500000, UTC)]


def test_large_file_is_streamed_in_batches(profiles, venues):
    from tickhouse_dagster.parsing import parse_tick_file

    trades = "".join(
        f'<trade id="{i:06d}" symbol="005930" ts="2024-01-02T09:00:00+09:00" price="71000" qty="1"/>'
        for i in range(2500)
    )
    document = f'<tickhouse venue="KRX" trade_date="2024-01-02">{trades}</tickhouse>'
    batches = list(
        parse_tick_file(
            xml_stream(document),
            source_file="f",
            profile=profiles["tickhouse"],
            venues=venues,
            batch_rows=1000,
        )
    )
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert batches[-1]["record"][-1].as_py() == 2500
