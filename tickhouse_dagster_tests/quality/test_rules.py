"""Quality rules find what they should, name where it is, and pass clean data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa

from tickhouse_dagster.quality.bar_rules import (
    check_bar_invariants,
    distinct_trade_totals,
    reconcile_bars_with_ticks,
)
from tickhouse_dagster.quality.tick_rules import (
    check_session_and_grid,
    check_tick_values,
    find_duplicate_trades,
)
from tickhouse_dagster_tests.market.test_bars import INGESTED, table, tick
from tickhouse_dagster_tests.storage.test_lakehouse import parsed
from tickhouse_dagster_tests.tables import build_bars


def test_tick_values_pass_clean_and_name_each_bad_record(venues):
    clean = parsed([tick("09:00:00", "1", "71000", 1), tick("09:00:01", "2", "71100", 2)])
    assert check_tick_values(clean.to_batches(), venues).passed
    bad = parsed(
        [
            tick("09:00:00", "1", "71000", 1, source="x.xml"),
            tick("09:00:01", "2", "-5", 1, source="x.xml"),
            tick("09:00:02", "3", "71000", 0, source="x.xml"),
            {**tick("09:00:03", "4", "71000", 1, source="x.xml"), "side": "Q"},
            {**tick("09:00:04", "5", "71000", 1, source="x.xml"), "trade_date": date(2024, 3, 1)},
        ]
    )
    findings = check_tick_values(bad.to_batches(), venues)
    assert findings.count == 4
    text = "\n".join(findings.examples)
    assert "x.xml, record 2, line 3, field price: " in text
    assert "x.xml, record 3, line 4, field quantity: " in text
    assert "x.xml, record 4, line 5, field side: 'Q'" in text
    assert "x.xml, record 5, line 6, field trade_date: trade date 2024-03-01" in text


def test_session_and_grid(venues):
    rows = parsed(
        [
            tick("09:00:00", "1", "71000", 1),
            tick("15:30:00", "2", "71100", 1),  # the closing auction print is inside
            tick("08:59:59", "3", "71000", 1),  # before the open
            tick("10:00:00", "4", "71050", 1),  # 71,050 is off the 100-won grid above 50,000
        ]
    )
    findings = check_session_and_grid(rows.to_batches(), venues)
    assert findings.count == 2
    assert "record 3 (005930 3): 08:59:59 is outside the KRX session" in findings.examples[0]
    assert "record 4 (005930 4): price 71050.000000 is off the 100 grid" in findings.examples[1]


def test_duplicates_found_and_conflicts_flagged():
    later = INGESTED + timedelta(hours=1)
    ticks = table(
        [
            tick("09:00:00", "1", "100", 1, source="a.xml"),
            tick("09:00:00", "1", "100", 1, source="b.xml", ingested=later),
            tick("09:00:01", "2", "100", 1, source="a.xml"),
            tick("09:00:01", "2", "105", 1, source="c.xml", ingested=later),
            tick("09:00:02", "3", "100", 1, source="c.xml"),
        ]
    )
    everything = find_duplicate_trades(ticks)
    assert everything.count == 2
    assert "trade 2: 2 copies with DIFFERENT values in a.xml, c.xml" in everything.examples[1]
    assert find_duplicate_trades(ticks, involving="b.xml").count == 1
    assert find_duplicate_trades(table([tick("09:00:00", "1", "1", 1)])).passed


def test_bar_invariants_catch_a_broken_bar(venues):
    bars = build_bars(
        table([tick("09:00:00", "1", "100", 1), tick("09:00:10", "2", "110", 1)]), "1m", venues
    )
    assert check_bar_invariants(bars).passed
    broken = bars.set_column(
        bars.schema.get_field_index("low"),
        bars.schema.field("low"),
        pa.array([Decimal("105")], bars.schema.field("low").type),  # low above open
    )
    findings = check_bar_invariants(broken)
    assert findings.count == 1 and "005930 bar 2024-01-02T00:00:00+00:00" in findings.examples[0]


def test_reconciliation_is_exact(venues):
    ticks = table(
        [
            tick("09:00:00", "1", "100", 3),
            tick("09:05:00", "2", "100", 4),
            tick("09:05:00", "2", "100", 4, source="dup.xml"),
        ]
    )
    totals = distinct_trade_totals(ticks)
    for interval in ["1m", "5m", "1h", "1d"]:
        assert reconcile_bars_with_ticks(
            build_bars(ticks, interval, venues), totals, interval
        ).passed
    bars = build_bars(ticks, "1m", venues)
    short = bars.slice(0, 1)  # a bar went missing
    findings = reconcile_bars_with_ticks(short, totals, "1m")
    assert findings.count == 1
    assert "ticks volume 7 / trades 2, bars volume 3 / trades 1" in findings.examples[0]


def test_trade_date_skew_is_measured_against_the_venue_rule(venues):
    """A Friday-evening CBOT print (19:30 CDT, after the 19:00 roll) is Monday's by the rule; a
    feed may book it to Friday or Monday (or a day beyond either), not to Wednesday."""
    from zoneinfo import ZoneInfo

    evening = datetime(2026, 10, 30, 19, 30, tzinfo=ZoneInfo("America/Chicago")).astimezone(UTC)
    rows = [
        {**tick("00:00:00", str(n), "450.25", 1, symbol="ZCZ6", venue="CBOT"), "ts": evening}
        | {"trade_date": day}
        for n, day in enumerate(
            [date(2026, 10, 30), date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)], 1
        )
    ]
    findings = check_tick_values(parsed(rows).to_batches(), venues)
    assert findings.count == 1, findings.examples
    assert "record 4, line 5, field trade_date: trade date 2026-11-04" in findings.examples[0]
