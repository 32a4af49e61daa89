"""`dagster dev` as a user starts it: the lineage graph over GraphQL, then the sensors ingest the
sample day and a file dropped later with no click, and every check of the latest run is green."""

from __future__ import annotations

import time

import pytest
import requests

from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog

ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
CHECKS = """{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks {
  checks { name executionForLatestMaterialization { status } } } } } }"""
RUNS = "{ runsOrError { ... on Runs { results { jobName status } } } }"
BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""


def wait_for(what: str, probe, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def graphql(url: str, query: str, variables: dict | None = None) -> dict | None:
    try:
        response = requests.post(
            url, json={"query": query, "variables": variables or {}}, timeout=10
        )
        return response.json()["data"] if response.ok else None
    except requests.RequestException:
        return None


@pytest.mark.slow
def test_graph_sensor_ingest_and_checks(dagster_dev):
    url, home = dagster_dev
    data = wait_for("the webserver", lambda: graphql(url, ASSET_GRAPH), timeout=180)
    edges = {
        ("/".join(node["assetKey"]["path"]), "/".join(dep["path"]))
        for node in data["assetNodes"]
        for dep in node["dependencyKeys"]
    }
    assert {
        ("staging/parsed_ticks", "landing/raw_tick_xml"),
        ("market/ticks", "staging/parsed_ticks"),
        ("market/ohlcv_1m", "market/ticks"),
        ("market/ohlcv_5m", "market/ticks"),
        ("market/ohlcv_1h", "market/ticks"),
        ("market/ohlcv_1d", "market/ticks"),
    } <= edges

    catalog = load_lakehouse_catalog(
        CatalogSettings(
            "tickhouse", warehouse=str(home / "warehouse"), embedded_db=str(home / "catalog.db")
        )
    )

    def daily_volume() -> int:
        if not catalog.table_exists("market.ohlcv_1d"):
            return 0
        return sum(
            catalog.load_table("market.ohlcv_1d").scan().to_arrow()["trade_count"].to_pylist()
        )

    wait_for("the sample day's bars", lambda: daily_volume() == 3000, timeout=240)

    # A file dropped later is picked up by the running sensor, and the bars follow.
    extra = home / "landing" / "KRX" / "2024-01-02" / "late_prints.xml"
    extra.write_text(
        '<tickhouse venue="KRX" trade_date="2024-01-02">'
        '<trade id="900001" symbol="005930" ts="2024-01-02T15:10:00+09:00" price="71000" qty="3"/>'
        "</tickhouse>"
    )
    wait_for("the dropped file in the bars", lambda: daily_volume() == 3001, timeout=180)

    def all_runs_done() -> bool:
        runs = graphql(url, RUNS)["runsOrError"]["results"]
        return runs and all(r["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for r in runs)

    wait_for("runs to finish", all_runs_done, timeout=120)
    runs = graphql(url, RUNS)["runsOrError"]["results"]
    assert {r["status"] for r in runs} == {"SUCCESS"}
    # The sample's files and the late one came in batch runs of the landing sensor (one per tick
    # with files waiting), never one run per file.
    batches = sum(r["jobName"] == "ingest_landing_batch" for r in runs)
    assert 2 <= batches <= 3, batches
    statuses = {
        ("/".join(node["assetKey"]["path"]), check["name"]): (
            check["executionForLatestMaterialization"] or {}
        ).get("status")
        for node in graphql(url, CHECKS)["assetNodes"]
        for check in node["assetChecksOrError"].get("checks", [])
    }
    # The bars' fresh_in_session checks are judged by their sensor against today's sessions,
    # not by the materializations of the 2024 sample day (defs/test_freshness.py covers them).
    assert len(statuses) == 17  # 3 on parsed ticks, 2 on ticks, 3 on each of 4 bar tables
    assert sum(name == "fresh_in_session" for _, name in statuses) == 4
    ran = {key: status for key, status in statuses.items() if key[1] != "fresh_in_session"}
    assert set(ran.values()) == {"SUCCEEDED"}, statuses

    # A date-range backfill of the bars, as the UI launches it: a day without trades gets no bars,
    # the traded day's bars come out the same.
    before = catalog.load_table("market.ohlcv_1m").scan().to_arrow().sort_by("bar_start")
    bar_keys = [{"path": ["market", f"ohlcv_{i}"]} for i in ["1m", "5m", "1h", "1d"]]
    launched = graphql(
        url,
        BACKFILL,
        {
            "params": {
                "assetSelection": bar_keys,
                "partitionNames": ["2023-12-29", "2024-01-02", "2024-01-03"],
            }
        },
    )
    backfill_id = launched["launchPartitionBackfill"]["backfillId"]

    def backfill_done() -> str | None:
        status = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"][
            "status"
        ]
        return (
            status if status in {"COMPLETED", "COMPLETED_SUCCESS", "FAILED", "CANCELED"} else None
        )

    assert wait_for("the bars backfill", backfill_done, timeout=240).startswith("COMPLETED")
    after = catalog.load_table("market.ohlcv_1m").scan().to_arrow().sort_by("bar_start")
    assert after.equals(before)
    assert set(after["trade_date"].to_pylist()) == {before["trade_date"][0].as_py()}
