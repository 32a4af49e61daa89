"""`tickhouse generate` + `tickhouse ingest` as a user runs them; the bars are recomputed here
independently (stdlib XML parsing, Python decimals) and compared row for row with Iceberg."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog

SEOUL = ZoneInfo("Asia/Seoul")
UTC = UTC
TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))
FIXML_SIDE = {"1": "B", "2": "S"}


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TICKHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    return subprocess.run(
        [TICKHOUSE_CLI, *args], env=env, capture_output=True, text=True, timeout=600
    )


def independent_ticks(landing: Path) -> list[tuple]:
    """(venue, symbol, trade_date, ts, trade_id, price, quantity) from every file, by hand."""
    out = []
    for path in sorted(landing.rglob("*.xml*")):
        data = path.read_bytes()
        root = ET.fromstring(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        if root.tag == "tickhouse":
            for t in root.iter("trade"):
                ts = datetime.fromisoformat(t.get("ts")).astimezone(UTC)
                out.append(
                    (
                        root.get("venue"),
                        t.get("symbol"),
                        date.fromisoformat(root.get("trade_date")),
                        ts,
                        t.get("id"),
                        Decimal(t.get("price")),
                        int(t.get("qty")),
                    )
                )
        else:
            ns = "{http://www.fixprotocol.org/FIXML-4-4}"
            for r in root.iter(f"{ns}TrdCaptRpt"):
                inst = r.find(f"{ns}Instrmt")
                ts = datetime.fromisoformat(r.get("TxnTm").replace("Z", "+00:00")).astimezone(UTC)
                out.append(
                    (
                        inst.get("Exch"),
                        inst.get("Sym"),
                        date.fromisoformat(r.get("TrdDt")),
                        ts,
                        r.get("TrdID"),
                        Decimal(r.get("LastPx")),
                        int(r.get("LastQty")),
                    )
                )
    return out


def bar_start(ts: datetime, trade_date: date, interval: str) -> datetime:
    local = ts.astimezone(SEOUL)
    if interval == "1d":
        start = datetime.combine(trade_date, time(0), SEOUL)
    elif interval == "1h":
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        width = {"1m": 1, "5m": 5}[interval]
        start = local.replace(minute=local.minute - local.minute % width, second=0, microsecond=0)
    return start.astimezone(UTC)


def independent_bars(ticks: list[tuple], interval: str) -> list[tuple]:
    groups = defaultdict(list)
    for venue, symbol, day, ts, trade_id, price, qty in ticks:
        groups[(venue, symbol, day, bar_start(ts, day, interval))].append(
            (ts, trade_id, price, qty)
        )
    bars = []
    for (venue, symbol, day, start), trades in sorted(groups.items()):
        trades.sort()
        volume = sum(q for *_, q in trades)
        turnover = sum(p * q for *_, p, q in trades)
        vwap = (turnover / volume).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        prices = [p for _, _, p, _ in trades]
        bars.append(
            (
                venue,
                symbol,
                day,
                start,
                trades[0][2],
                max(prices),
                min(prices),
                trades[-1][2],
                volume,
                turnover,
                vwap,
                len(trades),
            )
        )
    return bars


@pytest.mark.slow
def test_generate_ingest_and_bars_equal_an_independent_computation(tmp_path):
    home = tmp_path / "home"
    landing = home / "landing"
    out = run(
        home,
        "generate",
        "--days",
        "1",
        "--symbols",
        "4",
        "--ticks-per-day",
        "3000",
        "--files-per-day",
        "3",
        "--start-date",
        "2024-01-02",
    )
    assert out.returncode == 0, out.stderr
    out = run(
        home,
        "generate",
        "--days",
        "1",
        "--symbols",
        "3",
        "--ticks-per-day",
        "2000",
        "--files-per-day",
        "2",
        "--profile",
        "fixml",
        "--gzip",
        "--start-date",
        "2024-01-03",
        "--out",
        str(landing / "fixml"),
    )
    assert out.returncode == 0, out.stderr

    ingest = run(home, "ingest")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "landing: 5 files, 5 ingested" in ingest.stdout
    assert "bars rebuilt for 2 trade date(s): 2024-01-02, 2024-01-03" in ingest.stdout

    catalog = load_lakehouse_catalog(
        CatalogSettings(
            "tickhouse", warehouse=str(home / "warehouse"), embedded_db=str(home / "catalog.db")
        )
    )
    ticks = independent_ticks(landing)
    stored_ticks = catalog.load_table("market.ticks").scan().to_arrow()
    assert stored_ticks.num_rows == len(ticks) == 5000
    assert sorted(
        (
            r["venue"],
            r["symbol"],
            r["trade_date"],
            r["ts"],
            r["trade_id"],
            r["price"],
            r["quantity"],
        )
        for r in stored_ticks.to_pylist()
    ) == sorted(ticks)

    for interval in ["1m", "5m", "1h", "1d"]:
        rows = catalog.load_table(f"market.ohlcv_{interval}").scan().to_arrow().to_pylist()
        stored = sorted(
            (
                r["venue"],
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
            for r in rows
        )
        assert stored == independent_bars(ticks, interval), interval

    again = run(home, "ingest")
    assert again.returncode == 0 and "landing: 5 files, 0 ingested" in again.stdout


@pytest.mark.slow
def test_ingest_exits_non_zero_and_names_the_bad_file(tmp_path):
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "bad.xml").write_text(
        '<tickhouse venue="KRX" trade_date="2024-01-02">'
        '<trade id="1" symbol="005930" ts="2024-01-02T09:00:00+09:00" price="7l000" qty="1"/>'
        "</tickhouse>"
    )
    (home / "landing" / "good.xml").write_text(
        '<tickhouse venue="KRX" trade_date="2024-01-02">'
        '<trade id="1" symbol="005930" ts="2024-01-02T09:00:00+09:00" price="71000" qty="1"/>'
        "</tickhouse>"
    )
    out = run(home, "ingest")
    assert out.returncode == 1
    assert (
        "FAILED bad.xml: bad.xml, record 1, line 1, field price: '7l000' is not a decimal"
        in out.stdout
    )
    assert "Traceback" not in out.stderr
    assert "ingested good.xml: 1 ticks" in out.stdout


def test_doctor_reports_and_masks(tmp_path):
    home = tmp_path / "home"
    env_uri = "postgresql+psycopg2://tick:SuperSecret123@127.0.0.1:1/none"
    result = subprocess.run(
        [TICKHOUSE_CLI, "doctor"],
        env={
            **os.environ,
            "TICKHOUSE_HOME": str(home),
            "TICKHOUSE_CATALOG_URI": env_uri,
            "AWS_SECRET_ACCESS_KEY": "AnotherSecretValue",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "SuperSecret123" not in result.stdout + result.stderr
    assert "AnotherSecretValue" not in result.stdout + result.stderr
    assert "postgresql+psycopg2://tick:****@127.0.0.1:1/none" in result.stdout
    assert "FAIL  iceberg catalog" in result.stdout
    assert "ok    landing store" in result.stdout


BROKEN_PROFILE = """name: cme_clearing
root: FIXML
record: TrdCaptRpt
fields:
  venue: {path: "Instrmt/@Exch"}
  symbol: {path: "concat(Instrmt/@ID, Instrmt/@MMY)"}
  ts: "@TxnTm"
  trade_id: "@TrdID"
  price: "@LastPx"
  quantity: "@LastQty"
