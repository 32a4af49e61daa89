"""Minimal SigV4-signed HTTP request for the stack's S3 checks (stdlib only).

  s3req.py [--anonymous] [--service s3] [--expect 200,409] [--data STR] [-H K:V]... METHOD URL

Credentials come from the environment (TICKHOUSE_S3_ACCESS_KEY, TICKHOUSE_S3_SECRET_KEY;
S3REQ_SECRET_KEY overrides the secret, used to prove that a wrong key is refused), so they
never appear on a command line. Prints the HTTP status; exit 0 iff it is in --expect.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def _q(s: str, safe: str) -> str:
    return urllib.parse.quote(s, safe=safe)


def sign(
    method: str,
    url: str,
    body: bytes,
    service: str,
    region: str,
    ak: str,
    sk: str,
    headers: dict[str, str],
) -> dict[str, str]:
    u = urllib.parse.urlsplit(url)
    now = dt.datetime.now(dt.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    hdrs = {k.lower(): v.strip() for k, v in headers.items()}
    hdrs |= {"host": u.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(hdrs))
    query = "&".join(
        f"{_q(k, '-_.~')}={_q(v, '-_.~')}"
        for k, v in sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    )
    canonical = "\n".join(
        [
            method,
            _q(urllib.parse.unquote(u.path or "/"), "/-_.~"),
            query,
            "".join(f"{k}:{hdrs[k]}\n" for k in sorted(hdrs)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + sk).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
    del hdrs["host"]
    return hdrs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("url")
    ap.add_argument("--service", default="s3")
    ap.add_argument("--region", default=os.environ.get("TICKHOUSE_S3_REGION", "us-east-1"))
    ap.add_argument("--anonymous", action="store_true")
    ap.add_argument("--data", default="")
    ap.add_argument("-H", dest="headers", action="append", default=[])
    ap.add_argument("--expect", default="200")
    ap.add_argument("--timeout", type=float, default=10)
    a = ap.parse_args()
    body = a.data.encode()
    headers = dict(h.split(":", 1) for h in a.headers)
    if not a.anonymous:
        sk = os.environ.get("S3REQ_SECRET_KEY") or os.environ["TICKHOUSE_S3_SECRET_KEY"]
        headers = sign(
            a.method,
            a.url,
            body,
            a.service,
            a.region,
            os.environ["TICKHOUSE_S3_ACCESS_KEY"],
            sk,
            headers,
        )
    req = urllib.request.Request(
        a.url,
        data=body if body or a.method in ("PUT", "POST") else None,
        headers=headers,
        method=a.method,
    )
    try:
        with urllib.request.urlopen(req, timeout=a.timeout) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError as e:
        print(f"000 ({e})")
        return 1
    print(status)
    return 0 if str(status) in a.expect.split(",") else 1


if __name__ == "__main__":
    sys.exit(main())
