"""Every PromQL query of the Grafana dashboard, run against a real Prometheus (Debian's, started
by `infra/local/stack up prometheus`) that scrapes a real SeaweedFS and the real pipeline
exporter (`tickhouse metrics`) after sample files were ingested through S3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tickhouse_dagster import cli
from tickhouse_dagster.settings import PROJECT_ROOT

pytestmark = pytest.mark.timeout(600)

DASHBOARDS = PROJECT_ROOT / "infra" / "grafana" / "dashboards"
TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))
# What Grafana would put in for the template variables: every bucket / venue ("All"), and a
# rate window spanning many 2 s scrapes.
VARIABLES = {"$__rate_interval": "1m", "$bucket": ".*", "$venue": ".*"}
WAIT_SECONDS = 90
BUCKET_METRICS_WAIT_SECONDS = 300  # a loaded machine: SeaweedFS's minute loop runs late
GENERATED_TICKS = 2_000


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every panel target and query variable."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], target["expr"]))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                query = query["query"] if isinstance(query, dict) else query
                # label_values(selector, label): the series the label values come from.
                selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
                assert selector, query
                queries.append((path.name, f"${variable['name']}", selector.group(1)))
    return queries


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def prometheus_query(url: str, expr: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what: str, check: Any, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["TICKHOUSE_S3_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


@pytest.fixture(scope="module")
def pipeline_env(
    monitoring_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The process environment of a pipeline on the monitoring stack's SeaweedFS: its own
    landing and warehouse prefixes, an embedded SQLite catalog (the monitoring stack has no
    PostgreSQL)."""
    run_id = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("monitoring") / "tickhouse"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TICKHOUSE_", "PYICEBERG_CATALOG__", "AWS_"))
    }
    env |= {
        "TICKHOUSE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "TICKHOUSE_S3_ENDPOINT": monitoring_env["TICKHOUSE_S3_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": monitoring_env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": monitoring_env["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": monitoring_env["AWS_REGION"],
        "TICKHOUSE_LANDING_URI": f"s3://landing/m{run_id}/",
        "TICKHOUSE_WAREHOUSE_URI": f"s3://warehouse/m{run_id}/",
    }
    yield env
    s3 = s3_client(env)
    for bucket in ("landing", "warehouse"):
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"m{run_id}/"
        ):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])


