"""The bad-input corpus, through the real ingest job on one embedded lakehouse.

Every bad file: the run fails naming the file, the record or line and the reason; the file is
moved to `_quarantine/` with a reason file; no row of it reaches the table; the good file ingested
first keeps its rows; the landing sensor offers the next new file and never the quarantined one.
Valid-but-odd files (BOM, out-of-order prints, duplicates) give exactly the right rows and bars.
The parser opens no local file and no network connection for any of them (watched for real: a
FIFO that reports being opened, a TCP listener that reports a connection).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import DagsterInstance, build_sensor_context

from tickhouse_dagster.defs.resources import resources_from_env
from tickhouse_dagster.defs.sensors import build_landing_sensor
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.quarantine import quarantined_key, read_note, reason_key
from tickhouse_dagster_tests.defs.helpers import (
    check_results,
    definitions_with,
    ingest,
    rebuild_bars,
    requested_keys,
    step_error,
)
from tickhouse_dagster_tests.reliability.tally import record

DAY = "2024-01-02"
HEAD = f'<tickhouse venue="KRX" trade_date="{DAY}">\n'
GOOD_ROWS = 3


def trade(
    i: int,
    ts: str = "09:00:01",
    price: str = "71000",
    qty: str = "1",
    symbol: str = "005930",
    **attrs: str,
) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    stamp = ts if "T" in ts else f"{DAY}T{ts}+09:00"
    return f'<trade id="{i}" symbol="{symbol}" ts="{stamp}" price="{price}" qty="{qty}"{extra}/>\n'


def doc(*records: str, head: str = HEAD, prolog: str = "") -> bytes:
    return (prolog + head + "".join(records) + "</tickhouse>").encode()


def fix(
    trade_id: int, *, day: str = DAY, tm: str | None = None, side: str = "1", **attrs: str
) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    stamp = tm or f"{day}T00:00:01Z"
    return (
        f'<TrdCaptRpt TrdID="{trade_id}" LastPx="71000" LastQty="1" TrdDt="{day}" TxnTm="{stamp}"{extra}>'
        f'<Instrmt Sym="005930" Exch="KRX"/><RptSide Side="{side}"/></TrdCaptRpt>\n'
    )


def fixml(*reports: str) -> bytes:
    return ("<FIXML><Batch>\n" + "".join(reports) + "</Batch></FIXML>").encode()


GOOD = doc(trade(1, "09:00:00"), trade(2, "09:00:01"), trade(3, "09:00:02"))
NEG_PRICE = doc(trade(1), trade(2, price="-1"))


def corrupt_gzip() -> bytes:
    packed = gzip.compress(doc(*(trade(i) for i in range(300))))
    return packed[:60] + bytes(b ^ 0xFF for b in packed[60:90]) + packed[90:]


# (case id, landing key, content, what the reason must say). {fifo} and {port} are filled in per
# run: a local FIFO and a TCP listener that report any attempt to read or connect.
BAD_FILES: list[tuple[str, str, bytes | str, list[str]]] = [
    (
        "malformed",
        "KRX/malformed.xml",
        doc(trade(1)) + b"<trade id='2' <broken/>",
        ["line", "malformed XML"],
    ),
    ("truncated", "KRX/truncated.xml", doc(trade(1), trade(2))[:-40], ["malformed XML"]),
    ("empty", "KRX/empty.xml", b"", ["malformed XML"]),
    (
        "wrong-root",
        "KRX/wrong-root.fixml",
        GOOD,
        ["root element <tickhouse> is not a 'fixml' file"],
    ),
    (
        "unknown-profile",
        "KRX/quotes.xml",
        b"<quotes><q px='1'/></quotes>",
        ["no profile recognises this file"],
    ),
    (
        "missing-symbol",
        "KRX/no-symbol.xml",
        doc(trade(1), trade(2).replace(' symbol="005930"', "")),
        ["record 2", "field symbol", "required value missing"],
    ),
    (
        "missing-trade-id",
        "KRX/no-id.xml",
        doc(trade(1), trade(2).replace(' id="2"', "")),
        ["record 2", "field trade_id", "required value missing"],
    ),
    (
        "non-numeric-price",
        "KRX/abc-price.xml",
        doc(trade(1), trade(2, price="abc")),
        ["record 2", "field price", "'abc' is not a decimal number"],
    ),
    (
        "negative-price",
        "KRX/neg-price.xml",
        NEG_PRICE,
        ["record 2", "field price", "greater_than(0)"],
    ),
    (
        "zero-quantity",
        "KRX/zero-qty.xml",
        doc(trade(1), trade(2, qty="0")),
        ["record 2", "field quantity", "greater_than(0)"],
    ),
    (
        "negative-quantity",
        "KRX/neg-qty.xml",
        doc(trade(1), trade(2, qty="-5")),
        ["record 2", "field quantity", "greater_than(0)"],
    ),
    (
        "fractional-quantity",
        "KRX/frac-qty.xml",
        doc(trade(1), trade(2, qty="1.5")),
        ["record 2", "field quantity", "'1.5' is not a whole number"],
    ),
    (
        "too-many-decimals",
        "KRX/decimals.xml",
        doc(trade(1), trade(2, price="1.1234567")),
        ["record 2", "field price", "at most 6 decimal places"],
    ),
    (
        "timestamp-without-zone",
        "KRX/naive-ts.xml",
        doc(trade(1), trade(2, ts=f"{DAY}T09:00:01")),
        ["record 2", "field ts", "zone offset"],
    ),
    (
        "timestamp-garbage",
        "KRX/bad-ts.xml",
        doc(trade(1), trade(2, ts="yesterdayT")),
        ["record 2", "field ts", "is not an ISO 8601"],
    ),
    (
        "print-far-from-trade-date",
        "KRX/far-print.xml",
        doc(trade(1), trade(2, ts="1999-01-04T09:00:01+09:00")),
        ["record 2", "field trade_date", "from the print's local date"],
    ),
    (
        "date-far-from-file-day",
        "KRX/far-day.fixml",
        fixml(fix(1), fix(2), fix(3, day="1999-01-04")),
        ["record 3", "field trade_date", "from the file's trading day 2024-01-02"],
    ),
    (
        "bad-trade-date",
        "KRX/bad-day.fixml",
        fixml(fix(1), fix(2, day="2024-13-45", tm="2024-01-02T00:00:01Z")),
        ["record 2", "field trade_date"],
    ),
    (
        "wrong-encoding-declaration",
        "KRX/utf16-decl.xml",
        doc(trade(1), prolog='<?xml version="1.0" encoding="UTF-16"?>'),
        ["line 1", "malformed XML"],
    ),
    (
        "non-utf8-bytes",
        "KRX/latin1.xml",
        doc(trade(1)).replace(b"005930", b"00593\xe9"),
        ["line 2", "Invalid bytes in character encoding"],
    ),
    (
        "external-entity-local-file",
        "KRX/xxe.xml",
        '<!DOCTYPE t [<!ENTITY x SYSTEM "file://{fifo}">]>'
        + HEAD.replace('KRX"', 'KRX" note="&x;"')
        + trade(1)
        + "</tickhouse>",
        ["KRX/xxe.xml"],
    ),
    (
        "dtd-over-network",
        "KRX/dtd.xml",
        '<!DOCTYPE tickhouse SYSTEM "http://127.0.0.1:{port}/evil.dtd">'
        + HEAD
        + trade(1)
        + "</tickhouse>",
        ["KRX/dtd.xml"],
    ),
    (
        "billion-laughs",
        "KRX/laughs.xml",
        '<!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        + HEAD
        + trade(1, symbol="&d;")
        + "</tickhouse>",
        ["KRX/laughs.xml"],
    ),
    (
        "gigantic-attribute",
        "KRX/giant.xml",
        doc(trade(1), trade(2, symbol="X" * (20 << 20))),
        ["record 2", "field symbol", "20,971,522 characters"],
    ),
    (
        "oversized-identifier",
        "KRX/long-symbol.xml",
        doc(trade(1), trade(2, symbol="X" * (1 << 20))),
        ["record 2", "field symbol", "1,048,578 characters"],
    ),
    (
        "deep-nesting",
        "KRX/deep.xml",
        doc("<a>" * 5000 + "</a>" * 5000, trade(1)),
        ["Excessive depth"],
    ),
    ("corrupt-gzip", "KRX/corrupt.xml.gz", corrupt_gzip(), ["KRX/corrupt.xml.gz"]),
    (
        "unknown-venue",
        "KRX/moon.xml",
        doc(trade(1), trade(2, venue="MOON")),
        ["record 2", "field venue", "unknown venue 'MOON'"],
    ),
    (
        "bad-side-code",
        "KRX/side.fixml",
        fixml(fix(1), fix(2, side="7")),
        ["record 2", "field side", "'7' is not one of 1, 2"],
    ),
]


@dataclass
class Lakehouse:
    resources: dict[str, object]
    instance: DagsterInstance
    definitions: object
    fifo: Path
    port: int
    connections: list[str] = field(default_factory=list)
    fifo_opened: list[bool] = field(default_factory=list)

    def rows(self, *keys: str) -> list[dict]:
        ticks = self.resources["lakehouse"].lakehouse().table("ticks").scan().to_arrow()
        mask = pc.is_in(ticks["source_file"], value_set=pa.array(list(keys)))
        return ticks.filter(mask).to_pylist()


def _watch_fifo(path: Path, opened: list[bool], stop: threading.Event) -> None:
    """A non-blocking open for writing succeeds only while a reader has the FIFO open."""
    while not stop.is_set():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.005)
            continue
        opened.append(True)
        os.close(fd)  # the reader sees end of file and carries on


def _listen(server: socket.socket, connections: list[str], stop: threading.Event) -> None:
    server.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, peer = server.accept()
        except TimeoutError:
            continue
        connections.append(str(peer))
        conn.close()


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lakehouse]:
    root = tmp_path_factory.mktemp("corpus")
    fifo = root / "secret.fifo"
    os.mkfifo(fifo)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    with pytest.MonkeyPatch.context() as env, DagsterInstance.ephemeral() as instance:
        env.setenv("TICKHOUSE_HOME", str(root / "home"))
        for name in ["TICKHOUSE_LANDING_URI", "TICKHOUSE_WAREHOUSE_URI", "TICKHOUSE_CATALOG_URI"]:
            env.delenv(name, raising=False)
        resources = dict(resources_from_env())
        lake = Lakehouse(
            resources, instance, definitions_with(resources), fifo, server.getsockname()[1]
        )
        watchers = [
            threading.Thread(target=_watch_fifo, args=(fifo, lake.fifo_opened, stop), daemon=True),
            threading.Thread(target=_listen, args=(server, lake.connections, stop), daemon=True),
        ]
        for watcher in watchers:
            watcher.start()
        resources["landing"].store().write("KRX/good.xml", GOOD)
        assert ingest(lake.definitions, instance, "KRX/good.xml").success
        yield lake
        stop.set()
        for watcher in watchers:
            watcher.join(timeout=5)
        server.close()


def _failure_text(result) -> str:
    """What the run says went wrong: the step error, or the failed blocking check."""
    text = step_error(result)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            text += " " + str(evaluation.description) + " " + str(evaluation.metadata)
    return text


def _offered_by_sensor(lake: Lakehouse) -> set[str]:
    context = build_sensor_context(
        instance=lake.instance,
        resources={"landing": lake.resources["landing"], "feed": lake.resources["feed"]},
    )
    return set(requested_keys(build_landing_sensor(current())(context)))


@pytest.mark.parametrize(
    ("case", "key", "content", "says"), BAD_FILES, ids=[case[0] for case in BAD_FILES]
)
def test_bad_file_is_quarantined_and_loses_nothing_else(house: Lakehouse, case, key, content, says):
    store = house.resources["landing"].store()
    if isinstance(content, str):
        content = content.format(fifo=house.fifo, port=house.port).encode()
    store.write(key, content)

    result = ingest(house.definitions, house.instance, key)

    assert not result.success
    failure = _failure_text(result)
    assert key in failure
    note = read_note(store, key)
    for words in says:
        assert words in note.reason, (words, note.reason)
    assert note.reason.startswith(key)
    assert len(note.reason) < 2000  # a reason, never the file's content
    assert not store.exists(key)
    assert store.exists(quarantined_key(key)) and store.exists(reason_key(key))
    assert json.loads(store.open(reason_key(key)).read())["key"] == key
    assert house.rows(key) == []
    good = house.rows("KRX/good.xml")
    assert len(good) == GOOD_ROWS
    next_key = f"KRX/next-{case}.xml"
    store.write(next_key, GOOD)
    offered = _offered_by_sensor(house)
    assert next_key in offered and key not in offered
    store.delete(next_key)
    assert house.fifo_opened == [] and house.connections == []
    record(
        "bad_input",
        case,
        expected_rows=GOOD_ROWS,
        found_rows=len(good) + len(house.rows(key)),
        duplicated_rows=len(good) - len({r["trade_id"] for r in good}),  # good has no repeats
        outcome=f"quarantined ({note.stage})",
    )


def _bars_1d(house: Lakehouse, day: str) -> list[tuple]:
    result = rebuild_bars(house.definitions, house.instance, day)
    assert result.success, step_error(result)
    bars = house.resources["lakehouse"].lakehouse().bars_for_day("1d", date.fromisoformat(day))
    return [
        (str(b["open"]), str(b["close"]), b["volume"], b["trade_count"]) for b in bars.to_pylist()
    ]


def _day_doc(day: str, *records: str, prolog: str = "") -> bytes:
    head = f'<tickhouse venue="KRX" trade_date="{day}">\n'
    return doc(*(r.replace(DAY, day) for r in records), head=head, prolog=prolog)


# Valid but odd: (case, key, content, trade date, expected 1d bar (open, close, volume, count)).
ODD_FILES = [
    (
        "byte-order-mark",
        "KRX/bom.xml",
        b"\xef\xbb\xbf"
        + _day_doc("2024-01-03", trade(1, price="100"), trade(2, "09:00:02", price="101")),
        "2024-01-03",
        ("100.000000", "101.000000", 2, 2),
    ),
    (
        "latin1-declaration-ascii-content",
        "KRX/latin1-decl.xml",
        _day_doc(
            "2024-01-04",
            trade(1, price="100"),
            prolog='<?xml version="1.0" encoding="ISO-8859-1"?>',
        ),
        "2024-01-04",
        ("100.000000", "100.000000", 1, 1),
    ),
    (
        "out-of-order",
        "KRX/unordered.xml",
        _day_doc(
            "2024-01-05",
            trade(3, "09:00:03", price="103"),
            trade(1, "09:00:01", price="101"),
            trade(2, "09:00:02", price="102"),
        ),
        "2024-01-05",
        ("101.000000", "103.000000", 3, 3),
    ),
    (
        "duplicate-in-file",
        "KRX/dup-in-file.xml",
        _day_doc(
            "2024-01-08",
            trade(1, price="100", qty="2"),
            trade(1, price="100", qty="2"),
            trade(2, "09:00:02", price="101"),
        ),
        "2024-01-08",
        ("100.000000", "101.000000", 3, 2),
    ),
]


@pytest.mark.parametrize(
    ("case", "key", "content", "day", "bar"), ODD_FILES, ids=[case[0] for case in ODD_FILES]
)
def test_valid_but_odd_file_gives_the_right_rows_and_bars(
    house: Lakehouse, case, key, content, day, bar
):
    store = house.resources["landing"].store()
    store.write(key, content)
    result = ingest(house.definitions, house.instance, key)
    assert result.success, _failure_text(result)
    rows = house.rows(key)
    expected = content.count(b"<trade ")
    assert len(rows) == expected and store.exists(key)
    bars = _bars_1d(house, day)
    assert bars == [bar]
    counted_twice = bars[0][3] - len({r["trade_id"] for r in rows})
    record(
        "bad_input",
        case,
        expected_rows=expected,
        found_rows=len(rows),
        duplicated_rows=counted_twice,
        outcome="ingested; bars count each trade once",
    )


def test_duplicate_across_files_counts_once_in_the_bars(house: Lakehouse):
    store = house.resources["landing"].store()
    first = _day_doc(
        "2024-01-09", trade(1, price="100", qty="3"), trade(2, "09:00:02", price="102")
    )
    again = _day_doc(
        "2024-01-09", trade(2, "09:00:02", price="102"), trade(3, "09:00:03", price="103")
    )
    store.write("KRX/dup-a.xml", first)
    store.write("KRX/dup-b.xml", again)
    assert ingest(house.definitions, house.instance, "KRX/dup-a.xml").success
    result = ingest(house.definitions, house.instance, "KRX/dup-b.xml")
    assert result.success
    assert check_results(result)[("market/ticks", "duplicate_trades")] is False  # reported
    rows = house.rows("KRX/dup-a.xml", "KRX/dup-b.xml")
    assert len(rows) == 4  # each file's rows as it carries them
    assert _bars_1d(house, "2024-01-09") == [("100.000000", "103.000000", 5, 3)]  # counted once
    record(
        "bad_input",
        "duplicate-across-files",
        expected_rows=4,
        found_rows=len(rows),
        duplicated_rows=0,
        outcome="both files ingested; duplicate reported; bars count it once",
    )
