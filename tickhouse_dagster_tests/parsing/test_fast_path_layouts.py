"""The compiled fast path reads FIXML as exchanges send it, and user profiles with child paths,
with exactly the lxml reader's rows; on bad input it declines and lxml's error is unchanged.

The FIXML here follows the exchanges' trade capture reports (CME's STP / ClearPort layout): a
<Batch> (with a header) of <TrdCaptRpt> reports that carry a <Hdr> of their own, the instrument,
amounts, regulatory timestamps and both sides of the trade, each <RptSide> with several parties.
"""

from __future__ import annotations

import gzip
import io
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tickhouse_dagster.parsing import TickFileError, read_tick_file
from tickhouse_dagster.parsing.fast_path import FastPathDeclined, _parser, read_fast, supports
from tickhouse_dagster.parsing.profiles import load_profiles, profile_from_mapping
from tickhouse_dagster.parsing.readers import consume_tick_file
from tickhouse_dagster.sample import SampleSpec, generate

NS = "http://www.fixprotocol.org/FIXML-4-4"

# (TrdID, TransTyp, LastQty, LastPx, TrdDt, TxnTm, Sym, Exch, sides in order)
TRADES = [
    (
        "9001",
        "0",
        "12",
        "71000",
        "2024-01-02",
        "2024-01-02T00:00:00.123456Z",
        "005930",
        "KRX",
        "12",
    ),
    ("9002", "0", "3", "130500.5", "2024-01-02", "2024-01-02T00:00:01Z", "000660", "KRX", "21"),
    ("9003", None, "35000", "71100", None, "2024-01-02T15:30:00+09:00", "005930", "KRX", "1"),
    ("9001", "2", "12", "71050", "2024-01-02", "2024-01-02T00:10:00Z", "005930", "KRX", "12"),
    ("9002", "1", "3", "130500.5", "2024-01-02", "2024-01-02T00:11:00Z", "000660", "KRX", ""),
    ("9004", "4", "7", "0.000001", "2024-01-02", "2024-01-02T01:00:00.5Z", "000660", "KRX", "2"),
]


def report(trade: tuple, p: str = "") -> str:
    """One <TrdCaptRpt> as an exchange writes it; `p` is an element prefix like "fx:"."""
    trade_id, typ, qty, px, day, tm, sym, exch, sides = trade
    attrs = f'RptID="{exch}-{trade_id}-{typ or 0}" TrdID="{trade_id}"'
    attrs += f' TransTyp="{typ}"' if typ is not None else ""
    attrs += f' RptTyp="2" TrdTyp="0" LastQty="{qty}" LastPx="{px}"'
    attrs += f' TrdDt="{day}" BizDt="{day}"' if day is not None else ""
    attrs += f' TxnTm="{tm}"'
    parts = [
        f"<{p}TrdCaptRpt {attrs}>",
        f'  <{p}Hdr SID="{exch}" TID="TICKHOUSE" Snt="{tm}"/>',
        f'  <{p}Instrmt ID="{sym}" Src="8" Sym="{sym}" SecTyp="CS" MMY="202401" Exch="{exch}"/>',
        f'  <{p}Amt Typ="TNOV" Amt="{px}" Ccy="KRW"/>',
    ]
    for n, side in enumerate(sides):
        parts += [
            f'  <{p}RptSide Side="{side}" InptSrc="{exch}" CustCpcty="4">',
            f'    <{p}Pty ID="FIRM{n}" R="1"><{p}Sub ID="1" Typ="26"/></{p}Pty>',
            f'    <{p}Pty ID="ACCT{n}" R="24"/>',
            f'    <{p}Pty ID="{exch}" R="22"/>',
            f'    <{p}TrdRegTS TS="{tm}" Typ="1"/>',
            f"  </{p}RptSide>",
        ]
    parts.append(f"</{p}TrdCaptRpt>")
    return "\n".join("    " + line for line in parts) + "\n"


