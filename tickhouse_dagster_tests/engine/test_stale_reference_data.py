"""Stale bars after a venue reference-data change, as a user meets them: `tickhouse ingest`,
then NYMEX's time zone changed in a user venues file (CME stamps Central time), `tickhouse stale`
names the day, the field and the file whose derived trade dates moved, `tickhouse rebuild-bars
--stale` rebuilds exactly that day (KRX's day untouched), and re-ingesting the file clears the
rest. A real embedded lakehouse (folders + SQLite) and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import yaml
from pyiceberg.expressions import EqualTo

from tickhouse_dagster.core.contract import BAR_INTERVALS, bar_table_name
from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.market.venues import BUILT_IN_FILE, load_venues
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.lakehouse import Lakehouse

TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))
KRX_DAY, NYMEX_DAY = date(2024, 1, 2), date(2024, 1, 3)

KRX_FILE = """<tickhouse venue="KRX" trade_date="2024-01-02">
<trade id="1" symbol="005930" ts="2024-01-02T09:00:01+09:00" price="71000" qty="5"/>
<trade id="2" symbol="005930" ts="2024-01-02T10:30:00+09:00" price="71100" qty="3"/>
</tickhouse>"""
# The feed gives the trade date: its ticks are right whatever the venue's clock.
NYMEX_FILE = """<tickhouse venue="NYMEX" trade_date="2024-01-03">
<trade id="10" symbol="CL" ts="2024-01-03T09:15:00-05:00" price="72.10" qty="4"/>
<trade id="11" symbol="CL" ts="2024-01-03T23:20:00-05:00" price="72.30" qty="2"/>
</tickhouse>"""
# No trade date: the venue's rule derives it. 18:30 New York is past the 18:00 roll (next day's
# session); in Chicago it is 17:30, before the roll: the same print belongs to the 2nd.
NYMEX_EVENING = """<tickhouse venue="NYMEX">
<trade id="20" symbol="NG" ts="2024-01-02T18:30:00-05:00" price="2.500" qty="7"/>
<trade id="21" symbol="NG" ts="2024-01-03T11:00:00-05:00" price="2.510" qty="1"/>
</tickhouse>"""


def run(home: Path, *args: str, venues_file: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TICKHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    for name in ("TICKHOUSE_LANDING_URI", "TICKHOUSE_WAREHOUSE_URI", "TICKHOUSE_CATALOG_URI"):
        env.pop(name, None)
    env.pop("TICKHOUSE_VENUES_FILE", None)
    if venues_file is not None:
        env["TICKHOUSE_VENUES_FILE"] = str(venues_file)
    return subprocess.run(
        [TICKHOUSE_CLI, *args], env=env, capture_output=True, text=True, timeout=600
    )


def open_house(home: Path) -> Lakehouse:
    settings = CatalogSettings(
        name="tickhouse",
        warehouse=str(home / "warehouse"),
        embedded_db=str(home / "catalog.db"),
    )
    return Lakehouse(load_lakehouse_catalog(settings))


def recorded_at(house: Lakehouse, venue: str, day: date) -> list:
    rows = house.reference_records(["built", "recorded_at"], EqualTo("venue", venue)).to_pylist()
    days = house.reference_records(["trade_date"], EqualTo("venue", venue))["trade_date"]
    return sorted(r["recorded_at"] for r, d in zip(rows, days.to_pylist(), strict=True) if d == day)


def sorted_rows(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["venue"], r["symbol"], r["bar_start"]))


def test_a_time_zone_change_is_reported_and_exactly_its_days_are_rebuilt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    landing = home / "landing"
    for key, text in {
        "KRX/day.xml": KRX_FILE,
        "NYMEX/day.xml": NYMEX_FILE,
        "NYMEX/evening.xml": NYMEX_EVENING,
    }.items():
        (landing / key).parent.mkdir(parents=True, exist_ok=True)
        (landing / key).write_text(text)

    ingested = run(home, "ingest")
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    assert "bars rebuilt for 2 trade date(s): 2024-01-02, 2024-01-03" in ingested.stdout
    fresh = run(home, "stale")
    assert (fresh.returncode, fresh.stdout.strip()) == (0, "nothing stale"), fresh.stderr

    house = open_house(home)
    krx_recorded = recorded_at(house, "KRX", KRX_DAY)
    assert len(krx_recorded) == len(BAR_INTERVALS)
    krx_bars = {i: sorted_rows(house.bars_for_day(i, KRX_DAY)) for i in BAR_INTERVALS}

    # The user's venues file: NYMEX as built in, but on Central time.
    built_in = yaml.safe_load(BUILT_IN_FILE.read_text())
    venues_file = tmp_path / "venues.yaml"
    venues_file.write_text(
        yaml.safe_dump({"NYMEX": {**built_in["NYMEX"], "timezone": "America/Chicago"}})
    )

    stale = run(home, "stale", venues_file=venues_file)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    out = stale.stdout
    assert "bars built under changed reference data: 1 trade date(s)" in out
    assert (
        "  NYMEX 2024-01-03  [ohlcv_1d, ohlcv_1h, ohlcv_1m, ohlcv_5m]  "
        "timezone America/New_York -> America/Chicago"
    ) in out
    assert "KRX" not in out
    # Only the file without a feed trade date needs re-ingesting, naming the tick that moves.
    assert "tickhouse ingest --all NYMEX/evening.xml)" in out
    assert "  NYMEX/evening.xml  NYMEX: 1 tick(s) 2024-01-03 -> 2024-01-02" in out
    assert "NYMEX/day.xml" not in out

    doctor = run(home, "doctor", venues_file=venues_file)
    checks = doctor.stdout[doctor.stdout.index("checks:") :]
    assert doctor.returncode == 1, checks
    assert (
        "FAIL  reference data: StaleReferenceData: bars built under changed reference data: "
        "1 trade date(s) (rebuild them: tickhouse rebuild-bars --stale); ticks of 2 file(s) were "
        "parsed under NYMEX's former trade-date rule"
    ) in checks, checks

    rebuilt = run(home, "rebuild-bars", "--stale", venues_file=venues_file)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "bars rebuilt for 1 trade date(s): 2024-01-03" in rebuilt.stdout

    # The day's bars are those a fresh build under the new data makes from the stored ticks,
    # the 1d bar starting at Chicago's midnight.
    chicago = load_venues(venues_file)
    house = open_house(home)
    expected = build_all_bars(house.ticks_for_days([NYMEX_DAY]), chicago)
    for interval in BAR_INTERVALS:
        stored = sorted_rows(house.bars_for_day(interval, NYMEX_DAY))
        assert stored == sorted_rows(expected[interval]), interval
    [nymex_day_bar] = [
        r for r in house.bars_for_day("1d", NYMEX_DAY).to_pylist() if r["symbol"] == "CL"
    ]
    assert nymex_day_bar["bar_start"].isoformat() == "2024-01-03T06:00:00+00:00"
    # KRX's day was neither rebuilt nor re-recorded.
    assert recorded_at(house, "KRX", KRX_DAY) == krx_recorded
    assert {i: sorted_rows(house.bars_for_day(i, KRX_DAY)) for i in BAR_INTERVALS} == krx_bars

    after = run(home, "stale", venues_file=venues_file)
    assert "bars built under changed reference data" not in after.stdout
    assert "NYMEX/evening.xml" in after.stdout and after.returncode == 1

    again = run(home, "ingest", "--all", "NYMEX/evening.xml", venues_file=venues_file)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "bars rebuilt for 2 trade date(s): 2024-01-02, 2024-01-03" in again.stdout
    house = open_house(home)
    moved = house.ticks_for_days([KRX_DAY], ["venue", "trade_id"]).to_pylist()
    assert {"venue": "NYMEX", "trade_id": "20"} in moved
    done = run(home, "stale", venues_file=venues_file)
    assert (done.returncode, done.stdout.strip()) == (0, "nothing stale"), done.stdout
    for interval in BAR_INTERVALS:
        table = bar_table_name(interval)
        assert house.bars_for_day(interval, KRX_DAY).num_rows > 0, table