@pytest.fixture(scope="module")
def exporter(
    pipeline_env: dict[str, str], monitoring_env: dict[str, str]
) -> Iterator[dict[str, str]]:
    """`tickhouse metrics` serving on the port the monitoring stack's Prometheus scrapes, with
    two sample files ingested through S3 by the CLI's own commands (while the exporter starts),
    one more file waiting, and one quarantined."""
    env = pipeline_env
    port = monitoring_env["TICKHOUSE_PIPELINE_METRICS_PORT"]
    process = subprocess.Popen(
        [TICKHOUSE_CLI, "metrics", f"--port={port}", "--cache-seconds=1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in set(os.environ) - set(env):
                patch.delenv(name)
            for name, setting in env.items():
                patch.setenv(name, setting)
            generate = f"--days=1 --symbols=2 --ticks-per-day={GENERATED_TICKS} --files-per-day=2"
            assert cli.main(["generate", *generate.split()]) == 0
        # The ingest in its own process: the code location's Definitions are built once per
        # process, from the environment of whoever imported them first.
        ingest = subprocess.run(
            [TICKHOUSE_CLI, "ingest"], env=env, capture_output=True, text=True, timeout=600
        )
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        # One file that arrives after the ingest, and one set aside the way the quarantine does
        # it (the file under _quarantine/<key>, its reason next to it).
        s3 = s3_client(env)
        prefix = env["TICKHOUSE_LANDING_URI"].removeprefix("s3://landing/")
        source = f"{prefix}KRX/2024-01-02/trades_0900.xml"
        body = s3.get_object(Bucket="landing", Key=source)["Body"].read()
        s3.put_object(Bucket="landing", Key=f"{prefix}KRX/2024-01-03/late.xml", Body=body)
        s3.put_object(Bucket="landing", Key=f"{prefix}_quarantine/KRX/bad.xml", Body=b"<broken")
        s3.put_object(
            Bucket="landing",
            Key=f"{prefix}_quarantine/KRX/bad.xml.reason.json",
            Body=b'{"key": "KRX/bad.xml", "reason": "not XML", "stage": "parse"}',
        )
        landed_at = time.time()
        url = f"http://127.0.0.1:{port}/metrics"

        def serving() -> bool:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return b"tickhouse_status_up 1.0" in response.read()
            except OSError:
                return False

        try:
            wait_for("the exporter to serve figures", serving)
        except AssertionError:
            output = stop(process)
            raise AssertionError(f"the exporter never served up=1; its output:\n{output}") from None
        yield {"url": url, "prefix": prefix, "landed_at": str(landed_at)}
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, and SIGKILL if that is not obeyed within 30 s: the exporter is never left
    running, and a stop that fails does not hide what failed before it (test_exporter_signals
    covers the exporter obeying SIGTERM)."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.communicate(timeout=30)[0] or ""
        except subprocess.TimeoutExpired:
            process.kill()
    return process.communicate()[0] or ""


def value(url: str, expr: str) -> float:
    (series,) = prometheus_query(url, expr)
    return float(series["value"][1])


def test_every_dashboard_query_returns_series(
    monitoring_env: dict[str, str], pipeline_env: dict[str, str], exporter: dict[str, str]
) -> None:
    url = monitoring_env["TICKHOUSE_PROMETHEUS_URL"]
    s3 = s3_client(pipeline_env)
    missing = f"{exporter['prefix']}no-such-file.xml"

    def fail_a_request() -> None:
        with pytest.raises(s3.exceptions.ClientError):
            s3.get_object(Bucket="landing", Key=missing)

    # A failed request shows as an error rate only when Prometheus scraped the counter before
    # and after it: fail one per poll until the rate shows.
    errors = 'SeaweedFS_s3_request_total{job="seaweedfs-s3", bucket="landing", code="404"}'

    def error_rate_seen() -> bool:
        fail_a_request()
        return bool(prometheus_query(url, f"increase({errors}[1m]) > 0"))

    wait_for(
        "every scrape target up with several samples",
        lambda: all(
            prometheus_query(url, f'count_over_time(up{{job="{job}"}}[1m]) >= 3 and up == 1')
            for job in ("seaweedfs-s3", "seaweedfs-volume", "tickhouse")
        ),
    )
    # Figures computed after the last file landed, not a scrape from before.
    wait_for(
        "a scrape of figures computed after the files landed",
        lambda: prometheus_query(
            url,
            'tickhouse_status_computed_timestamp_seconds{job="tickhouse"} > '
            + exporter["landed_at"],
        ),
    )
    wait_for("the error rate of the landing bucket", error_rate_seen)

    queries = dashboard_queries()
    assert len(queries) >= 25

    def empty_queries() -> list[str]:
        return [
            f"{dashboard} / {panel}: {expr}"
            for dashboard, panel, expr in queries
            if not prometheus_query(url, substitute(expr))
        ]

    # SeaweedFS computes the bucket sizes once a minute, the first time a minute after it
    # starts: on a freshly started stack those series come last.
    started = time.monotonic()
    while (empty := empty_queries()) and time.monotonic() - started < BUCKET_METRICS_WAIT_SECONDS:
        time.sleep(2)
    assert not empty, (
        f"queries still without series after polling {time.monotonic() - started:.0f} s "
        f"(bound {BUCKET_METRICS_WAIT_SECONDS} s) for every dashboard query to return one:\n"
        + "\n".join(empty)
    )

    # The pipeline figures are the ingested sample's, the late file and the quarantined one.
    pipeline = 'job="tickhouse"'
    assert value(url, f"tickhouse_ingested_files{{{pipeline}}}") == 2
    assert value(url, f'tickhouse_ticks_rows{{{pipeline}, venue="KRX"}}') == GENERATED_TICKS
    assert value(url, f"tickhouse_pending_files{{{pipeline}}}") == 1
    assert value(url, f"tickhouse_quarantined_files{{{pipeline}}}") == 1
    assert value(url, f"tickhouse_ingest_lag_seconds{{{pipeline}}}") > 0
    assert 0 < value(url, f"time() - tickhouse_last_ingest_timestamp_seconds{{{pipeline}}}") < 3600
    # The template variables offer the buckets and venues the panels are filtered by.
    buckets = {
        s["metric"].get("bucket", "") for s in prometheus_query(url, "SeaweedFS_s3_request_total")
    }
    assert {"landing", "warehouse"} <= buckets
    error_panel = next(e for _, p, e in queries if p == "S3 errors per bucket (4xx + 5xx)")

    def landing_errors() -> list[dict]:
        # The panel is a 1-minute rate: the errors made before the bucket wait may have left
        # its window, so keep failing a request until a scrape shows one.
        fail_a_request()
        return [
            s
            for s in prometheus_query(url, substitute(error_panel))
            if s["metric"].get("bucket") == "landing" and float(s["value"][1]) > 0
        ]

    seen = wait_for("the error panel to show the landing bucket's failed requests", landing_errors)
    assert float(seen[0]["value"][1]) > 0
    disk = next(e for _, p, e in queries if p == "Disk used")
    (used,) = prometheus_query(url, substitute(disk))
    assert 0 < float(used["value"][1]) < 100
