"""Access to the real stack: S3 refuses wrong and missing keys; `tickhouse doctor` checks every
server and says what is wrong without printing a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.slow
TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))


def s3(endpoint: str, key: str | None, secret: str | None):
    config = Config(signature_version=UNSIGNED) if key is None else Config()
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=config,
    )


def test_s3_refuses_wrong_and_anonymous_requests(on_stack):
    endpoint = on_stack["TICKHOUSE_S3_ENDPOINT"]
    good = s3(endpoint, on_stack["AWS_ACCESS_KEY_ID"], on_stack["AWS_SECRET_ACCESS_KEY"])
    assert "landing" in {b["Name"] for b in good.list_buckets()["Buckets"]}
    for client in [
        s3(endpoint, on_stack["AWS_ACCESS_KEY_ID"], "not-the-secret"),
        s3(endpoint, None, None),
    ]:
        with pytest.raises(ClientError) as refused:
            client.list_objects_v2(Bucket="landing")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert requests.get(f"{endpoint}/landing/", timeout=10).status_code == 403


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TICKHOUSE_CLI, "doctor"], env=env, capture_output=True, text=True, timeout=180
    )


def test_doctor_on_the_stack(on_stack):
    ok = doctor(dict(os.environ))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok    landing store: S3 bucket 'landing'" in ok.stdout
    assert "ok    iceberg catalog: pyiceberg configuration" in ok.stdout
    assert "ok    trino: Trino 476, catalog 'iceberg'" in ok.stdout
    secret = on_stack["AWS_SECRET_ACCESS_KEY"]
    assert secret not in ok.stdout + ok.stderr

    wrong = {
        **os.environ,
        "AWS_SECRET_ACCESS_KEY": "wrong-secret-value-123",
        "TICKHOUSE_TRINO_URL": "http://127.0.0.1:9",
    }
    bad = doctor(wrong)
    assert bad.returncode == 1
    assert "FAIL  landing store: ClientError" in bad.stdout
    assert "SignatureDoesNotMatch" in bad.stdout or "AccessDenied" in bad.stdout
    assert "FAIL  trino:" in bad.stdout
    assert "wrong-secret-value-123" not in bad.stdout + bad.stderr
    assert secret not in bad.stdout + bad.stderr
