"""The Spark engine against the Python engine, on the real stack.

- on the stack's Spark standalone cluster (a master and two 1-core workers), through the Dagster
  job with `engine: submit` (spark-submit over Dagster Pipes): the same files — both profiles,
  plain and gzip, and a FIXML file of cancels / replaces — give exactly the Python engine's
  `market.ticks` rows and, after the touched-days sensor's rebuilds, its bars (full tables);
  per-file results and logs come back into the run;
- re-running replaces the files' rows (no duplicates), also when a data file holds several
  landing files (copy-on-write MERGE) and when a file shrank (in-process Spark, `engine: local`);
- a bad file fails the job naming the file, record, line and reason, and nothing is written.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from tickhouse_dagster.core.contract import (
    BAR_INTERVALS,
    CORRECTIONS_TABLE,
    REFERENCE_TABLE,
    TICKS_TABLE,
    bar_table_name,
)
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.defs.resources_spark import LocalSparkResource
from tickhouse_dagster.defs.sensors import touched_days_sensor
from tickhouse_dagster.engine.batch import parse_to_staging
from tickhouse_dagster.spark.session import apply_runtime_conf, catalog_conf
from tickhouse_dagster.spark.ticks import (
    SparkIngestError,
    ingest_files,
    replace_file_ticks,
    ticks_frame,
    write_ticks_rows,
)
from tickhouse_dagster_tests.defs.helpers import definitions_with, ingest, rebuild_bars, step_error
from tickhouse_dagster_tests.reliability.test_corrections import CORRECTION, ORIGINAL
from tickhouse_dagster_tests.samples import two_profile_sample

pytestmark = pytest.mark.slow

CORRECTED = {"KRX/corr/0900.fixml.xml": ORIGINAL, "KRX/corr/1000-corrections.fixml.xml": CORRECTION}


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


def _spark_ingest(spark, keys: list[str]):
    resources = resolved_resources()
    name, conf = catalog_conf(resources["lakehouse"].catalog_settings())
    apply_runtime_conf(spark, conf)
    return ingest_files(
        spark,
        catalog=name,
        house=resources["lakehouse"].lakehouse(),
        landing=resources["landing"].address(),
        feed=resources["feed"].feed(),
        staging_uri=resources["staging"].uri,
        keys=keys,
    )


def test_spark_cluster_via_pipes_gives_the_python_engines_ticks_and_bars(
    spark_cluster: str, on_stack, extra_namespaces, tmp_path: Path, monkeypatch
):
    files = {**two_profile_sample(tmp_path / "sample"), **CORRECTED}
    _upload(files)
    keys = sorted(files)
    python_ns = on_stack["TICKHOUSE_NAMESPACE"]
    spark_ns = python_ns + "_spark"
    extra_namespaces.append(spark_ns)

    # Python engine: the code location's own ingest job per file, then the bars of both days.
    definitions = definitions_with(resolved_resources())
    with DagsterInstance.ephemeral() as instance:
        for key in keys:
            run = ingest(definitions, instance, key)
            assert run.success, step_error(run)
        for day in ("2024-01-02", "2024-01-03"):
            assert rebuild_bars(definitions, instance, day).success

    # Spark on the standalone cluster, through Dagster Pipes; its ticks materializations drive
    # the touched-days sensor exactly as Python ingests do.
    monkeypatch.setenv("TICKHOUSE_NAMESPACE", spark_ns)
    spark_resources = resolved_resources()
    definitions = definitions_with(spark_resources)
    with DagsterInstance.ephemeral() as instance:
        run = definitions.resolve_job_def("spark_backfill_ticks").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "spark_ingest_ticks": {
                        "config": {
                            "engine": "submit",
                            "master": spark_cluster,
                            "submit_conf": {"spark.executor.memory": "768m"},
                        }
                    }
                }
            },
            raise_on_error=False,
        )
        assert run.success, step_error(run)
        events = {
            e.partition: e.metadata
            for e in run.asset_materializations_for_node("spark_ingest_ticks")
        }
        assert sorted(events) == keys
        # 4000 sample rows, 4 original reports, of which 1 cancelled, 1 replaced by the other.
        assert sum(m["rows_written"].value for m in events.values()) == 4000 + 3
        assert events[keys[-1]]["trade_dates"].value == ["2024-01-03"]
        assert events[keys[0]]["engine"].value == f"spark (submit, {spark_cluster})"
        assert events["KRX/corr/1000-corrections.fixml.xml"]["corrections"].value == 2
        assert events["KRX/corr/0900.fixml.xml"]["written_by"].value == "spark-overwrite"
        assert events[keys[-1]]["parser"].value == "xml2arrow"  # the project's compiled parser
        assert events[keys[0]]["dagster/table_name"].value == f"{spark_ns}.ticks"
        logs = [e.message for e in instance.all_logs(run.run_id) if e.message]
        assert any(f"{keys[-1]}: 1000 rows" in m for m in logs), logs
        assert any("spark://" in m and f"{len(keys)} files" in m for m in logs), logs
        # The ledger now counts these files as ingested: a second backfill has nothing to do.
        again = definitions.resolve_job_def("spark_backfill_ticks").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert again.success and not again.asset_materializations_for_node("spark_ingest_ticks")
        days = touched_days_sensor(
            build_sensor_context(
                instance=instance, resources={"lakehouse": spark_resources["lakehouse"]}
            )
        )
        assert isinstance(days, SensorResult)
        assert sorted(r.partition_key for r in days.run_requests) == ["2024-01-02", "2024-01-03"]
        for request in days.run_requests:
            assert rebuild_bars(definitions, instance, request.partition_key).success

    python_ticks, spark_ticks = _rows(python_ns, TICKS_TABLE), _rows(spark_ns, TICKS_TABLE)
    assert len(python_ticks) == 4003
    assert spark_ticks == python_ticks  # every column but ingested_at, decimals exact
    for table in (CORRECTIONS_TABLE, *(bar_table_name(i) for i in BAR_INTERVALS)):
        python_rows = _rows(python_ns, table)
        assert python_rows and _rows(spark_ns, table) == python_rows, table
    python_records = _rows(python_ns, REFERENCE_TABLE)
    assert len([r for r in python_records if r[0] == "ticks"]) == len(keys)
    assert _rows(spark_ns, REFERENCE_TABLE) == python_records


def test_the_local_spark_resource_makes_its_session_on_first_use(spark):
    """`engine: local`'s resource: no session (nor pyspark import) until a run reads it, then
    the process's Spark with the resource's options, the same session on every read."""
    resource = LocalSparkResource(spark_config={"spark.tickhouse.marker": "local-resource"})
    session = resource.spark_session
    assert session is spark  # getOrCreate: the process's running Spark
    assert session.conf.get("spark.tickhouse.marker") == "local-resource"
    assert resource.spark_session is session


def test_rerun_replaces_the_files_rows(spark, on_stack, tmp_path: Path):
    files = two_profile_sample(tmp_path / "sample")
    _upload(files)
    keys = sorted(files)
    namespace = on_stack["TICKHOUSE_NAMESPACE"]

    first = _spark_ingest(spark, keys)
    assert first.method == "overwrite" and first.rows == 4000
    # The same files again: replaced, not appended.
    assert _spark_ingest(spark, keys).rows == 4000
    assert len(_rows(namespace, TICKS_TABLE)) == 4000

    # A data file holding two landing files (one Spark task wrote both): re-sending one of
    # them shorter needs the copy-on-write MERGE; the other file's rows stay as they were.
    name, _ = catalog_conf(resolved_resources()["lakehouse"].catalog_settings())
    table = f"{name}.{namespace}.{TICKS_TABLE}"
    sample = tmp_path / "sample"
    uris = [
        write_ticks_rows(
            parse_to_staging(str(sample / k), k, str(tmp_path / "staging")), datetime.now(UTC)
        )
        for k in keys[:2]
    ]
    mixed = ticks_frame(spark, uris).coalesce(1)
    house = resolved_resources()["lakehouse"].lakehouse()
    assert replace_file_ticks(spark, table, mixed, keys[:2], house)[0] == "overwrite"
    key = keys[0]
    lines = files[key].decode().splitlines()
    trades = [i for i, line in enumerate(lines) if line.lstrip().startswith("<trade ")]
    drop = set(trades[:25])
    _upload({key: "\n".join(line for i, line in enumerate(lines) if i not in drop).encode()})
    before = [r for r in _rows(namespace, TICKS_TABLE) if r[-1] != key]
    rerun = _spark_ingest(spark, [key])
    assert rerun.method == "merge"
    assert [f.rows for f in rerun.files] == [len(trades) - 25]
    after = _rows(namespace, TICKS_TABLE)
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


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (MALFORMED, "line 4"),
        (BAD_PRICE, "record 3, line 5, field price: '71100.1234567'"),
    ],
    ids=["malformed-xml", "price-with-7-decimals"],
)
def test_bad_file_fails_naming_it_and_writes_nothing(
    spark, on_stack, tmp_path: Path, content: str, reason: str
):
    good = two_profile_sample(tmp_path / "sample")
    good_key = sorted(good)[0]
    _upload({good_key: good[good_key], "bad/trades_0900.xml": content.encode()})
    namespace = on_stack["TICKHOUSE_NAMESPACE"]
    with pytest.raises(SparkIngestError) as failure:
        _spark_ingest(spark, [good_key, "bad/trades_0900.xml"])
    message = str(failure.value)
    assert message.startswith("bad/trades_0900.xml"), message
    assert reason in message, message
    assert failure.value.source_file == "bad/trades_0900.xml"
    # Nothing was committed: neither the bad file's rows nor the good file's.
    assert _rows(namespace, TICKS_TABLE) == []


def test_bad_file_on_the_cluster_fails_the_run_naming_it(spark_cluster: str, on_stack, tmp_path):
    """Through Dagster Pipes from the standalone cluster: the step fails with the Python
    engine's reason (file, record, line, field), its metadata says where, nothing is written."""
    good = two_profile_sample(tmp_path / "sample")
    good_key = sorted(good)[0]
    _upload({good_key: good[good_key], "bad/trades_0900.xml": BAD_PRICE.encode()})
    definitions = definitions_with(resolved_resources())
    with DagsterInstance.ephemeral() as instance:
        run = definitions.resolve_job_def("spark_backfill_ticks").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "spark_ingest_ticks": {
                        "config": {
                            "engine": "submit",
                            "master": spark_cluster,
                            "keys": [good_key, "bad/trades_0900.xml"],
                        }
                    }
                }
            },
            raise_on_error=False,
        )
    assert not run.success
    error = step_error(run)
    assert "bad/trades_0900.xml, record 3, line 5, field price: '71100.1234567'" in error, error
    assert not run.asset_materializations_for_node("spark_ingest_ticks")
    assert _rows(on_stack["TICKHOUSE_NAMESPACE"], TICKS_TABLE) == []