def fixml(
    trades: list[tuple] = TRADES,
    *,
    namespace: str = "default",
    batch: bool = True,
    header: bool = True,
) -> str:
    """A FIXML file: namespace "none", "default" (xmlns=) or "prefix" (fx:)."""
    p = "fx:" if namespace == "prefix" else ""
    declare = {"none": "", "default": f' xmlns="{NS}"', "prefix": f' xmlns:fx="{NS}"'}[namespace]
    xsi = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    body = "".join(report(t, p) for t in trades)
    if batch:
        hdr = (
            f'    <{p}Hdr SID="KRX" TID="TICKHOUSE" Snt="2024-01-02T16:00:00Z"/>\n'
            if header
            else ""
        )
        body = f"  <{p}Batch>\n{hdr}{body}  </{p}Batch>\n"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{p}FIXML{declare}{xsi} v="4.4" r="20030618" s="20040109">\n{body}</{p}FIXML>\n'
    )


def lxml_table(data: bytes, profile) -> pa.Table:
    return read_tick_file(io.BytesIO(data), source_file="f.xml", profile=profile, venues=VENUES)


def fast_table(data: bytes, profile, batch_rows: int = 65_536) -> pa.Table:
    batches = read_fast(
        lambda: io.BytesIO(data),
        source_file="f.xml",
        profile=profile,
        venues=VENUES,
        batch_rows=batch_rows,
    )
    return pa.Table.from_batches(list(batches), schema=lxml_table(data, profile).schema)


def consumed(data: bytes, profile) -> tuple[pa.Table, str]:
    return consume_tick_file(
        lambda: io.BytesIO(data),
        lambda batches: pa.Table.from_batches(list(batches)),
        source_file="f.xml",
        profile=profile,
        venues=VENUES,
    )


def assert_same_rows(data: bytes, profile, batch_rows: int = 65_536) -> pa.Table:
    """Every column in the same order, row for row; the fast path knows no line numbers."""
    expected = lxml_table(data, profile)
    got = fast_table(data, profile, batch_rows)
    assert got["line"].null_count == got.num_rows
    assert got.drop(["line"]).to_pylist() == expected.drop(["line"]).to_pylist()
    assert got.drop(["line"]).equals(expected.drop(["line"]))
    return expected


@pytest.fixture(autouse=True)
def _venues(venues):
    global VENUES
    VENUES = venues


PROFILES = load_profiles()
FIXML = PROFILES["fixml"]


def rule_spec(rule) -> dict:
    spec = {"path": rule.path, "optional": rule.optional, "fallback": rule.fallback}
    return {**spec, "default": rule.default, "map": None if rule.map is None else dict(rule.map)}


LAYOUTS = [
    (namespace, batch, header)
    for namespace in ("none", "default", "prefix")
    for batch, header in ((True, True), (True, False), (False, False))
]


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    ("namespace", "batch", "header"),
    LAYOUTS,
    ids=[f"{n}-{'batch' if b else 'no-batch'}{'+hdr' if h else ''}" for n, b, h in LAYOUTS],
)
def test_exchange_fixml_same_rows_and_read_compiled(namespace, batch, header, packed):
    data = fixml(namespace=namespace, batch=batch, header=header).encode()
    data = gzip.compress(data) if packed else data
    table = assert_same_rows(data, FIXML)
    assert table.num_rows == len(TRADES)
    rows, reader = consumed(data, FIXML)
    assert reader == "xml2arrow"
    assert rows.drop(["line"]).equals(table.drop(["line"]))


def test_first_of_repeated_children_wins_as_in_lxml():
    table = assert_same_rows(fixml().encode(), FIXML)
    # Sides in file order 12, 21, 1, 12, (none), 2: the first <RptSide> decides.
    assert table["side"].to_pylist() == ["B", "S", "B", "B", None, "S"]
    assert table["symbol"].to_pylist() == [t[6] for t in TRADES]


