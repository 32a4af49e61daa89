"""The asset a user adds (`market/ohlcv_15m`, README "Add your own asset") on the real stack,
materialized as the UI's Materialize button does it — a GraphQL launch on `dagster dev` — and
read back through Trino; the UI's GraphQL shows the column schemas of its table and of the
project's own (1m bars, ticks) with their Iceberg types."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow.compute as pc
import pytest

from tickhouse_dagster.cli.devserver import BIN, dagster_home, free_port, running_dagster_dev
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster_tests.ui.test_dagster_dev import graphql, wait_for

pytestmark = pytest.mark.slow
DAY = "2024-01-02"

REPOSITORIES = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  name location { name } } } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
LATEST = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetMaterializations(limit: 1) { partition metadataEntries { label __typename
    ... on TableSchemaMetadataEntry { schema { columns { name type constraints { nullable } } } }
    ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def repository(url: str) -> tuple[str, str] | None:
    data = graphql(url, REPOSITORIES)
    nodes = (data or {}).get("repositoriesOrError", {}).get("nodes") or []
    return (nodes[0]["location"]["name"], nodes[0]["name"]) if nodes else None


def latest_entries(url: str, path: list[str]) -> tuple[str, dict[str, dict]] | None:
    data = graphql(url, LATEST, {"key": {"path": path}})
    events = ((data or {}).get("assetNodeOrError") or {}).get("assetMaterializations") or []
    if not events:
        return None
    return events[0]["partition"], {e["label"]: e for e in events[0]["metadataEntries"]}


def columns(entries: dict[str, dict]) -> list[tuple[str, str, bool]]:
    shown = entries["dagster/column_schema"]
    assert shown["__typename"] == "TableSchemaMetadataEntry"
    return [
        (c["name"], c["type"], c["constraints"]["nullable"]) for c in shown["schema"]["columns"]
    ]


def test_example_asset_materialized_from_the_ui_is_read_back_through_trino(on_stack, tmp_path):
    home = Path(on_stack["TICKHOUSE_HOME"])
    env = {**os.environ, **dagster_home(home)}
    # A sample day in the stack's landing bucket, ingested (ticks and bars) into this instance.
    sample = ["--symbols", "2", "--ticks-per-day", "3000", "--files-per-day", "1"]
    subprocess.run([BIN / "tickhouse", "generate", *sample], env=env, check=True, timeout=300)
    ingest = subprocess.run(
        [BIN / "tickhouse", "ingest"], env=env, capture_output=True, text=True, timeout=900
    )
    assert ingest.returncode == 0, ingest.stdout[-3000:] + ingest.stderr[-3000:]

    with running_dagster_dev(env, free_port(), tmp_path / "dagster-dev.log") as base:
        url = f"{base}/graphql"
        location, name = wait_for("the code location", lambda: repository(url), timeout=300)
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": name,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["market", "ohlcv_15m"]}],
                "assetCheckSelection": [],
            },
            "mode": "default",
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": DAY}]},
        }
        launched = graphql(url, LAUNCH, {"params": params})["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def finished() -> str | None:
            status = graphql(url, RUN, {"id": run_id})["runOrError"]["status"]
            return status if status in FINISHED else None

        assert wait_for("the 15m run", finished, timeout=600) == "SUCCESS"
        partition, entries = latest_entries(url, ["market", "ohlcv_15m"])
        _, one_minute = latest_entries(url, ["market", "ohlcv_1m"])
        _, ticks = latest_entries(url, ["market", "ticks"])

    namespace = on_stack["TICKHOUSE_NAMESPACE"]
    assert partition == DAY
    assert entries["dagster/table_name"]["text"] == f"{namespace}.ohlcv_15m"
    # The table the IO manager created holds the bars' stored types, shown as Iceberg's.
    bar_columns = columns(one_minute)
    assert columns(entries) == bar_columns
    assert ("bar_start", "timestamptz", False) in bar_columns
    assert ("vwap", "decimal(18, 6)", False) in bar_columns
    assert one_minute["dagster/table_name"]["text"] == f"{namespace}.ohlcv_1m"
    assert ticks["dagster/table_name"]["text"] == f"{namespace}.ticks"
    assert ("price", "decimal(18, 6)", False) in columns(ticks)
    assert ("side", "string", True) in columns(ticks)

    # Trino reads what the run wrote, as pyiceberg does, and the 15m bars add up to the 1m bars.
    resources = resolved_resources()
    trino, house = resources["trino"], resources["lakehouse"].lakehouse()
    seen = trino.query(
        f"SELECT symbol, bar_start, open, high, low, close, volume, trade_count "
        f"FROM {trino.catalog}.{namespace}.ohlcv_15m WHERE trade_date = DATE '{DAY}' "
        "ORDER BY symbol, bar_start"
    )
    stored = (
        house.table("ohlcv_15m")
        .scan()
        .to_arrow()
        .sort_by([("symbol", "ascending"), ("bar_start", "ascending")])
    )
    assert len(seen) == stored.num_rows == entries["dagster/row_count"]["intValue"] > 0
    assert [(r[0], r[6], r[7]) for r in seen] == list(
        zip(
            stored["symbol"].to_pylist(),
            stored["volume"].to_pylist(),
            stored["trade_count"].to_pylist(),
            strict=True,
        )
    )
    assert [r[1] for r in seen] == stored["bar_start"].to_pylist()
    (minute_volume,) = trino.query(
        f"SELECT sum(volume) FROM {trino.catalog}.{namespace}.ohlcv_1m "
        f"WHERE trade_date = DATE '{DAY}'"
    )[0]
    assert sum(r[6] for r in seen) == minute_volume == pc.sum(stored["volume"]).as_py()
