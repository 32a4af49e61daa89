"""The full pipeline on the real stack: XML uploaded to a SeaweedFS landing bucket, picked up by
the sensor, ingested through the PostgreSQL catalog into an S3 warehouse; Trino then reads every
table exactly as pyiceberg does, also after a file is re-ingested."""

from __future__ import annotations

import os
import time
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context, materialize

from tickhouse_dagster.core.contract import BAR_INTERVALS, TICKS_ARROW, bar_table_name
from tickhouse_dagster.defs.assets.bi import bar_views
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.defs.sensors import build_landing_sensor, touched_days_sensor
from tickhouse_dagster.settings import current
from tickhouse_dagster_tests.defs.helpers import (
    check_results,
    definitions_with,
    requested_keys,
    step_error,
)
from tickhouse_dagster_tests.samples import two_profile_sample

pytestmark = pytest.mark.slow
SEOUL = ZoneInfo("Asia/Seoul")


class SensorDaemon:
    """Evaluates the two sensors and executes their run requests, as the Dagster daemon does."""

    def __init__(self, definitions, instance, resources) -> None:
        self.definitions, self.instance, self.resources = definitions, instance, resources
        self.landing_cursor: str | None = None
        self.days_cursor: str | None = None

    def tick(self) -> list[str]:
        """One tick of each sensor; returns the landing keys ingested."""
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.landing_cursor,
            resources={"landing": self.resources["landing"], "feed": self.resources["feed"]},
        )
        result = build_landing_sensor(current())(context)
        self.landing_cursor = result.cursor
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        job = self.definitions.resolve_job_def("ingest_landing_batch")
        for request in result.run_requests:
            run = job.execute_in_process(
                instance=self.instance,
                run_config=request.run_config,
                tags=request.tags,
                raise_on_error=False,
            )
            assert run.success, step_error(run)
            checks = check_results(run)
            assert checks[("market/ticks", "trino_reads_commit")] is True, checks
        days = touched_days_sensor(
            build_sensor_context(
                instance=self.instance,
                cursor=self.days_cursor,
                resources={"lakehouse": self.resources["lakehouse"]},
            )
        )
        if isinstance(days, SensorResult):
            self.days_cursor = days.cursor
            bars = self.definitions.resolve_job_def("rebuild_bars")
            for request in days.run_requests:
                run = bars.execute_in_process(
                    instance=self.instance,
                    partition_key=request.partition_key,
                    raise_on_error=False,
                )
                assert run.success, step_error(run)
                assert all(check_results(run).values())
        return requested_keys(result)


def normalised(row: tuple) -> tuple:
    return tuple(
        v.astimezone(UTC) if hasattr(v, "astimezone") and hasattr(v, "hour") else v for v in row
    )


def assert_trino_equals_pyiceberg(resources, namespace: str) -> dict[str, int]:
    trino = resources["trino"]
    house = resources["lakehouse"].lakehouse()
    counts = {}
    for table in ["ticks", *(bar_table_name(i) for i in BAR_INTERVALS)]:
        arrow = house.table(table).scan().to_arrow()
        columns = arrow.column_names
        expected = sorted(normalised(tuple(r[c] for c in columns)) for r in arrow.to_pylist())
        seen = sorted(
            normalised(tuple(r))
            for r in trino.query(
                f"SELECT {', '.join(columns)} FROM {trino.catalog}.{namespace}.{table}"
            )
        )
        assert seen == expected, f"{table}: Trino and pyiceberg differ"
        counts[table] = len(seen)
    return counts