def test_corrections_keep_their_transaction_type():
    table = assert_same_rows(fixml().encode(), FIXML)
    assert table["trans_type"].to_pylist() == ["N", "N", None, "R", "C", "C"]
    assert table["trade_date"].to_pylist()[2].isoformat() == "2024-01-02"  # derived, KRX time


@pytest.mark.parametrize("batch_rows", [1, 2, 5, 65_536])
def test_batches_cut_between_a_records_children(batch_rows):
    # xml2arrow's batches end anywhere, also between two children of a record.
    many = [(str(9100 + i), *t[1:]) for i, t in enumerate(TRADES * 7)]
    assert_same_rows(fixml(many).encode(), FIXML, batch_rows=batch_rows)


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_generated_fixml_and_tickhouse_files(tmp_path: Path, packed: bool):
    for profile in ("fixml", "tickhouse"):
        spec = SampleSpec(symbols=3, ticks_per_day=3000, profile=profile, gzip=packed)
        for file in generate(spec, tmp_path / profile):
            data = file.read_bytes()
            assert_same_rows(data, PROFILES[profile], batch_rows=1000)
            assert consumed(data, PROFILES[profile])[1] == "xml2arrow"


USER_PROFILE = """
name: vendor_b
root: [Prints]
record: P
fields:
  venue: {path: "Mkt/@mic", fallback: "/@venue"}
  symbol: {path: "Code"}
  ts: {path: "@t"}
  trade_id: {path: "@n"}
  price: {path: "Px"}
  quantity: {path: "Qty/@v", default: "1"}
  side: {path: "Side/@s", optional: true, map: {buy: B, sell: S, cross: null}}
  trade_date: {path: "/@date", optional: true}
"""

USER_DOCUMENT = """<?xml version="1.0"?>
<Prints venue="KRX" date="2024-01-02">
  <Meta source="vendor &amp; co"/>
  <P t="2024-01-02T09:00:00+09:00" n="1"><Code> 005930 </Code><Px>
      71000</Px><Side s="sell"/><Side s="buy"/><Qty v="4"/></P>
  <P t="2024-01-02T09:00:01+09:00" n="2"><Mkt mic="KRX"/><Code>S&amp;P&#x20;1</Code><Px>5.5</Px></P>
  <P n="3" t="2024-01-02T09:00:02+09:00"><Px>7</Px><Code>000660</Code><Side s="cross"/>
      <Side s="buy"/><Mkt mic="KRX"/><Mkt mic="MOON"/></P>
  <P t="2024-01-02T09:00:03+09:00" n="4"><Code>  </Code><Code>late</Code><Px>8</Px></P>
</Prints>
"""


def test_user_profile_with_child_text_and_attributes(tmp_path: Path):
    (tmp_path / "vendor_b.yaml").write_text(USER_PROFILE)
    profile = load_profiles(tmp_path)["vendor_b"]
    assert supports(profile)
    data = USER_DOCUMENT.encode()
    table = assert_same_rows(data, profile)
    # Text is stripped; the first <Side>, <Mkt> and <Code> count (a blank first <Code> is "").
    assert table["symbol"].to_pylist() == ["005930", "S&P 1", "000660", ""]
    assert table["side"].to_pylist() == ["S", None, None, None]
    assert table["quantity"].to_pylist() == [4, 1, 1, 1]
    assert consumed(data, profile)[1] == "xml2arrow"


# --- bad input: the fast path declines, lxml's answer (rows or error) is unchanged --------


def _bad(document: str) -> bytes:
    return document.encode()


