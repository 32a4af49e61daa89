"""The example profiles under examples/profiles ingest hand-written files through the engine
(`batch.ingest_paths`: parse, checks, corrections, Iceberg commit, bars) and give exactly the
hand-computed ticks and bars.

CME clearing FIXML on a user venues file's CBOT calendar (examples/venues; America/Chicago; sessions 19:00-07:45 and
08:30-13:20; evening prints on the next trade date). US daylight saving time ends on Sunday
2026-11-01: Friday's prints are at -05:00 (CDT), the Sunday-evening session of Monday
2026-11-02 at -06:00 (CST), so Monday's 1d bar starts at 06:00Z, Friday's at 05:00Z.
"""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from tickhouse_dagster.core.contract import TICKS_TABLE
from tickhouse_dagster.engine.batch import ingest_paths
from tickhouse_dagster.engine.feed import Feed

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "profiles"
USER_VENUES = EXAMPLES.parent / "venues" / "cbot_grains.yaml"


def cme_report(
    trade_id: str, typ: str, mmy: str, px: str, qty: int, day: str, tm: str, sides: str
) -> str:
    parts = [
        f'<TrdCaptRpt RptID="CME-{trade_id}-{typ}" TrdID="{trade_id}" TransTyp="{typ}" '
        f'RptTyp="2" TrdTyp="0" LastQty="{qty}" LastPx="{px}" TrdDt="{day}" BizDt="{day}" '
        f'TxnTm="{tm}">',
        f'  <Hdr SID="CME" TID="FIRMA" Snt="{tm}"/>',
        f'  <Instrmt ID="ZC" SecTyp="FUT" MMY="{mmy}" Exch="CBT"/>',
        f'  <Amt Typ="PREM" Amt="{px}" Ccy="USD"/>',
    ]
    for n, side in enumerate(sides):
        parts += [
            f'  <RptSide Side="{side}" InptSrc="CME">',
            f'    <Pty ID="FIRM{n}" R="1"/><Pty ID="ACCT{n}" R="24"/><Pty ID="CME" R="21"/>',
            "  </RptSide>",
        ]
    return "\n".join(parts) + "\n</TrdCaptRpt>\n"


def cme_file(*reports: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<FIXML xmlns="http://www.fixprotocol.org/FIXML-5-0-SP2" v="5.0 SP2">\n<Batch>\n'
        '<Hdr SID="CME" TID="FIRMA" Snt="2026-11-02T20:00:00-06:00"/>\n'
        + "".join(reports)
        + "</Batch>\n</FIXML>\n"
    )


