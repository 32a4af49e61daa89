"""The bench's FIXML rewritten as exchanges send it, for the timed paths (`make bench-latency
BENCH_LATENCY_ARGS="--profile fixml --shape exchange"`).

The generator's FIXML is the lean end of what the `fixml` profile reads: one <Batch>, reports
with an <Instrmt> and at most one <RptSide>, TxnTm in UTC. Exchanges send more (the layout of
tickhouse_dagster_tests/parsing/test_fast_path_layouts.py, after CME's STP / ClearPort trade
capture reports): a <Hdr> on the batch and on every report, the instrument's identifiers, an
amount, both sides of the trade each with three parties (one with a sub-id) and a regulatory
timestamp, TxnTm in the venue's local time with its offset (Seoul, +09:00). Same trades, so the
same bars: the tick's own side is the first <RptSide> (the one the profile reads), and a tick
without a side gets the buyer first. About 4× the bytes per trade.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from functools import lru_cache

from bench.data import MARKER, DataFile, DataSet

SHAPE = "exchange"
_REPORT = re.compile(
    r'    <TrdCaptRpt RptID="(?P<rpt>[^"]*)" TrdID="(?P<id>[^"]*)" TransTyp="(?P<typ>[^"]*)" '
    r'LastQty="(?P<qty>[^"]*)" LastPx="(?P<px>[^"]*)" TrdDt="(?P<day>[^"]*)" '
    r'TxnTm="(?P<sec>[^".]*)\.(?P<us>\d{6})Z">\n'
    r'      <Instrmt Sym="(?P<sym>[^"]*)" Exch="(?P<exch>[^"]*)"/>\n'
    r'(?:      <RptSide Side="(?P<side>[12])"/>\n)?'
    r"    </TrdCaptRpt>\n"
)
_OFFSET = timedelta(hours=9)


@lru_cache(maxsize=1 << 16)
def _seoul(second: str) -> str:
    return (datetime.fromisoformat(second) + _OFFSET).strftime("%Y-%m-%dT%H:%M:%S")


def _side(side: str, n: int, exch: str, tm: str) -> str:
    return (
        f'      <RptSide Side="{side}" InptSrc="{exch}" CustCpcty="4">\n'
        f'        <Pty ID="FIRM{n}" R="1"><Sub ID="1" Typ="26"/></Pty>\n'
        f'        <Pty ID="ACCT{n}" R="24"/>\n'
        f'        <Pty ID="{exch}" R="22"/>\n'
        f'        <TrdRegTS TS="{tm}" Typ="1"/>\n'
        "      </RptSide>\n"
    )


def _report(m: re.Match[str]) -> str:
    exch, sym, px, day = m["exch"], m["sym"], m["px"], m["day"]
    tm = f"{_seoul(m['sec'])}.{m['us']}+09:00"
    first = m["side"] or "1"
    sides = (first, "2" if first == "1" else "1")
    return (
        f'    <TrdCaptRpt RptID="{m["rpt"]}" TrdID="{m["id"]}" TransTyp="{m["typ"]}" RptTyp="2" '
        f'TrdTyp="0" LastQty="{m["qty"]}" LastPx="{px}" TrdDt="{day}" BizDt="{day}" '
        f'TxnTm="{tm}">\n'
        f'      <Hdr SID="{exch}" TID="TICKHOUSE" Snt="{tm}"/>\n'
        f'      <Instrmt ID="{sym}" Src="8" Sym="{sym}" SecTyp="CS" Exch="{exch}"/>\n'
        f'      <Amt Typ="TNOV" Amt="{px}" Ccy="KRW"/>\n'
        + "".join(_side(side, n, exch, tm) for n, side in enumerate(sides))
        + "    </TrdCaptRpt>\n"
    )


def exchange_text(text: str) -> str:
    """One generated FIXML file's text in the exchange shape; every report must be rewritten."""
    shaped, reports = _REPORT.subn(_report, text)
    expected = text.count("<TrdCaptRpt ")
    if reports != expected:
        raise ValueError(f"rewrote {reports:,} of {expected:,} reports: the generator changed")
    return shaped.replace(
        "  <Batch>\n",
        '  <Batch>\n    <Hdr SID="KRX" TID="TICKHOUSE" Snt="' + _batch_sent(text) + '"/>\n',
        1,
    )


def _batch_sent(text: str) -> str:
    found = re.search(r'TrdDt="([^"]+)"', text)
    return f"{found[1] if found else '1970-01-01'}T16:00:00+09:00"


def exchange_data_set(data: DataSet, log=print) -> DataSet:
    """`data` (the `fixml` layout) rewritten in the exchange shape beside it, cached like it."""
    if data.profile != "fixml":
        raise ValueError(f"the exchange shape rewrites FIXML, not the `{data.profile}` layout")
    root = data.root.with_name(f"{data.root.name}-{SHAPE}")
    marker = root / MARKER
    source = json.loads((data.root / MARKER).read_text())
    if marker.exists() and json.loads(marker.read_text()).get("from") == source:
        files = [
            DataFile(root / f.path.name, (root / f.path.name).stat().st_size, f.ticks)
            for f in data.files
        ]
        log(f"data set: reusing {root}")
        return replace(data, root=root, files=tuple(files))
    log(f"data set: rewriting {len(data.files)} FIXML file(s) in the exchange shape ...")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for f in data.files:
        (partial / f.path.name).write_text(exchange_text(f.path.read_text()))
    (partial / MARKER).write_text(json.dumps({"from": source}) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return exchange_data_set(data, log)