GOOD = fixml(TRADES[:2])
BAD_DOCUMENTS = {
    "doctype": GOOD.replace("<FIXML", "<!DOCTYPE FIXML>\n<FIXML", 1),
    "malformed": GOOD.replace('<Pty ID="ACCT1" R="24"/>', '<Pty ID="ACCT1" R="24">', 1),
    "missing-symbol": GOOD.replace(' Sym="000660"', "", 1),
    "bad-price": GOOD.replace('LastPx="130500.5"', 'LastPx="13O500.5"', 1),
    "bad-side-code": fixml([TRADES[0], (*TRADES[1][:8], "71")]),
    "truncated": GOOD[: GOOD.index("</Batch>")],
    "cut-after-record": GOOD[: GOOD.rindex("</TrdCaptRpt>") + len("</TrdCaptRpt>")],
    "content-after-root": GOOD + "trailing",
    "second-root": GOOD + "<FIXML/>\n",
    "nul-byte": GOOD.replace('<Amt Typ="TNOV"', '<Amt Typ="\x00"', 1),
    "bare-ampersand": GOOD.replace('InptSrc="KRX"', 'InptSrc="K&R"', 1),
    "undefined-entity": GOOD.replace('InptSrc="KRX"', 'InptSrc="&krx;"', 1),
    "control-character": GOOD.replace('Sym="005930"', 'Sym="0059\x0130"', 1),
    "lt-in-value": GOOD.replace('Sym="005930"', 'Sym="0059&lt;30"', 1).replace("&lt;", "<", 1),
    "undeclared-prefix": GOOD.replace("<Instrmt", "<x:Instrmt", 1),
    "not-utf8": GOOD.replace('TID="TICKHOUSE"', 'TID="TICKH\xc9USE"', 1),
    "wrong-root": GOOD.replace("FIXML", "Quotes"),
    "record-without-children": GOOD.replace(
        "    <TrdCaptRpt ", '    <TrdCaptRpt TrdID="8"/>\n    <TrdCaptRpt ', 1
    ),
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_bad_input_is_declined_and_lxml_words_the_error(name):
    document = BAD_DOCUMENTS[name]
    data = document.encode("latin-1") if name == "not-utf8" else document.encode()
    with pytest.raises(FastPathDeclined):
        list(read_fast(lambda: io.BytesIO(data), source_file="f.xml", profile=FIXML, venues=VENUES))
    with pytest.raises(TickFileError) as direct:
        lxml_table(data, FIXML)
    with pytest.raises(TickFileError) as through_readers:
        consumed(data, FIXML)
    assert str(through_readers.value) == str(direct.value)


VALID_BUT_DECLINED = {
    # lxml reads these; the fast path cannot vouch for them and leaves them to it.
    "record-outside-batch": GOOD.replace("  </Batch>\n", "  </Batch>\n" + report(TRADES[2])),
    "record-nested-in-hdr": GOOD.replace(
        'Snt="2024-01-02T16:00:00Z"/>', 'Snt="2024-01-02T16:00:00Z">' + report(TRADES[2]) + "</Hdr>"
    ),
    "other-prefix-record": GOOD.replace(
        report(TRADES[1]),
        report(TRADES[1], "o:").replace("<o:TrdCaptRpt ", '<o:TrdCaptRpt xmlns:o="urn:o" ', 1),
    ),
    "comment-in-body": GOOD.replace("<Amt ", "<!-- amounts --><Amt ", 1),
    "cdata-in-body": GOOD.replace("<Amt ", "<Txt><![CDATA[x]]></Txt><Amt ", 1),
    "side-without-value": GOOD.replace('<RptSide Side="1"', "<RptSide", 1),
    "two-batches": GOOD.replace("    </TrdCaptRpt>\n", "    </TrdCaptRpt>\n  </Batch><Batch>\n", 1),
    "latin-1": GOOD.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"', 1).replace(
        'TID="TICKHOUSE"', 'TID="TICKH\xc9USE"', 1
    ),
}


