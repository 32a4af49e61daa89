"""The code location loads, and its graph is raw XML → parsed ticks → ticks → bars."""

from __future__ import annotations

from dagster import AssetKey, DefaultSensorStatus

from tickhouse_dagster.definitions import defs


def test_lineage_graph():
    graph = defs.resolve_asset_graph()
    parents = {key: graph.get(key).parent_keys for key in graph.get_all_asset_keys()}
    assert parents[AssetKey(["staging", "parsed_ticks"])] == {AssetKey(["landing", "raw_tick_xml"])}
    assert parents[AssetKey(["market", "ticks"])] == {AssetKey(["staging", "parsed_ticks"])}
    for interval in ["1m", "5m", "1h", "1d"]:
        assert parents[AssetKey(["market", f"ohlcv_{interval}"])] == {AssetKey(["market", "ticks"])}
    # The example of extending the graph (defs/assets/ohlcv_15m.py).
    assert parents[AssetKey(["market", "ohlcv_15m"])] == {AssetKey(["market", "ohlcv_1m"])}


def test_bars_are_read_and_written_through_the_iceberg_io_manager():
    graph = defs.resolve_asset_graph()
    for interval in ["1m", "5m", "15m", "1h", "1d"]:
        node = graph.get(AssetKey(["market", f"ohlcv_{interval}"]))
        assert node.io_manager_key == "iceberg_io_manager"
    assert "iceberg_io_manager" in defs.resources


def test_checks_jobs_and_sensors():
    graph = defs.resolve_asset_graph()
    checks = {(tuple(k.asset_key.path), k.name) for k in graph.asset_check_keys}
    assert (("staging", "parsed_ticks"), "tick_values") in checks
    assert (("staging", "parsed_ticks"), "session_and_tick_grid") in checks
    assert (("market", "ticks"), "duplicate_trades") in checks
    assert (("market", "ohlcv_1m"), "reconciles_with_ticks") in checks
    assert (("market", "ohlcv_1d"), "ohlc_invariants") in checks
    assert (("market", "ohlcv_5m"), "fresh_in_session") in checks
    for name in [
        "landing_sensor",
        "touched_days_sensor",
        "automation_sensor",
        "bars_freshness_sensor",
    ]:
        assert defs.resolve_sensor_def(name).default_status == DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("ingest_landing_file") and defs.resolve_job_def("rebuild_bars")


def test_trino_parts_only_when_trino_is_configured(resources):
    from tickhouse_dagster.definitions import build_definitions
    from tickhouse_dagster.defs.resources import TrinoResource

    without = build_definitions(resources).resolve_asset_graph()
    assert AssetKey(["market", "bar_views"]) not in without.get_all_asset_keys()
    assert "trino_reads_commit" not in {k.name for k in without.asset_check_keys}
    with_trino = build_definitions(
        {
            **resources,
            "trino": TrinoResource(url="http://127.0.0.1:1", catalog="iceberg", user="tickhouse"),
        }
    )
    graph = with_trino.resolve_asset_graph()
    assert AssetKey(["market", "bar_views"]) in graph.get_all_asset_keys()
    assert "trino_reads_commit" in {k.name for k in graph.asset_check_keys}
