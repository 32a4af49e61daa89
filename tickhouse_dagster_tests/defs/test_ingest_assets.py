"""Landing files through the real ingest job: good, bad values, malformed, changed, and bars."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from dagster import AssetKey

from tickhouse_dagster_tests.defs.helpers import (
    check_results,
    definitions_with,
    ingest,
    materialized,
    rebuild_bars,
    step_error,
)

TICKS = AssetKey(["market", "ticks"])


def trades(*rows: tuple[str, str, str, int]) -> bytes:
    body = "".join(
        f'<trade id="{i}" symbol="005930" ts="2024-01-02T{t}+09:00" price="{p}" qty="{q}"/>\n'
        for i, t, p, q in rows
    )
    return f'<tickhouse venue="KRX" trade_date="2024-01-02">\n{body}</tickhouse>'.encode()


def test_good_file_then_changed_file_then_bars(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    house = resources["lakehouse"].lakehouse()
    store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5), ("2", "09:00:30", "71100", 5)))
    result = ingest(definitions, instance, "KRX/a.xml")
    assert result.success, step_error(result)
    assert TICKS in materialized(result)
    checks = check_results(result)
    assert checks[("staging/parsed_ticks", "tick_values")] is True
    assert checks[("market/ticks", "rows_match_parsed")] is True
    ticks_event = next(e for e in result.get_asset_materialization_events() if e.asset_key == TICKS)
    metadata = ticks_event.step_materialization_data.materialization.metadata
    assert metadata["rows_written"].value == 2 and metadata["trade_dates"].value == ["2024-01-02"]
    assert metadata["snapshot_id"].value.isdigit()

    store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 7)))  # the exchange corrected it
    result = ingest(definitions, instance, "KRX/a.xml")
    assert result.success
    rows = house.ticks_for_days([date(2024, 1, 2)]).to_pylist()
    assert [(r["trade_id"], r["quantity"]) for r in rows] == [("1", 7)]

    bars = rebuild_bars(definitions, instance, "2024-01-02")
    assert bars.success, step_error(bars)
    assert {AssetKey(["market", f"ohlcv_{i}"]) for i in ["1m", "5m", "1h", "1d"]} <= materialized(
        bars
    )
    assert all(check_results(bars).values()) and len(check_results(bars)) == 8
    daily = house.bars_for_day("1d", date(2024, 1, 2)).to_pylist()
    assert [(b["volume"], b["trade_count"]) for b in daily] == [(7, 1)]


def test_bad_values_are_blocked_before_the_ticks_table(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("KRX/good.xml", trades(("1", "09:00:00", "71000", 5)))
    assert ingest(definitions, instance, "KRX/good.xml").success
    store.write("KRX/neg.xml", trades(("2", "09:00:00", "71000", 5), ("3", "09:00:01", "-1", 5)))
    result = ingest(definitions, instance, "KRX/neg.xml")
    assert not result.success
    assert check_results(result)[("staging/parsed_ticks", "tick_values")] is False
    assert TICKS not in materialized(result)
    rows = resources["lakehouse"].lakehouse().ticks_for_days([date(2024, 1, 2)])
    assert rows["source_file"].to_pylist() == ["KRX/good.xml"]


def test_malformed_file_fails_alone_with_a_clear_message(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("KRX/broken.xml", trades(("1", "09:00:00", "71000", 5))[:-20])
    store.write("KRX/fine.xml", trades(("1", "09:00:00", "71000", 5)))
    broken = ingest(definitions, instance, "KRX/broken.xml")
    assert not broken.success
    assert "KRX/broken.xml" in step_error(broken) and "malformed XML" in step_error(broken)
    assert ingest(definitions, instance, "KRX/fine.xml").success
    rows = resources["lakehouse"].lakehouse().ticks_for_days([date(2024, 1, 2)])
    assert set(rows["source_file"].to_pylist()) == {"KRX/fine.xml"}


def test_forced_profile_and_unrecognised_file(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("odd/prints.xml", b"<quotes><q/></quotes>")
    result = ingest(definitions, instance, "odd/prints.xml")
    assert not result.success and "no profile recognises this file" in step_error(result)
    store.write("odd/named.xml", trades(("1", "09:00:00", "71000", 5)))
    forced = ingest(definitions, instance, "odd/named.xml", profile="fixml")
    assert not forced.success
    assert "root element <tickhouse> is not a 'fixml' file" in step_error(forced)


def _staged_files(resources) -> list[str]:
    root = Path(resources["staging"].uri)
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_staged_ticks_are_deleted_after_the_commit_and_after_a_refusal(resources, instance):
    """Staging holds a file's parsed ticks for one run: gone once they are committed, and gone
    when a blocking check refuses the file (`ticks` then never runs to delete them)."""
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    committed = ingest(definitions, instance, "KRX/a.xml")
    assert committed.success, step_error(committed)
    assert _staged_files(resources) == []

    store.write("KRX/b.xml", trades(("2", "09:00:00", "-5", 5)))  # price <= 0: tick_values fails
    refused = ingest(definitions, instance, "KRX/b.xml")
    assert not refused.success
    assert check_results(refused)[("staging/parsed_ticks", "tick_values")] is False
    assert _staged_files(resources) == []