@pytest.mark.parametrize("name", list(VALID_BUT_DECLINED))
def test_valid_files_it_cannot_vouch_for_are_read_by_lxml(name):
    data = VALID_BUT_DECLINED[name].encode("latin-1" if name == "latin-1" else "utf-8")
    with pytest.raises(FastPathDeclined):
        list(read_fast(lambda: io.BytesIO(data), source_file="f.xml", profile=FIXML, venues=VENUES))
    expected = lxml_table(data, FIXML)
    rows, reader = consumed(data, FIXML)
    assert reader.startswith("lxml (fast path declined: ")
    assert rows.equals(expected)


def test_a_record_without_children_does_not_leak_into_the_next():
    # xml2arrow would add its attributes to the next record's ("8" + "9002" -> "89002").
    lenient = profile_from_mapping(
        {
            "name": "lenient",
            "record": "TrdCaptRpt",
            "fields": {
                **{
                    c: rule_spec(r) for c, r in FIXML.fields.items() if c not in ("venue", "symbol")
                },
                "venue": {"path": "Instrmt/@Exch", "default": "KRX"},
                "symbol": {"path": "Instrmt/@Sym", "default": "?"},
            },
        }
    )
    document = GOOD.replace(
        "    <TrdCaptRpt ",
        '    <TrdCaptRpt TrdID="8" LastQty="1" LastPx="1" TxnTm="2024-01-02T00:00:00Z"/>\n'
        "    <TrdCaptRpt ",
        1,
    )
    data = document.encode()
    with pytest.raises(FastPathDeclined, match="without a child"):
        list(read_fast(lambda: io.BytesIO(data), source_file="f", profile=lenient, venues=VENUES))
    rows, reader = consumed(data, lenient)
    assert reader.startswith("lxml")
    assert rows["trade_id"].to_pylist() == ["8", "9001", "9002"]
    assert rows.equals(lxml_table(data, lenient))


def test_a_file_cut_anywhere_is_never_read():
    # Whatever the cut, lxml refuses the file: the fast path must never give rows for it.
    data = gzip.compress(GOOD.encode())
    plain = GOOD.encode()
    last = plain.rindex(b">")  # a cut before the root's end tag's last byte
    for cut in [*range(0, last, 7), last]:
        part = plain[:cut]
        with pytest.raises(TickFileError):
            lxml_table(part, FIXML)
        with pytest.raises(FastPathDeclined):
            list(
                read_fast(
                    lambda p=part: io.BytesIO(p), source_file="f", profile=FIXML, venues=VENUES
                )
            )
    with pytest.raises(FastPathDeclined):
        list(
            read_fast(lambda: io.BytesIO(data[:-9]), source_file="f", profile=FIXML, venues=VENUES)
        )


def test_text_beside_a_child_element_is_lxml_s(tmp_path: Path):
    (tmp_path / "vendor_b.yaml").write_text(USER_PROFILE)
    profile = load_profiles(tmp_path)["vendor_b"]
    mixed = USER_DOCUMENT.replace("<Code> 005930 </Code>", "<Code> 005930 <i/>tail</Code>")
    data = mixed.encode()
    with pytest.raises(FastPathDeclined, match="beside child elements"):
        list(read_fast(lambda: io.BytesIO(data), source_file="f", profile=profile, venues=VENUES))
    rows, reader = consumed(data, profile)
    assert reader.startswith("lxml")
    assert rows.equals(lxml_table(data, profile))


def test_grandchildren_are_compiled_and_deeper_paths_are_left_to_lxml():
    def spec(venue: str) -> dict[str, object]:
        fields = {**{c: rule_spec(r) for c, r in FIXML.fields.items()}, "venue": venue}
        return {"name": "deep", "record": "TrdCaptRpt", "fields": fields}

    assert supports(profile_from_mapping(spec("RptSide/Pty/@ID")))
    assert supports(profile_from_mapping(spec("RptSide[@Side='1']/Pty[@R='4']/@ID")))
    assert not supports(profile_from_mapping(spec("RptSide/Pty/Sub/@ID")))


