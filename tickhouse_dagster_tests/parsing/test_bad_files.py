"""Bad input: one clear error naming file, record, line, field and reason; nothing fetched."""

from __future__ import annotations

import gzip
import io
import socket

import pytest

from tickhouse_dagster.parsing import TickFileError, read_tick_file
from tickhouse_dagster_tests.conftest import xml_stream

HEAD = '<tickhouse venue="KRX" trade_date="2024-01-02">\n'
GOOD = '<trade id="1" symbol="005930" ts="2024-01-02T09:00:00+09:00" price="71000" qty="1"/>\n'


def parse(document: str | bytes, profiles, venues, profile="tickhouse"):
    stream = xml_stream(document) if isinstance(document, str) else io.BytesIO(document)
    return read_tick_file(
        stream, source_file="landing/bad.xml", profile=profiles[profile], venues=venues
    )


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        (
            '<trade id="2" symbol="005930" ts="2024-01-02T09:00:01+09:00" price="abc" qty="1"/>',
            "price",
            "'abc' is not a decimal number",
        ),
        (
            '<trade id="2" symbol="005930" ts="2024-01-02T09:00:01+09:00" price="1.1234567" qty="1"/>',
            "price",
            "at most 6 decimal places",
        ),
        (
            '<trade id="2" symbol="005930" ts="2024-01-02T09:00:01+09:00" price="71000" qty="1.5"/>',
            "quantity",
            "'1.5' is not a whole number",
        ),
        (
            '<trade id="2" symbol="005930" ts="2024-01-02T09:00:01" price="71000" qty="1"/>',
            "ts",
            "zone offset",
        ),
        (
            '<trade id="2" symbol="005930" ts="yesterday" price="71000" qty="1"/>',
            "ts",
            "'yesterday' is not an ISO 8601",
        ),
        (
            '<trade id="2" ts="2024-01-02T09:00:01+09:00" price="71000" qty="1"/>',
            "symbol",
            "required value missing",
        ),
        (
            '<trade symbol="005930" ts="2024-01-02T09:00:01+09:00" price="71000" qty="1"/>',
            "trade_id",
            "required value missing",
        ),
        (
            '<trade id="2" symbol="X" venue="MOON" ts="2024-01-02T09:00:01+09:00" price="1" qty="1"/>',
            "venue",
            "unknown venue 'MOON'",
        ),
    ],
)
def test_bad_record_names_file_record_line_field(record, field, reason, profiles, venues):
    with pytest.raises(TickFileError) as caught:
        parse(HEAD + GOOD + record + "\n</tickhouse>", profiles, venues)
    error = caught.value
    assert (error.source_file, error.record, error.line, error.field) == (
        "landing/bad.xml",
        2,
        3,
        field,
    )
    assert reason in str(error)
    assert str(error).startswith("landing/bad.xml, record 2, line 3, field " + field + ": ")


def test_bad_side_code_in_fixml(profiles, venues):
    document = """<FIXML><TrdCaptRpt TrdID="1" LastQty="1" LastPx="1" TxnTm="2024-01-02T00:00:00Z">
      <Instrmt Sym="A" Exch="KRX"/><RptSide Side="7"/></TrdCaptRpt></FIXML>"""
    with pytest.raises(
        TickFileError, match=r"record 1, line 1, field side: '7' is not one of 1, 2"
    ):
        parse(document, profiles, venues, "fixml")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (HEAD + GOOD + GOOD[:40], "malformed XML"),  # truncated
        (HEAD + GOOD + "<trade id='2' <broken/>\n</tickhouse>", "malformed XML"),
        ("", "malformed XML"),  # empty file
        ("<quotes>" + GOOD + "</quotes>", "root element <quotes> is not a 'tickhouse' file"),
    ],
    ids=["truncated", "malformed", "empty", "wrong-root"],
)
def test_bad_documents(document, reason, profiles, venues):
    with pytest.raises(TickFileError, match=reason) as caught:
        parse(document, profiles, venues)
    assert caught.value.source_file == "landing/bad.xml"


def test_malformed_xml_reports_its_line(profiles, venues):
    with pytest.raises(TickFileError) as caught:
        parse(HEAD + GOOD + GOOD + "<trade id='3' <broken/>\n</tickhouse>", profiles, venues)
    assert caught.value.line == 4


def test_corrupt_gzip(profiles, venues):
    packed = gzip.compress((HEAD + GOOD * 200 + "</tickhouse>").encode())
    corrupt = packed[:60] + bytes(b ^ 0xFF for b in packed[60:90]) + packed[90:]
    with pytest.raises(TickFileError, match=r"landing/bad.xml: (unreadable or corrupt|malformed)"):
        parse(corrupt, profiles, venues)


def test_no_entity_expansion_no_local_file_no_network(tmp_path, profiles, venues, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    connections = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a))
    documents = [
        f'<!DOCTYPE t [<!ENTITY x SYSTEM "file://{secret}">]>'
        + HEAD.replace('KRX"', 'KRX" note="&x;"')
        + GOOD
        + "</tickhouse>",
        '<!DOCTYPE t SYSTEM "http://127.0.0.1:9/evil.dtd">' + HEAD + GOOD + "</tickhouse>",
        '<!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        + HEAD
        + GOOD.replace('symbol="005930"', 'symbol="&d;"')
        + "</tickhouse>",
    ]
    for document in documents:
        with pytest.raises(TickFileError) as caught:
            parse(document, profiles, venues)
        assert "TOP-SECRET" not in str(caught.value)
    assert connections == []
