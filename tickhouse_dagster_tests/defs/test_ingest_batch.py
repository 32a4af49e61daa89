"""The batch job the landing sensor and `tickhouse ingest` run: every file's three tick assets and
their checks recorded as the per-file job records them, a refused file failing the run by name
while the others are kept, and the touched-days sensor following its commits."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from dagster import AssetKey, build_sensor_context

from tickhouse_dagster.defs.sensors import touched_days_sensor
from tickhouse_dagster_tests.defs.helpers import definitions_with, materialized
from tickhouse_dagster_tests.defs.test_ingest_assets import trades

RAW, PARSED, TICKS = (
    AssetKey(["landing", "raw_tick_xml"]),
    AssetKey(["staging", "parsed_ticks"]),
    AssetKey(["market", "ticks"]),
)


def verdicts(result) -> dict[tuple[str, str], bool]:
    """(check, file) → passed, for every check evaluation of a batch run."""
    return {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()}


def run_batch(definitions, instance, keys):
    return definitions.resolve_job_def("ingest_landing_batch").execute_in_process(
        instance=instance,
        run_config={"ops": {"ingest_landing_files": {"config": {"keys": keys, "workers": 2}}}},
        raise_on_error=False,
    )


def test_batch_records_every_file_like_the_per_file_job(resources, instance):
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5), ("2", "09:00:30", "71100", 5)))
    store.write("KRX/b.xml", trades(("3", "09:01:00", "71000", 2)))
    store.write("KRX/bad.xml", trades(("4", "09:02:00", "71000", 0)))  # quantity 0

    result = run_batch(definitions, instance, ["KRX/a.xml", "KRX/b.xml", "KRX/bad.xml"])

    assert not result.success  # the refused file fails the run, by name
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("1 of 3 landing files refused: KRX/bad.xml")
    assert "field quantity" in description
    for key in ("KRX/a.xml", "KRX/b.xml"):
        for asset in (RAW, PARSED, TICKS):
            assert key in instance.get_materialized_partitions(asset), (asset, key)
    assert "KRX/bad.xml" not in instance.get_materialized_partitions(TICKS)
    assert {RAW, PARSED, TICKS} <= materialized(result)
    checks = verdicts(result)
    assert checks[("tick_values", "KRX/bad.xml")] is False
    for key in ("KRX/a.xml", "KRX/b.xml"):
        assert checks[("tick_values", key)] is True
        assert checks[("trade_key_conflicts", key)] is True
        assert checks[("rows_match_parsed", key)] is True
        assert checks[("duplicate_trades", key)] is True
    assert ("rows_match_parsed", "KRX/bad.xml") not in checks
    rows = resources["lakehouse"].lakehouse().ticks_for_days([date(2024, 1, 2)])
    assert sorted(set(rows["source_file"].to_pylist())) == ["KRX/a.xml", "KRX/b.xml"]
    staging = Path(resources["staging"].uri)  # committed and refused files: nothing staged left
    assert not [p for p in staging.rglob("*") if p.is_file()]

    # The run built the bars of the day its committed files touched (the refused file does not
    # stop them), with the bars' checks; so the touched-days sensor has nothing to request.
    bar_keys = {AssetKey(["market", f"ohlcv_{i}"]) for i in ("1m", "5m", "1h", "1d")}
    assert bar_keys <= materialized(result)
    bar_checks = {
        (e.asset_key, e.check_name)
        for e in result.get_asset_check_evaluations()
        if e.partition == "2024-01-02" and e.passed
    }
    assert bar_checks == {
        (key, name) for key in bar_keys for name in ("ohlc_invariants", "reconciles_with_ticks")
    }
    day_bars = resources["lakehouse"].lakehouse().bars_for_day("1d", date(2024, 1, 2))
    assert day_bars["trade_count"].to_pylist() == [3]
    context = build_sensor_context(
        instance=instance, resources={"lakehouse": resources["lakehouse"]}
    )
    assert touched_days_sensor(context).run_requests == []

    # A second run of the same keys ingests nothing again (the ledger knows their versions).
    again = run_batch(definitions, instance, ["KRX/a.xml", "KRX/b.xml"])
    assert again.success and not materialized(again)