def test_no_configuration_file_is_left_behind(tmp_path, monkeypatch):
    """xml2arrow reads its configuration from a file: removed once the parser is built, and
    when xml2arrow refuses it. (A temp folder of the test's own: other processes' parsers.)"""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _parser("parser_options: {}\ntables:\n- {name: t, xml_path: /b, levels: [], fields: []}\n")
    with pytest.raises(Exception, match=r"(?i)config|yaml|tables"):
        _parser("parser_options: {}\ntables: not a list\n")
    assert list(tmp_path.iterdir()) == []


def test_no_descriptor_or_thread_outlives_a_read():
    import os
    import threading

    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    def feeders() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "tickhouse-fast-path"]

    many = fixml([(str(9100 + i), *t[1:]) for i, t in enumerate(TRADES * 50)]).encode()
    list(read_fast(lambda: io.BytesIO(many), source_file="f", profile=FIXML, venues=VENUES))
    before = open_descriptors()
    for _ in range(3):
        assert_same_rows(many, FIXML, batch_rows=10)
        for document in (BAD_DOCUMENTS["malformed"], BAD_DOCUMENTS["truncated"]):
            data = document.encode()
            with pytest.raises(FastPathDeclined):
                list(
                    read_fast(
                        lambda d=data: io.BytesIO(d), source_file="f", profile=FIXML, venues=VENUES
                    )
                )
        # A consumer that stops after the first batch (its write failed, say).
        batches = read_fast(
            lambda: io.BytesIO(many), source_file="f", profile=FIXML, venues=VENUES, batch_rows=10
        )
        next(batches)
        batches.close()
    # xml2arrow's own thread closes its end of the pipe as it stops, a moment after the drop.
    deadline = time.monotonic() + 5
    while open_descriptors() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert open_descriptors() == before
    assert feeders() == []


# Pieces a broken writer or a damaged transfer leaves in a file.
DAMAGE = [
    *(b"<", b">", b"/", b"&", b'"', b"'", b"=", b" ", b"\n", b"\r", b"\x00", b"\x01", b"\xff"),
    *(b"]]>", b"<!--", b"-->", b"<?", b"?>", b"&amp;", b"&#0;", b"&#x41;", b"\xc3\xa9", b"x:"),
    *(b'xmlns:x="u" ', b'Side="1" ', b"<TrdCaptRpt", b"</TrdCaptRpt>", b'<RptSide Side="2"/>'),
    b'<Instrmt Sym="X" Exch="KRX"/>',
]


@pytest.mark.parametrize("seed", range(4))
def test_damaged_files_give_lxml_s_rows_or_are_declined(seed, tmp_path: Path):
    """Random damage to files that fit in the first 64 KiB (which lxml checks whole): whenever
    the fast path gives rows, lxml gives the same rows."""
    import random

    (tmp_path / "vendor_b.yaml").write_text(USER_PROFILE)
    cases = [(fixml(TRADES[:4]).encode(), FIXML)]
    cases.append((USER_DOCUMENT.encode(), load_profiles(tmp_path)["vendor_b"]))
    rng = random.Random(seed)
    read = 0
    for _ in range(150):
        base, profile = rng.choice(cases)
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.3:
                del data[at : at + rng.randint(1, 4)]
            elif roll < 0.8:
                data[at:at] = rng.choice(DAMAGE)
            else:
                data[at] = rng.randrange(256)
        damaged = bytes(data)
        try:
            batches = read_fast(
                lambda d=damaged: io.BytesIO(d), source_file="f.xml", profile=profile, venues=VENUES
            )
            got = pa.Table.from_batches(list(batches))
        except FastPathDeclined:
            continue
        read += 1
        assert got.drop(["line"]).equals(lxml_table(damaged, profile).drop(["line"]))
    assert read  # some damage leaves a valid file (a changed value, a space): those are read
