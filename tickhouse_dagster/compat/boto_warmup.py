"""Imported by the warm run launcher's interpreter (tickhouse_dagster.launcher), never by a run:
boto3's default session with the S3 service model loaded, which every forked run inherits.

Making the first S3 client of a process costs 0.13–0.16 s, nearly all of it botocore reading its
S3 model and endpoint rules; a session that has read them makes the next client in 0.01–0.03 s
(measured on this project's machine). The landing store's client (storage.landing) is made with
`boto3.client`, that is on the default session. The client made here has placeholder
credentials so that nothing resolves the real ones (or asks an instance-metadata endpoint) in
the warm interpreter; it sends nothing and is dropped. Each run still resolves its own
credentials from the standard chain when it makes its client."""

from __future__ import annotations

import boto3

boto3.setup_default_session()
boto3.client(
    "s3",
    region_name="us-east-1",
    endpoint_url="http://127.0.0.1:9",  # never contacted
    aws_access_key_id="warm-up",
    aws_secret_access_key="warm-up",
)