"""
VENUES_IN_PROFILES = (
    'CME:\n  timezone: America/Chicago\n  session: {open: "08:30", close: "13:20"}\n'
)


def test_doctor_and_ingest_refuse_a_broken_profile_naming_file_and_field(tmp_path):
    home = tmp_path / "home"
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "cme.yaml").write_text(BROKEN_PROFILE)
    (folder / "venues.yaml").write_text(VENUES_IN_PROFILES)
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "a.xml").write_text("<FIXML/>")
    env = {**os.environ, "TICKHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env["TICKHOUSE_PROFILES_DIR"] = str(folder)
    reason = (
        f"{folder / 'cme.yaml'}, profile 'cme_clearing', field 'symbol': path "
        "'concat(Instrmt/@ID, Instrmt/@MMY)': 'concat(Instrmt' is not an element step"
    )
    doctor = subprocess.run(
        [TICKHOUSE_CLI, "doctor"], env=env, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 1
    assert f"FAIL  input profiles: ProfileError: {reason}" in doctor.stdout
    ingest = subprocess.run(
        [TICKHOUSE_CLI, "ingest"], env=env, capture_output=True, text=True, timeout=300
    )
    assert ingest.returncode == 1
    assert f"FAILED configuration: {reason}" in ingest.stdout
    assert "DagsterExecutionStepExecutionError" not in ingest.stdout + ingest.stderr

    # Fixed: doctor says ok and notes the venues file it skipped.
    (folder / "cme.yaml").write_text(
        BROKEN_PROFILE.replace(
            '{path: "concat(Instrmt/@ID, Instrmt/@MMY)"}',
            '{template: "{Instrmt/@ID}{Instrmt/@MMY}"}',
        )
    )
    doctor = subprocess.run(
        [TICKHOUSE_CLI, "doctor"], env=env, capture_output=True, text=True, timeout=120
    )
    assert "ok    input profiles: cme_clearing, fixml, tickhouse" in doctor.stdout
    assert f"note: {folder / 'venues.yaml'}: venue reference data, not a profile" in doctor.stdout
