"""The Spark engine books every print to the trade date the Python readers give it: its column
expression (`spark.ticks.trade_date_column`) against `market.venues.trade_dates_of`, on a plain
local Spark (no stack, no jars), over three weeks of instants around the end of US daylight
saving time, weekends and holidays of every built-in venue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tickhouse_dagster.market.venues import trade_dates_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("tickhouse trade-date rule")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_trade_dates_equal_the_python_rule(local_spark, venues):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    from tickhouse_dagster.spark.ticks import trade_date_column

    start = datetime(2026, 10, 20, tzinfo=UTC)
    # Every 13 minutes (so every clock minute mod 13 is hit) plus each holiday's noon UTC.
    instants = [start + timedelta(minutes=13 * i) for i in range(21 * 24 * 60 // 13)]
    holidays = sorted({day for v in venues.values() for day in v.holidays})
    instants += [datetime(day.year, day.month, day.day, 12, tzinfo=UTC) for day in holidays]
    rows = [(name, at) for name in sorted(venues) for at in instants]
    schema = StructType([StructField("venue", StringType()), StructField("ts", TimestampType())])
    frame = local_spark.createDataFrame(rows, schema)
    derived = frame.select(
        "venue",
        F.unix_micros("ts").alias("micros"),  # not the driver's local clock
        trade_date_column(F.col("venue"), F.col("ts"), venues).alias("trade_date"),
    ).collect()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    spark_dates = {
        (r.venue, epoch + timedelta(microseconds=r.micros)): r.trade_date for r in derived
    }

    names = pa.array([name for name, _ in rows], pa.string())
    ts = pa.array([at for _, at in rows], pa.timestamp("us", tz="UTC"))
    python_dates = trade_dates_of(names, ts, venues).to_pylist()
    mismatches = [
        (name, at, spark_dates[(name, at)], expected)
        for (name, at), expected in zip(rows, python_dates, strict=True)
        if spark_dates[(name, at)] != expected
    ]
    assert not mismatches, mismatches[:10]
    assert len(spark_dates) == len(rows)


def test_spark_contract_frame_uses_the_rule(local_spark, venues, profiles, tmp_path):
    """The Spark engine's reader → contract path on a real XML file: a Friday-evening CBOT print
    without a trade date is Monday's, as on the Python path (parsing/test_trade_date_rule.py)."""
    from tickhouse_dagster.spark.ticks import contract_frame, plan_inputs, read_profile_files
    from tickhouse_dagster_tests.parsing.test_trade_date_rule import DOCUMENT, EXPECTED

    (tmp_path / "CBOT").mkdir()
    (tmp_path / "CBOT" / "cbot.xml").write_bytes(DOCUMENT)
    inputs = plan_inputs(local_spark, str(tmp_path), ["CBOT/cbot.xml"], profiles)
    raw = read_profile_files(local_spark, profiles["tickhouse"], inputs)
    frame = contract_frame(raw, profiles["tickhouse"], venues, datetime.now(UTC))
    rows = sorted(frame.collect(), key=lambda r: r.trade_id)  # every column: errors surface
    assert [r.trade_date for r in rows] == EXPECTED
    assert {r.venue for r in rows} == {"CBOT"}
