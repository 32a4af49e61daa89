"""Compose one-shot `seaweedfs-buckets`: the buckets tickhouse uses, on SeaweedFS S3.

Does what `infra/local/stack up` does after starting SeaweedFS: proves S3 authentication is on
(an anonymous request and one signed with a wrong secret are refused with 403), creates the
buckets (`landing`, `warehouse`) and the S3 table bucket of the Iceberg REST catalog
(`tickhouse-rest`), then writes and deletes a probe object. Idempotent. Runs in the tickhouse
image (boto3 comes with dagster-aws); settings from the environment:

  TICKHOUSE_S3_ENDPOINT, TICKHOUSE_S3_REGION (us-east-1)
  TICKHOUSE_S3_ACCESS_KEY, TICKHOUSE_S3_SECRET_KEY
  TICKHOUSE_S3_BUCKETS ("landing warehouse"), TICKHOUSE_ICEBERG_REST_TABLE_BUCKET (tickhouse-rest)
  TICKHOUSE_S3_WAIT_SECONDS (120): how long to wait for the endpoint to answer
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

ALREADY_THERE = 409  # BucketAlreadyOwnedByYou / BucketAlreadyExists / ConflictException


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name) or default
    if value is None:
        sys.exit(f"seaweedfs-buckets: {name} is not set")
    return value


def client(service: str, endpoint: str, region: str, **credentials: Any) -> Any:
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        **({"signature_version": UNSIGNED} if not credentials else {}),
    )
    return boto3.client(
        service, endpoint_url=endpoint, region_name=region, config=config, **credentials
    )


def status_of(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def wait_for(endpoint: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/healthz", timeout=5):
                return
        except (urllib.error.URLError, OSError) as error:
            if time.monotonic() > deadline:
                sys.exit(
                    f"seaweedfs-buckets: {endpoint} did not answer in {seconds:.0f} s: {error}"
                )
            time.sleep(2)


def expect_refused(s3: Any, what: str) -> None:
    try:
        s3.list_buckets()
    except ClientError as error:
        if status_of(error) == 403:
            return
        raise
    sys.exit(f"seaweedfs-buckets: an {what} request was not refused (is -config applied?)")


def main() -> int:
    endpoint = env("TICKHOUSE_S3_ENDPOINT").rstrip("/")
    region = env("TICKHOUSE_S3_REGION", "us-east-1")
    access_key = env("TICKHOUSE_S3_ACCESS_KEY")
    secret_key = env("TICKHOUSE_S3_SECRET_KEY")
    buckets = env("TICKHOUSE_S3_BUCKETS", "landing warehouse").split()
    table_bucket = env("TICKHOUSE_ICEBERG_REST_TABLE_BUCKET", "tickhouse-rest")
    wait_for(endpoint, float(env("TICKHOUSE_S3_WAIT_SECONDS", "120")))

    keys = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    expect_refused(client("s3", endpoint, region), "anonymous")
    wrong = {**keys, "aws_secret_access_key": f"wrong-{secret_key}"}
    expect_refused(client("s3", endpoint, region, **wrong), "wrongly signed")

    s3 = client("s3", endpoint, region, **keys)
    for bucket in buckets:
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as error:
            if status_of(error) != ALREADY_THERE:
                raise
    try:
        client("s3tables", endpoint, region, **keys).create_table_bucket(name=table_bucket)
    except ClientError as error:
        if status_of(error) != ALREADY_THERE:
            raise

    probe = f".tickhouse-compose-probe-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=buckets[0], Key=probe, Body=b"probe")
    s3.delete_object(Bucket=buckets[0], Key=probe)
    print(
        f"seaweedfs-buckets: S3 auth verified (anonymous 403, wrong key 403), writes OK; "
        f"buckets: {' '.join(buckets)}; table bucket: {table_bucket}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
