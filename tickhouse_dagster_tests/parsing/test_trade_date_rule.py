"""Both Python readers (lxml and the compiled fast path) derive a missing trade date by the venue's
rule: one function (`market.venues.trade_dates_of`, called from `contract_batch`) serves both."""

from __future__ import annotations

import io
from datetime import date

import pyarrow as pa

from tickhouse_dagster.parsing import read_tick_file
from tickhouse_dagster.parsing.fast_path import read_fast
from tickhouse_dagster.parsing.ticks_xml import sniff_root

# CBOT grains, no trade_date on the root: Friday 30 Oct 2026 18:30 and 19:30 CDT (the roll is
# 19:00), Saturday 10:00, and Sunday 1 Nov 19:00 CST (after the DST change, Monday's open).
DOCUMENT = b"""<tickhouse version="1" venue="CBOT">
<trade id="1" symbol="ZCZ6" ts="2026-10-30T18:30:00-05:00" price="450.25" qty="1"/>
<trade id="2" symbol="ZCZ6" ts="2026-10-30T19:30:00-05:00" price="450.50" qty="2"/>
<trade id="3" symbol="ZCZ6" ts="2026-10-31T10:00:00-05:00" price="450.50" qty="3"/>
<trade id="4" symbol="ZCZ6" ts="2026-11-01T19:00:00-06:00" price="450.75" qty="4"/>
</tickhouse>"""
EXPECTED = [date(2026, 10, 30), date(2026, 11, 2), date(2026, 11, 2), date(2026, 11, 2)]


def test_lxml_and_fast_path_give_the_venue_rules_trade_dates(profiles, venues):
    profile = profiles["tickhouse"]
    slow = read_tick_file(io.BytesIO(DOCUMENT), source_file="f.xml", profile=profile, venues=venues)
    fast = pa.Table.from_batches(
        list(
            read_fast(
                lambda: io.BytesIO(DOCUMENT),
                source_file="f.xml",
                profile=profile,
                venues=venues,
                root_attributes=sniff_root(DOCUMENT)[1],
            )
        )
    )
    assert slow["trade_date"].to_pylist() == EXPECTED
    assert fast["trade_date"].to_pylist() == EXPECTED


def test_a_feed_trade_date_wins_over_the_rule(profiles, venues):
    document = DOCUMENT.replace(b'venue="CBOT"', b'venue="CBOT" trade_date="2026-10-30"')
    table = read_tick_file(
        io.BytesIO(document), source_file="f.xml", profile=profiles["tickhouse"], venues=venues
    )
    assert set(table["trade_date"].to_pylist()) == {date(2026, 10, 30)}
