"""The retry policy: which errors are retried, how the waits grow, and that bad input gets exactly
one attempt. (That transient errors are retried until the server is back is proven on the fault
stack, see test_faults.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from botocore.config import Config
from sqlalchemy import create_engine, text

from tickhouse_dagster.core.contract import TICKS_ARROW
from tickhouse_dagster.defs.retries import MAX_WAIT_SECONDS, TransientRetry, describe
from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.market.venues import load_venues
from tickhouse_dagster.parsing import TickFileError
from tickhouse_dagster.settings import TickhouseSettings
from tickhouse_dagster.storage.transient import is_transient
from tickhouse_dagster_tests.reliability.runner import run_ingest
from tickhouse_dagster_tests.reliability.tally import record


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def error_of(call) -> Exception:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


def test_real_outage_errors_are_transient_and_bad_input_is_not():
    port = closed_port()
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    s3_down = error_of(lambda: s3.head_object(Bucket="landing", Key="a.xml"))
    engine = create_engine(
        f"postgresql+psycopg2://u:p@127.0.0.1:{port}/iceberg", connect_args={"connect_timeout": 2}
    )
    catalog_down = error_of(lambda: engine.connect().execute(text("SELECT 1")))
    files = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="x",
        secret_key="y",
        region="us-east-1",
        connect_timeout=2,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    day = ds.dataset(
        ["warehouse/ticks/a.parquet"], schema=TICKS_ARROW, format="parquet", filesystem=files
    )
    streamed_down = error_of(lambda: build_all_bars(day, load_venues()))  # as the bars read
    assert is_transient(s3_down), describe(s3_down)
    assert is_transient(streamed_down), describe(streamed_down)
    assert is_transient(catalog_down), describe(catalog_down)
    assert "p@" not in describe(catalog_down)  # the one-line description shows no password

    bad_xml = TickFileError("landing/bad.xml", "not well-formed XML")
    assert not is_transient(bad_xml)
    assert not is_transient(KeyError("venue"))


def test_waits_double_with_jitter_and_are_capped():
    policy = TransientRetry(max_retries=8, base_seconds=2)
    for retry in range(8):
        wait = policy.wait(retry)
        nominal = min(2 * 2**retry, MAX_WAIT_SECONDS)
        assert 0.75 * nominal <= wait <= 1.25 * nominal
    # ±25% jitter never reorders consecutive waits below the cap: each wait is longer.
    assert 1.25 * 2 < 0.75 * 4


def test_bad_file_gets_exactly_one_attempt(home: Path):
    landing = home / "landing" / "KRX" / "2024-01-02"
    landing.mkdir(parents=True)
    (landing / "broken.xml").write_text('<tickhouse venue="KRX"><trade id="1" price=')
    key = "KRX/2024-01-02/broken.xml"

    summary = run_ingest(key)

    assert not summary["success"]
    assert "broken.xml" in summary["failure"] or "XML" in summary["failure"], summary["failure"]
    starts = [step for kind, step in summary["steps"] if kind in ("STEP_START", "STEP_RESTARTED")]
    assert starts.count("staging__parsed_ticks") == 1
    assert not [s for kind, s in summary["steps"] if kind == "STEP_UP_FOR_RETRY"]
    assert "market__ticks" not in starts
    record(
        "bad_input",
        "malformed XML: failed once, not retried",
        expected_rows=0,
        found_rows=0,
        outcome=f"1 attempt, no retry: {summary['failure'][:100]}",
    )


@pytest.mark.parametrize("retries", ["0", "2"])
def test_retry_count_comes_from_the_settings(retries):
    env = {"TICKHOUSE_RETRY_MAX": retries, "TICKHOUSE_RETRY_BASE_SECONDS": "0.5"}
    settings = TickhouseSettings.from_env(env)
    assert TransientRetry.from_settings(settings) == TransientRetry(int(retries), 0.5)
