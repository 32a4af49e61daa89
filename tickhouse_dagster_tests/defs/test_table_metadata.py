"""The metadata a Dagster user looks for on the project's own tables, as the real ingest and
bars jobs record it: Dagster's table name, column schema (the stored Iceberg types) and row
counts, the snapshot and trade dates, and links to Trino, Superset and the quick look where they
are configured — with no credential of a configured URL in them."""

from __future__ import annotations

from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest
from dagster import AssetKey, DagsterInstance

from tickhouse_dagster_tests.defs.helpers import (
    definitions_with,
    ingest,
    rebuild_bars,
    step_error,
)
from tickhouse_dagster_tests.defs.test_ingest_assets import trades

TICKS = AssetKey(["market", "ticks"])
BARS_1M = AssetKey(["market", "ohlcv_1m"])
DAY = "2024-01-02"
LINK_SETTINGS = (
    "TICKHOUSE_TRINO_URL",
    "TICKHOUSE_TRINO_UI_URL",
    "TICKHOUSE_SUPERSET_URL",
    "TICKHOUSE_QUICK_LOOK_URL",
)


def latest_metadata(instance: DagsterInstance, key: AssetKey) -> dict:
    record = instance.fetch_materializations(key, limit=1).records[0]
    return record.asset_materialization.metadata


def ingest_and_build(resources: dict, instance: DagsterInstance) -> None:
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5), ("2", "09:00:30", "71100", 5)))
    store.write("KRX/b.xml", trades(("3", "09:05:00", "71200", 2)))
    for key in ("KRX/a.xml", "KRX/b.xml"):
        result = ingest(definitions, instance, key)
        assert result.success, step_error(result)
    bars = rebuild_bars(definitions, instance, DAY)
    assert bars.success, step_error(bars)


def test_ticks_and_bars_show_table_schema_rows_snapshot_and_days(resources, instance, monkeypatch):
    for name in LINK_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    ingest_and_build(resources, instance)
    house = resources["lakehouse"].lakehouse()

    ticks = latest_metadata(instance, TICKS)
    assert ticks["dagster/table_name"].value == "market.ticks"
    columns = ticks["dagster/column_schema"].value.columns
    # The stored Iceberg types, and which columns are required (the contract's).
    assert [(c.name, c.type, c.constraints.nullable) for c in columns] == [
        ("venue", "string", False),
        ("symbol", "string", False),
        ("trade_date", "date", False),
        ("ts", "timestamptz", False),
        ("trade_id", "string", False),
        ("price", "decimal(18, 6)", False),
        ("quantity", "long", False),
        ("side", "string", True),
        ("source_file", "string", False),
        ("ingested_at", "timestamptz", False),
    ]
    # Dagster's meanings: the table after the commit, and this file's (partition's) rows in it.
    assert ticks["dagster/row_count"].value == 3
    assert ticks["dagster/partition_row_count"].value == 1
    assert ticks["snapshot_id"].value == str(house.table("ticks").current_snapshot().snapshot_id)
    assert ticks["trade_dates"].value == [DAY]  # a JSON list (defs/ticks_commit.py)

    bars = latest_metadata(instance, BARS_1M)
    assert bars["dagster/table_name"].value == "market.ohlcv_1m"
    bar_columns = [(c.name, c.type) for c in bars["dagster/column_schema"].value.columns]
    assert bar_columns[:4] == [
        ("venue", "string"),
        ("symbol", "string"),
        ("trade_date", "date"),
        ("bar_start", "timestamptz"),
    ]
    assert ("turnover", "decimal(38, 6)") in bar_columns
    stored = house.table("ohlcv_1m").scan().to_arrow()
    assert bars["dagster/row_count"].value == stored.num_rows == 2  # 09:00 and 09:05
    assert bars["dagster/partition_row_count"].value == 2
    assert bars["snapshot_id"].value == str(house.table("ohlcv_1m").current_snapshot().snapshot_id)
    assert bars["trade_dates"].value == DAY
    # Nothing configured, nothing to link to.
    assert not {"trino_ui", "trino_sql", "superset_sql_lab", "quick_look"} & set(bars)
    assert not {"trino_ui", "superset_sql_lab", "quick_look"} & set(ticks)


def test_links_open_trino_superset_and_the_quick_look_without_credentials(
    resources, instance, monkeypatch
):
    # Set after the resources are made: the run has no Trino resource, the links only need the
    # addresses. The URLs carry a password, as a URL in an environment may.
    monkeypatch.setenv("TICKHOUSE_TRINO_URL", "http://alice:s3cret@127.0.0.1:18080/")
    monkeypatch.setenv("TICKHOUSE_SUPERSET_URL", "http://admin:admin@127.0.0.1:18088?x=1")
    monkeypatch.setenv("TICKHOUSE_QUICK_LOOK_URL", "http://127.0.0.1:8501/")
    monkeypatch.delenv("TICKHOUSE_TRINO_UI_URL", raising=False)
    monkeypatch.delenv("TICKHOUSE_TRINO_CATALOG", raising=False)
    ingest_and_build(resources, instance)

    bars = latest_metadata(instance, AssetKey(["market", "ohlcv_5m"]))
    sql = "SELECT * FROM iceberg.market.ohlcv_5m WHERE trade_date IN (DATE '2024-01-02')"
    assert bars["trino_sql"].value == sql
    assert bars["trino_ui"].value == "http://127.0.0.1:18080/ui/"
    lab = urlsplit(bars["superset_sql_lab"].value)
    assert (lab.scheme, lab.netloc, lab.path) == ("http", "127.0.0.1:18088", "/sqllab/")
    assert parse_qs(lab.query) == {"sql": [sql], "schema": ["market"]}
    dashboard = "http://127.0.0.1:18088/superset/dashboard/market-bars/"
    assert bars["superset_dashboard"].value == dashboard
    assert bars["quick_look"].value == "http://127.0.0.1:8501/?interval=5m&trade_date=2024-01-02"

    ticks = latest_metadata(instance, TICKS)
    assert ticks["trino_sql"].value == (
        "SELECT * FROM iceberg.market.ticks WHERE trade_date IN (DATE '2024-01-02')"
    )
    assert "superset_dashboard" not in ticks  # the dashboard shows bars
    assert ticks["quick_look"].value == "http://127.0.0.1:8501/?interval=1m&trade_date=2024-01-02"

    for key in (TICKS, BARS_1M):
        shown = " ".join(str(v.value) for v in latest_metadata(instance, key).values())
        assert "s3cret" not in shown and "admin:admin" not in shown and "alice" not in shown


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://u:p@trino.example:8443/", "https://trino.example:8443"),
        ("http://superset.local/base/?token=abc#x", "http://superset.local/base"),
        ("trino:8080", None),  # not a browser address
        ("", None),
    ],
)
def test_a_link_keeps_scheme_host_port_and_path_only(url: str, public: str | None) -> None:
    from tickhouse_dagster.defs.links import public_url

    assert public_url(url) == public


def test_a_trade_date_of_the_quick_look_link_opens_that_day():
    from tickhouse_dagster.defs.links import table_links

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TICKHOUSE_QUICK_LOOK_URL", "http://127.0.0.1:8501")
        for name in ("TICKHOUSE_TRINO_URL", "TICKHOUSE_TRINO_UI_URL", "TICKHOUSE_SUPERSET_URL"):
            patch.delenv(name, raising=False)
        links = table_links("market.ticks", [date(2024, 1, 3), date(2024, 1, 2)])
    assert set(links) == {"quick_look"}
    assert links["quick_look"].value.endswith("?interval=1m&trade_date=2024-01-02")
