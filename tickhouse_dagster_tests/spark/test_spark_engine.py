"""The Spark engine against the Python path, on the real stack and a real local Spark.

- the same sample files (both profiles, plain and gzip) ingested by the Python path and by the
  Spark path (through Dagster, in-process dagster-pyspark) give identical `market.ticks` rows and,
  after the touched-days sensor's rebuilds, identical bars — full tables compared;
- re-running replaces the files' rows (no duplicates), also when Spark wrote several landing files
  into one data file (copy-on-write MERGE) and when a file shrank;
- a malformed file or a bad value fails the job naming the file, and nothing is written;
- spark-submit through Dagster Pipes (`--master local[2]`) ingests and reports its metadata back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from tickhouse_dagster.contract import BAR_INTERVALS, REFERENCE_TABLE, bar_table_name
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.defs.sensors import touched_days_sensor
from tickhouse_dagster.market.venues import load_venues
from tickhouse_dagster.parsing.profiles import load_profiles
from tickhouse_dagster.spark.session import apply_runtime_conf, catalog_conf
from tickhouse_dagster.spark.ticks import SparkIngestError, ingest_files
from tickhouse_dagster_tests.defs.helpers import definitions_with, ingest, rebuild_bars, step_error
from tickhouse_dagster_tests.samples import two_profile_sample

pytestmark = pytest.mark.slow


def _upload(files: dict[str, bytes]) -> None:
    store = resolved_resources()["landing"].store()
    for key, data in files.items():
        store.write(key, data)


def _rows(namespace: str, table: str) -> list[tuple]:
    """Every row of a table but `ingested_at`, sorted: the full-table comparison."""
    os.environ["TICKHOUSE_NAMESPACE"] = namespace
    house = resolved_resources()["lakehouse"].lakehouse()
    arrow: pa.Table = house.table(table).scan().to_arrow()
    for stamp in ("ingested_at", "recorded_at"):
        if stamp in arrow.column_names:
            arrow = arrow.drop_columns([stamp])
    return sorted(tuple(row.values()) for row in arrow.to_pylist())


def _spark_ingest(spark, namespace: str, keys: list[str]):
    name, conf = catalog_conf()
    apply_runtime_conf(spark, conf)
    return ingest_files(
        spark,
        catalog=name,
        namespace=namespace,
        landing_uri=os.environ["TICKHOUSE_LANDING_URI"],
        keys=keys,
        profiles=load_profiles(),
        venues=load_venues(),
    )


def test_python_and_spark_paths_give_identical_ticks_and_bars(
    spark, on_stack, extra_namespaces, tmp_path: Path, monkeypatch
):
    files = two_profile_sample(tmp_path / "sample")
    _upload(files)
    keys = sorted(files)
    python_ns = on_stack["TICKHOUSE_NAMESPACE"]
    spark_ns = python_ns + "_spark"
    extra_namespaces.append(spark_ns)

    # Python path: the code location's own ingest job per file, then the bars of both days.
    resources = resolved_resources()
    definitions = definitions_with(resources)
    with DagsterInstance.ephemeral() as instance:
        for key in keys:
            run = ingest(definitions, instance, key)
            assert run.success, step_error(run)
        for day in ("2024-01-02", "2024-01-03"):
            assert rebuild_bars(definitions, instance, day).success

    # Spark path, through Dagster: the backfill job on the in-process dagster-pyspark Spark; its
    # ticks materializations drive the touched-days sensor exactly as Python ingests do.
    monkeypatch.setenv("TICKHOUSE_NAMESPACE", spark_ns)
    resources = resolved_resources()
    definitions = definitions_with(resources)
    with DagsterInstance.ephemeral() as instance:
        run = definitions.resolve_job_def("spark_backfill_ticks").execute_in_process(
            instance=instance,
            run_config={"ops": {"spark_ingest_ticks": {"config": {"engine": "local"}}}},
            raise_on_error=False,
        )
        assert run.success, step_error(run)
        events = {
            e.partition: e.metadata
            for e in run.asset_materializations_for_node("spark_ingest_ticks")
        }
        assert sorted(events) == keys
        assert sum(m["rows_written"].value for m in events.values()) == 4000
        assert events[keys[-1]]["trade_dates"].value == "2024-01-03"
        assert events[keys[0]]["engine"].value.startswith("spark (local")
        # The metadata a Python ingest shows: Dagster's table name and the stored Iceberg types.
        assert events[keys[0]]["dagster/table_name"].value == f"{spark_ns}.ticks"
        shown = events[keys[0]]["dagster/column_schema"].value.columns
        assert ("price", "decimal(18, 6)") in [(c.name, c.type) for c in shown]
        assert events[keys[0]]["dagster/partition_row_count"].value == (
            events[keys[0]]["rows_written"].value
        )
        # The ledger now counts these files as ingested: a second backfill has nothing to do.
        again = definitions.resolve_job_def("spark_backfill_ticks").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert again.success and not again.asset_materializations_for_node("spark_ingest_ticks")
        days = touched_days_sensor(
            build_sensor_context(instance=instance, resources={"lakehouse": resources["lakehouse"]})
        )
        assert isinstance(days, SensorResult)
        assert sorted(r.partition_key for r in days.run_requests) == ["2024-01-02", "2024-01-03"]
        for request in days.run_requests:
            assert rebuild_bars(definitions, instance, request.partition_key).success

    python_ticks, spark_ticks = _rows(python_ns, "ticks"), _rows(spark_ns, "ticks")
    assert len(python_ticks) == 4000
    assert spark_ticks == python_ticks  # every column but ingested_at, decimals exact
    for interval in BAR_INTERVALS:
        table = bar_table_name(interval)
        python_bars = _rows(python_ns, table)
        assert python_bars and _rows(spark_ns, table) == python_bars, table
    # Both engines record the reference data each file and day was built under, alike.
    python_records = _rows(python_ns, REFERENCE_TABLE)
    assert len([r for r in python_records if r[0] == "ticks"]) == len(keys)
    assert _rows(spark_ns, REFERENCE_TABLE) == python_records


def test_rerun_replaces_the_files_rows(spark, on_stack, tmp_path: Path):
    files = two_profile_sample(tmp_path / "sample")
    _upload(files)
    keys = sorted(files)
    namespace = on_stack["TICKHOUSE_NAMESPACE"]

    first = _spark_ingest(spark, namespace, keys)
    assert first.method == "overwrite" and first.rows == 4000
    # The same files again: replaced, not appended.
    assert _spark_ingest(spark, namespace, keys).rows == 4000
    assert len(_rows(namespace, "ticks")) == 4000

    # One file re-sent shorter: its data files also hold the other files' rows, so the
    # replacement is a copy-on-write MERGE; the other files' rows stay as they were.
    key = keys[0]
    lines = files[key].decode().splitlines()
    trades = [i for i, line in enumerate(lines) if line.lstrip().startswith("<trade ")]
    drop = set(trades[:25])
    _upload({key: "\n".join(line for i, line in enumerate(lines) if i not in drop).encode()})
    before = [r for r in _rows(namespace, "ticks") if r[-1] != key]
    rerun = _spark_ingest(spark, namespace, [key])
    assert rerun.method == "merge"
    assert [f.rows for f in rerun.files] == [len(trades) - 25]
    after = _rows(namespace, "ticks")
    assert len(after) == 4000 - 25
    assert [r for r in after if r[-1] != key] == before
    trade_keys = [(r[0], r[1], r[2], r[4]) for r in after]
    assert len(set(trade_keys)) == len(trade_keys)  # no duplicates


MALFORMED = """<?xml version="1.0" encoding="UTF-8"?>
<tickhouse version="1" venue="KRX" trade_date="2024-01-02">
  <trade id="000001" symbol="005930" ts="2024-01-02T09:00:00.000001+09:00" price="71000" qty="5" side="B"/>
  <trade id="000002" symbol="005930" ts="2024-01-02T09:00:01+09:00" price="71000" qty="5" side="B"><oops></trade>
  <trade id="000003" symbol="005930" ts="2024-01-02T09:00:02+09:00" price="71100" qty="7" side="S"/>