FRIDAY = [
    cme_report("101", "0", "202612", "420.25", 5, "2026-10-30", "2026-10-30T09:30:00-05:00", "12"),
    cme_report("102", "0", "202612", "420.75", 3, "2026-10-30", "2026-10-30T09:45:30-05:00", "21"),
    # Trade ids restart per contract: ZC202703's 101 is another trade than ZC202612's.
    cme_report("101", "0", "202703", "432.5", 2, "2026-10-30", "2026-10-30T10:05:00-05:00", "12"),
]
MONDAY = [
    # Sunday-evening prints of Monday's session (after the end of DST: -06:00).
    cme_report("201", "0", "202612", "419.5", 4, "2026-11-02", "2026-11-01T19:30:00-06:00", "12"),
    cme_report("202", "0", "202612", "419.75", 6, "2026-11-02", "2026-11-01T19:40:00-06:00", "21"),
    cme_report("203", "0", "202612", "421", 1, "2026-11-02", "2026-11-02T09:00:00-06:00", "1"),
    # Corrections of Friday's trades: 102 replaced (price), ZC202703's 101 cancelled.
    cme_report("102", "2", "202612", "420.5", 3, "2026-10-30", "2026-10-30T09:45:30-05:00", "21"),
    cme_report("101", "1", "202703", "432.5", 2, "2026-10-30", "2026-10-30T10:05:00-05:00", ""),
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_cme_clearing_fixml_ticks_and_bars_across_the_end_of_dst(tmp_path, house):
    landing = tmp_path / "landing"
    (landing / "cme").mkdir(parents=True)
    friday = landing / "cme/2026-10-30.xml"
    friday.write_text(cme_file(*FRIDAY))
    monday = landing / "cme/2026-11-02.xml.gz"
    monday.write_bytes(gzip.compress(cme_file(*MONDAY).encode()))
    # The user's own profile and venues file, as a user would point TICKHOUSE_PROFILES_DIR and
    # TICKHOUSE_VENUES_FILE at them.
    feed = Feed.load(profiles_dir=EXAMPLES, venues_file=USER_VENUES)
    assert feed.venues["CBOT"].timezone.key == "America/Chicago"
    assert sorted(feed.venues["CBOT"].holidays)[0] == date(2026, 1, 1), "the user's calendar"
    # Chosen by its key pattern, although the built-in fixml profile also names <FIXML>.
    assert feed.profile_for("cme/2026-10-30.xml", friday.read_bytes()).name == "cme_clearing"

    for path in (friday, monday):  # two deliveries, the corrections in the later one
        result = ingest_paths([path], landing, house, tmp_path / "staging", 1, feed)
        assert not result.refused, [o.quarantine_error for o in result.refused]

    ticks = house.table(TICKS_TABLE).scan().to_arrow().sort_by([("ts", "ascending")])
    rows = [
        (r["symbol"], r["trade_date"], r["ts"], r["trade_id"], r["price"], r["quantity"], r["side"])
        for r in ticks.to_pylist()
    ]
    assert {r["venue"] for r in ticks.to_pylist()} == {"CBOT"}
    assert rows == [
        (
            "ZC202612",
            date(2026, 10, 30),
            utc(2026, 10, 30, 14, 30),
            "101",
            Decimal("420.25"),
            5,
            "B",
        ),
        # replaced: the correction's price
        (
            "ZC202612",
            date(2026, 10, 30),
            utc(2026, 10, 30, 14, 45, 30),
            "102",
            Decimal("420.5"),
            3,
            "S",
        ),
        # Sunday 19:30 CST = Monday 01:30Z, booked to Monday
        ("ZC202612", date(2026, 11, 2), utc(2026, 11, 2, 1, 30), "201", Decimal("419.5"), 4, "B"),
        ("ZC202612", date(2026, 11, 2), utc(2026, 11, 2, 1, 40), "202", Decimal("419.75"), 6, "S"),
        ("ZC202612", date(2026, 11, 2), utc(2026, 11, 2, 15, 0), "203", Decimal("421"), 1, "B"),
    ]
    assert {r["source_file"] for r in ticks.to_pylist()} == {
        "cme/2026-10-30.xml",
        "cme/2026-11-02.xml.gz",
    }

    def bars(interval: str) -> list[tuple]:
        table = house.table(f"ohlcv_{interval}").scan().to_arrow()
        return sorted(
            (
                r["symbol"],
                r["trade_date"],
                r["bar_start"],
                r["open"],
                r["high"],
                r["low"],
                r["close"],
                r["volume"],
                r["turnover"],
                r["vwap"],
                r["trade_count"],
            )
            for r in table.to_pylist()
        )

    d = Decimal
    assert bars("1d") == [
        # 00:00 CDT = 05:00Z; 420.25*5 + 420.5*3 = 3362.75; / 8 = 420.34375
        ("ZC202612", date(2026, 10, 30), utc(2026, 10, 30, 5), d("420.25"), d("420.5"),
         d("420.25"), d("420.5"), 8, d("3362.75"), d("420.34375"), 2),
        # 00:00 CST = 06:00Z; 1678 + 2518.5 + 421 = 4617.5; / 11 = 419.7727272.. -> 419.772727
        ("ZC202612", date(2026, 11, 2), utc(2026, 11, 2, 6), d("419.5"), d("421"),
         d("419.5"), d("421"), 11, d("4617.5"), d("419.772727"), 3),
    ]  # fmt: skip
    assert bars("1h") == [
        ("ZC202612", date(2026, 10, 30), utc(2026, 10, 30, 14), d("420.25"), d("420.5"),
         d("420.25"), d("420.5"), 8, d("3362.75"), d("420.34375"), 2),
        # the local 19:00 hour of Sunday (CST) = 01:00Z
        ("ZC202612", date(2026, 11, 2), utc(2026, 11, 2, 1), d("419.5"), d("419.75"),
         d("419.5"), d("419.75"), 10, d("4196.5"), d("419.65"), 2),
        ("ZC202612", date(2026, 11, 2), utc(2026, 11, 2, 15), d("421"), d("421"), d("421"),
         d("421"), 1, d("421"), d("421"), 1),
    ]  # fmt: skip
    assert [(b[2], b[7]) for b in bars("1m")] == [
        (utc(2026, 10, 30, 14, 30), 5),
        (utc(2026, 10, 30, 14, 45), 3),
        (utc(2026, 11, 2, 1, 30), 4),
        (utc(2026, 11, 2, 1, 40), 6),
        (utc(2026, 11, 2, 15, 0), 1),
    ]


# --- MiFIR transaction reports (ISO 20022 auth.016.001.03) -------------------------------------

AUTH016 = "urn:iso:std:iso:20022:tech:xsd:auth.016.001.03"
EURONEXT_PARIS = """XPAR:
  timezone: Europe/Paris
  sessions:
    - {open: "09:00", close: "17:30"}
  weekend: [Sat, Sun]
  # Euronext's tick size regime depends on the share's liquidity band; one step for the test.
  tick_sizes:
    - [0, 0.01]
"""


def mifir_new(tx_id: str, isin: str, at: str, qty: int, px: str) -> str:
    return f"""      <New>
        <TxId>{tx_id}</TxId>
        <ExctgPty>969500UP76J52A9OXU27</ExctgPty>
        <InvstmtPtyInd>true</InvstmtPtyInd>
        <SubmitgPty>969500UP76J52A9OXU27</SubmitgPty>
        <Buyr><AcctOwnr><Id><LEI>529900T8BM49AURSDO55</LEI></Id></AcctOwnr></Buyr>
        <Sellr><AcctOwnr><Id><Intl>INTC</Intl></Id></AcctOwnr></Sellr>
        <Tx>
          <TradDt>{at}</TradDt>
          <TradgCpcty>DEAL</TradgCpcty>
          <Qty><Unit>{qty}</Unit></Qty>
          <Pric><Pric><MntryVal><Amt Ccy="EUR">{px}</Amt></MntryVal></Pric></Pric>
          <TradVn>XPAR</TradVn>
        </Tx>
        <FinInstrm><Id>{isin}</Id></FinInstrm>
      </New>
"""


def test_mifir_transaction_reports_ticks_and_bars(tmp_path, house):
    total, airbus = "FR0000120271", "NL0000235190"
    body = "".join(
        [
            "    <Tx>\n" + mifir_new("T-0001", total, "2026-03-27T09:15:01Z", 100, "54.12"),
            "    </Tx>\n    <Tx>\n"
            + mifir_new("T-0002", total, "2026-03-27T09:15:40Z", 50, "54.10"),
            "    </Tx>\n    <Tx>\n"
            + mifir_new("T-0003", airbus, "2026-03-27T10:00:00Z", 10, "160.5"),
            "    </Tx>\n    <Tx>\n"
            + mifir_new("T-0004", total, "2026-03-27T15:02:00Z", 200, "54.3"),
            "    </Tx>\n",
        ]
    )
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{AUTH016}">\n'
        f"  <FinInstrmRptgTxRpt>\n{body}  </FinInstrmRptgTxRpt>\n</Document>\n"
    )
    landing = tmp_path / "landing"
    (landing / "mifir").mkdir(parents=True)
    path = landing / "mifir/2026-03-27.xml"
    path.write_text(xml)
    venues = tmp_path / "venues.yaml"
    venues.write_text(EURONEXT_PARIS)
    feed = Feed.load(profiles_dir=EXAMPLES, venues_file=venues)
    assert feed.profile_for("mifir/2026-03-27.xml", path.read_bytes()).name == "mifir_auth016"

    result = ingest_paths([path], landing, house, tmp_path / "staging", 1, feed)
    assert not result.refused, [o.quarantine_error for o in result.refused]

    ticks = house.table(TICKS_TABLE).scan().to_arrow().sort_by([("ts", "ascending")])
    d = Decimal
    day = date(2026, 3, 27)
    assert [
        (r["venue"], r["symbol"], r["trade_date"], r["ts"], r["trade_id"], r["price"],
         r["quantity"], r["side"])
        for r in ticks.to_pylist()
    ] == [
        ("XPAR", total, day, utc(2026, 3, 27, 9, 15, 1), "T-0001", d("54.12"), 100, None),
        ("XPAR", total, day, utc(2026, 3, 27, 9, 15, 40), "T-0002", d("54.10"), 50, None),
        ("XPAR", airbus, day, utc(2026, 3, 27, 10), "T-0003", d("160.5"), 10, None),
        ("XPAR", total, day, utc(2026, 3, 27, 15, 2), "T-0004", d("54.3"), 200, None),
    ]  # fmt: skip

    def bars(interval: str) -> list[tuple]:
        table = house.table(f"ohlcv_{interval}").scan().to_arrow()
        return sorted(
            (r["symbol"], r["bar_start"], r["open"], r["high"], r["low"], r["close"],
             r["volume"], r["turnover"], r["vwap"], r["trade_count"])
            for r in table.to_pylist()
        )  # fmt: skip

    assert bars("1m") == [
        # 54.12*100 + 54.10*50 = 5412 + 2705 = 8117; / 150 = 54.1133333.. -> 54.113333
        (total, utc(2026, 3, 27, 9, 15), d("54.12"), d("54.12"), d("54.1"), d("54.1"), 150,
         d("8117"), d("54.113333"), 2),
        (total, utc(2026, 3, 27, 15, 2), d("54.3"), d("54.3"), d("54.3"), d("54.3"), 200,
         d("10860"), d("54.3"), 1),
        (airbus, utc(2026, 3, 27, 10), d("160.5"), d("160.5"), d("160.5"), d("160.5"), 10,
         d("1605"), d("160.5"), 1),
    ]  # fmt: skip
    assert bars("1d") == [
        # 00:00 CET (before the 29 March switch to CEST) = 23:00Z the day before;
        # 8117 + 10860 = 18977; / 350 = 54.22
        (total, utc(2026, 3, 26, 23), d("54.12"), d("54.3"), d("54.1"), d("54.3"), 350,
         d("18977"), d("54.22"), 3),
        (airbus, utc(2026, 3, 26, 23), d("160.5"), d("160.5"), d("160.5"), d("160.5"), 10,
         d("1605"), d("160.5"), 1),
    ]  # fmt: skip