@pytest.fixture(params=["jdbc", "rest"])
def catalog_kind(request, on_stack, monkeypatch) -> str:
    """The PostgreSQL JDBC-layout catalog, or SeaweedFS's built-in Iceberg REST catalog, each
    configured the standard pyiceberg way and read by its own Trino catalog."""
    if request.param == "rest":
        for name in list(os.environ):
            if name.startswith("PYICEBERG_CATALOG__"):
                monkeypatch.delenv(name)
        monkeypatch.delenv("TICKHOUSE_CATALOG_URI", raising=False)
        prefix = "PYICEBERG_CATALOG__TICKHOUSE__"
        key, secret = on_stack["AWS_ACCESS_KEY_ID"], on_stack["AWS_SECRET_ACCESS_KEY"]
        for name, value in {
            "TYPE": "rest",
            "URI": on_stack["TICKHOUSE_ICEBERG_REST_URI"],
            "WAREHOUSE": on_stack["TICKHOUSE_ICEBERG_REST_WAREHOUSE"],
            "CREDENTIAL": f"{key}:{secret}",  # SeaweedFS: OAuth2 client = S3 identity
            "S3__ENDPOINT": on_stack["TICKHOUSE_S3_ENDPOINT"],
            "S3__REGION": on_stack.get("AWS_REGION", "us-east-1"),
            "S3__ACCESS_KEY_ID": key,
            "S3__SECRET_ACCESS_KEY": secret,
        }.items():
            monkeypatch.setenv(prefix + name, value)
        monkeypatch.setenv("TICKHOUSE_TRINO_CATALOG", "iceberg_rest")
    return request.param


def test_sensor_ingests_from_seaweedfs_and_trino_reads_what_dagster_wrote(
    on_stack, catalog_kind, tmp_path: Path
):
    resources = resolved_resources()
    assert "trino" in resources
    definitions = definitions_with(resources)
    store = resources["landing"].store()
    namespace = on_stack["TICKHOUSE_NAMESPACE"]
    for key, data in two_profile_sample(tmp_path / "sample").items():
        store.write(key, data)

    with DagsterInstance.ephemeral() as instance:
        daemon = SensorDaemon(definitions, instance, resources)
        ingested = daemon.tick()
        assert len(ingested) == 3
        counts = assert_trino_equals_pyiceberg(resources, namespace)
        assert counts["ticks"] == 4000

        # The exchange re-sends one file corrected: fewer trades, a changed quantity.
        key = sorted(k for k in ingested if k.endswith("0900.xml"))[0]
        with store.open(key) as stream:
            text = stream.read().decode()
        lines = text.splitlines()
        trades = [i for i, line in enumerate(lines) if line.lstrip().startswith("<trade ")]
        kept = lines[: trades[0]] + [lines[i] for i in trades[10:]] + lines[trades[-1] + 1 :]
        kept[trades[0]] = kept[trades[0]].replace(' qty="', ' qty="1', 1)
        time.sleep(1.1)  # a new LastModified second for the new version
        store.write(key, "\n".join(kept).encode())

        assert daemon.tick() == [key]
        counts = assert_trino_equals_pyiceberg(resources, namespace)
        assert counts["ticks"] == 4000 - 10

        view = materialize([bar_views], resources=resources, instance=instance)
        assert view.success
        trino = resources["trino"]
        rows = trino.query(
            f"SELECT bar_start, bar_start_local, venue_timezone FROM {trino.catalog}.{namespace}.ohlcv_1h_local"
        )
        assert rows and all(tz == "Asia/Seoul" for *_, tz in rows)
        for start, local, _ in rows:
            assert start.astimezone(SEOUL).replace(tzinfo=None) == local


def test_ticks_table_schema_as_trino_sees_it(on_stack):
    resources = resolved_resources()
    resources["lakehouse"].lakehouse().ensure_tables()
    trino = resources["trino"]
    described = trino.query(f"DESCRIBE {trino.catalog}.{on_stack['TICKHOUSE_NAMESPACE']}.ticks")
    columns = {row[0]: row[1] for row in described}
    assert columns == {
        "venue": "varchar",
        "symbol": "varchar",
        "trade_date": "date",
        "ts": "timestamp(6) with time zone",
        "trade_id": "varchar",
        "price": "decimal(18,6)",
        "quantity": "bigint",
        "side": "varchar",
        "source_file": "varchar",
        "ingested_at": "timestamp(6) with time zone",
    }
    assert [f.name for f in TICKS_ARROW] == list(columns)