</tickhouse>
"""

BAD_PRICE = MALFORMED.replace("<oops>", "").replace('price="71100"', 'price="71100.1234567"')
# Cut inside the last record: Spark's XML reader alone would drop that record without a word.
TRUNCATED = MALFORMED.replace("<oops>", "").split('price="71100"')[0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (MALFORMED, "malformed XML"),
        (BAD_PRICE, "trade 000003, field price: '71100.1234567' is not a decimal number"),
        (TRUNCATED, "the root element <tickhouse> is never closed"),
    ],
    ids=["malformed-xml", "price-with-7-decimals", "truncated"],
)
def test_bad_file_fails_naming_it_and_writes_nothing(
    spark, on_stack, tmp_path: Path, content: str, reason: str
):
    good = two_profile_sample(tmp_path / "sample")
    good_key = sorted(good)[0]
    _upload({good_key: good[good_key], "bad/trades_0900.xml": content.encode()})
    namespace = on_stack["TICKHOUSE_NAMESPACE"]
    with pytest.raises(SparkIngestError) as failure:
        _spark_ingest(spark, namespace, [good_key, "bad/trades_0900.xml"])
    message = str(failure.value)
    assert message.startswith("bad/trades_0900.xml"), message
    assert reason in message
    assert failure.value.source_file == "bad/trades_0900.xml"
    # Nothing was committed: neither the bad file's rows nor the good file's.
    assert _rows(namespace, "ticks") == []


def test_spark_submit_through_pipes_reports_back(on_stack, tmp_path: Path):
    files = two_profile_sample(tmp_path / "sample")
    key = sorted(files)[-1]  # the gzip FIXML file
    _upload({key: files[key], "bad/trades_0900.xml": MALFORMED.encode()})
    definitions = definitions_with(resolved_resources())
    job = definitions.resolve_job_def("spark_backfill_ticks")
    with DagsterInstance.ephemeral() as instance:
        run = job.execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "spark_ingest_ticks": {
                        "config": {"engine": "submit", "master": "local[2]", "keys": [key]}
                    }
                }
            },
            raise_on_error=False,
        )
        assert run.success, step_error(run)
        (event,) = run.asset_materializations_for_node("spark_ingest_ticks")
        assert event.partition == key
        assert event.metadata["rows_written"].value == 1000
        assert event.metadata["trade_dates"].value == "2024-01-03"
        assert event.metadata["engine"].value == "spark (submit, local[2])"
        logs = [
            e.message
            for e in instance.all_logs(run.run_id)
            if e.message and "[pipes]" not in e.message
        ]
        assert any(f"{key}: 1000 rows" in m for m in logs), logs
    assert len(_rows(on_stack["TICKHOUSE_NAMESPACE"], "ticks")) == 1000
